"""The `predict` command: every face in image files or folders classified (crops of many photos in one model
call), printed as a table or JSON lines, and drawn on annotated copies with --save."""

import json
import os
import sys
import time

from emotion.core.drawing import annotate
from emotion.core.faces import detection_of
from emotion.io.arguments import int_in_range, positive_int
from emotion.io.errors import UserError
from emotion.io.files import check_writable
from emotion.io.images import ImageRefused, printable, read_image, write_image
from emotion.jobs.batch import CHUNK_IMAGES, VIDEO_SUFFIXES, WORKERS, describe_video, is_video, run_batch
from emotion.jobs.options import add_classes_argument, add_detector_argument, add_model_arguments
from emotion.jobs.results_files import check_output
from emotion.recognizer import EmotionRecognizer

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".avif",
                    ".heic", ".heif")  # HEIC is read with pillow-heif installed, else refused with what to do
PREDICT_BATCH_PIXELS = 40_000_000  # predict: images decoded and labelled together hold at most this many pixels
PREDICT_BATCH_IMAGES = 64  # predict: and at most this many images (their face crops go to the model in one call)


def add_arguments(parser):
    add_model_arguments(parser)
    add_classes_argument(parser)
    add_detector_argument(parser)
    parser.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders of images")
    parser.add_argument("--no-detect", action="store_true", help="classify each whole image; no face detection")
    parser.add_argument("--json", action="store_true", help="one JSON object per image per line")
    parser.add_argument("--save", metavar="DIR", help="write annotated copies of the images here")
    parser.add_argument("--output", metavar="FILE", help="write one record per image (and per video in a folder) "
                        "to FILE as it goes: .jsonl, .csv or .parquet (a folder of parts); docs/scale.md")
    parser.add_argument("--resume", action="store_true", help="with --output: skip the files it already answers "
                        "(same path, size and mtime) and append the rest")
    parser.add_argument("--workers", type=int_in_range(0), default=WORKERS,
                        help="with --output: worker processes (each loads the model once); 0: one per CPU core")
    parser.add_argument("--chunk", type=positive_int, default=CHUNK_IMAGES,
                        help="with --output: images per task (their faces go to the model in one call)")
    parser.add_argument("--ray", metavar="ADDRESS", help="with --output: score on a Ray cluster ('auto': the one "
                        "this machine joined, 'local': start one here, or host:port); pip install .[ray]")


def expand_paths(paths, extensions=IMAGE_EXTENSIONS):
    """Image files (ending in `extensions`) named directly or found (recursively) in folders; errors per path that
    yields nothing."""
    files, errors = [], []
    for path in paths:
        if os.path.isdir(path):
            found = sorted(os.path.join(root, f) for root, _, names in os.walk(path) for f in names
                           if f.lower().endswith(extensions))
            files += found
            if not found:
                errors.append(f"{printable(path)}: folder holds no images ({', '.join(IMAGE_EXTENSIONS)})")
        elif os.path.exists(path):  # read_image refuses what is not a regular file
            files.append(path)
        else:
            errors.append(f"{printable(path)}: no such file or folder")
    return files, errors


def read_batches(files, errors):
    """[(path, RGB image)] lists of at most PREDICT_BATCH_IMAGES images and PREDICT_BATCH_PIXELS pixels (or one
    larger image), read one file at a time: memory is bounded by pixels, whatever the number of files. Files that
    are refused or unreadable add a line to `errors`."""
    batch, pixels = [], 0
    for path in files:
        if is_video(path):  # not read whole only to be refused
            errors.append(f"{printable(path)}: a video, not an image: use webcam --source {printable(path)}")
            continue
        try:
            image = read_image(path)
        except ImageRefused as error:
            errors.append(str(error))
            continue
        if image is None:
            errors.append(f"{printable(path)}: not a readable image")
            continue
        if batch and (pixels + image.shape[0] * image.shape[1] > PREDICT_BATCH_PIXELS
                      or len(batch) == PREDICT_BATCH_IMAGES):
            yield batch
            batch, pixels = [], 0
        batch.append((path, image))
        pixels += image.shape[0] * image.shape[1]
    if batch:
        yield batch


def print_faces(path, faces):
    """predict's table: one line per face (or one saying there is none), control characters escaped."""
    if not faces:
        print(f"{printable(path)}: no face found, so no emotion")
    for i, face in enumerate(faces, 1):  # numbered as on predict --save's picture when there are several
        where = "whole image (a face crop)" if not face["detected"] else \
            f"face {i} at {face['box']}" if len(faces) > 1 else f"face at {face['box']}"
        probs = " ".join(f"{printable(n)}={p:.2f}" for n, p in face["probabilities"].items())
        print(f"{printable(path)}: {where}: {printable(face['emotion'])} ({face['confidence']:.0%})  {probs}")


def run_predict(args):
    """Label every face in the given images/folders; table or JSON lines; annotated copies with --save; records
    written as they come with --output (and videos in folders too)."""
    if args.output or args.resume or args.ray:
        return run_predict_batch(args)
    if args.workers != WORKERS or args.chunk != CHUNK_IMAGES:
        raise UserError("--workers and --chunk share out the work of --output FILE; without it predict runs in one "
                        "process: add --output, or leave them out")
    files, errors = expand_paths(args.paths)
    recognizer = EmotionRecognizer(args.model_path, args.classes, args.detector, args.tta, args.precision)
    analyze = recognizer.classify if args.no_detect else recognizer.analyze_many
    if args.save:
        check_writable(args.save, "--save")
    saved = set()  # names written to --save
    inputs = {os.path.realpath(f) for f in [*files, args.model_path]}  # --save never writes over one of them
    for batch in read_batches(files, errors):
        paths, images = zip(*batch)
        for path, image, faces in zip(paths, images, analyze(images)):
            faces = [face.to_dict() for face in ([faces] if args.no_detect else faces)]
            if args.json:
                print(json.dumps({"image": path, "detection": detection_of(faces), "faces": faces}))
            else:
                print_faces(path, faces)
            if args.save:  # a.jpg -> a_annotated.png; a second a.* (another folder or format) -> a_2_annotated.png
                stem, copy = os.path.splitext(os.path.basename(path))[0], 1
                name = f"{stem}_annotated.png"
                while name in saved or os.path.realpath(os.path.join(args.save, name)) in inputs:
                    copy += 1
                    name = f"{stem}_{copy}_annotated.png"
                saved.add(name)
                write_image(os.path.join(args.save, name), annotate(image, faces, numbered=True))
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    if errors:
        raise SystemExit(1)


def run_predict_batch(args):
    """predict --output: every image and video of the folders scored into one record file (emotion/jobs/batch.py), or
    on a Ray cluster with --ray (emotion/jobs/ray_batch.py); the videos' summary table and a count at the end."""
    if not args.output:
        raise UserError("--resume and --ray need --output FILE (.jsonl, .csv or .parquet)")
    if args.save or args.json:
        raise UserError("--save and --json print or draw each image; leave them out with --output")
    files, errors = expand_paths(args.paths, IMAGE_EXTENSIONS + VIDEO_SUFFIXES)
    if errors:  # a mistyped path: nothing started, no output made (a long job on part of the input helps no one)
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise UserError(f"{errors[0]}{more}; nothing scored")
    if args.ray:
        from emotion.jobs.ray_batch import check_ray_output  # not Ray itself: imported by run_ray, only when asked
        check_ray_output(args.output, args.resume)
    else:
        check_output(args.output, args.resume)
    settings = (args.model_path, args.classes, args.detector, args.tta, args.precision)
    workers = f"{args.workers} worker{'s' * (args.workers != 1)}" if args.workers else \
        "one worker per CPU of the cluster" if args.ray else f"one worker per CPU core ({os.cpu_count()})"
    print(f"Scoring {len(files)} file{'s' * (len(files) != 1)} into {args.output} with {workers}"
          + (f" on Ray ({args.ray})" if args.ray else ""), flush=True)
    start = time.perf_counter()
    if args.ray:
        from emotion.jobs.ray_batch import run_ray  # Ray is an optional extra, imported only when asked for
        counts, videos = run_ray(args.ray, files, args.output, settings, resume=args.resume, no_detect=args.no_detect,
                                 workers=args.workers, chunk=args.chunk)
    else:
        counts, videos = run_batch(files, args.output, settings, resume=args.resume, no_detect=args.no_detect,
                                   workers=args.workers, chunk=args.chunk)
    for video in videos:
        print(describe_video(video))
    seconds = time.perf_counter() - start
    print(f"Answered {counts['answered']} files ({counts['errors']} errors), skipped {counts['skipped']} answered "
          f"before, in {seconds:.1f} s ({counts['answered'] / max(seconds, 1e-9):.1f} files/s); records in "
          f"{args.output}")
    if counts["errors"]:
        raise UserError(f"{counts['errors']} files could not be scored; their records in {args.output!r} say why "
                        "(\"error\")")
