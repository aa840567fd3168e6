"""The `predict` command: every face in image files or folders classified (crops of many photos in one model
call), printed as a table or JSON lines, and drawn on annotated copies with --save."""

import json
import os
import sys

from emotion.core.drawing import annotate
from emotion.core.faces import detection_of
from emotion.io.files import check_writable
from emotion.io.images import ImageRefused, printable, read_image, write_image
from emotion.jobs.options import add_classes_argument, add_detector_argument, add_model_arguments
from emotion.recognizer import EmotionRecognizer

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".avif",
                    ".heic", ".heif")  # HEIC is read with pillow-heif installed, else refused with what to do
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".wmv", ".mpg", ".mpeg")  # predict points these
# to webcam --source
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


def expand_paths(paths):
    """Image files named directly or found (recursively) in folders; errors per path that yields nothing."""
    files, errors = [], []
    for path in paths:
        if os.path.isdir(path):
            found = sorted(os.path.join(root, f) for root, _, names in os.walk(path) for f in names
                           if f.lower().endswith(IMAGE_EXTENSIONS))
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
        if os.path.splitext(path)[1].lower() in VIDEO_SUFFIXES:  # not read whole only to be refused
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
    """Label every face in the given images/folders; table or JSON lines; annotated copies with --save."""
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
