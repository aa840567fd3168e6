"""Faces in photos: detection (mtcnn or OpenCV's Haar cascade), eye alignment and cropping, classification of
the crops, the labels and messages drawn on the photo, and the `predict` command."""

import json
import math
import os
import sys

import cv2
import numpy as np

from emotion.files import UserError, check_writable
from emotion.images import ImageRefused, printable, read_image, write_image
from emotion.lazy_import import import_quietly
from emotion_recognition import (DETECTOR, TTA, answering_model, load_trained_model, predict_probabilities,
                                 prepare_image, tf)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".avif",
                    ".heic", ".heif")  # HEIC is read with pillow-heif installed, else refused with what to do
MTCNN_MIN_CONFIDENCE = 0.9  # mtcnn: faces scored below this are dropped (chosen by measurement, docs/detection.md)
DETECT_PAD = 0.25  # mtcnn misses faces that fill the photo: when it finds none, it looks again with this border
FACE_CASCADE = "haarcascade_frontalface_default.xml"  # OpenCV's own frontal-face Haar cascade
SCALE_FACTOR = 1.1  # Haar pyramid step, as the original
MIN_NEIGHBORS = 5  # Haar detections needed to accept a face, as the original
DETECT_MAX_SIDE = 640  # photos are detected on a copy at most this large (boxes mapped back)
MTCNN_MAX_SIDE = 480  # the same for mtcnn: finds faces from 20 px there (27 px in a 640x480 photo), for less CPU
FACE_MARGIN = 0.1  # Haar: crop this fraction of the box size beyond each side of a detected face
MTCNN_FACE_MARGIN = 0.03  # mtcnn: the same, measured so crops frame faces as FER2013 does (its boxes are tighter)
FACE_CROP_MAX_SIDE = 256  # face crops are cut at most this large (the model sees 48 px), bounding memory
PREDICT_BATCH_PIXELS = 40_000_000  # predict: images decoded and labelled together hold at most this many pixels
PREDICT_BATCH_IMAGES = 64  # predict: and at most this many images (their face crops go to the model in one call)
WHOLE_IMAGE_SIDES = (16, 160)  # no face found: an image with sides in this range (px) is taken for a face crop
#                                and classified whole; larger photos get no emotion, smaller ones are not faces
MESSAGES = {  # shown under each face, one per emotion; any other class gets the "unknown" line
    "angry": "Pause, breathe slowly, and give yourself a moment.",
    "disgust": "Something feels off? It's fine to step away from it.",
    "fear": "You're safe here. Slow breaths help the worry pass.",
    "happy": "Keep smiling - it suits you!",
    "neutral": "Calm and steady - have a good day.",
    "sad": "It's okay to feel down. Take a breath; better moments are coming.",
    "surprise": "Something unexpected? Take it in at your own pace.",
    "unknown": "Whatever you feel, take good care of yourself.",
    "unsure": "Hard to tell from this picture - the model is not sure.",
}
UNSURE_BELOW = 0.40  # a top probability below this gets the neutral "unsure" message, never consolation or praise


def load_face_detector(name=DETECTOR):
    """("mtcnn", MTCNN) or ("haar", OpenCV's cascade); mtcnn is imported here, so other commands never load it."""
    if name == "mtcnn":
        try:  # quietly: in prepare, mtcnn is the first to import TensorFlow, whose start-up lines would show
            MTCNN = import_quietly("mtcnn").MTCNN
        except ImportError:
            raise UserError("the mtcnn face detector is not installed; run 'pip install -r requirements.txt' "
                            "or use --detector haar") from None
        mtcnn = MTCNN()
        # mtcnn 1.0 runs its three networks eagerly, op by op; as tf.functions (traced once per input shape,
        # then generalised) they give the same boxes for less CPU (docs/performance.md).
        for stage in mtcnn.stages:
            stage._model = tf.function(stage._model, reduce_retracing=True)
        return name, mtcnn
    if not hasattr(cv2, "CascadeClassifier") or not hasattr(cv2, "data"):
        raise UserError(f"this OpenCV ({cv2.__version__}) has no Haar face detector; install "
                        "'opencv-python>=4.8,<5' (see requirements.txt)")
    detector = cv2.CascadeClassifier(os.path.join(cv2.data.haarcascades, FACE_CASCADE))
    if detector.empty():
        raise UserError(f"could not load {FACE_CASCADE} from {cv2.data.haarcascades}")
    return name, detector


def run_mtcnn(mtcnn, image, pad=0):
    """mtcnn's faces in an RGB image surrounded by a `pad`-pixel border: [(box, [left eye, right eye])]."""
    if min(image.shape[:2]) < 12:  # below PNet's 12 px window there is nothing to find
        return []
    if pad:
        image = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    faces = []
    for face in mtcnn.detect_faces(image, threshold_onet=MTCNN_MIN_CONFIDENCE):
        x, y, w, h = face["box"]
        eyes = [[v - pad for v in face["keypoints"][eye]] for eye in ("left_eye", "right_eye")]
        faces.append(([x - pad, y - pad, w, h], eyes))
    return faces


def detect_faces(detector, image, max_side=None):
    """Faces in `image` (RGB), found on a copy scaled down to at most `max_side` (default: the detector's
    *MAX_SIDE): [{"box": [x, y, w, h], "eyes": [[x, y], [x, y]] or None (Haar)}], in the image's pixels."""
    name, model = detector
    max_side = max_side or (MTCNN_MAX_SIDE if name == "mtcnn" else DETECT_MAX_SIDE)
    scale = min(1.0, max_side / max(image.shape[:2]))
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))  # a 5000x3 strip too
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA) if scale < 1 else image
    if name == "mtcnn":
        # Not mtcnn 1.0's min_face_size: above 20 it loses faces (a pyramid level under 12 px makes it
        # return none); the photo is scaled down instead.
        found = run_mtcnn(model, small) or run_mtcnn(model, small, int(DETECT_PAD * max(small.shape[:2])))
    else:
        grey = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
        found = [(box, None) for box in model.detectMultiScale(grey, scaleFactor=SCALE_FACTOR,
                                                                minNeighbors=MIN_NEIGHBORS)]
    faces = []
    for box, eyes in found:  # boxes that reach past the edge (mtcnn's) are clipped to the image
        x0, y0 = (max(0, int(round(v / scale))) for v in box[:2])
        x1 = min(image.shape[1], int(round((box[0] + box[2]) / scale)))
        y1 = min(image.shape[0], int(round((box[1] + box[3]) / scale)))
        if x1 > x0 and y1 > y0:
            eyes = None if eyes is None else [[round(float(v) / scale, 1) for v in eye] for eye in eyes]
            faces.append({"box": [x0, y0, x1 - x0, y1 - y0], "eyes": eyes})
    return faces


def crop_face(image, face):
    """The face framed as the training faces are: a square around its box, with the detector's margin,
    rotated so the eyes are level when the detector gives them. At most FACE_CROP_MAX_SIDE pixels."""
    x, y, w, h = face["box"]
    eyes = face.get("eyes")
    side = (w + h) / 2 * (1 + 2 * (FACE_MARGIN if eyes is None else MTCNN_FACE_MARGIN))
    (lx, ly), (rx, ry) = eyes or ((0, 0), (1, 0))
    angle = math.degrees(math.atan2(ry - ly, rx - lx))
    size = max(1, min(FACE_CROP_MAX_SIDE, int(round(side))))
    matrix = cv2.getRotationMatrix2D((x + w / 2, y + h / 2), angle, size / side)
    matrix[:, 2] += (size / 2 - x - w / 2, size / 2 - y - h / 2)  # the box centre becomes the crop's centre
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


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


def message_for(emotion, confidence):
    """The short message shown under a face: its emotion's own, the "unknown" line for other classes, or the
    "unsure" line when the model's confidence is below UNSURE_BELOW (a guess that no message should build on)."""
    if confidence < UNSURE_BELOW:
        return MESSAGES["unsure"]
    return MESSAGES.get(emotion, MESSAGES["unknown"])


def detection_of(faces):
    """What predict's JSON reports under "detection": "whole-image" (a face crop classified whole) or "detector"."""
    return "whole-image" if any(not f["detected"] for f in faces) else "detector"


def fit_text(text, scale, thickness, max_width):
    """The font scale at which `text` is at most `max_width` wide (never above `scale`), and its (w, h, baseline)."""
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    if w > max_width:
        scale *= max_width / w
        (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    return scale, (w, h, base)


def body_of(box, shape):
    """The picture region a face's person probably fills: the box widened by half its width each side and
    extended three box heights down (shoulders and chest), clipped to the picture."""
    x, y, w, h = box
    return max(0, x - w // 2), y, min(shape[1], x + w + w // 2), min(shape[0], y + 4 * h)


def overlaps(a, b):
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def face_message(i, face, faces, numbered):
    """Face i's message, starting with its number as its label does when `numbered` (two faces or more)."""
    message = message_for(face["emotion"], face["confidence"])
    return f"{i + 1}: {message}" if numbered and len(faces) > 1 else message


def layout_labels(faces, shape, numbered=False):
    """Where each face's label and message go: [(text, colour, (x, y) origin, scale, thickness, (x0, y0, x1, y1))].
    numbered: with two faces or more, each label and message starts with the face's place in `faces` ("1: happy
    87%").

    Every label lies inside the picture and covers no other label and no other face: it goes above its box,
    else below, else is pushed down to the first free place. A message goes by its own face only (below or
    above it, left-aligned, centred or right-aligned with it) and covers no other face, label, or other face's
    person (body_of); with no legible free place there it is left out (annotate lists it under the picture).
    """
    height, width = shape[:2]
    thickness = max(1, round(max(shape[:2]) / 400))
    font_scale = max(0.4, max(shape[:2]) / 1000)
    placed = []
    boxes = [(x, y, x + w, y + h) for x, y, w, h in (face["box"] for face in faces)]
    bodies = [body_of(face["box"], shape) for face in faces]

    def place(text, colour, scale, weight, xs, candidates, own, near=None):
        scale, (w, h, base) = fit_text(text, scale, weight, width - 2)
        if h + base + 2 > height or scale < 0.25:
            return
        avoid = [r for *_, r in placed] + [b for i, b in enumerate(boxes) if i != own]  # no other face covered
        if near is not None:  # a message: nor another face's person
            avoid += [b for i, b in enumerate(bodies) if i != own]
        ys = candidates if near is not None else [*candidates, *range(0, height, max(2, h // 2))]
        for y in ys:  # y: the top of the label's rectangle
            y = min(max(0, y), height - h - base - 2)
            for x in xs:
                x = min(max(0, x), width - w - 1)
                rect = (x, y, x + w + 1, y + h + base + 2)
                if (near is None or overlaps(rect, near)) and not any(overlaps(rect, r) for r in avoid):
                    placed.append((text, colour, (x + 1, y + h + 1), scale, weight, rect))
                    return

    for i, face in enumerate(faces):
        x, y, w, h = face["box"]
        label = f"{face['emotion']} {face['confidence']:.0%}"
        if numbered and len(faces) > 1:
            label = f"{i + 1}: {label}"
        lh = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)[0][1] + 8
        place(label, (0, 255, 0), font_scale, thickness, [x], [y - lh, y + h + 2, y + 2], i)
        message = face_message(i, face, faces, numbered)
        scale, (mw, mh, base) = fit_text(message, font_scale * 0.7, max(1, thickness - 1), width - 2)
        # by its face: rows just below or above the box (and its label), within a box height of it
        near = (x - w, y - h - lh, x + 2 * w, y + 2 * h + lh)
        rows = [y + h + 2, y + h + lh, y - lh - mh - base - 4, y + h - mh - base - 4]  # below, under its label, above
        place(message, (255, 255, 255), font_scale * 0.7, max(1, thickness - 1), [x, x + (w - mw) // 2, x + w - mw],
              rows, i, near)
    return placed


def annotate(image, faces, numbered=False):
    """A BGR copy of an RGB image with a box, label, confidence and message drawn for each face; numbered: see
    layout_labels (predict's JSON and the web page's cards list the faces in that order), and with two faces or
    more each message that found no place by its face is listed, numbered, in a strip added under the picture."""
    canvas = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    thickness = max(1, round(max(image.shape[:2]) / 400))
    for face in faces:
        x, y, w, h = face["box"]
        cv2.rectangle(canvas, (x, y), (x + w, y + h), (0, 200, 0), thickness)
    placed = layout_labels(faces, image.shape, numbered)
    for text, colour, origin, scale, weight, (x0, y0, x1, y1) in placed:
        cv2.rectangle(canvas, (x0, y0), (x1 - 1, y1 - 1), (0, 0, 0), -1)  # a dark backing: legible on any photo
        cv2.putText(canvas, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, weight)
    shown = {text for text, *_ in placed}
    legend = [m for m in (face_message(i, f, faces, numbered) for i, f in enumerate(faces)) if m not in shown]
    if not numbered or len(faces) < 2:  # one face: nobody to mistake it for; the video keeps its frame size
        return canvas
    return add_legend(canvas, legend, max(0.4, max(image.shape[:2]) / 1000) * 0.7)


def add_legend(canvas, lines, scale):
    """`canvas` with a dark strip under it listing `lines` (the messages that found no place by their face)."""
    if not lines:
        return canvas
    weight = max(1, round(scale))
    fitted = [(line, *fit_text(line, scale, weight, canvas.shape[1] - 12)) for line in lines]
    row = max(h + base for _, _, (_, h, base) in fitted) + 8
    strip = np.zeros((row * len(lines) + 8, canvas.shape[1], 3), np.uint8)
    for i, (line, line_scale, (_, h, _)) in enumerate(fitted):
        cv2.putText(strip, line, (6, 4 + i * row + h + 2), cv2.FONT_HERSHEY_SIMPLEX, line_scale, (255, 255, 255),
                    weight)
    return np.vstack([canvas, strip])


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
    for face in faces:
        where = f"face at {face['box']}" if face["detected"] else "whole image (a face crop)"
        probs = " ".join(f"{printable(n)}={p:.2f}" for n, p in face["probabilities"].items())
        print(f"{printable(path)}: {where}: {printable(face['emotion'])} ({face['confidence']:.0%})  {probs}")


def run_predict(args):
    """Label every face in the given images/folders; table or JSON lines; annotated copies with --save."""
    files, errors = expand_paths(args.paths)
    model, metadata = answering_model(*load_trained_model(args.model_path), args.classes, args.precision)
    detector = None if args.no_detect else load_face_detector(args.detector)
    if args.save:
        check_writable(args.save)
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
