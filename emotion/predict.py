"""The `predict` command: every face in image files or folders classified (crops of many photos in one model
call), printed as a table or JSON lines, and drawn on annotated copies with --save."""

import json
import os
import sys

import numpy as np

from emotion.data import prepare_image
from emotion.detection import add_detector_argument, crop_face, detect_faces, load_face_detector
from emotion.drawing import annotate
from emotion.files import check_writable
from emotion.images import ImageRefused, printable, read_image, write_image
from emotion.model_files import (TTA, add_classes_argument, add_model_arguments, answering_model,
                                 load_trained_model, predict_probabilities)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".avif",
                    ".heic", ".heif")  # HEIC is read with pillow-heif installed, else refused with what to do
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".wmv", ".mpg", ".mpeg")  # predict points these
# to webcam --source
PREDICT_BATCH_PIXELS = 40_000_000  # predict: images decoded and labelled together hold at most this many pixels
PREDICT_BATCH_IMAGES = 64  # predict: and at most this many images (their face crops go to the model in one call)
WHOLE_IMAGE_SIDES = (16, 160)  # no face found: an image with sides in this range (px) is taken for a face crop
#                                and classified whole; larger photos get no emotion, smaller ones are not faces


def add_arguments(parser):
    add_model_arguments(parser)
    add_classes_argument(parser)
    add_detector_argument(parser)
    parser.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders of images")
    parser.add_argument("--no-detect", action="store_true", help="classify each whole image; no face detection")
    parser.add_argument("--json", action="store_true", help="one JSON object per image per line")
    parser.add_argument("--save", metavar="DIR", help="write annotated copies of the images here")


def classify_crops(model, metadata, crops, tta=TTA):
    """Emotion, confidence and every class's probability for each face crop: one model call for all of them."""
    if not crops:
        return []
    class_names = metadata["class_names"]
    batch = np.stack([prepare_image(c, metadata["image_size"], metadata["color"], metadata["normalize"])
                      for c in crops])
    probabilities = predict_probabilities(model, batch, tta)
    return [{"emotion": class_names[p.argmax()], "confidence": round(float(p.max()), 4),
             "probabilities": {n: round(float(v), 4) for n, v in zip(class_names, p)}} for p in probabilities]


def looks_like_face_crop(image):
    """An image the detector found no face in is classified whole only when it is crop-sized (see WHOLE_IMAGE_SIDES)."""
    return WHOLE_IMAGE_SIDES[0] <= min(image.shape[:2]) and max(image.shape[:2]) <= WHOLE_IMAGE_SIDES[1]


def predict_images(model, metadata, images, detector=None, tta=TTA):
    """Faces of several RGB images, classified together. detector None: each whole image is one face.

    Returns, per image, a list of {"box", "detected", "emotion", "confidence", "probabilities"}: a face the
    detector found ("detected": True, aligned by its eyes), or the whole image ("detected": False) when there
    is no detector, or when it found nothing in a crop-sized image. Other photos without a face get [].
    """
    found = [detect_faces(detector, im) if detector is not None else [] for im in images]
    crops, owners = [], []
    for i, (image, faces) in enumerate(zip(images, found)):
        if not faces and (detector is None or looks_like_face_crop(image)):
            found[i] = [{"box": [0, 0, image.shape[1], image.shape[0]], "whole": True}]
            crops.append(image)
        else:
            crops += [crop_face(image, f) for f in faces]
        owners += [i] * len(found[i])
    results = [[] for _ in images]
    for i, face, labels in zip(owners, [f for fs in found for f in fs], classify_crops(model, metadata, crops, tta)):
        results[i].append({"box": face["box"], "detected": "whole" not in face, **labels})
    return results


def detection_of(faces):
    """What predict's JSON reports under "detection": "whole-image" (a face crop classified whole) or "detector"."""
    return "whole-image" if any(not f["detected"] for f in faces) else "detector"


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
    model, metadata = answering_model(*load_trained_model(args.model_path), args.classes, args.precision)
    detector = None if args.no_detect else load_face_detector(args.detector)
    if args.save:
        check_writable(args.save, "--save")
    saved = set()  # names written to --save
    inputs = {os.path.realpath(f) for f in [*files, args.model_path]}  # --save never writes over one of them
    for batch in read_batches(files, errors):
        paths, images = zip(*batch)
        for path, image, faces in zip(paths, images, predict_images(model, metadata, images, detector, args.tta)):
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
