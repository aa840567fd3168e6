"""The library's public face: `EmotionRecognizer` holds a trained model (and a face detector) in memory and answers
for photos, face crops and videos; `Face` is one answer. The command line's predict, webcam and serve are thin layers
over it, so every front end runs one path (emotion/core/faces.py, emotion/core/frames.py) and gives one answer.

    from emotion import EmotionRecognizer
    recognizer = EmotionRecognizer()                   # the shipped seven-class model; the detector on first use
    for face in recognizer.analyze("photo.jpg"):       # a path, bytes, a PIL image or a NumPy array
        print(face.box, face.emotion, face.confidence)
"""

import dataclasses
import os
import threading

import cv2
import numpy as np
from PIL import Image

from emotion.core.answers import TTA, answering_model
from emotion.core.detection import DETECTOR, DETECTORS, detect_faces, load_face_detector
from emotion.core.faces import analyze_images, classify_crops
from emotion.core.frames import run_frames
from emotion.core.model_files import FACES_MODEL_PATH, SHIPPED_DIR, load_trained_model
from emotion.core.precision import PRECISION, PRECISIONS
from emotion.io.errors import ArgumentError, ImageError
from emotion.io.images import MAX_IMAGE_PIXELS, check_pixels, decode_image, printable, read_image

CHANNEL_ORDERS = ("rgb", "bgr")  # what a 3-channel array holds: RGB (PIL, matplotlib) or BGR (OpenCV's imread)


@dataclasses.dataclass(frozen=True)
class Face:
    """One face and its emotion. box: (x, y, width, height) in the given image's pixels; emotion: the most likely
    class; confidence: its probability; probabilities: class -> probability (over the recognizer's classes, summing
    to 1); detected: False when a whole image was classified as a face crop; track: the face's track number in a
    video (None in a photo)."""

    box: tuple
    emotion: str
    confidence: float
    probabilities: dict
    detected: bool = True
    track: int = None

    def to_dict(self):
        """The face as `predict --json` prints it (with "track" first in a video, as `webcam --json` writes it)."""
        face = {"box": list(self.box), "detected": self.detected, "emotion": self.emotion,
                "confidence": self.confidence, "probabilities": dict(self.probabilities)}
        return face if self.track is None else {"track": self.track, **face}

    @classmethod
    def from_dict(cls, face):
        return cls(tuple(face["box"]), face["emotion"], face["confidence"], face["probabilities"], face["detected"],
                   face.get("track"))


def as_rgb(image, channel_order="rgb"):
    """`image` as a uint8 RGB array (H, W, 3): a path (str or os.PathLike), encoded bytes, a PIL image, or a uint8
    NumPy array, H x W x 3 (in `channel_order`) or H x W grey. ImageError for anything else, in one line."""
    if channel_order not in CHANNEL_ORDERS:
        raise ArgumentError(f"channel_order {channel_order!r} is not one of {', '.join(CHANNEL_ORDERS)}")
    if isinstance(image, (str, os.PathLike)):
        path = os.fspath(image)
        if not os.path.exists(path):
            raise ImageError(f"{printable(path)}: no such file")
        rgb = read_image(path)  # ImageRefused (an ImageError) for a file refused unread
        if rgb is None:
            raise ImageError(f"{printable(path)}: not a readable image")
        return rgb
    if isinstance(image, (bytes, bytearray, memoryview)):
        rgb = decode_image(np.frombuffer(image, np.uint8), "the image bytes")
        if rgb is None:
            raise ImageError("the image bytes are not a readable image (JPEG, PNG, BMP, TIFF, WebP, AVIF)")
        return rgb
    if isinstance(image, Image.Image):
        check_pixels(image.size, "the PIL image")
        return np.asarray(image.convert("RGB"))
    if not isinstance(image, np.ndarray):
        raise ArgumentError(f"cannot read an image from a {type(image).__name__}: give a path, bytes, a PIL image "
                            "or a NumPy array")
    if image.dtype != np.uint8:
        raise ImageError(f"an array of {image.dtype} values: expected uint8 (0-255); convert it, e.g. "
                         "(array * 255).clip(0, 255).astype('uint8') for floats in 0-1")
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3))):
        raise ImageError(f"an array of shape {image.shape}: expected H x W x 3 (RGB, or BGR with "
                         "channel_order='bgr') or H x W (grey)")
    if image.size == 0:
        raise ImageError(f"an empty array (shape {image.shape}): no pixels to look at")
    if image.shape[0] * image.shape[1] > MAX_IMAGE_PIXELS:
        raise ImageError(f"an array of {image.shape[1]}x{image.shape[0]} pixels, above the limit of "
                         f"{MAX_IMAGE_PIXELS:,} pixels (MAX_IMAGE_PIXELS); scale it down")
    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(np.ascontiguousarray(image.reshape(image.shape[:2])), cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if channel_order == "bgr" else np.ascontiguousarray(image)


class EmotionRecognizer:
    """A trained emotion model and a face detector, loaded once, answering for many pictures.

    model_path: a model file saved by this program (default: the shipped seven-class model); classes: answer over
    these of the model's classes only (probabilities renormalised over them); detector: "mtcnn+hog" (the default),
    "mtcnn" or "haar", loaded on first use; tta: average each face with its mirror image; precision: as --precision.
    Raises ModelError for a refused model file, ArgumentError for an unknown class, detector or precision.

    Safe to share between threads: the model and the detector answer one call at a time (a lock), so answers are the
    same as one by one; decoding the pictures runs in the callers' threads.
    """

    def __init__(self, model_path=None, classes=None, detector=None, tta=TTA, precision=PRECISION):
        detector = detector or DETECTOR
        if detector not in DETECTORS:
            raise ArgumentError(f"detector {detector!r} is not one of {', '.join(DETECTORS)}")
        if precision not in PRECISIONS:
            raise ArgumentError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
        if isinstance(classes, str):
            classes = [c.strip() for c in classes.split(",")]
        self.model_path = os.fspath(model_path) if model_path is not None else os.path.join(SHIPPED_DIR,
                                                                                           FACES_MODEL_PATH)
        self.detector_name, self.tta = detector, bool(tta)
        self._model, self._metadata = answering_model(*load_trained_model(self.model_path), classes, precision)
        self._detector = None
        self._lock = threading.RLock()

    def __repr__(self):
        return (f"EmotionRecognizer(model_path={self.model_path!r}, classes={self.class_names!r}, "
                f"detector={self.detector_name!r}, tta={self.tta!r})")

    @property
    def class_names(self):
        """The classes the answers are over, in the order of each face's probabilities."""
        return list(self._metadata["class_names"])

    def detect(self, image, channel_order="rgb", *, max_side=None, following=(), quick=False):
        """The detector's faces in a picture (any type analyze takes), not classified: [{"box": [x, y, w, h],
        "eyes": [[x, y], [x, y]] or None}], left to right (detect_faces; `max_side`: found on a copy at most this
        large; `following` and `quick`: a video's, between its full looks)."""
        rgb = as_rgb(image, channel_order)
        with self._lock:
            if self._detector is None:
                self._detector = load_face_detector(self.detector_name)
            return detect_faces(self._detector, rgb, max_side=max_side, following=following, quick=quick)

    def classify_arrays(self, crops):
        """classify_crops' answers (dicts) for RGB face crops, in one model call."""
        with self._lock:
            return classify_crops(self._model, self._metadata, crops, self.tta)

    def analyze(self, image, channel_order="rgb"):
        """Every face in one picture, left to right, as `Face`s ([] when there is none): found by the detector and
        turned upright by its eyes; a crop-sized picture (16-160 px) with no face found is classified whole
        (detected False). image: a path, bytes, a PIL image, or a uint8 array (H x W x 3 in `channel_order`, or
        H x W grey). Raises ImageError for a picture it cannot use."""
        return self.analyze_many([image], channel_order)[0]

    def analyze_many(self, images, channel_order="rgb"):
        """analyze for several pictures, their face crops classified in one model call: a list per picture."""
        arrays = [as_rgb(image, channel_order) for image in images]
        return [[Face.from_dict(f) for f in faces] for faces in analyze_images(arrays, self.detect,
                                                                                self.classify_arrays)]

    def classify(self, crops, channel_order="rgb"):
        """Faces the caller has already cut out (any of analyze's picture types), no detection: one `Face` each,
        its box the whole crop."""
        arrays = [as_rgb(crop, channel_order) for crop in crops]
        return [Face.from_dict(f) for (f,) in analyze_images(arrays, None, self.classify_arrays)]

    def video_frames(self, source, *, draw=False, output=None, json_path=None, csv_path=None, timeline_path=None,
                     max_frames=None, stop=None, progress=None):
        """analyze_video's records, each with its annotated BGR frame (when `draw` or `output`, else None), as
        (record, frame) pairs; stop() may name a reason to end after a frame, progress(frames, of, seconds) is
        told each frame (what the webcam command shows)."""
        return run_frames(str(source), self.detect, self.classify_arrays, self.class_names, draw=draw, output=output,
                          json_path=json_path, csv_path=csv_path, timeline_path=timeline_path, max_frames=max_frames,
                          stop=stop, progress=progress)

    def analyze_video(self, source, *, max_frames=None, output=None, json_path=None, csv_path=None,
                      timeline_path=None):
        """Every frame of a video file (a path) or a camera (an index), as the records `webcam --json` writes: a dict
        per frame, {"frame", "time", "faces": [{"track", "box", "detected", "emotion", "confidence",
        "probabilities"}]}, then {"summary": {...}} last. Faces are detected every few frames and followed between,
        their probabilities smoothed over the last frames of their track. No window; files only when asked
        (output: an annotated .mp4/.avi; json_path, csv_path: the records; timeline_path: a .png plot), complete
        once the iterator ends (stop early with max_frames)."""
        for record, _ in self.video_frames(source, max_frames=max_frames, output=output, json_path=json_path,
                                           csv_path=csv_path, timeline_path=timeline_path):
            yield record
