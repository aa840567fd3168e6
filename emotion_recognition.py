"""Facial emotion recognition: train, evaluate and use a Keras classifier on face images.

    python emotion_recognition.py                                   # train (or load) + evaluate on HASsplittedDS/
    python emotion_recognition.py --data path/to/HASsplittedDS --train-again --epochs 5
    python emotion_recognition.py evaluate path/to/faces            # any folder of <class>/ sub-folders
    python emotion_recognition.py predict photo.jpg --json          # one label per detected face
    python emotion_recognition.py webcam                            # live, camera 0 (q quits)
    python emotion_recognition.py serve                             # a web page at http://127.0.0.1:8000/
    python emotion_recognition.py prepare --source fer2013.csv --out HASsplittedDS
    python emotion_recognition.py train --help                      # each option and its default

A port of a published single-file Keras script (happy / sad / angry, scratch CNN or frozen VGG16),
rewritten for Keras 3 with a cached tf.data input pipeline, plus a compact model for 48 px faces.
"""

import argparse
import atexit
import concurrent.futures
import contextlib
import csv
import datetime
import functools
import importlib
import io
import json
import logging
import math
import os
import re
import shutil
import signal
import struct
import sys
import tempfile
import threading
import time
import uuid

import cv2
import numpy as np
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter off the console
logging.getLogger("absl").setLevel(logging.ERROR)  # Keras warns on every .h5 save that the format is "legacy"
Image.MAX_IMAGE_PIXELS = None  # Pillow only reads headers here; MAX_IMAGE_PIXELS below is the (lower) limit


class LazyModule:
    """A module imported on first use: TensorFlow takes seconds to import, and --help or prepare never need it.

    (matplotlib and scikit-learn are imported inside the few functions that use them, for the same reason.)
    """

    def __init__(self, name):
        self._name, self._module = name, None

    def __getattr__(self, attribute):
        if self._module is None:
            self._module = import_quietly(self._name)
        return getattr(self._module, attribute)


def import_quietly(name):
    """Import a module with TensorFlow's start-up lines (printed straight to file descriptor 2, before any
    logging is set up: "All log messages before absl::InitializeLog()...", "I0000 ... oneDNN custom operations
    are on", "Could not find cuda drivers") left out of stderr; every other line is passed on."""
    sys.stderr.flush()
    saved_fd = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            return importlib.import_module(name)
        finally:
            sys.stderr.flush()
            os.dup2(saved_fd, 2)
            os.close(saved_fd)
            captured.seek(0)
            for line in captured.read().decode(errors="replace").splitlines(keepends=True):
                if not (line.startswith(("WARNING: All log messages before absl::InitializeLog()", "I0000 "))
                        or line.startswith("To enable the following instructions")):
                    sys.stderr.write(line)


tf = LazyModule("tensorflow")
keras = LazyModule("keras")
layers = LazyModule("keras.layers")
regularizers = LazyModule("keras.regularizers")

# -----------------------------------------------------------------------------
# Defaults, each in one place (the command-line options among them show theirs in COMMAND --help)

train_again = False  # False: reuse MODEL_PATH when it exists; True: always train a new model
DATA_DIR = "HASsplittedDS"  # folder with train/, val/, test/, each holding one sub-folder per class
MODEL = "compact"  # "compact" (VGG-style, for 48 px faces; beats "cnn" on FER2013), "cnn" (the original's scratch CNN),
#                    "vgg16" (the original's frozen VGG16 + head), or a Keras application of BASES below
MODEL_PATH = "EmotionRecognitionSystem.h5"  # trained model file (class names and image settings inside)
OUTPUT_DIR = "results"  # metrics.json, classification report, plots, history.csv, config.json
EPOCHS = 30  # maximum epochs; EarlyStopping usually ends sooner
BATCH_SIZE = 32  # images per training step
LEARNING_RATE = 1e-3  # Adam's initial learning rate
IMAGE_SIZE = "auto"  # side in pixels; "auto" follows the data (48 for FER2013), the original used 200
COLOR = "auto"  # "grayscale", "rgb", or "auto" (grayscale when every sampled image is grey)
NORMALIZE = "equalize"  # contrast of every face after resizing: "equalize" (histogram equalisation, as FER2013's
# faces here are) or "none" (as models saved before this option, which load with "none"); stored with the model
BASE_WEIGHTS = "imagenet"  # vgg16, resnet, mobilenet, efficientnet: "imagenet" (Keras download/cache), "none"
#                            (untrained), or a local notop .h5 path
BASES = {"vgg16": "VGG16", "resnet": "ResNet50V2", "mobilenet": "MobileNetV2", "efficientnet": "EfficientNetB0"}
MODELS = ("compact", "cnn", *BASES)  # --model's choices; vgg16's base stays frozen, the other bases are trained
SEED = 42  # seeds shuffling, augmentation and weight initialisation
LR_SCHEDULE = "plateau"  # "plateau" (the original's ReduceLROnPlateau) or "cosine" (decay to 0 over the epochs)
LABEL_SMOOTHING = 0.0  # cross-entropy label smoothing, 0 = off (the original)
WEIGHT_DECAY = 0.0  # decoupled weight decay (AdamW) when above 0; 0 = plain Adam (the original)
CLASS_WEIGHT = "none"  # "balanced" weights the loss by inverse class frequency; "none" = the original
TTA = False  # average each prediction with that of the horizontally flipped image
CALIBRATION_BINS = 15  # confidence bins of the expected calibration error and the reliability diagram
TEMPERATURE_RANGE = (0.05, 20.0)  # calibration temperatures searched (and accepted in a model file)
INFERENCE_BATCH_SIZE = 256  # faces per model call when predicting
STEPS_PER_EXECUTION = 8  # training steps per call into TensorFlow: less Python overhead per step for small models

EARLY_STOPPING_PATIENCE = 5  # epochs without val_loss improvement before stopping
REDUCE_LR_PATIENCE = 3  # epochs without val_loss improvement before halving the learning rate
REDUCE_LR_FACTOR = 0.5  # learning-rate multiplier on a plateau
MIN_LEARNING_RATE = 1e-6  # floor for ReduceLROnPlateau
ORIGINAL_IMAGE_SIZE = 200  # the original resized every image to 200x200 RGB; "auto" never goes above it
AUTO_SIZE_SAMPLE = 200  # training images inspected to choose the size and colour for "auto"
MAX_IN_MEMORY_MB = 4096  # decoded splits larger than this are kept in a file cache (memory-mapped)
ROTATION_DEGREES = 30  # augmentation, as the original's ImageDataGenerator: rotation up to 30 degrees,
SHIFT_FRACTION = 0.2  # width/height shift of 20 %,
SHEAR_DEGREES = 0.2  # shear_range 0.2 (ImageDataGenerator reads it as an angle in degrees),
ZOOM_FRACTION = 0.2  # zoom 80-120 %, horizontal flip, nearest fill
CONTRAST_FRACTION = 0.4  # "camera" augmentation adds to the above: contrast 60-140 %,
BRIGHTNESS_FRACTION = 0.15  # brightness shifts of up to 15 % of the grey range,
BLUR_SIGMA = 1.0  # Gaussian blur (sigma 0.5 to this, in pixels) on half the faces,
NOISE_LEVEL = 6.0  # and sensor noise of up to this standard deviation (grey levels)
AUGMENT = "original"  # "original" (the above), "camera" (original + photometric), "light" (a third of each
# geometric range, no shear) or "none"
CACHE_FEATURES = False  # vgg16: run the frozen base once per image and train the head on the stored features
FEATURE_VIEWS = 2  # with CACHE_FEATURES and augmentation: each training image stored plain + 1 augmented view
DISTRIBUTE = "auto"  # "auto" (all GPUs via MirroredStrategy when any is visible), "mirrored", "none",
#                      "multiworker" (MultiWorkerMirroredStrategy over the machines in $TF_CONFIG)
MIXED_PRECISION = False  # Keras' mixed_float16 policy (pays off on GPUs; slower on most CPUs)
SPLITS = ("train", "val", "test")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm")
METADATA_KEY = "emotion_recognition"  # HDF5 attribute holding class names and image settings
MAX_IMAGE_PIXELS = 40_000_000  # images whose header declares more pixels (width x height) are refused undecoded
HEADER_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP", "PPM")  # Pillow readers of IMAGE_EXTENSIONS (JPEG opens MPO,
#                                                                       PPM opens PGM; MPO itself cannot be asked for)

# Faces: detection, cropping and video (predict, webcam, serve, prepare --crop-faces)
DETECTOR = "mtcnn"  # face detector: "mtcnn" (CNN with eye landmarks, weights in its pip package) or "haar"
DETECTORS = ("mtcnn", "haar")  # --detector's choices; "haar" is OpenCV's cascade, as the original used
MTCNN_MIN_CONFIDENCE = 0.9  # mtcnn: faces scored below this are dropped (chosen by measurement, docs/detection.md)
DETECT_PAD = 0.25  # mtcnn misses faces that fill the photo: when it finds none, it looks again with this border
FACE_CASCADE = "haarcascade_frontalface_default.xml"  # OpenCV's own frontal-face Haar cascade
SCALE_FACTOR = 1.1  # Haar pyramid step, as the original
MIN_NEIGHBORS = 5  # Haar detections needed to accept a face, as the original
DETECT_MAX_SIDE = 640  # photos are detected on a copy at most this large (boxes mapped back)
MTCNN_MAX_SIDE = 480  # the same for mtcnn: finds faces from 20 px there (27 px in a 640x480 photo); 35% less CPU
VIDEO_DETECT_WIDTH = 320  # video frames are detected at this width: 4x fewer pixels for 640x480
VIDEO_DETECT_EVERY = 3  # video: detect on every 3rd frame (mtcnn: ~20 ms CPU a call); faces keep boxes between
FACE_MARGIN = 0.1  # Haar: crop this fraction of the box size beyond each side of a detected face
MTCNN_FACE_MARGIN = 0.03  # mtcnn: the same, measured so crops frame faces as FER2013 does (its boxes are tighter)
FACE_CROP_MAX_SIDE = 256  # face crops are cut at most this large (the model sees 48 px), bounding memory
WHOLE_IMAGE_SIDES = (16, 160)  # no face found: an image with sides in this range (px) is taken for a face crop
#                                and classified whole; larger photos get no emotion, smaller ones are not faces
SMOOTH_FRAMES = 5  # video: average each face's probabilities over this many frames
SERVE_HOST = "127.0.0.1"  # serve: loopback only, unless --host says otherwise
SERVE_PORT = 8000  # serve: TCP port of the page and the JSON API
MAX_UPLOAD_MB = 10  # serve: larger uploads are refused with HTTP 413
SERVE_THREADS = 8  # serve: requests handled at once (they take turns with the one model)
SERVE_IDLE_TIMEOUT = 30  # serve: seconds a connection may stay silent (idle, or a stalled upload) before it is closed
SERVE_CONNECTION_LIMIT = 1000  # serve: open connections; more wait unanswered in the listen queue
SERVE_LARGE_PIXELS = 4_000_000  # serve: uploads declaring more pixels are handled one at a time (memory)
SERVE_LARGE_WAIT = 5  # serve: seconds a large upload waits for its turn before a 503 (keeps threads for the others)
SERVE_WORK_SIDE = 2048  # serve: larger photos are labelled on a copy this large (boxes mapped back): less time locked
MESSAGES = {  # shown under each face, one per emotion; any other class gets the "unknown" line
    "angry": "Pause, breathe slowly, and give yourself a moment.",
    "disgust": "Something feels off? It's fine to step away from it.",
    "fear": "You're safe here. Slow breaths help the worry pass.",
    "happy": "Keep smiling - it suits you!",
    "neutral": "Calm and steady - have a good day.",
    "sad": "It's okay to feel down. Take a breath; better moments are coming.",
    "surprise": "Something unexpected? Take it in at your own pace.",
    "unknown": "Whatever you feel, take good care of yourself.",
}

# Data preparation (prepare)
FER2013_CODES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")  # emotion column 0-6
FER2013_USAGE = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
ORIGINAL_CLASSES = ("angry", "happy", "sad")  # prepare's default for FER2013 sources
SPLIT_RATIOS = (0.8, 0.1, 0.1)  # train/val/test for an unsplit folder, as the original
GROUP_PATTERN = r"^[A-Za-z]*\d+[_.-]"  # unsplit folder: files whose names start alike by this regular expression
#   (a person or sequence id: CK+'s "S010_" of S010_006_00000013.png) go to one split together; "none": each alone
RELEASE_PADDING = r"\.jpg\d+\.jpg$"  # FER2013's image release pads disgust with augmented copies (NAME.jpgK.jpg)
CLASS_SYNONYMS = {"anger": "angry", "mad": "angry", "sadness": "sad", "unhappy": "sad", "happiness": "happy",
                  "joy": "happy", "fearful": "fear", "afraid": "fear", "disgusted": "disgust",
                  "surprised": "surprise", "neutrality": "neutral", "contemptuous": "contempt"}


class UserError(Exception):
    """A problem the user can fix (bad path, bad option, mismatched model): printed as one line."""


class ImageTooLarge(UserError):
    """An image whose header declares more than MAX_IMAGE_PIXELS pixels: refused before it is decoded."""


# -----------------------------------------------------------------------------
# Data: scan folders, decode every image once, then a cached tf.data pipeline


def list_class_names(folder):
    """Sorted sub-folder names of `folder`, i.e. its classes."""
    if not os.path.isdir(folder):
        raise UserError(f"data folder {folder!r} does not exist; expected one sub-folder per class")
    names = sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d)) and not d.startswith("."))
    if not names:
        raise UserError(f"{folder!r} has no class sub-folders; expected e.g. {folder}/happy/, {folder}/sad/")
    return names


def check_dataset_layout(data_dir):
    """Validate DATA/{train,val,test}/<class>/ and return the class names (sorted, from train/)."""
    if not os.path.isdir(data_dir):
        raise UserError(f"data folder {data_dir!r} does not exist; expected {data_dir}/train, /val and /test "
                        "with one sub-folder per class (use --data DIR)")
    for split in SPLITS:
        if not os.path.isdir(os.path.join(data_dir, split)):
            raise UserError(f"split folder {os.path.join(data_dir, split)!r} is missing; "
                            f"{data_dir} must hold train/, val/ and test/")
    class_names = list_class_names(os.path.join(data_dir, "train"))
    if len(class_names) < 2:
        raise UserError(f"{os.path.join(data_dir, 'train')!r} has only the class {class_names}; need at least two")
    for split in SPLITS[1:]:
        names = list_class_names(os.path.join(data_dir, split))
        if names != class_names:
            raise UserError(f"classes in {os.path.join(data_dir, split)!r} {names} differ from train's "
                            f"{class_names}; every split needs the same class folders")
    for split in SPLITS:
        for name in class_names:
            if not list_image_files(os.path.join(data_dir, split, name)):
                raise UserError(f"class folder {os.path.join(data_dir, split, name)!r} holds no images")
    return class_names


def list_image_files(folder):
    """Files in `folder` that are not hidden (non-images are weeded out later, when decoded)."""
    return sorted(os.path.join(folder, f) for f in os.listdir(folder)
                  if not f.startswith(".") and os.path.isfile(os.path.join(folder, f)))


def read_image(path):
    """Decode an image file to uint8 RGB (H, W, 3); None when it is not a readable image.

    Raises ImageTooLarge, before decoding, when the file declares more than MAX_IMAGE_PIXELS pixels.
    """
    try:
        data = np.fromfile(path, dtype=np.uint8)  # np.fromfile + imdecode copes with non-ASCII names
    except (OSError, ValueError):  # ValueError: a folder or a special file
        return None
    return decode_image(data, path)


def image_dimensions(data):
    """(width, height) as the header of encoded image bytes declares them, read without decoding any
    pixel (Pillow's lazy open); None when no supported format recognises the bytes. For a tiled TIFF, each
    side is at least its tile's, as that is what the decoder allocates."""
    try:
        with Image.open(io.BytesIO(data), formats=HEADER_FORMATS) as image:
            if image.format == "TIFF" and 322 in image.tag_v2:  # OpenCV allocates a whole tile, whatever the size
                tile = int(image.tag_v2.get(322, 0)), int(image.tag_v2.get(323, 0))  # TileWidth, TileLength
                return max(image.width, tile[0]), max(image.height, tile[1])
            return image.size
    except (OSError, ValueError, SyntaxError, EOFError, struct.error, IndexError, KeyError, TypeError,
            ZeroDivisionError):  # what Pillow's header parsers raise on malformed bytes (seen in the fuzz test)
        return None


def png_chunks_fit(data):
    """False for a PNG with a chunk longer than the file: OpenCV 4.14 allocates the declared length
    (up to 2 GB from a 2 kB file) before finding the data missing. True for any other format."""
    data = data.tobytes() if data[:8].tobytes() == b"\x89PNG\r\n\x1a\n" else b""
    position = 8
    while position + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        position += 12 + length
        if position > len(data):
            return False
        if kind == b"IEND":
            break
    return True


def decode_image(data, name="the image"):
    """Decode encoded image bytes (a uint8 array) to uint8 RGB (H, W, 3); None when not a readable image.

    The header's size is checked first: ImageTooLarge (naming `name`) above MAX_IMAGE_PIXELS, nothing decoded.
    """
    if data.size == 0:
        return None
    size = image_dimensions(data)
    if size is None or not png_chunks_fit(data):
        return None
    if size[0] * size[1] > MAX_IMAGE_PIXELS:
        raise ImageTooLarge(f"{name}: declares {size[0]}x{size[1]} pixels, above the limit of "
                            f"{MAX_IMAGE_PIXELS:,} pixels (MAX_IMAGE_PIXELS); scale it down")
    try:  # IMREAD_COLOR gives 8-bit BGR for 16-bit, palette, alpha, grey and CMYK files alike.
        image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    except cv2.error:  # OpenCV's own checks on corrupt data
        return None
    if image is None or image.shape[0] * image.shape[1] > MAX_IMAGE_PIXELS:  # a header Pillow read otherwise
        return None
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def prepare_image(image, image_size, color, normalize):
    """Resize an RGB uint8 image to the model's square input, colour and contrast: (S, S, 1 or 3) uint8.

    The one preprocessing path of training, evaluate, predict, webcam and serve: "equalize" spreads each
    face's grey levels over 0-255, so a flat webcam face looks like the (equalised) training faces.
    """
    h, w = image.shape[:2]
    interpolation = cv2.INTER_AREA if h > image_size or w > image_size else cv2.INTER_LINEAR
    image = cv2.resize(image, (image_size, image_size), interpolation=interpolation)
    if color == "grayscale":
        image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        return (cv2.equalizeHist(image) if normalize == "equalize" else image)[..., np.newaxis]
    if normalize == "equalize":  # equalise the brightness, keep the colours
        ycrcb = cv2.cvtColor(image, cv2.COLOR_RGB2YCrCb)
        ycrcb[..., 0] = cv2.equalizeHist(ycrcb[..., 0])
        image = cv2.cvtColor(ycrcb, cv2.COLOR_YCrCb2RGB)
    return image


def choose_image_settings(data_dir, class_names, image_size, color, min_size):
    """Resolve "auto" size/colour from a sample of training images (48x48 grey FER2013 -> 48, grayscale)."""
    if image_size != "auto" and color != "auto":
        return int(image_size), color
    files = [f for name in class_names for f in list_image_files(os.path.join(data_dir, "train", name))]
    rng = np.random.default_rng(0)

    def read_sample(path):
        try:
            return read_image(path)
        except ImageTooLarge:  # load_folder reports it, once
            return None
    sample = [read_sample(f) for f in rng.permutation(files)[:AUTO_SIZE_SAMPLE]]
    sample = [im for im in sample if im is not None]
    if not sample:
        raise UserError(f"none of the sampled images under {os.path.join(data_dir, 'train')!r} could be read")
    if image_size == "auto":
        sides = [max(im.shape[:2]) for im in sample]
        image_size = int(min(max(int(np.median(sides)), min_size), ORIGINAL_IMAGE_SIZE))
    if color == "auto":
        is_grey = all(np.array_equal(im[..., 0], im[..., 1]) and np.array_equal(im[..., 1], im[..., 2])
                      for im in sample)
        color = "grayscale" if is_grey else "rgb"
    return int(image_size), color


def open_cache(cache_dir, name, dtype, shape):
    """A memory-mapped array in a new file under `cache_dir`, deleted at once: the mapping keeps the data
    until the array is freed, and the disk space comes back then, even when the run is killed."""
    size = math.prod(shape) * np.dtype(dtype).itemsize
    try:
        os.makedirs(cache_dir, exist_ok=True)
        free = shutil.disk_usage(cache_dir).free
        if size > free:
            raise UserError(f"the file cache needs {size / 2**30:.1f} GB in {cache_dir!r} but {free / 2**30:.1f} GB "
                            "are free; free some space or use another --output-dir")
        fd, path = tempfile.mkstemp(prefix=f"{name}-", suffix=".npy", dir=cache_dir)
        os.close(fd)
        array = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    except OSError as error:
        raise UserError(f"cannot create the file cache in {cache_dir!r} ({error.strerror})") from None
    try:
        os.remove(path)
    except OSError:  # Windows keeps a mapped file; it stays until the next cleanup by hand
        pass
    return array


def load_folder(folder, class_names, image_size, color, normalize, cache_dir=None):
    """Decode every image under folder/<class>/ once, resized: returns (images uint8, labels, skipped paths).

    Labels index `class_names`; a folder may hold a subset of them. Splits too large for
    MAX_IN_MEMORY_MB go to a memory-mapped file in `cache_dir`, so memory stays bounded.
    """
    files, labels = [], []
    for label, name in enumerate(class_names):
        class_dir = os.path.join(folder, name)
        if os.path.isdir(class_dir):
            paths = [p for p in list_image_files(class_dir) if not os.path.basename(p).startswith(".")]
            files += paths
            labels += [label] * len(paths)
    channels = 1 if color == "grayscale" else 3
    shape = (len(files), image_size, image_size, channels)
    if math.prod(shape) > MAX_IN_MEMORY_MB * 2**20 and cache_dir:
        images = open_cache(cache_dir, os.path.basename(os.path.normpath(folder)), np.uint8, shape)
    else:
        images = np.empty(shape, dtype=np.uint8)
    ok = np.zeros(len(files), dtype=bool)
    refused = {}

    def decode(i):
        try:
            image = read_image(files[i])
        except ImageTooLarge as error:
            refused[i] = str(error)
            return
        if image is not None:
            images[i] = prepare_image(image, image_size, color, normalize)
            ok[i] = True

    with concurrent.futures.ThreadPoolExecutor(os.cpu_count()) as pool:  # OpenCV releases the GIL
        list(pool.map(decode, range(len(files))))
    for i in sorted(refused):
        print(f"Warning: skipped {refused[i]}")
    skipped = [f for f, good in zip(files, ok) if not good]
    unreadable = [f for i, f in enumerate(files) if not ok[i] and i not in refused]
    if unreadable:
        examples = ", ".join(os.path.basename(f) for f in unreadable[:3])
        print(f"Warning: skipped {len(unreadable)} unreadable or non-image file(s) in {folder} (e.g. {examples})")
    keep = np.flatnonzero(ok)
    if len(keep) < len(files):  # close the gaps in place (no second copy, also when memory-mapped)
        for new, old in enumerate(keep):
            images[new] = images[old]
        images = images[:len(keep)]
    return images, np.asarray(labels, dtype=np.int64)[keep], skipped


def blur_images(images, sigmas):
    """Gaussian blur of each float32 (H, W, C) image with its own sigma (0: left as it is)."""
    out = images.copy()
    for image, sigma, target in zip(images, sigmas, out):
        if sigma > 0:
            target[...] = cv2.GaussianBlur(image, (0, 0), float(sigma), borderType=cv2.BORDER_REPLICATE).reshape(
                target.shape)
    return out


def warp_images(images, matrices):
    """Affine warp of each image with OpenCV (bilinear, edge pixels repeated, as the original's "nearest" fill).

    images: float32 (B, H, W, C); matrices: (B, 2, 3), output pixel (x, y) reads input pixel M (x, y, 1).
    """
    out = np.empty_like(images)
    height, width = images.shape[1:3]
    for image, matrix, target in zip(images, matrices, out):
        cv2.warpAffine(image, matrix, (width, height), dst=target, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                       borderMode=cv2.BORDER_REPLICATE)
    return out


class Augmentation:
    """The original's random rotation, shift, shear, zoom and horizontal flip, fused into one affine warp.

    One warp per image instead of one per Keras augmentation layer, done by OpenCV's `warpAffine`: about
    4x less CPU than `keras.ops.image.affine_transform` (itself 4x less than the layers), which on 2 cores
    is CPU the network gets back. The randomness is stateless, drawn from a seed per batch, so batches
    can be augmented in parallel and still repeat exactly for the same --seed.
    """

    def __init__(self, rotation_degrees, shift_fraction, shear_degrees, zoom_fraction, flip=True, photometric=False):
        self.rotation, self.shift = math.radians(rotation_degrees), shift_fraction
        self.shear, self.zoom, self.flip = math.radians(shear_degrees), zoom_fraction, flip
        self.photometric = photometric

    def matrices(self, count, height, width, seed):
        """(count, 2, 3) random warps; output pixel p reads input pixel A (p - centre) + centre + shift."""
        seeds = tf.random.experimental.stateless_split(seed, 7)

        def uniform(i, bound):
            return tf.random.stateless_uniform([count], seeds[i], -bound, bound)

        angle, shear = uniform(0, self.rotation), uniform(1, self.shear)
        zoom_x, zoom_y = 1 + uniform(2, self.zoom), 1 + uniform(3, self.zoom)  # independent, as the original
        shift_x, shift_y = uniform(4, self.shift) * width, uniform(5, self.shift) * height
        mirror = tf.where(tf.random.stateless_uniform([count], seeds[6]) < 0.5, -1.0, 1.0) if self.flip else 1.0
        # A = rotate . shear . zoom . mirror
        cos, sin = tf.cos(angle), tf.sin(angle)
        a0, a1 = cos * zoom_x * mirror, (-cos * tf.sin(shear) - sin * tf.cos(shear)) * zoom_y
        b0, b1 = sin * zoom_x * mirror, (-sin * tf.sin(shear) + cos * tf.cos(shear)) * zoom_y
        cx, cy = (width - 1) / 2, (height - 1) / 2
        a2, b2 = cx - a0 * cx - a1 * cy + shift_x, cy - b0 * cx - b1 * cy + shift_y
        return tf.reshape(tf.stack([a0, a1, a2, b0, b1, b2], axis=1), (-1, 2, 3))

    def __call__(self, images, seed):
        """images: float32 (B, H, W, C); seed: int64 pair. Same images and seed -> same output."""
        images = tf.convert_to_tensor(images, tf.float32)
        height, width = tf.cast(tf.shape(images)[1], tf.float32), tf.cast(tf.shape(images)[2], tf.float32)
        matrices = self.matrices(tf.shape(images)[0], height, width, seed)
        warped = tf.ensure_shape(tf.numpy_function(warp_images, [images, matrices], tf.float32), images.shape)
        return self.camera(warped, tf.random.experimental.stateless_fold_in(seed, 1)) if self.photometric else warped

    def camera(self, images, seed):
        """What another camera does to a face: contrast, brightness, blur (half the faces), sensor noise."""
        seeds = tf.random.experimental.stateless_split(seed, 6)
        count = tf.shape(images)[0]

        def uniform(i, low, high):
            return tf.random.stateless_uniform([count, 1, 1, 1], seeds[i], low, high)

        mean = tf.reduce_mean(images, axis=[1, 2, 3], keepdims=True)
        images = (images - mean) * (1 + uniform(0, -CONTRAST_FRACTION, CONTRAST_FRACTION)) + mean
        images += uniform(1, -BRIGHTNESS_FRACTION, BRIGHTNESS_FRACTION) * 255
        sigmas = tf.where(uniform(2, 0, 1) < 0.5, 0.0, uniform(3, 0.5, BLUR_SIGMA))
        images = tf.ensure_shape(tf.numpy_function(blur_images, [images, tf.reshape(sigmas, [-1])], tf.float32),
                                 images.shape)
        noise = tf.random.stateless_normal(tf.shape(images), seeds[4]) * uniform(5, 0, NOISE_LEVEL)
        return tf.clip_by_value(images + noise, 0, 255)


def make_augmentation(strength):
    """The training augmentation (run in tf.data, never saved in the model), or None for "none".

    "original": the original's ranges; "light": a third of each, no shear; "camera": the original's plus
    photometric changes. The random draws come from the per-batch seeds make_dataset passes in.
    """
    if strength == "none":
        return None
    k = 1 / 3 if strength == "light" else 1
    return Augmentation(k * ROTATION_DEGREES, k * SHIFT_FRACTION, 0.0 if strength == "light" else SHEAR_DEGREES,
                        k * ZOOM_FRACTION, photometric=strength == "camera")


def make_dataset(images, labels, num_classes, batch_size, shuffle=False, augment=None, seed=SEED,
                 drop_remainder=False):
    """Batches of (float32 pixels 0-255, one-hot labels) read from the decoded array; order kept unless shuffle."""
    ds = tf.data.Dataset.range(len(images))
    if shuffle:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    image_shape = images.shape[1:]

    def take(index):
        batch = tf.numpy_function(lambda i: images[i], [index], tf.uint8)
        batch = tf.ensure_shape(batch, (None, *image_shape))
        return tf.cast(batch, tf.float32), tf.one_hot(tf.gather(labels, index), num_classes)

    ds = ds.map(take, num_parallel_calls=tf.data.AUTOTUNE)
    if augment is not None:
        # A fresh seed pair per batch, from a seeded stream that differs each epoch: reproducible and parallel.
        batch_seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip(ds, batch_seeds).map(lambda batch, s: (augment(batch[0], s), batch[1]),
                                                      num_parallel_calls=tf.data.AUTOTUNE)
    return ds.with_options(shard_by_data()).prefetch(tf.data.AUTOTUNE)


def shard_by_data():
    """tf.data options for multi-worker training: each worker keeps its share of every batch."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return options


# -----------------------------------------------------------------------------
# Cached features: with a frozen base, its output for an image never changes, so compute it once


def split_frozen_base(model, base_name="vgg16"):
    """(features, head) of a transfer model: the input-to-frozen-base part and the trainable layers after it.

    Both share the full model's layers, so training `head` trains `model`; saving `model` saves both.
    """
    names = [layer.name for layer in model.layers]
    first_head_layer = model.layers[names.index(base_name) + 1]
    features = keras.Model(model.inputs, first_head_layer.input, name="features")
    x = inputs = keras.Input(first_head_layer.input.shape[1:])
    for layer in model.layers[names.index(base_name) + 1:]:  # the head is a plain chain of layers
        x = layer(x)
    return features, keras.Model(inputs, x, name="head")


def extract_features(features, images, labels, num_classes, batch_size, augment=None, views=1, cache_dir=None):
    """Frozen-base outputs (float16) for every image: view 0 plain, views 1.. augmented. Shape (views, N, ...)."""
    views = views if augment is not None else 1
    shape = (views, len(images), *features.output_shape[1:])
    if math.prod(shape) * 2 > MAX_IN_MEMORY_MB * 2**20 and cache_dir:
        stored = open_cache(cache_dir, "features", np.float16, shape)
    else:
        stored = np.empty(shape, dtype=np.float16)
    for view in range(views):
        print(f"Computing frozen-base features, view {view + 1} of {views} ({'augmented' if view else 'plain'})")
        ds = make_dataset(images, labels, num_classes, batch_size, augment=augment if view else None)
        start = 0
        for batch, _ in ds:
            out = features.predict_on_batch(batch)
            stored[view, start:start + len(out)] = out
            start += len(out)
    return stored


def make_feature_dataset(stored, labels, num_classes, batch_size, shuffle=False, seed=SEED):
    """Batches of (features, one-hot labels). Shuffled: endless, drawing image-views from the whole pool."""
    views, count = stored.shape[:2]
    ds = tf.data.Dataset.range(views * count)
    if shuffle:
        ds = ds.shuffle(views * count, seed=seed, reshuffle_each_iteration=True).repeat()
    ds = ds.batch(batch_size)
    feature_shape = stored.shape[2:]

    def take(index):
        batch = tf.numpy_function(lambda i: stored[i // count, i % count].astype(np.float32), [index], tf.float32)
        return tf.ensure_shape(batch, (None, *feature_shape)), tf.one_hot(tf.gather(labels, index % count), num_classes)

    return ds.map(take, num_parallel_calls=tf.data.AUTOTUNE).with_options(shard_by_data()).prefetch(tf.data.AUTOTUNE)


# -----------------------------------------------------------------------------
# Models: preprocessing (rescaling, colour, VGG16 input conversion) lives inside each model


@functools.cache
def vgg16_preprocess_class():
    """The layer class VGG16Preprocess, defined and registered (for loading saved models) on first use."""

    @keras.saving.register_keras_serializable(package="emotion_recognition")
    class VGG16Preprocess(keras.layers.Layer):
        """VGG16's own input conversion (RGB 0-255 -> BGR minus the ImageNet mean), kept inside the model."""

        def call(self, inputs):
            return keras.applications.vgg16.preprocess_input(inputs)

    return VGG16Preprocess


def min_image_size(model_name):
    """Smallest input side each architecture accepts (four valid 3x3 conv + pool blocks; VGG16's own limit)."""
    return {"cnn": 46, "compact": 16}.get(model_name, 32)  # Keras applications: 32


def build_cnn(input_shape, num_classes):
    """The original scratch CNN, layer for layer: four conv/BN/pool blocks, dropout, L2 dense head."""
    inputs = keras.Input(input_shape)
    x = layers.Rescaling(1 / 255)(inputs)
    for block, filters in enumerate((16, 32, 64, 128)):
        x = layers.Conv2D(filters, 3, activation="relu")(x)
        x = layers.BatchNormalization()(x)
        x = layers.MaxPooling2D(2)(x)
        if block > 0:
            x = layers.Dropout(0.3)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(512, activation="relu", kernel_regularizer=regularizers.l2(0.01))(x)
    x = layers.Dropout(0.5)(x)
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32")(x)  # float32 under mixed precision
    return keras.Model(inputs, outputs, name="cnn")


def conv_bn_relu(x, filters):
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    return layers.ReLU()(x)


def build_compact(input_shape, num_classes):
    """A VGG-style net sized for 48x48 faces on CPU: 9 conv layers, about 1.2 M parameters, 85 MFLOP per face."""
    inputs = keras.Input(input_shape)
    x = layers.Rescaling(1 / 255)(inputs)
    x = conv_bn_relu(x, 32)
    for filters in (32, 64, 128, 256):
        x = layers.MaxPooling2D(2)(x)
        x = conv_bn_relu(x, filters)
        x = conv_bn_relu(x, filters)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.4)(x)
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32")(x)  # float32 under mixed precision
    return keras.Model(inputs, outputs, name="compact")


def load_base(name, input_shape, weights):
    """An ImageNet architecture without its top (BASES[name]). weights: "imagenet" (downloaded by Keras, or
    found in its cache), "none" (untrained), or a local notop .h5 file."""
    if weights not in ("imagenet", "none") and not os.path.isfile(weights):
        raise UserError(f"{name} weights file {weights!r} not found; pass --base-weights imagenet, none, or the "
                        "path of the architecture's notop .h5 weights file")
    try:
        return getattr(keras.applications, BASES[name])(include_top=False, input_shape=input_shape,
                                                        weights=None if weights == "none" else weights)
    except (OSError, ValueError) as error:
        raise UserError(f"could not load {name} weights from {weights!r}: {error}") from None
    except Exception as error:  # Keras' download raises a bare Exception("URL fetch failure ...")
        raise UserError(f"could not download the ImageNet {name} weights ({error}); download the notop .h5 file "
                        "elsewhere and pass --base-weights PATH, or put it in ~/.keras/models/") from None


def build_vgg16(input_shape, num_classes, weights=BASE_WEIGHTS):
    """Frozen VGG16 + the original head; 'same' padding in the head when the base output is under 4x4."""
    inputs = keras.Input(input_shape)
    x = layers.Concatenate()([inputs] * 3) if input_shape[-1] == 1 else inputs  # grey -> 3 channels
    x = vgg16_preprocess_class()()(x)
    base = load_base("vgg16", (input_shape[0], input_shape[1], 3), weights)
    base.trainable = False
    x = base(x, training=False)
    padding = "valid" if x.shape[1] >= 4 else "same"  # 200 px: 6x6 as the original; 48 px: 1x1
    x = layers.Conv2D(256, 3, activation="relu", padding=padding)(x)
    x = layers.MaxPooling2D(2, padding=padding)(x)
    x = layers.Flatten()(x)
    for units, rate in ((512, 0.5), (256, 0.4)):
        x = layers.Dense(units, activation="relu", kernel_regularizer=regularizers.l2(0.01))(x)
        x = layers.BatchNormalization()(x)
        x = layers.Dropout(rate)(x)
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32")(x)  # float32 under mixed precision
    return keras.Model(inputs, outputs, name="vgg16_transfer")


def build_application(name, input_shape, num_classes, weights=BASE_WEIGHTS):
    """A Keras application (BASES[name]) under a new classifier, all of it trained: from scratch
    (weights "none") or fine-tuned from ImageNet weights. Grey faces are given as three equal channels."""
    inputs = keras.Input(input_shape)
    x = layers.Concatenate()([inputs] * 3) if input_shape[-1] == 1 else inputs
    if name != "efficientnet":  # ResNetV2 and MobileNetV2 take pixels in [-1, 1]; EfficientNet rescales itself
        x = layers.Rescaling(1 / 127.5, offset=-1)(x)
    x = load_base(name, (input_shape[0], input_shape[1], 3), weights)(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.3)(x)
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32")(x)  # float32 under mixed precision
    return keras.Model(inputs, outputs, name=name)


def build_model(name, input_shape, num_classes, learning_rate, base_weights=BASE_WEIGHTS, label_smoothing=0.0,
                weight_decay=0.0):
    """Build and compile one of the architectures; `learning_rate` may be a Keras schedule."""
    if name == "vgg16":
        model = build_vgg16(input_shape, num_classes, base_weights)
    elif name in BASES:
        model = build_application(name, input_shape, num_classes, base_weights)
    elif name == "compact":
        model = build_compact(input_shape, num_classes)
    else:
        model = build_cnn(input_shape, num_classes)
    if weight_decay:
        optimizer = keras.optimizers.AdamW(learning_rate, weight_decay=weight_decay)
    else:
        optimizer = keras.optimizers.Adam(learning_rate)
    model.compile(optimizer=optimizer, steps_per_execution=STEPS_PER_EXECUTION,
                  loss=keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing), metrics=["accuracy"])
    return model


def predict_probabilities(model, images, tta=TTA, batch_size=INFERENCE_BATCH_SIZE):
    """Class probabilities for uint8 images (N, S, S, C); with TTA, averaged with the mirror images'.

    One batch at a time is made float32, so a memory-mapped split is never copied whole into memory.
    """
    parts = []
    for i in range(0, len(images), batch_size):
        batch = np.asarray(images[i:i + batch_size], dtype=np.float32)
        if tta:  # the faces and their mirror images in one call
            batch = np.concatenate([batch, batch[:, :, ::-1]])
        # predict_on_batch: model.predict's per-call set-up costs more than classifying a few faces
        probabilities = np.asarray(model.predict_on_batch(batch))
        parts.append((probabilities[:len(batch) // 2] + probabilities[len(batch) // 2:]) / 2 if tta else probabilities)
    return np.concatenate(parts) if parts else np.zeros((0, model.output_shape[-1]), np.float32)


# -----------------------------------------------------------------------------
# Saving and loading: atomic writes, class names and image settings stored inside the .h5


def save_model(model, path, metadata):
    """Write the model and its metadata to a temporary file beside `path`, then rename: never half a file."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp_path = tempfile.mkstemp(suffix=".tmp.h5", dir=folder)  # Keras only accepts .h5/.keras names
    os.close(fd)
    try:
        import h5py
        model.save(tmp_path, include_optimizer=False)  # a third of the size; --resume keeps its own backup
        with h5py.File(tmp_path, "a") as f:
            f.attrs[METADATA_KEY] = json.dumps(metadata)
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())  # on disk before the rename, so a power cut leaves the old file or the new one
        os.replace(tmp_path, path)
    except OSError as error:  # a full disk: the file at `path` is the previous one, whole
        raise UserError(f"cannot save the model to {path!r} ({error.strerror}); the file there is unchanged; "
                        "free some space and train again") from None
    finally:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)


def write_file(path, data):
    """Write bytes (or text, as UTF-8) to a hidden temporary file beside `path`, then rename it over `path`:
    a reader never sees half a file. A failed write (disk full, read-only) is a UserError; nothing is left."""
    tmp_path = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp_path, "xb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp_path, path)
    except OSError as error:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise UserError(f"cannot write {path!r} ({error.strerror}); free some space or choose another "
                        "folder") from None


def write_image(path, bgr):
    """Encode a BGR image by the extension of `path` and write it with write_file (never half a file)."""
    try:
        ok, encoded = cv2.imencode(os.path.splitext(path)[1] or ".png", bgr)
    except cv2.error:
        ok = False
    if not ok:
        raise UserError(f"cannot encode {path!r} as an image; use a .png or .jpg name")
    write_file(path, encoded.tobytes())


def read_metadata(path):
    """The class names and image settings save_model stored in the file ({} for a model from elsewhere)."""
    import h5py
    with h5py.File(path, "r") as f:
        return json.loads(f.attrs.get(METADATA_KEY, "{}"))


def load_trained_model(path):
    """Load a model saved by this script: returns (model, metadata). Clear errors for bad files."""
    if not os.path.isfile(path):
        raise UserError(f"model file {path!r} not found; train one first (python emotion_recognition.py "
                        "--train-again) or pass --model-path")
    try:
        metadata = read_metadata(path)
        vgg16_preprocess_class()  # registered, so that a vgg16 model's own layer can be read back
        model = keras.models.load_model(path, compile=False)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise UserError(f"{path!r} is not a readable Keras model ({type(error).__name__}); "
                        "delete it or retrain with --train-again") from None
    if isinstance(metadata, dict) and not {"image_size", "color"} <= set(metadata):  # a model from the original
        channels = model.input_shape[-1]  # script (no metadata) or stored without these: infer them
        metadata = {"image_size": model.input_shape[1], "color": "grayscale" if channels == 1 else "rgb", **metadata}
    validate_model(model, metadata, path)
    metadata.setdefault("normalize", "none")  # saved before --normalize existed: fed as it was trained
    model.compile(loss="categorical_crossentropy", metrics=["accuracy"])  # for evaluate(); no optimizer needed
    return model, metadata


def validate_model(model, metadata, path):
    """The stored metadata must describe the model it came with (a stored image_size of 30000 would decode
    every image at that size): one line naming the file when it does not, or when a weight is NaN."""
    def refuse(problem):
        raise UserError(f"{path!r}: {problem}; the file is damaged or was edited: retrain with --train-again")
    if not isinstance(metadata, dict):
        refuse(f"stored metadata {metadata!r} is not a JSON object")
    shape, outputs = model.input_shape, model.output_shape
    if not (isinstance(shape, tuple) and len(shape) == 4 and isinstance(outputs, tuple) and len(outputs) == 2):
        refuse(f"the model takes {shape} and gives {outputs}, not one image batch in and class probabilities out")
    size, color, names = metadata.get("image_size"), metadata.get("color"), metadata.get("class_names")
    if type(size) is not int or shape[1:3] not in ((size, size), (None, None)) or not 0 < size <= 4096:
        refuse(f"stored image_size {size!r} does not match the model's input {shape[1]}x{shape[2]}")
    if color not in ("grayscale", "rgb") or shape[3] != (1 if color == "grayscale" else 3):
        refuse(f"stored color {color!r} does not match the model's {shape[3]} input channel(s)")
    if names is not None and (not isinstance(names, list) or not all(isinstance(n, str) and n for n in names)
                              or len(set(names)) != len(names) or len(names) != outputs[1]):
        refuse(f"stored class_names {names!r} are not {outputs[1]} distinct names for the model's {outputs[1]} "
               "outputs")
    temperature = metadata.get("temperature", 1.0)
    if type(temperature) not in (int, float) or not TEMPERATURE_RANGE[0] <= temperature <= TEMPERATURE_RANGE[1]:
        refuse(f"stored temperature {temperature!r} is not a number from {TEMPERATURE_RANGE[0]} to "
               f"{TEMPERATURE_RANGE[1]}")
    if metadata.get("normalize", "none") not in ("equalize", "none"):
        refuse(f"stored normalize {metadata['normalize']!r} is not 'equalize' or 'none'")
    if not weights_finite(model):
        refuse("the model's weights hold NaN or infinite values (a diverged training run)")


def answering_model(model, metadata, classes=None):
    """The model as users get its answers: (model, metadata) with the stored calibration temperature applied
    and, when `classes` is given, the probabilities restricted to those classes and renormalised over them."""
    names = class_names_of(model, metadata)
    classes = list(classes or names)
    unknown = [c for c in classes if c not in names]
    if unknown:
        raise UserError(f"the model has no class {unknown[0]!r}; its classes are {','.join(names)}")
    temperature = metadata.get("temperature", 1.0)
    if classes == names and temperature == 1.0:
        return model, metadata
    ops = keras.ops
    chosen = ops.take(model.output, [names.index(c) for c in classes], axis=1)
    # softmax(log p / T) over the kept classes: calibrated and renormalised in one step
    outputs = ops.softmax(ops.log(ops.maximum(chosen, 1e-12)) / temperature, axis=-1)
    return keras.Model(model.input, outputs, name=model.name), {**metadata, "class_names": classes}


def check_model_matches(metadata, model, class_names, path, image_size="auto", color="auto"):
    """Stop with advice when a saved model was trained for other classes (or another input) than asked."""
    if image_size != "auto" and image_size != metadata["image_size"]:
        raise UserError(f"model {path!r} takes {metadata['image_size']}x{metadata['image_size']} images, not "
                        f"--image-size {image_size}; retrain with --train-again or drop --image-size")
    if color != "auto" and color != metadata["color"]:
        raise UserError(f"model {path!r} takes {metadata['color']} images, not --color {color}; "
                        "retrain with --train-again or drop --color")
    saved = metadata.get("class_names")
    if saved is None and model.output_shape[-1] == len(class_names):
        return
    if saved != class_names and not set(class_names) <= set(saved or []):
        raise UserError(f"model {path!r} was trained for classes {saved or model.output_shape[-1]} but the data "
                        f"has {class_names}; retrain with --train-again or use another --model-path")


# -----------------------------------------------------------------------------
# Training


def best_model_checkpoint(model, path, metadata, best=math.inf):
    """A callback that atomically saves `model` (with metadata) to `path` whenever val_loss improves.

    `model` is the whole model, also when only part of it is fitted (a head on cached features).
    """
    def save_if_better(epoch, logs=None):
        nonlocal best
        val_loss = (logs or {}).get("val_loss", math.inf)
        if val_loss < best:
            best = val_loss
            save_model(model, path, {**metadata, "epoch": epoch + 1, "val_loss": float(val_loss)})
    return keras.callbacks.LambdaCallback(on_epoch_end=save_if_better)


def progress_bar():
    """Keras' per-epoch progress bar, stopped at its total.

    With steps_per_execution, Keras reports each call's last step as its first + steps_per_execution - 1,
    also for the epoch's last call, which has fewer steps left: 94 steps, 8 per call, showed 96/94.
    """
    bar = keras.callbacks.ProgbarLogger()
    update = bar.on_train_batch_end
    bar.on_train_batch_end = lambda batch, logs=None: update(min(batch, (bar.target or math.inf) - 1), logs)
    return bar


def make_callbacks(model, checkpoint_path, output_dir, metadata, reduce_on_plateau=True,
                   patience=EARLY_STOPPING_PATIENCE, backup=True, best_val_loss=math.inf):
    """The original's EarlyStopping and ReduceLROnPlateau, plus a best-model checkpoint, a CSV history,
    and a per-epoch backup (weights, optimizer, epoch) that --resume continues from."""
    callbacks = [
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience,
                                      restore_best_weights=True, verbose=1),
        best_model_checkpoint(model, checkpoint_path, metadata, best_val_loss),
        keras.callbacks.CSVLogger(os.path.join(output_dir, "history.csv"), append=True),
        keras.callbacks.TerminateOnNaN(),  # a diverged run stops at once; train_model then keeps the old model file
        progress_bar(),
    ]
    if reduce_on_plateau:  # a cosine schedule sets the rate itself
        callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=REDUCE_LR_FACTOR,
                                                           patience=REDUCE_LR_PATIENCE, min_lr=MIN_LEARNING_RATE,
                                                           verbose=1))
    if backup:  # double_checkpoint: if Ctrl-C lands mid-write, Keras falls back to the previous epoch's backup
        callbacks.insert(0, keras.callbacks.BackupAndRestore(backup_path_for(checkpoint_path), double_checkpoint=True))
    return callbacks


def make_learning_rate(initial, schedule, epochs, steps_per_epoch):
    """A float for "plateau" (ReduceLROnPlateau adjusts it), else cosine decay over all training steps."""
    if schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(initial, decay_steps=epochs * steps_per_epoch)
    return initial


def balanced_class_weights(labels, num_classes):
    """Inverse-frequency weights (scikit-learn's "balanced"), as a dict for model.fit."""
    from sklearn.utils.class_weight import compute_class_weight
    weights = compute_class_weight("balanced", classes=np.arange(num_classes), y=labels)
    return dict(enumerate(weights.tolist()))


def start_from(model, path):
    """Fine-tuning: copy a saved model's weights into the freshly built `model` (same architecture and input).

    A saved model with another number of classes gives every layer but its last (the classifier starts anew),
    so a three-class model can start a seven-class one.
    """
    saved, _ = load_trained_model(path)
    source = [layer for layer in saved.layers if layer.weights]
    target = [layer for layer in model.layers if layer.weights]
    new_head = saved.output_shape[-1] != model.output_shape[-1]
    try:
        if len(source) != len(target):
            raise ValueError("another number of layers")
        for saved_layer, layer in list(zip(source, target))[:-1 if new_head else None]:
            layer.set_weights(saved_layer.get_weights())
    except ValueError:
        raise UserError(f"--initial-model {path!r} has another architecture or input than this run "
                        f"({saved.name}, input {saved.input_shape[1:]}); pass the same --model, --image-size "
                        "and --color as it was trained with") from None
    print(f"Starting from the weights of {path}" + (" (a new last layer for this run's classes)" if new_head else ""))


def checkpoint_path_for(model_path):
    """The in-training checkpoint sits beside the model file and never overwrites it."""
    root, ext = os.path.splitext(model_path)
    return f"{root}.checkpoint{ext or '.h5'}"


def backup_path_for(checkpoint_path):
    """BackupAndRestore's folder, beside the checkpoint; Keras deletes it when training ends."""
    return os.path.splitext(checkpoint_path)[0] + ".backup"


@contextlib.contextmanager
def ctrl_c_between_steps():
    """Hold a Ctrl-C until the next batch or epoch boundary; yields the callback that raises it there.

    A KeyboardInterrupt raised inside BackupAndRestore's epoch-end write leaves a well-formed but partial
    weights file, which --resume then cannot load. A second Ctrl-C stops at once, as usual.
    """
    pressed = []

    def on_ctrl_c(signum, frame):
        pressed.append(signum)
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def raise_if_pressed(*args, **kwargs):
        if pressed:
            raise KeyboardInterrupt

    in_main_thread = threading.current_thread() is threading.main_thread()  # only it may set signal handlers
    previous = signal.signal(signal.SIGINT, on_ctrl_c) if in_main_thread else None
    try:
        yield keras.callbacks.LambdaCallback(on_epoch_begin=raise_if_pressed, on_epoch_end=raise_if_pressed,
                                             on_train_batch_end=raise_if_pressed, on_test_batch_end=raise_if_pressed)
        raise_if_pressed()
    finally:
        if in_main_thread:
            signal.signal(signal.SIGINT, previous)


def train_model(model, train_ds, val_ds, *, epochs, model_path, output_dir, metadata, class_weight=None,
                reduce_on_plateau=True, resume=False, patience=EARLY_STOPPING_PATIENCE, head=None,
                steps_per_epoch=None):
    """Fit with the callbacks; on success the model replaces `model_path`. Ctrl-C keeps the best epoch so far.

    head: the part of `model` to fit on cached features (train_ds then yields features, endlessly).
    """
    checkpoint_path = checkpoint_path_for(model_path)
    backup = backup_path_for(checkpoint_path)
    if os.path.isdir(backup) and not resume:
        shutil.rmtree(backup)  # a stale backup would silently continue an old run
    elif resume and not os.path.isdir(backup):
        print(f"Warning: --resume found no interrupted run ({backup} is missing); starting from epoch 1")
    elif resume:
        print(f"Resuming the interrupted run saved in {backup}")
    best_val_loss = math.inf
    if os.path.exists(checkpoint_path) and not resume:
        os.remove(checkpoint_path)  # left by a killed run: Ctrl-C must never pass it off as this run's best
    elif os.path.exists(checkpoint_path):  # the interrupted run's best epoch stays unless this run beats it
        best_val_loss = read_metadata(checkpoint_path).get("val_loss", math.inf)
    if not resume and os.path.exists(os.path.join(output_dir, "history.csv")):
        os.remove(os.path.join(output_dir, "history.csv"))
    multiworker = isinstance(model.distribute_strategy, tf.distribute.MultiWorkerMirroredStrategy)
    check_free_space(model, model_path)
    try:
        callbacks = make_callbacks(model, checkpoint_path, output_dir, metadata, reduce_on_plateau, patience,
                                   backup=not multiworker, best_val_loss=best_val_loss)
        with ctrl_c_between_steps() as interrupt_point:  # last: it runs after the epoch-end saves
            if multiworker:
                history = fit_multiworker(model, train_ds, val_ds, epochs, [*callbacks, interrupt_point], class_weight)
            else:
                history = (head or model).fit(train_ds, validation_data=val_ds, epochs=epochs, shuffle=False,
                                              steps_per_epoch=steps_per_epoch, class_weight=class_weight,
                                              callbacks=[*callbacks, interrupt_point])  # the data set shuffles
    except ValueError as error:
        if resume and "could not be loaded" in str(error):  # BackupAndRestore found another architecture
            raise UserError(f"the interrupted run in {backup} was for another model; run --resume with the same "
                            "options as that run, or train without --resume") from None
        raise
    except (OSError, RuntimeError) as error:  # the per-epoch backup (h5py: RuntimeError) or the history, disk full
        if isinstance(error, RuntimeError) and "write failed" not in str(error):
            raise
        raise UserError(f"training stopped: a write failed ({getattr(error, 'strerror', None) or 'disk full?'}); "
                        f"{model_path!r} is unchanged; free some space and train again") from None
    except KeyboardInterrupt:
        if not os.path.exists(checkpoint_path):
            raise UserError("training interrupted before the first epoch ended; nothing was saved "
                            f"and {model_path!r} is unchanged") from None
        os.replace(checkpoint_path, model_path)
        raise UserError(f"training interrupted; the best model so far was saved to {model_path!r}") from None
    diverged = [v for v in history.history.get("loss", []) if not math.isfinite(v)]
    if diverged or not weights_finite(model):
        if os.path.exists(checkpoint_path):
            os.remove(checkpoint_path)
        raise UserError(f"training diverged (the loss became {diverged[0] if diverged else 'nan'}); nothing was saved "
                        f"and {model_path!r} is unchanged; try a lower --learning-rate")
    save_model(model, model_path, metadata)
    if os.path.exists(checkpoint_path):
        os.remove(checkpoint_path)
    return history.history


def check_free_space(model, model_path):
    """Stop before training when the model's folder cannot hold what training writes there: the per-epoch
    backup (weights and Adam's two moments, twice), the checkpoint and the temporary model file. A disk
    that fills mid-write leaves h5py in a state that can crash the interpreter."""
    need = model.count_params() * 4 * (3 * 2 + 2)
    folder = os.path.dirname(os.path.abspath(model_path))
    free = shutil.disk_usage(folder).free
    if free < need:
        raise UserError(f"training needs about {need / 2**20:.0f} MB free in {folder!r} (backup, checkpoint, model) "
                        f"but {free / 2**20:.0f} MB are free; free some space or choose another --model-path")


def weights_finite(model):
    """False when any weight is NaN or infinite: such a model predicts NaN for every image."""
    return all(np.isfinite(w).all() for w in model.get_weights())


def fit_multiworker(model, train_ds, val_ds, epochs, callbacks, class_weight=None):
    """model.fit for MultiWorkerMirroredStrategy, under which Keras 3's own fit fails (keras-team/keras#20585).

    TensorFlow's custom-loop recipe: each worker runs every step through strategy.run on its share of the
    batch, the loss is averaged over the global batch and the optimizer all-reduces the gradients. Loss and
    accuracy are summed over all workers, so every worker's callbacks see the same logs and decide alike.
    """
    strategy = model.distribute_strategy
    per_example_loss = type(model.loss).from_config({**model.loss.get_config(), "reduction": None})
    class_weights = tf.constant([class_weight[i] for i in sorted(class_weight)]) if class_weight else None

    def replica_sums(images, labels, training):
        probabilities = model(images, training=training)
        losses = per_example_loss(labels, probabilities)
        if class_weights is not None and training:  # as in fit: validation losses are not weighted
            losses *= tf.gather(class_weights, tf.argmax(labels, axis=1))
        correct = tf.cast(tf.argmax(probabilities, axis=1) == tf.argmax(labels, axis=1), tf.float32)
        return losses, tf.stack([tf.reduce_sum(losses), tf.reduce_sum(correct), tf.cast(tf.size(correct), tf.float32)])

    def train_replica(images, labels):
        with tf.GradientTape() as tape:
            losses, sums = replica_sums(images, labels, training=True)
            loss = tf.nn.compute_average_loss(losses)
            if model.losses:  # the L2 penalties of the dense layers
                loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
        variables = model.trainable_variables
        gradients = tape.gradient(model.optimizer.scale_loss(loss), variables)
        model.optimizer.apply_gradients(zip(gradients, variables))
        return sums

    @tf.function
    def train_step(images, labels):
        return strategy.reduce("SUM", strategy.run(train_replica, args=(images, labels)), axis=None)

    @tf.function
    def val_step(images, labels):
        return strategy.reduce("SUM", strategy.run(lambda x, y: replica_sums(x, y, False)[1], args=(images, labels)),
                               axis=None)

    def mean_logs(sums, prefix=""):
        penalty = float(sum(model.losses)) if model.losses else 0.0  # as fit logs it: loss + L2 penalties
        return {f"{prefix}loss": sums[0] / sums[2] + penalty, f"{prefix}accuracy": sums[1] / sums[2]}

    train_batches = strategy.experimental_distribute_dataset(train_ds)
    val_batches = strategy.experimental_distribute_dataset(val_ds)
    callbacks = keras.callbacks.CallbackList(callbacks, add_history=True, add_progbar=True, model=model,
                                             verbose=1, epochs=epochs, steps=int(train_ds.cardinality()))
    model.stop_training = False
    callbacks.on_train_begin()
    for epoch in range(epochs):
        callbacks.on_epoch_begin(epoch)
        sums = np.zeros(3)
        for step, (images, labels) in enumerate(train_batches):
            callbacks.on_train_batch_begin(step)
            sums += train_step(images, labels).numpy()
            callbacks.on_train_batch_end(step, mean_logs(sums))
        val_sums = sum(val_step(images, labels).numpy() for images, labels in val_batches)
        logs = {**mean_logs(sums), **mean_logs(val_sums, "val_")}
        callbacks.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    callbacks.on_train_end(logs)
    return model.history


# -----------------------------------------------------------------------------
# Evaluation and plots


def evaluate_model(model, images, labels, class_names, batch_size=BATCH_SIZE, tta=TTA):
    """Loss, accuracy, F1 and report, all from one pass of predictions (with TTA when asked).

    The loss is the mean categorical cross-entropy of those probabilities (clipped as Keras does); unlike
    Keras' evaluate() it leaves out the L2 penalties, which are a training cost, not a test error.
    """
    from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, f1_score
    probabilities = predict_probabilities(model, images, tta, batch_size)
    loss = -np.mean(np.log(np.clip(probabilities[np.arange(len(labels)), labels], 1e-7, 1.0)))
    predictions = probabilities.argmax(axis=1)
    indices = list(range(len(class_names)))
    report = classification_report(labels, predictions, labels=indices, target_names=class_names,
                                   digits=4, zero_division=0)
    per_class = classification_report(labels, predictions, labels=indices, target_names=class_names,
                                      output_dict=True, zero_division=0)
    counts = np.bincount(labels, minlength=len(class_names))
    bins, ece = calibration_bins(probabilities, labels)
    return {
        "loss": float(loss),
        "accuracy": float(accuracy_score(labels, predictions)),
        "weighted_f1": float(f1_score(labels, predictions, labels=indices, average="weighted", zero_division=0)),
        "macro_f1": float(f1_score(labels, predictions, labels=indices, average="macro", zero_division=0)),
        "majority_class_accuracy": float(counts.max() / counts.sum()),
        "expected_calibration_error": ece,
        "calibration_bins": bins,
        "n_samples": int(len(labels)),
        "class_names": list(class_names),
        "support": {name: int(n) for name, n in zip(class_names, counts)},
        "per_class": {name: {k: float(per_class[name][k]) for k in ("precision", "recall", "f1-score")}
                      for name in class_names},
        "confusion_matrix": confusion_matrix(labels, predictions, labels=indices).tolist(),
        "classification_report": report,
        "predictions": predictions,
    }


def calibration_bins(probabilities, labels, bins=CALIBRATION_BINS):
    """How far confidence is from accuracy: per equal-width bin of the top probability, its faces, mean
    confidence and accuracy; and the expected calibration error (those gaps weighted by the bins' faces)."""
    confidence, correct = probabilities.max(axis=1), probabilities.argmax(axis=1) == labels
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    table = [{"low": i / bins, "high": (i + 1) / bins, "count": int((which == i).sum()),
              "confidence": float(confidence[which == i].mean()) if (which == i).any() else None,
              "accuracy": float(correct[which == i].mean()) if (which == i).any() else None} for i in range(bins)]
    ece = sum(b["count"] * abs(b["accuracy"] - b["confidence"]) for b in table if b["count"]) / max(len(labels), 1)
    return table, float(ece)


def fit_temperature(probabilities, labels):
    """The temperature T that minimises the cross-entropy of softmax(log p / T) (temperature scaling)."""
    from scipy.optimize import minimize_scalar
    log_p = np.log(np.clip(probabilities, 1e-12, 1.0))

    def loss(log_t):
        scaled = log_p / np.exp(log_t)
        scaled -= scaled.max(axis=1, keepdims=True)
        return -np.mean(scaled[np.arange(len(labels)), labels] - np.log(np.exp(scaled).sum(axis=1)))

    found = minimize_scalar(loss, bounds=np.log(TEMPERATURE_RANGE), method="bounded")
    return round(float(np.exp(found.x)), 4)


def print_metrics(metrics):
    """The original's printout, plus macro F1 and the majority-class baseline."""
    print(f"Test Loss: {metrics['loss']:.4f}")
    print(f"Test Accuracy: {metrics['accuracy']:.4f}")
    print(f"Test F1-Score: {metrics['weighted_f1']:.4f}")
    print(f"Test Macro F1-Score: {metrics['macro_f1']:.4f}")
    print(f"Majority-class accuracy (always '{max(metrics['support'], key=metrics['support'].get)}'): "
          f"{metrics['majority_class_accuracy']:.4f}")
    print(f"Expected calibration error: {metrics['expected_calibration_error']:.4f}")
    print("Classification Report:")
    print(metrics["classification_report"])


def save_metrics(metrics, output_dir):
    """metrics.json and classification_report.txt."""
    write_file(os.path.join(output_dir, "metrics.json"),
               json.dumps({k: v for k, v in metrics.items() if k != "predictions"}, indent=2))
    write_file(os.path.join(output_dir, "classification_report.txt"), metrics["classification_report"])


def data_label(folder):
    """A folder's name for plot titles, with its parent for split folders: "fer2013-has/test", "webfaces-dev"."""
    parts = os.path.normpath(os.path.abspath(folder)).split(os.sep)
    return "/".join(parts[-2:]) if parts[-1] in SPLITS else parts[-1]


def plot_confusion_matrix(labels, predictions, class_names, data_name, path):
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay
    fig, ax = plt.subplots(figsize=(max(4.5, 1.5 + 1.2 * len(class_names)), 1 + 1.2 * len(class_names)))
    ConfusionMatrixDisplay.from_predictions(labels, predictions, labels=list(range(len(class_names))),
                                            display_labels=class_names, cmap="Blues", ax=ax, colorbar=False)
    ax.set_title(f"Confusion matrix: {data_name} ({len(labels)} faces)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return fig


def plot_reliability(bins, ece, data_name, path):
    """The reliability diagram: accuracy against confidence per bin; a calibrated model follows the diagonal."""
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 5))
    full = [b for b in bins if b["count"]]
    ax.bar([b["low"] for b in full], [b["accuracy"] for b in full], width=1 / len(bins), align="edge",
           edgecolor="navy", color="tab:blue", label="accuracy")
    ax.plot([b["confidence"] for b in full], [b["accuracy"] for b in full], "o", color="tab:orange",
            label="at mean confidence")
    ax.plot([0, 1], [0, 1], "k--", label="calibrated")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="Confidence (top probability)", ylabel="Accuracy",
           title=f"Reliability: {data_name} (ECE {ece:.3f})")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return fig


def plot_training_curves(history, path):
    """Training vs validation loss and accuracy, side by side, as the original."""
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for ax, key in zip(axes, ("loss", "accuracy")):
        ax.plot(history[key], label=f"Training {key}")
        ax.plot(history[f"val_{key}"], label=f"Validation {key}")
        ax.set_xlabel("Epoch")
        ax.set_title(f"Training and validation {key}")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return fig


def display_available():
    return sys.platform in ("win32", "darwin") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


# -----------------------------------------------------------------------------
# Inference: faces in photos and live video, one label per detected face


def load_face_detector(name=DETECTOR):
    """("mtcnn", MTCNN) or ("haar", OpenCV's cascade); mtcnn is imported here, so other commands never load it."""
    if name == "mtcnn":
        try:
            from mtcnn import MTCNN
        except ImportError:
            raise UserError("the mtcnn face detector is not installed; run 'pip install -r requirements.txt' "
                            "or use --detector haar") from None
        mtcnn = MTCNN()
        # mtcnn 1.0 runs its three networks eagerly, op by op; as tf.functions (traced once per input shape,
        # then generalised) they give the same boxes for half the CPU: 93 -> 43 ms per 480x360 photo.
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


def message_for(emotion):
    """The short message shown under a face: its emotion's own, or the "unknown" line for other classes."""
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


def layout_labels(faces, shape):
    """Where each face's label and message go: [(text, colour, (x, y) origin, scale, thickness, (x0, y0, x1, y1))].

    Every label lies inside the picture and covers no other label and no other face: it goes above its box,
    else below, else is pushed down to the first free place. A message with no legible free place is left out.
    """
    height, width = shape[:2]
    thickness = max(1, round(max(shape[:2]) / 400))
    font_scale = max(0.4, max(shape[:2]) / 1000)
    placed = []
    boxes = [(x, y, x + w, y + h) for x, y, w, h in (face["box"] for face in faces)]

    def place(text, colour, scale, weight, x, candidates, own):
        scale, (w, h, base) = fit_text(text, scale, weight, width - 2)
        if h + base + 2 > height or scale < 0.25:
            return
        x = min(max(0, x), width - w - 1)
        for y in [*candidates, *range(0, height, max(2, h // 2))]:  # y: the top of the label's rectangle
            y = min(max(0, y), height - h - base - 2)
            rect = (x, y, x + w + 1, y + h + base + 2)
            others = [r for *_, r in placed] + [b for i, b in enumerate(boxes) if i != own]  # no other face covered
            if not any(r[0] < rect[2] and rect[0] < r[2] and r[1] < rect[3] and rect[1] < r[3] for r in others):
                placed.append((text, colour, (x + 1, y + h + 1), scale, weight, rect))
                return

    for i, face in enumerate(faces):
        x, y, w, h = face["box"]
        label = f"{face['emotion']} {face['confidence']:.0%}"
        lh = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)[0][1] + 8
        place(label, (0, 255, 0), font_scale, thickness, x, [y - lh, y + h + 2, y + 2], i)
        message = message_for(face["emotion"])
        place(message, (255, 255, 255), font_scale * 0.7, max(1, thickness - 1), x,
              [y + h + 2, y + h + lh, y + 2 + lh], i)
    return placed


def annotate(image, faces):
    """A BGR copy of an RGB image with a box, label, confidence and message drawn for each face."""
    canvas = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    thickness = max(1, round(max(image.shape[:2]) / 400))
    for face in faces:
        x, y, w, h = face["box"]
        cv2.rectangle(canvas, (x, y), (x + w, y + h), (0, 200, 0), thickness)
    for text, colour, origin, scale, weight, (x0, y0, x1, y1) in layout_labels(faces, image.shape):
        cv2.rectangle(canvas, (x0, y0), (x1 - 1, y1 - 1), (0, 0, 0), -1)  # a dark backing: legible on any photo
        cv2.putText(canvas, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, weight)
    return canvas


def expand_paths(paths):
    """Image files named directly or found (recursively) in folders; errors per path that yields nothing."""
    files, errors = [], []
    for path in paths:
        if os.path.isdir(path):
            found = sorted(os.path.join(root, f) for root, _, names in os.walk(path) for f in names
                           if f.lower().endswith(IMAGE_EXTENSIONS))
            files += found
            if not found:
                errors.append(f"{path}: folder holds no images ({', '.join(IMAGE_EXTENSIONS)})")
        elif os.path.isfile(path):
            files.append(path)
        else:
            errors.append(f"{path}: no such file or folder")
    return files, errors


def match_tracks(tracks, boxes):
    """Pair each box with the previous frame's track it overlaps most (IoU > 0.3), else a new track."""
    def iou(a, b):
        ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
        iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
        inter = ix * iy
        return inter / (a[2] * a[3] + b[2] * b[3] - inter)
    matched, free = [], list(tracks)
    for box in boxes:
        best = max(free, key=lambda t: iou(t["box"], box), default=None)
        if best is not None and iou(best["box"], box) > 0.3:
            free.remove(best)
            best["box"] = box
            matched.append(best)
        else:
            matched.append({"box": box, "history": []})
    return matched


def smooth_faces(tracks, faces, class_names):
    """Average each face's probabilities over its track's last SMOOTH_FRAMES frames, so labels do not flicker."""
    for track, face in zip(tracks, faces):
        track["history"] = (track["history"] + [[face["probabilities"][n] for n in class_names]])[-SMOOTH_FRAMES:]
        mean = np.mean(track["history"], axis=0)
        face.update(emotion=class_names[mean.argmax()], confidence=round(float(mean.max()), 4),
                    probabilities={n: round(float(v), 4) for n, v in zip(class_names, mean)})
    return faces


def run_video(model, metadata, source, display=True, output=None, max_frames=None, tta=TTA, detector=DETECTOR):
    """Label every face of every frame from a camera index or video file; returns (frames, faces, seconds).

    The detector runs on every VIDEO_DETECT_EVERY-th frame; in between, each face keeps its box and is
    classified again, so the labels follow the face's expression at the camera's pace.
    """
    capture = cv2.VideoCapture(int(source) if str(source).isdigit() else source)
    if not capture.isOpened():
        raise UserError(f"cannot open video source {source!r}: no camera with that index, or not a readable "
                        "video file")
    detector, writer, tracks = load_face_detector(detector), None, []
    frames = faces_seen = 0
    expected = 0 if str(source).isdigit() else int(capture.get(cv2.CAP_PROP_FRAME_COUNT))  # the file's own count
    fps, start = 0.0, time.perf_counter()
    try:
        while max_frames is None or frames < max_frames:
            ok, frame = capture.read()
            if not ok:
                if frames < expected:  # the file promised more: damaged or cut short
                    print(f"Warning: {source} ended after {frames} of its {expected} frames; the file may be damaged")
                break
            tick = time.perf_counter()
            rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            if frames % VIDEO_DETECT_EVERY == 0:
                found = detect_faces(detector, rgb, max_side=VIDEO_DETECT_WIDTH * max(rgb.shape[:2]) // rgb.shape[1])
                tracks = match_tracks(tracks, [f["box"] for f in found])
                for track, face in zip(tracks, found):
                    track["eyes"] = face["eyes"]
            faces = [{"box": t["box"], "detected": True, **f} for t, f in
                     zip(tracks, classify_crops(model, metadata, [crop_face(rgb, t) for t in tracks], tta))]
            faces = smooth_faces(tracks, faces, metadata["class_names"])
            canvas = annotate(rgb, faces)
            rate = 1 / max(time.perf_counter() - tick, 1e-6)
            fps = 0.9 * fps + 0.1 * rate if frames else rate
            cv2.putText(canvas, f"{fps:.0f} FPS", (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 255, 255), 2)
            if output and writer is None:
                writer = cv2.VideoWriter(output, cv2.VideoWriter_fourcc(*"mp4v"),
                                         capture.get(cv2.CAP_PROP_FPS) or 30, canvas.shape[1::-1])
                if not writer.isOpened():
                    raise UserError(f"cannot write video {output!r}; use a .mp4 or .avi name in a writable folder")
            if writer is not None:
                writer.write(canvas)
            frames, faces_seen = frames + 1, faces_seen + len(faces)
            if display:
                try:
                    cv2.imshow("Emotion recognition (q to quit)", canvas)
                    if cv2.waitKey(1) & 0xFF == ord("q"):
                        break
                except cv2.error:  # headless OpenCV build or no screen: keep going without a window
                    print("Warning: cannot open a window here; continuing without display")
                    display = False
    finally:
        capture.release()
        if writer is not None:
            writer.release()
        if display:
            cv2.destroyAllWindows()
    return frames, faces_seen, time.perf_counter() - start


# -----------------------------------------------------------------------------
# Data preparation: FER2013 (CSV or image folders) or any folder of classes -> HASsplittedDS


def canonical_class(name):
    """'Anger' -> 'angry', 'SADNESS' -> 'sad': case-insensitive, common synonyms (CK+, AffectNet folder names)."""
    name = name.strip().lower()
    return CLASS_SYNONYMS.get(name, name)


def read_fer2013_csv(path, classes):
    """Rows of FER2013's CSV as (split, class, 48x48 uint8 image); every problem names its line."""
    try:
        rows = read_fer2013_rows(path, classes)
    except (UnicodeDecodeError, csv.Error) as error:  # a binary file, an archive, a NUL byte
        raise UserError(f"{path}: not a FER2013 CSV text file ({type(error).__name__}); give fer2013.csv itself, "
                        "unpacked") from None
    found = {name for _, name, _ in rows}
    absent = [c for c in classes if c not in found]
    if absent:
        raise UserError(f"{path}: no rows of class(es) {absent}; choose others with --classes")
    usage = {split: name for name, split in FER2013_USAGE.items()}
    empty = [f"{split} ({usage[split]})" for split in SPLITS if not any(s == split for s, _, _ in rows)]
    if len(empty) == len(SPLITS) - 1:  # only Training rows: nothing to validate or test on
        raise UserError(f"{path}: only Training rows, none for {' or '.join(empty)}; FER2013's CSV has Training, "
                        "PublicTest and PrivateTest rows")
    for split in empty:
        print(f"Warning: {path} has no rows for {split}; that split stays empty")
    return rows


def read_fer2013_rows(path, classes):
    """The rows of the classes asked for, checked line by line."""
    with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: a byte-order mark (Excel's UTF-8 CSV) is dropped
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        if not {"emotion", "pixels", "Usage"} <= set(header):
            raise UserError(f"{path}: expected FER2013's columns emotion,pixels,Usage; found {','.join(header)}")
        col = {name: header.index(name) for name in ("emotion", "pixels", "Usage")}
        rows = []
        for line, row in enumerate(reader, start=2):
            try:
                code, pixels, usage = int(row[col["emotion"]]), row[col["pixels"]].split(), row[col["Usage"]].strip()
                image = np.array(pixels, dtype=np.float64)
            except (IndexError, ValueError):
                raise UserError(f"{path}, line {line}: unreadable row (expected an emotion code, "
                                "2304 pixel values and a Usage)") from None
            if not 0 <= code < len(FER2013_CODES) or usage not in FER2013_USAGE or image.size != 48 * 48 \
                    or not np.isfinite(image).all() or image.min() < 0 or image.max() > 255:
                raise UserError(f"{path}, line {line}: emotion {code}, {image.size} pixels, Usage {usage!r}; "
                                f"expected 0-6, 2304 values in 0-255, one of {', '.join(FER2013_USAGE)}")
            if FER2013_CODES[code] in classes:
                rows.append((FER2013_USAGE[usage], FER2013_CODES[code], image.reshape(48, 48).astype(np.uint8)))
    return rows


def class_folders(folder):
    """{canonical class name: folder path} of a folder's sub-folders; two folders for one class is an error."""
    folders = {}
    for name in list_class_names(folder):
        same = folders.setdefault(canonical_class(name), os.path.join(folder, name))
        if same != os.path.join(folder, name):
            raise UserError(f"{same!r} and {os.path.join(folder, name)!r} both mean {canonical_class(name)!r}; "
                            "merge them into one folder")
    return folders


def split_files(files, ratios, rng):
    """Shuffle one class's files and cut them into consecutive parts by ratio (the last takes the rest)."""
    files = list(rng.permutation(sorted(files)))
    bounds = np.cumsum([round(r * len(files)) for r in ratios[:-1]])
    return np.split(np.array(files, dtype=object), bounds)


def group_of(path, pattern):
    """The group a file belongs to: the start of its name that `pattern` matches, else the file itself."""
    match = re.match(pattern, os.path.basename(path)) if pattern != "none" else None
    return match.group(0) if match else path


def split_by_group(files, labels, groups, seed):
    """(train, val, test) parts of `files`, stratified by label, every group within one part (scikit-learn's
    StratifiedGroupKFold: a tenth of the groups' files is test, another tenth val, as SPLIT_RATIOS)."""
    from sklearn.model_selection import StratifiedGroupKFold
    folds = round(1 / SPLIT_RATIOS[2])
    try:
        parts = [test for _, test in StratifiedGroupKFold(folds, shuffle=True, random_state=seed).split(
            files, labels, groups)]
    except ValueError:
        raise UserError(f"only {len(set(groups))} groups of files by --group-pattern, too few for {folds} "
                        "parts; pass another --group-pattern, or --group-pattern none") from None
    val_folds = round(SPLIT_RATIOS[1] * folds)
    indices = (np.concatenate(parts[1 + val_folds:]), np.concatenate(parts[1:1 + val_folds]), parts[0])
    return [[files[i] for i in part] for part in indices]


def plan_folder_copies(source, classes, seed, group_pattern=GROUP_PATTERN):
    """[(split, class, source file)] for an image-folder source, split by seed and stratified by class; files
    of one group (group_of) stay in one split. FER2013's release: its padding copies of disgust are left out."""
    rng = np.random.default_rng(seed)
    released = os.path.isdir(os.path.join(source, "train")) and os.path.isdir(os.path.join(source, "test"))
    parts = {"train": class_folders(os.path.join(source, "train")),
             "test": class_folders(os.path.join(source, "test"))} if released else {"": class_folders(source)}
    # FER2013's release: the original's three classes by default; a folder of the user's own: all of them
    classes = classes or (list(ORIGINAL_CLASSES) if released else sorted(parts[""]))
    for part, folders in parts.items():
        missing = [c for c in classes if c not in folders]
        if missing:
            raise UserError(f"class(es) {missing} not found in {os.path.join(source, part)!r}; "
                            f"it has {sorted(folders)} (choose with --classes)")
    plan = []
    if released:  # FER2013's image release: train stays, its test is halved into val and test
        for name in classes:
            plan += [("train", name, f) for f in list_image_files(parts["train"][name])
                     if not re.search(RELEASE_PADDING, f)]
            val, test = split_files(list_image_files(parts["test"][name]), (0.5, 0.5), rng)
            plan += [("val", name, f) for f in val] + [("test", name, f) for f in test]
        return plan, classes
    files = [(name, f) for name in classes for f in list_image_files(parts[""][name])]
    groups = [group_of(f, group_pattern) for _, f in files]
    if len(set(groups)) == len(files):
        for name in classes:
            for split, part in zip(SPLITS, split_files(list_image_files(parts[""][name]), SPLIT_RATIOS, rng)):
                plan += [(split, name, f) for f in part]
        return plan, classes
    print(f"{len(files)} files in {len(set(groups))} groups by --group-pattern {group_pattern!r}: "
          "each group goes to one split")
    for split, part in zip(SPLITS, split_by_group(files, [name for name, _ in files], groups, seed)):
        plan += [(split, name, f) for name, f in part]
    return plan, classes


def prepare_dataset(source, out, classes=None, seed=SEED, force=False, crop_faces=False, detector=DETECTOR,
                    group_pattern=GROUP_PATTERN):
    """Write out/{train,val,test}/<class>/ from a FER2013 CSV, its image release, or a folder of classes.

    crop_faces: keep only the largest face `detector` finds in each photo, cut as predict cuts faces.

    Copies only (the source is never changed). Returns {(split, class): count} and the skipped files.
    """
    if not os.path.exists(source):
        raise UserError(f"source {source!r} does not exist; give fer2013.csv or a folder of class folders")
    real_out, real_source = os.path.realpath(out), os.path.realpath(source)
    if real_out == real_source or real_out.startswith(real_source.rstrip(os.sep) + os.sep):
        raise UserError(f"--out {out!r} lies inside the source; choose a folder outside it")
    if real_source.startswith(real_out.rstrip(os.sep) + os.sep):  # --force would delete the source with out's splits
        raise UserError(f"the source {source!r} lies inside --out {out!r}; choose an --out folder outside it")
    if os.path.exists(out) and not os.path.isdir(out):
        raise UserError(f"--out {out!r} is a file; give a folder")
    # the layout notes shipped in HASsplittedDS/ (README.md) and hidden files do not count as contents
    if os.path.isdir(out) and [n for n in os.listdir(out) if n != "README.md" and not n.startswith(".")] \
            and not force:
        raise UserError(f"{out!r} is not empty; pass --force to write into it (its split folders are replaced)")
    classes = [canonical_class(c) for c in classes] if classes else None
    if os.path.isfile(source):
        classes = classes or list(ORIGINAL_CLASSES)
        unknown = [c for c in classes if c not in FER2013_CODES]
        if unknown:
            raise UserError(f"class(es) {unknown} are not in FER2013; it has {', '.join(FER2013_CODES)}")
        items = read_fer2013_csv(source, classes)
    else:
        items, classes = plan_folder_copies(source, classes, seed, group_pattern)
    try:
        for split in SPLITS:
            if os.path.isdir(os.path.join(out, split)):
                shutil.rmtree(os.path.join(out, split))
            for name in classes:
                os.makedirs(os.path.join(out, split, name))
    except OSError as error:
        raise UserError(f"cannot write into --out {out!r} ({error.strerror}); choose a writable folder") from None
    detector = load_face_detector(detector) if crop_faces else None
    counts, skipped = {(s, c): 0 for s in SPLITS for c in classes}, []
    print(f"Writing {len(items)} images to {out}/")  # no Keras progress bar: prepare runs without TensorFlow
    for i, (split, name, item) in enumerate(items):
        target = os.path.join(out, split, name)
        if isinstance(item, np.ndarray):  # a decoded CSV row
            write_image(os.path.join(target, f"{split}_{i:05d}.png"), item)
        elif detector is None:
            copy_file(item, os.path.join(target, os.path.basename(item)))
        else:
            try:
                image = read_image(item)
            except ImageTooLarge as error:
                print(f"Warning: skipped {error}")
                image = None
            found = detect_faces(detector, image) if image is not None else []
            if not found:
                skipped.append(item)
                continue
            face = crop_face(image, max(found, key=lambda f: f["box"][2] * f["box"][3]))
            name_png = os.path.splitext(os.path.basename(item))[0] + ".png"
            write_image(os.path.join(target, name_png), cv2.cvtColor(face, cv2.COLOR_RGB2BGR))
        counts[split, name] += 1
    return counts, skipped


def copy_file(source, target):
    """Copy through write_file: a full disk leaves no half image that looks whole."""
    try:
        with open(source, "rb") as f:
            data = f.read()
    except OSError as error:
        raise UserError(f"cannot read {source!r} ({error.strerror})") from None
    write_file(target, data)


def print_counts(counts):
    """The per-split, per-class table the original printed after splitting."""
    classes = sorted({c for _, c in counts})
    print(f"{'split':<8}" + "".join(f"{c:>10}" for c in classes) + f"{'total':>10}")
    for split in SPLITS:
        row = [counts[split, c] for c in classes]
        print(f"{split:<8}" + "".join(f"{n:>10}" for n in row) + f"{sum(row):>10}")


# -----------------------------------------------------------------------------
# Commands


def check_writable(folder):
    """Fail now, not after an hour of training, when results cannot be written."""
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise UserError(f"cannot write to {folder!r} ({error.strerror}); choose another folder") from None


def report(metrics, labels, source, output_dir, show, history=None):
    """Print, save and plot the evaluation of the faces in folder `source` (and the training curves)."""
    metrics = {**metrics, "data": os.path.abspath(source)}  # which faces a number is about travels with it
    import matplotlib
    if not show:
        matplotlib.use("Agg")  # files only: no window, and no display needed
    import matplotlib.pyplot as plt
    print_metrics(metrics)
    save_metrics(metrics, output_dir)
    try:
        plot_confusion_matrix(labels, metrics["predictions"], metrics["class_names"], data_label(source),
                              os.path.join(output_dir, "confusion_matrix.png"))
        plot_reliability(metrics["calibration_bins"], metrics["expected_calibration_error"], data_label(source),
                         os.path.join(output_dir, "reliability_diagram.png"))
        if history:
            plot_training_curves(history, os.path.join(output_dir, "training_curves.png"))
    except OSError as error:
        raise UserError(f"cannot write the plots to {output_dir!r} ({error.strerror}); free some space") from None
    print(f"Results written to {output_dir}/")
    if show:
        plt.show()
    plt.close("all")


def make_strategy(kind):
    """TensorFlow's MirroredStrategy over every local GPU ("auto" when any is visible), its
    MultiWorkerMirroredStrategy over the machines TF_CONFIG lists, else the default device."""
    if kind == "multiworker":
        if not os.environ.get("TF_CONFIG"):
            raise UserError("--distribute multiworker needs the TF_CONFIG environment variable (the cluster's "
                            "workers and this one's index); see docs/design.md")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if kind == "mirrored" or (kind == "auto" and tf.config.list_physical_devices("GPU")):
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def is_chief(strategy):
    """TensorFlow's convention: the "chief" task, or worker 0 when there is none, writes the results."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or resolver.task_type in (None, "chief"):
        return True
    return (resolver.task_type == "worker" and resolver.task_id == 0
            and "chief" not in resolver.cluster_spec().as_dict())


def run_train(args):
    """The original script's flow: load or train, save, then evaluate on test/."""
    class_names = check_train_options(args)  # before TensorFlow is imported: a wrong path fails at once
    strategy = make_strategy(args.distribute)
    if not is_chief(strategy):
        send_worker_outputs_to_scratch(args, strategy)
    check_writable(args.output_dir)
    check_writable(os.path.dirname(os.path.abspath(args.model_path)))
    keras.utils.set_random_seed(args.seed)
    # all workers of a cluster must take part in training, whatever files each of them holds
    trained = (args.train_again or args.resume or args.distribute == "multiworker"
               or not os.path.exists(args.model_path))
    if trained:
        image = choose_input(args, class_names)
    else:
        model, metadata = load_trained_model(args.model_path)
        check_model_matches(metadata, model, class_names, args.model_path, args.image_size, args.color)
        metadata.setdefault("class_names", class_names)  # a model from the original script: the data's classes
        if metadata["class_names"] != class_names:
            print(f"The model knows {','.join(metadata['class_names'])}: its answers are restricted to the data's "
                  f"classes {','.join(class_names)}")
        model, metadata = answering_model(model, metadata, class_names)
        print(f"Model loaded from {args.model_path} (train_again is False, so no training)")
        image = {key: metadata[key] for key in ("image_size", "color", "normalize")}
    settings = {**vars(args), **image, "class_names": class_names, "trained": trained}
    print("Settings: " + ", ".join(f"{k}={v}" for k, v in settings.items() if k != "command"))
    splits = load_splits(args.data, class_names, image, SPLITS if trained else ("test",),
                         os.path.join(args.output_dir, "cache"))
    history = None
    if trained:
        model, history = train_new_model(args, strategy, splits, class_names, image)
    write_file(os.path.join(args.output_dir, "config.json"), json.dumps(settings, indent=2))
    images, labels, _ = splits["test"]
    metrics = evaluate_model(model, images, labels, class_names, args.batch_size, args.tta)
    report(metrics, labels, os.path.join(args.data, "test"), args.output_dir, args.show, history)


def check_train_options(args):
    """Refuse option combinations that cannot work, and check the data set's layout: returns its classes."""
    # --mixed-precision: Keras' LossScaleOptimizer fails under MultiWorkerMirroredStrategy (docs/design.md)
    single_machine = [flag for flag, on in (("--resume", args.resume), ("--cache-features", args.cache_features),
                                            ("--mixed-precision", args.mixed_precision)) if on]
    if args.distribute == "multiworker" and single_machine:
        raise UserError(f"{single_machine[0]} does not work with --distribute multiworker; leave one of them out")
    if args.cache_features and args.model != "vgg16":
        raise UserError("--cache-features needs a frozen base: use it with --model vgg16")
    return check_dataset_layout(args.data)


def send_worker_outputs_to_scratch(args, strategy):
    """Every worker trains; only the chief's model file and results are kept, the others go to a temp folder."""
    scratch = tempfile.mkdtemp(prefix="emotion-worker-")
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)  # nothing of it is wanted afterwards
    args.model_path, args.output_dir, args.show = os.path.join(scratch, MODEL_PATH), scratch, False
    print(f"Worker {strategy.cluster_resolver.task_id}: the chief keeps the results; this worker's go to {scratch}")


def choose_input(args, class_names):
    """The new model's input: size and colour ("auto" resolved from the data) and the contrast normalisation."""
    image_size, color = choose_image_settings(args.data, class_names, args.image_size, args.color,
                                              min_image_size(args.model))
    if image_size < min_image_size(args.model):
        raise UserError(f"--image-size {image_size} is too small for --model {args.model}; "
                        f"use at least {min_image_size(args.model)}")
    return {"image_size": image_size, "color": color, "normalize": args.normalize}


def load_splits(data_dir, class_names, image, splits, cache_dir):
    """Decode the splits once, through the one preprocessing path; every class must keep a readable image."""
    loaded = {split: load_folder(os.path.join(data_dir, split), class_names, image["image_size"], image["color"],
                                 image["normalize"], cache_dir) for split in splits}
    for split, (_, labels, _) in loaded.items():
        per_class = np.bincount(labels, minlength=len(class_names))
        print(f"Found {len(labels)} {split} images ({', '.join(f'{n} {c}' for c, n in zip(class_names, per_class))})")
        empty = [name for name, n in zip(class_names, per_class) if n == 0]
        if empty:
            raise UserError(f"class folder {os.path.join(data_dir, split, empty[0])!r} holds no readable images")
    return loaded


def train_new_model(args, strategy, splits, class_names, image):
    """Build (or start from --initial-model), make the data, fit and save: returns (model, history)."""
    if args.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    num_classes, train_labels = len(class_names), splits["train"][1]
    steps_per_epoch = math.ceil(len(train_labels) / args.batch_size)
    learning_rate = make_learning_rate(args.learning_rate, args.lr_schedule, args.epochs, steps_per_epoch)
    input_shape = (image["image_size"], image["image_size"], 1 if image["color"] == "grayscale" else 3)
    with strategy.scope():
        model = build_model(args.model, input_shape, num_classes, learning_rate, args.base_weights,
                            args.label_smoothing, args.weight_decay)
        if args.initial_model:
            start_from(model, args.initial_model)
    metadata = {"class_names": class_names, **image, "model": args.model, "trained_on": data_label(args.data),
                "created": datetime.datetime.now().isoformat(timespec="seconds")}
    augment = make_augmentation(args.augment)
    start = time.perf_counter()
    if args.cache_features:
        head, train_ds, val_ds = make_feature_data(model, strategy, splits, num_classes, augment, args)
        print(f"Features ready in {time.perf_counter() - start:.0f} s; training the head on them")
    else:
        head = None
        train_ds = make_dataset(*splits["train"][:2], num_classes, args.batch_size, shuffle=True, augment=augment,
                                seed=args.seed, drop_remainder=args.distribute == "multiworker")  # no empty shares
        val_ds = make_dataset(*splits["val"][:2], num_classes, args.batch_size)
    history = train_model(
        model, train_ds, val_ds, epochs=args.epochs, model_path=args.model_path, output_dir=args.output_dir,
        metadata=metadata, reduce_on_plateau=args.lr_schedule == "plateau", resume=args.resume,
        patience=args.patience, head=head, steps_per_epoch=steps_per_epoch if head is not None else None,
        class_weight=balanced_class_weights(train_labels, num_classes) if args.class_weight == "balanced" else None)
    print(f"Trained {len(history['loss'])} epochs in {time.perf_counter() - start:.0f} s; "
          f"model saved to {args.model_path}")
    if args.distribute == "multiworker":  # a local copy: the distributed model needs every worker to predict
        model, _ = load_trained_model(args.model_path)
    metadata["temperature"] = calibrate_model(model, metadata, *splits["val"][:2], args.model_path)
    return answering_model(model, metadata)[0], history


def calibrate_model(model, metadata, images, labels, path):
    """Temperature scaling fitted on val and stored with the model, so every command's confidences use it."""
    probabilities = predict_probabilities(model, images)
    temperature = fit_temperature(probabilities, labels)
    calibrated = answering_model(model, {**metadata, "temperature": temperature})[0]
    before, after = (calibration_bins(p, labels)[1] for p in (probabilities, predict_probabilities(calibrated, images)))
    save_model(model, path, {**metadata, "temperature": temperature})
    print(f"Calibrated on val: temperature {temperature} (expected calibration error {before:.4f} -> {after:.4f})")
    return temperature


def make_feature_data(model, strategy, splits, num_classes, augment, args):
    """--cache-features: (head, train, val) where the data are the frozen base's outputs, computed once."""
    with strategy.scope():
        features, head = split_frozen_base(model)
        head.compile(optimizer=model.optimizer, loss=model.loss, metrics=["accuracy"])
    cache_dir = os.path.join(args.output_dir, "cache")
    train_ds = make_feature_dataset(
        extract_features(features, *splits["train"][:2], num_classes, INFERENCE_BATCH_SIZE, augment, FEATURE_VIEWS,
                         cache_dir), splits["train"][1], num_classes, args.batch_size, shuffle=True, seed=args.seed)
    val_ds = make_feature_dataset(extract_features(features, *splits["val"][:2], num_classes, INFERENCE_BATCH_SIZE),
                                  splits["val"][1], num_classes, args.batch_size)
    return head, train_ds, val_ds


def run_evaluate(args):
    """Evaluate the saved model on any folder of <class>/ sub-folders (a subset of the model's classes)."""
    model, metadata = load_trained_model(args.model_path)
    folder_classes = list_class_names(args.folder)
    metadata.setdefault("class_names", folder_classes)  # a model from the original script stores none
    model, metadata = answering_model(model, metadata, args.classes)
    class_names = metadata["class_names"]
    unknown = sorted(set(folder_classes) - set(class_names))
    if unknown:
        raise UserError(f"{args.folder!r} has classes {unknown} that the model's answers "
                        f"({','.join(class_names)}) lack; pass --classes to match the folder, or another folder")
    check_writable(args.output_dir)
    images, labels, _ = load_folder(args.folder, class_names, metadata["image_size"], metadata["color"],
                                    metadata["normalize"],
                                    os.path.join(args.output_dir, "cache"))
    if len(labels) == 0:
        raise UserError(f"no readable images under {args.folder!r}/<class>/")
    print(f"Evaluating {args.model_path} on {len(labels)} images from {args.folder}")
    metrics = evaluate_model(model, images, labels, class_names, args.batch_size, args.tta)
    report(metrics, labels, args.folder, args.output_dir, args.show)


def class_names_of(model, metadata):
    """Class names saved with the model; a model from the original script has none, so say so."""
    if "class_names" not in metadata:
        metadata["class_names"] = [f"class_{i}" for i in range(model.output_shape[-1])]
        print("Warning: the model file stores no class names; labels are shown as class_0, class_1, ...")
    return metadata["class_names"]


def run_predict(args):
    """Label every face in the given images/folders; table or JSON lines; annotated copies with --save."""
    files, errors = expand_paths(args.paths)
    model, metadata = answering_model(*load_trained_model(args.model_path), args.classes)
    detector = None if args.no_detect else load_face_detector(args.detector)
    if args.save:
        check_writable(args.save)
    chunk, saved = 64, set()  # images per batch of face crops; names written to --save
    inputs = {os.path.realpath(f) for f in files}  # --save never writes over one of them
    for start in range(0, len(files), chunk):
        paths, images = [], []
        for path in files[start:start + chunk]:
            try:
                image = read_image(path)
            except ImageTooLarge as error:
                errors.append(str(error))
                continue
            if image is None:
                errors.append(f"{path}: not a readable image")
            else:
                paths.append(path)
                images.append(image)
        for path, image, faces in zip(paths, images, predict_images(model, metadata, images, detector, args.tta)):
            if not all(math.isfinite(p) for face in faces for p in face["probabilities"].values()):
                errors.append(f"{path}: the model gave no valid probabilities (NaN); retrain it with --train-again")
                continue
            if args.json:
                print(json.dumps({"image": path, "detection": detection_of(faces), "faces": faces}))
            else:
                if not faces:
                    print(f"{path}: no face found, so no emotion")
                for face in faces:
                    where = f"face at {face['box']}" if face["detected"] else "whole image (a face crop)"
                    probs = " ".join(f"{n}={p:.2f}" for n, p in face["probabilities"].items())
                    print(f"{path}: {where}: {face['emotion']} ({face['confidence']:.0%})  {probs}")
            if args.save:  # a.jpg -> a_annotated.png; a second a.* (another folder or format) -> a_2_annotated.png
                stem, copy = os.path.splitext(os.path.basename(path))[0], 1
                name = f"{stem}_annotated.png"
                while name in saved or os.path.realpath(os.path.join(args.save, name)) in inputs:
                    copy += 1
                    name = f"{stem}_{copy}_annotated.png"
                saved.add(name)
                write_image(os.path.join(args.save, name), annotate(image, faces))
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    if errors:
        raise SystemExit(1)


def run_prepare(args):
    counts, skipped = prepare_dataset(args.source, args.out, args.classes, args.seed, args.force, args.crop_faces,
                                      args.detector, args.group_pattern)
    if skipped:
        print(f"Skipped {len(skipped)} image(s) with no detectable face: " + ", ".join(skipped[:10])
              + (" ..." if len(skipped) > 10 else ""))
    print_counts(counts)
    print(f"Data set written to {args.out}/ (train with: python emotion_recognition.py --data {args.out} --train-again)")


def run_webcam(args):
    model, metadata = answering_model(*load_trained_model(args.model_path), args.classes)
    if args.output:
        if os.path.exists(args.output) and os.path.exists(args.source) and os.path.samefile(args.output, args.source):
            raise UserError(f"--output {args.output!r} is the --source video; choose another name")
        check_writable(os.path.dirname(os.path.abspath(args.output)))
    frames, faces, seconds = run_video(model, metadata, args.source, args.display, args.output, args.max_frames,
                                       args.tta, args.detector)
    print(f"Processed {frames} frames, {faces} faces, {frames / max(seconds, 1e-9):.1f} FPS on average"
          + (f"; annotated video written to {args.output}" if args.output else ""))


# -----------------------------------------------------------------------------
# Command line


def make_serve_app(model_path, tta=TTA, max_upload_mb=MAX_UPLOAD_MB, detector=DETECTOR, classes=None):
    """The web app of web/server.py, handed this script's prediction code (web/ imports nothing from here)."""
    from web.server import BadUpload, create_app  # Flask: only this command needs it
    model, metadata = answering_model(*load_trained_model(model_path), classes)
    class_names = metadata["class_names"]
    detector = load_face_detector(detector)
    # the server runs SERVE_THREADS threads; one Keras model and one face detector, so one prediction at a time,
    # and a large photo (decoded: 3 bytes a pixel, plus copies) is handled whole before the next large one
    predict_lock, large_lock = threading.Lock(), threading.Lock()

    def predict_upload(data, name):
        array = np.frombuffer(data, np.uint8)
        size = image_dimensions(array)
        large = size is not None and SERVE_LARGE_PIXELS < size[0] * size[1] <= MAX_IMAGE_PIXELS
        if large and not large_lock.acquire(timeout=SERVE_LARGE_WAIT):
            raise BadUpload(f"{name}: the server is busy with another large photo; try again shortly", 503)
        try:
            try:
                image = decode_image(array, name)
            except ImageTooLarge as error:
                raise BadUpload(str(error), 413) from None
            if image is None:
                raise BadUpload(f"{name} is not a readable image; upload a JPEG, PNG, BMP, TIFF or WebP photo")
            scale = min(1.0, SERVE_WORK_SIDE / max(image.shape[:2]))
            if scale < 1:
                image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            with predict_lock:
                (faces,) = predict_images(model, metadata, [image], detector, tta)
            annotated = annotate(image, faces)
            for face in faces:
                face["message"] = message_for(face["emotion"])
                face["box"] = [int(round(v / scale)) for v in face["box"]]  # in the uploaded photo's pixels
            return faces, detection_of(faces), annotated
        finally:
            if large:
                large_lock.release()

    health = {"status": "ok", "model": model_path, "classes": class_names, "max_upload_mb": max_upload_mb}
    return create_app(predict_upload, health, max_upload_mb)


def run_serve(args):
    """The upload/camera web page and JSON API (web/server.py) on waitress, on the same code as `predict`."""
    from web.server import serve_app
    app = make_serve_app(args.model_path, args.tta, detector=args.detector, classes=args.classes)
    try:  # the request body limit sits above MAX_UPLOAD_MB so that Flask answers it, in JSON
        serve_app(app, args.host, args.port, SERVE_THREADS, SERVE_IDLE_TIMEOUT, (MAX_UPLOAD_MB + 1) * 2**20,
                  SERVE_CONNECTION_LIMIT, args.model_path)
    except OSError as error:
        raise UserError(f"cannot listen on {args.host}:{args.port} ({error.strerror}); choose another --port "
                        "or stop the program using it") from None


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def regex_arg(text):
    try:
        return text if text == "none" else re.compile(text).pattern
    except re.error as error:
        raise argparse.ArgumentTypeError(f"not a regular expression ({error})") from None


def class_list(text):
    """--classes: comma-separated class names, each once."""
    names = [name.strip() for name in text.split(",")]
    if not all(names) or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"expected distinct comma-separated class names, got {text!r}")
    return names


def model_file_arg(text):
    if not text.endswith((".h5", ".hdf5")):  # as Keras' load_model: "M.H5" would be saved, then refused on load
        raise argparse.ArgumentTypeError(f"expected a .h5 file (Keras' HDF5 format, as the original), got {text!r}")
    return text


def image_size_arg(text):
    return text if text == "auto" else positive_int(text)


def positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a finite number above 0, got {value}")
    return value


def int_in_range(low, high):
    """An argparse type: a whole number from low to high (inclusive)."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low} to {high}, got {value}")
        return value
    return parse


def float_in_range(low, high, high_included=True):
    """An argparse type: a number from low to high (NaN and infinities refused)."""
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not (low <= value <= high if high_included else low <= value < high):
            excluded = "" if high_included else " (excluded)"
            raise argparse.ArgumentTypeError(f"must be from {low:g} to {high:g}{excluded}, got {value}")
        return value
    return parse


SEED_ARG = int_in_range(0, 2**32 - 1)  # NumPy's and Keras' seed range


def check_utf8_options(args):
    """Refuse option values that are not valid UTF-8 (undecodable bytes in a file name, kept by Python as
    surrogates): OpenCV's VideoCapture, VideoWriter and imwrite crash on them. predict's PATHs (and the
    files found in folders) are read and written by Python, so they work and are not checked."""
    for name, value in vars(args).items():
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise UserError(f"{'--' + name.replace('_', '-') if name != 'folder' else 'FOLDER'} {value!r} is "
                                "not valid UTF-8; rename the file or folder") from None


def make_parser():
    parser = argparse.ArgumentParser(
        description="Facial emotion recognition. With no command, runs 'train' (the original script: "
                    "train or load, then evaluate on test/).",
        epilog="Each command's options, with their defaults: python emotion_recognition.py COMMAND --help "
               "(e.g. train --help).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    model_options = argparse.ArgumentParser(add_help=False)  # shared by every command that loads a model, serve too
    model_options.add_argument("--model-path", type=model_file_arg, default=MODEL_PATH, help="trained model file (.h5)")
    model_options.add_argument("--tta", action=argparse.BooleanOptionalAction, default=TTA,
                               help="average predictions with the horizontally flipped image")
    classes_option = argparse.ArgumentParser(add_help=False)  # every command that answers with the model's classes
    classes_option.add_argument("--classes", type=class_list, metavar="A,B,...",
                                help="answer over these of the model's classes only (probabilities renormalised "
                                     "over them), e.g. angry,happy,sad; default: all of them")
    detector_option = argparse.ArgumentParser(add_help=False)  # every command that finds faces
    detector_option.add_argument("--detector", default=DETECTOR, choices=DETECTORS,
                                 help="face detector: a CNN whose weights come in its pip package, or OpenCV's Haar "
                                      "cascade, as the original")
    common = argparse.ArgumentParser(add_help=False, parents=[model_options],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    common.add_argument("--output-dir", default=OUTPUT_DIR, help="folder for metrics, reports and plots")
    common.add_argument("--batch-size", type=positive_int, default=BATCH_SIZE, help="images per batch")
    common.add_argument("--no-show", dest="show", action="store_false",
                        help="never open plot windows (plots are always saved as PNG)")

    train = commands.add_parser("train", parents=[common], formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                help="train (or load) a model, then evaluate it on test/ (the default)")
    train.add_argument("--data", default=DATA_DIR, help="data set folder with train/, val/, test/")
    train.add_argument("--model", default=MODEL, choices=MODELS, help="architecture")
    train.add_argument("--train-again", action="store_true", default=train_again,
                       help="train even when --model-path exists")
    train.add_argument("--epochs", type=positive_int, default=EPOCHS, help="maximum training epochs")
    train.add_argument("--learning-rate", type=positive_float, default=LEARNING_RATE, help="Adam learning rate")
    train.add_argument("--image-size", type=image_size_arg, default=IMAGE_SIZE, help="'auto' or a side in pixels")
    train.add_argument("--color", default=COLOR, choices=("auto", "grayscale", "rgb"), help="input colour")
    train.add_argument("--normalize", default=NORMALIZE, choices=("equalize", "none"),
                       help="contrast normalisation of every face, stored with the model")
    train.add_argument("--base-weights", "--vgg-weights", dest="base_weights", default=BASE_WEIGHTS,
                       help="the ImageNet base of --model vgg16, resnet, mobilenet or efficientnet: 'imagenet', "
                            "'none' (train from scratch), or a local notop .h5 file")
    train.add_argument("--seed", type=SEED_ARG, default=SEED, help="random seed (0 to 2**32-1)")
    train.add_argument("--initial-model", type=model_file_arg,
                       help="fine-tune: start from this trained model's weights (e.g. the shipped model)")
    train.add_argument("--resume", action="store_true",
                       help="continue an interrupted training run from its last finished epoch (implies --train-again)")
    train.add_argument("--augment", default=AUGMENT, choices=("original", "camera", "light", "none"),
                       help="training augmentation strength")
    train.add_argument("--patience", type=positive_int, default=EARLY_STOPPING_PATIENCE,
                       help="EarlyStopping: epochs without val_loss improvement")
    train.add_argument("--lr-schedule", default=LR_SCHEDULE, choices=("plateau", "cosine"),
                       help="learning-rate schedule")
    train.add_argument("--label-smoothing", type=float_in_range(0, 1, high_included=False), default=LABEL_SMOOTHING,
                       help="label smoothing (0 to 1, 1 excluded)")
    train.add_argument("--weight-decay", type=float_in_range(0, math.inf, high_included=False), default=WEIGHT_DECAY,
                       help="AdamW decoupled weight decay; 0 uses plain Adam")
    train.add_argument("--cache-features", action="store_true", default=CACHE_FEATURES,
                       help=f"vgg16: compute the frozen base once per image ({FEATURE_VIEWS} views with "
                            "augmentation) and train only the head on the stored features")
    train.add_argument("--distribute", default=DISTRIBUTE, choices=("auto", "mirrored", "multiworker", "none"),
                       help="auto: MirroredStrategy over all GPUs when any is visible; mirrored: always; "
                            "multiworker: MultiWorkerMirroredStrategy over the machines in $TF_CONFIG; none: never")
    train.add_argument("--mixed-precision", action="store_true", default=MIXED_PRECISION,
                       help="train with Keras' mixed_float16 policy (for GPUs)")
    train.add_argument("--class-weight", default=CLASS_WEIGHT, choices=("none", "balanced"),
                       help="loss weights per class")

    evaluate = commands.add_parser("evaluate", parents=[common, classes_option], formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                   help="evaluate the saved model on a folder of <class>/ sub-folders")
    evaluate.add_argument("folder", help="folder whose sub-folders are classes (e.g. HASsplittedDS/test)")

    predict = commands.add_parser("predict", parents=[common, classes_option, detector_option],
                                  formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                  help="label each face in image files or folders")
    predict.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders of images")
    predict.add_argument("--no-detect", action="store_true", help="classify each whole image; no face detection")
    predict.add_argument("--json", action="store_true", help="one JSON object per image per line")
    predict.add_argument("--save", metavar="DIR", help="write annotated copies of the images here")

    webcam = commands.add_parser("webcam", parents=[common, classes_option, detector_option],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                 help="label faces live from a camera or a video file (q quits)")
    webcam.add_argument("--source", default="0", help="camera index or video file")
    webcam.add_argument("--no-display", dest="display", action="store_false", help="run without a window")
    webcam.add_argument("--output", metavar="FILE", help="write the annotated video here (.mp4 or .avi)")
    webcam.add_argument("--max-frames", type=positive_int, help="stop after this many frames")

    prepare = commands.add_parser("prepare", parents=[detector_option],
                                  formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                  help="build train/val/test folders from FER2013 or a folder of classes")
    prepare.add_argument("--source", required=True,
                         help="fer2013.csv, FER2013's image release (train/, test/), or a folder of class folders")
    prepare.add_argument("--out", required=True, help="folder to write train/, val/, test/ into")
    prepare.add_argument("--classes", type=class_list, metavar="A,B,...",
                         help="comma-separated classes (default: angry,happy,sad for FER2013, "
                                           "every sub-folder for a folder source)")
    prepare.add_argument("--seed", type=SEED_ARG, default=SEED, help="seed of the stratified split")
    prepare.add_argument("--force", action="store_true", help="write into a non-empty --out")
    prepare.add_argument("--group-pattern", type=regex_arg, default=GROUP_PATTERN,
                         help="unsplit folder: files whose names start alike by this regular expression (a person "
                              "or sequence id) go to one split; 'none': each file on its own")
    prepare.add_argument("--crop-faces", action="store_true",
                         help="store the largest detected face of each photo; photos with none are skipped")
    serve = commands.add_parser("serve", parents=[model_options, classes_option, detector_option],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                help="a web page to try the model in a browser, plus a JSON API")
    serve.add_argument("--host", default=SERVE_HOST, help="address to listen on (0.0.0.0: every network)")
    serve.add_argument("--port", type=int_in_range(1, 65535), default=SERVE_PORT, help="TCP port to listen on")
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = make_parser()
    if not argv or argv[0] not in (*COMMANDS, "-h", "--help"):
        argv = ["train", *argv]  # the original script took no command
    args = parser.parse_args(argv)
    for stream in (sys.stdout, sys.stderr):  # a file name that is not UTF-8 prints as \udcff, never a traceback
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    if getattr(args, "show", False) and not display_available():
        args.show = False
    try:
        check_utf8_options(args)
        COMMANDS[args.command](args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # training handles its own Ctrl-C (it keeps the best model); this is any other step
        print(f"error: interrupted (Ctrl-C) during {args.command}", file=sys.stderr)
        return 130
    return 0


COMMANDS = {"train": run_train, "evaluate": run_evaluate, "predict": run_predict, "webcam": run_webcam,
            "prepare": run_prepare, "serve": run_serve}

if __name__ == "__main__":
    sys.exit(main())
