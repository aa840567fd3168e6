"""Facial emotion recognition: train, evaluate and use a Keras classifier on face images.

    python emotion_recognition.py                                   # train (or load) + evaluate on HASsplittedDS/
    python emotion_recognition.py --data ../shared/datasets/fer2013-has --train-again --epochs 5
    python emotion_recognition.py evaluate path/to/faces            # any folder of <class>/ sub-folders
    python emotion_recognition.py predict photo.jpg --json          # one label per detected face
    python emotion_recognition.py webcam                            # live, camera 0 (q quits)
    python emotion_recognition.py serve                             # a web page at http://127.0.0.1:8000/
    python emotion_recognition.py prepare --source fer2013.csv --out HASsplittedDS
    python emotion_recognition.py --help                            # every option and its default

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
import json
import logging
import math
import os
import shutil
import signal
import sys
import tempfile
import threading
import time

import cv2
import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter off the console
logging.getLogger("absl").setLevel(logging.ERROR)  # Keras warns on every .h5 save that the format is "legacy"


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
# Defaults (every one can be overridden on the command line)

train_again = False  # False: reuse MODEL_PATH when it exists; True: always train a new model
DATA_DIR = "HASsplittedDS"  # folder with train/, val/, test/, each holding one sub-folder per class
MODEL = "compact"  # "compact" (VGG-style, for 48 px faces; beats "cnn" on FER2013), "cnn" (the original's scratch CNN),
#                    "vgg16" (the original's frozen VGG16 + head)
MODEL_PATH = "EmotionRecognitionSystem.h5"  # trained model file (class names and image settings inside)
OUTPUT_DIR = "results"  # metrics.json, classification report, plots, history.csv, config.json
EPOCHS = 30  # maximum epochs; EarlyStopping usually ends sooner
BATCH_SIZE = 32  # images per training step
LEARNING_RATE = 1e-3  # Adam's initial learning rate
IMAGE_SIZE = "auto"  # side in pixels; "auto" follows the data (48 for FER2013), the original used 200
COLOR = "auto"  # "grayscale", "rgb", or "auto" (grayscale when every sampled image is grey)
VGG_WEIGHTS = "imagenet"  # "imagenet" (Keras download/cache), "none" (untrained), or a local notop .h5 path
SEED = 42  # seeds shuffling, augmentation and weight initialisation
LR_SCHEDULE = "plateau"  # "plateau" (the original's ReduceLROnPlateau) or "cosine" (decay to 0 over the epochs)
LABEL_SMOOTHING = 0.0  # cross-entropy label smoothing, 0 = off (the original)
WEIGHT_DECAY = 0.0  # decoupled weight decay (AdamW) when above 0; 0 = plain Adam (the original)
CLASS_WEIGHT = "none"  # "balanced" weights the loss by inverse class frequency; "none" = the original
TTA = False  # average each prediction with that of the horizontally flipped image
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
AUGMENT = "original"  # "original" (the above), "light" (a third of each range, no shear) or "none"
CACHE_FEATURES = False  # vgg16: run the frozen base once per image and train the head on the stored features
FEATURE_VIEWS = 2  # with CACHE_FEATURES and augmentation: each training image stored plain + 1 augmented view
DISTRIBUTE = "auto"  # "auto" (all GPUs via MirroredStrategy when any is visible), "mirrored", "none",
#                      "multiworker" (MultiWorkerMirroredStrategy over the machines in $TF_CONFIG)
MIXED_PRECISION = False  # Keras' mixed_float16 policy (pays off on GPUs; slower on most CPUs)
SPLITS = ("train", "val", "test")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm")
METADATA_KEY = "emotion_recognition"  # HDF5 attribute holding class names and image settings


class UserError(Exception):
    """A problem the user can fix (bad path, bad option, mismatched model): printed as one line."""


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
    """Decode an image file to uint8 RGB (H, W, 3); None when it is not a readable image."""
    try:
        data = np.fromfile(path, dtype=np.uint8)  # np.fromfile + imdecode copes with non-ASCII names
    except OSError:
        return None
    return decode_image(data)


def decode_image(data):
    """Decode encoded image bytes (a uint8 array) to uint8 RGB (H, W, 3); None when not a readable image."""
    if data.size == 0:
        return None
    # IMREAD_COLOR gives 8-bit BGR for 16-bit, palette, alpha, grey and CMYK files alike.
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    return None if image is None else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def prepare_image(image, image_size, color):
    """Resize an RGB uint8 image to the model's square input and colour: (S, S, 1 or 3) uint8."""
    h, w = image.shape[:2]
    interpolation = cv2.INTER_AREA if h > image_size or w > image_size else cv2.INTER_LINEAR
    image = cv2.resize(image, (image_size, image_size), interpolation=interpolation)
    if color == "grayscale":
        return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[..., np.newaxis]
    return image


def choose_image_settings(data_dir, class_names, image_size, color, min_size):
    """Resolve "auto" size/colour from a sample of training images (48x48 grey FER2013 -> 48, grayscale)."""
    if image_size != "auto" and color != "auto":
        return int(image_size), color
    files = [f for name in class_names for f in list_image_files(os.path.join(data_dir, "train", name))]
    rng = np.random.default_rng(0)
    sample = [read_image(f) for f in rng.permutation(files)[:AUTO_SIZE_SAMPLE]]
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


def load_folder(folder, class_names, image_size, color, cache_dir=None):
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
        os.makedirs(cache_dir, exist_ok=True)
        cache_file = os.path.join(cache_dir, f"{os.path.basename(os.path.normpath(folder))}-{image_size}-{color}.npy")
        images = np.lib.format.open_memmap(cache_file, mode="w+", dtype=np.uint8, shape=shape)
    else:
        images = np.empty(shape, dtype=np.uint8)
    ok = np.zeros(len(files), dtype=bool)

    def decode(i):
        image = read_image(files[i])
        if image is not None:
            images[i] = prepare_image(image, image_size, color)
            ok[i] = True

    with concurrent.futures.ThreadPoolExecutor(os.cpu_count()) as pool:  # OpenCV releases the GIL
        list(pool.map(decode, range(len(files))))
    skipped = [f for f, good in zip(files, ok) if not good]
    if skipped:
        examples = ", ".join(os.path.basename(f) for f in skipped[:3])
        print(f"Warning: skipped {len(skipped)} unreadable or non-image file(s) in {folder} (e.g. {examples})")
    keep = np.flatnonzero(ok)
    if len(keep) < len(files):  # close the gaps in place (no second copy, also when memory-mapped)
        for new, old in enumerate(keep):
            images[new] = images[old]
        images = images[:len(keep)]
    return images, np.asarray(labels, dtype=np.int64)[keep], skipped


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

    def __init__(self, rotation_degrees, shift_fraction, shear_degrees, zoom_fraction, flip=True):
        self.rotation, self.shift = math.radians(rotation_degrees), shift_fraction
        self.shear, self.zoom, self.flip = math.radians(shear_degrees), zoom_fraction, flip

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
        return tf.ensure_shape(tf.numpy_function(warp_images, [images, matrices], tf.float32), images.shape)


def make_augmentation(seed=SEED, strength="original"):
    """The original's training augmentation (run in tf.data, never saved in the model), or None for "none".

    strength "light" scales every range to a third and drops the shear. `seed` is kept for callers of the
    older signature; the random draws come from the per-batch seeds make_dataset passes in.
    """
    if strength == "none":
        return None
    k = 1 if strength == "original" else 1 / 3
    return Augmentation(k * ROTATION_DEGREES, k * SHIFT_FRACTION, SHEAR_DEGREES if strength == "original" else 0.0,
                        k * ZOOM_FRACTION)


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
        os.makedirs(cache_dir, exist_ok=True)
        stored = np.lib.format.open_memmap(os.path.join(cache_dir, "features.npy"), mode="w+", dtype=np.float16,
                                           shape=shape)
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
    return {"cnn": 46, "vgg16": 32, "compact": 16}[model_name]


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


def load_vgg16_base(input_shape, weights):
    """VGG16 without its top. weights: "imagenet" (Keras download/cache), "none", or a local notop .h5 file."""
    if weights == "imagenet":
        try:  # fetch (or find in the Keras cache) first, so an offline machine gets a useful sentence
            weights = keras.utils.get_file(
                "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
                "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
                "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
                cache_subdir="models", file_hash="6d6bbae143d832006294945121d1f1fc")
        except Exception as error:  # Keras raises a bare Exception("URL fetch failure ...")
            raise UserError(f"could not download the ImageNet VGG16 weights ({error}); download "
                            "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 elsewhere and pass "
                            "--vgg-weights PATH, or put it in ~/.keras/models/") from None
    elif weights == "none":
        weights = None
    elif not os.path.isfile(weights):
        raise UserError(f"VGG16 weights file {weights!r} not found; pass --vgg-weights imagenet, none, "
                        "or the path of vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5")
    try:
        return keras.applications.VGG16(include_top=False, weights=weights, input_shape=input_shape)
    except (OSError, ValueError) as error:
        raise UserError(f"could not load VGG16 weights from {weights!r}: {error}") from None


def build_vgg16(input_shape, num_classes, weights=VGG_WEIGHTS):
    """Frozen VGG16 + the original head; 'same' padding in the head when the base output is under 4x4."""
    inputs = keras.Input(input_shape)
    x = layers.Concatenate()([inputs] * 3) if input_shape[-1] == 1 else inputs  # grey -> 3 channels
    x = vgg16_preprocess_class()()(x)
    base = load_vgg16_base((input_shape[0], input_shape[1], 3), weights)
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


def build_model(name, input_shape, num_classes, learning_rate, vgg_weights=VGG_WEIGHTS, label_smoothing=0.0,
                weight_decay=0.0):
    """Build and compile one of the architectures; `learning_rate` may be a Keras schedule."""
    if name == "vgg16":
        model = build_vgg16(input_shape, num_classes, vgg_weights)
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
    finally:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)


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
    if not metadata:  # a model from the original script: infer what we can
        channels = model.input_shape[-1]
        metadata = {"image_size": model.input_shape[1], "color": "grayscale" if channels == 1 else "rgb"}
    model.compile(loss="categorical_crossentropy", metrics=["accuracy"])  # for evaluate(); no optimizer needed
    return model, metadata


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
    if saved != class_names:
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


def train_model(model, train_ds, val_ds, epochs, model_path, output_dir, metadata, class_weight=None,
                reduce_on_plateau=True, resume=False, patience=EARLY_STOPPING_PATIENCE, head=None, steps_per_epoch=None):
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
    except KeyboardInterrupt:
        if not os.path.exists(checkpoint_path):
            raise UserError("training interrupted before the first epoch ended; nothing was saved "
                            f"and {model_path!r} is unchanged") from None
        os.replace(checkpoint_path, model_path)
        raise UserError(f"training interrupted; the best model so far was saved to {model_path!r}") from None
    save_model(model, model_path, metadata)
    if os.path.exists(checkpoint_path):
        os.remove(checkpoint_path)
    return history.history


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
    return {
        "loss": float(loss),
        "accuracy": float(accuracy_score(labels, predictions)),
        "weighted_f1": float(f1_score(labels, predictions, labels=indices, average="weighted", zero_division=0)),
        "macro_f1": float(f1_score(labels, predictions, labels=indices, average="macro", zero_division=0)),
        "majority_class_accuracy": float(counts.max() / counts.sum()),
        "n_samples": int(len(labels)),
        "class_names": list(class_names),
        "support": {name: int(n) for name, n in zip(class_names, counts)},
        "per_class": {name: {k: float(per_class[name][k]) for k in ("precision", "recall", "f1-score")}
                      for name in class_names},
        "confusion_matrix": confusion_matrix(labels, predictions, labels=indices).tolist(),
        "classification_report": report,
        "predictions": predictions,
    }


def print_metrics(metrics):
    """The original's printout, plus macro F1 and the majority-class baseline."""
    print(f"Test Loss: {metrics['loss']:.4f}")
    print(f"Test Accuracy: {metrics['accuracy']:.4f}")
    print(f"Test F1-Score: {metrics['weighted_f1']:.4f}")
    print(f"Test Macro F1-Score: {metrics['macro_f1']:.4f}")
    print(f"Majority-class accuracy (always '{max(metrics['support'], key=metrics['support'].get)}'): "
          f"{metrics['majority_class_accuracy']:.4f}")
    print("Classification Report:")
    print(metrics["classification_report"])


def save_metrics(metrics, output_dir):
    """metrics.json and classification_report.txt."""
    with open(os.path.join(output_dir, "metrics.json"), "w") as f:
        json.dump({k: v for k, v in metrics.items() if k != "predictions"}, f, indent=2)
    with open(os.path.join(output_dir, "classification_report.txt"), "w") as f:
        f.write(metrics["classification_report"])


def plot_confusion_matrix(labels, predictions, class_names, path):
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay
    fig, ax = plt.subplots(figsize=(1.5 + 1.2 * len(class_names), 1 + 1.2 * len(class_names)))
    ConfusionMatrixDisplay.from_predictions(labels, predictions, labels=list(range(len(class_names))),
                                            display_labels=class_names, cmap="Blues", ax=ax, colorbar=False)
    ax.set_title("Test confusion matrix")
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

FACE_CASCADE = "haarcascade_frontalface_default.xml"  # OpenCV's own frontal-face Haar cascade
SCALE_FACTOR = 1.1  # Haar pyramid step, as the original
MIN_NEIGHBORS = 5  # Haar detections needed to accept a face, as the original
DETECT_MAX_SIDE = 640  # photos are detected on a copy at most this large (boxes mapped back)
VIDEO_DETECT_WIDTH = 320  # video frames are detected at this width: 4x fewer pixels for 640x480
FACE_MARGIN = 0.1  # crop this fraction of the box size beyond each side of a detected face
SMOOTH_FRAMES = 5  # video: average each face's probabilities over this many frames
SERVE_HOST = "127.0.0.1"  # serve: loopback only, unless --host says otherwise
SERVE_PORT = 8000  # serve: TCP port of the page and the JSON API
MAX_UPLOAD_MB = 10  # serve: larger uploads are refused with HTTP 413
MESSAGES = {  # shown under each face; any other class gets the "unknown" line
    "happy": "Keep smiling - it suits you!",
    "sad": "It's okay to feel down. Take a breath; better moments are coming.",
    "angry": "Pause, breathe slowly, and give yourself a moment.",
    "unknown": "Whatever you feel, take good care of yourself.",
}


def load_face_detector():
    """OpenCV's Haar face cascade; a clear error on OpenCV 5, whose wheels dropped it."""
    if not hasattr(cv2, "CascadeClassifier") or not hasattr(cv2, "data"):
        raise UserError(f"this OpenCV ({cv2.__version__}) has no Haar face detector; install "
                        "'opencv-python>=4.8,<5' (see requirements.txt)")
    detector = cv2.CascadeClassifier(os.path.join(cv2.data.haarcascades, FACE_CASCADE))
    if detector.empty():
        raise UserError(f"could not load {FACE_CASCADE} from {cv2.data.haarcascades}")
    return detector


def detect_faces(detector, image, max_side=DETECT_MAX_SIDE):
    """Face boxes [x, y, w, h] in `image` (RGB), found on a grey copy scaled down to at most `max_side`."""
    scale = min(1.0, max_side / max(image.shape[:2]))
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    if scale < 1:
        grey = cv2.resize(grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    boxes = detector.detectMultiScale(grey, scaleFactor=SCALE_FACTOR, minNeighbors=MIN_NEIGHBORS)
    return [[int(round(v / scale)) for v in box] for box in boxes]


def crop_face(image, box, margin=FACE_MARGIN):
    x, y, w, h = box
    dx, dy = int(w * margin), int(h * margin)
    return image[max(0, y - dy):y + h + dy, max(0, x - dx):x + w + dx]


def classify_crops(model, metadata, crops, tta=TTA):
    """Emotion, confidence and every class's probability for each face crop: one model call for all of them."""
    if not crops:
        return []
    class_names = metadata["class_names"]
    batch = np.stack([prepare_image(c, metadata["image_size"], metadata["color"]) for c in crops])
    probabilities = predict_probabilities(model, batch, tta)
    return [{"emotion": class_names[p.argmax()], "confidence": round(float(p.max()), 4),
             "probabilities": {n: round(float(v), 4) for n, v in zip(class_names, p)}} for p in probabilities]


def predict_images(model, metadata, images, detector=None, tta=TTA):
    """Faces of several RGB images, classified together. detector None: each whole image is one face.

    Returns, per image, a list of {"box", "detected", "emotion", "confidence", "probabilities"};
    an image where no face is found is classified whole, with "detected": False.
    """
    boxes = [detect_faces(detector, im) if detector is not None else [] for im in images]
    crops, owners = [], []
    for i, (image, found) in enumerate(zip(images, boxes)):
        if not found:
            boxes[i] = [[0, 0, image.shape[1], image.shape[0]]]
        crops += [crop_face(image, b) if found else image for b in boxes[i]]
        owners += [(i, bool(found))] * len(boxes[i])
    results = [[] for _ in images]
    for (i, detected), box, face in zip(owners, [b for bs in boxes for b in bs],
                                        classify_crops(model, metadata, crops, tta)):
        results[i].append({"box": box, "detected": detected, **face})
    return results


def annotate(image, faces):
    """A BGR copy of an RGB image with a box, label, confidence and message drawn for each face."""
    canvas = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    thickness = max(1, round(max(image.shape[:2]) / 400))
    font_scale = max(0.4, max(image.shape[:2]) / 1000)
    for face in faces:
        x, y, w, h = face["box"]
        cv2.rectangle(canvas, (x, y), (x + w, y + h), (0, 200, 0), thickness)
        label = f"{face['emotion']} {face['confidence']:.0%}"
        cv2.putText(canvas, label, (x, max(15, y - 6)), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 255, 0), thickness)
        message = MESSAGES.get(face["emotion"], MESSAGES["unknown"])
        cv2.putText(canvas, message, (x, min(canvas.shape[0] - 6, y + h + int(22 * font_scale) + 4)),
                    cv2.FONT_HERSHEY_SIMPLEX, font_scale * 0.7, (255, 255, 255), max(1, thickness - 1))
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


def run_video(model, metadata, source, display=True, output=None, max_frames=None, tta=TTA):
    """Label every face of every frame from a camera index or video file; returns (frames, faces, seconds)."""
    capture = cv2.VideoCapture(int(source) if str(source).isdigit() else source)
    if not capture.isOpened():
        raise UserError(f"cannot open video source {source!r}: no camera with that index, or not a readable "
                        "video file")
    detector, writer, tracks = load_face_detector(), None, []
    frames = faces_seen = 0
    fps, start = 0.0, time.perf_counter()
    try:
        while max_frames is None or frames < max_frames:
            ok, frame = capture.read()
            if not ok:
                break
            tick = time.perf_counter()
            rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            boxes = detect_faces(detector, rgb, max_side=VIDEO_DETECT_WIDTH * max(rgb.shape[:2]) // rgb.shape[1])
            faces = [{"box": b, "detected": True, **f}
                     for b, f in zip(boxes, classify_crops(model, metadata, [crop_face(rgb, b) for b in boxes], tta))]
            tracks = match_tracks(tracks, boxes)
            faces = smooth_faces(tracks, faces, metadata["class_names"])
            canvas = annotate(rgb, faces)
            fps = 0.9 * fps + 0.1 / max(time.perf_counter() - tick, 1e-6) if frames else 1 / max(time.perf_counter() - tick, 1e-6)
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

FER2013_CODES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")  # emotion column 0-6
FER2013_USAGE = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
ORIGINAL_CLASSES = ("angry", "happy", "sad")  # prepare's default for FER2013 sources
SPLIT_RATIOS = (0.8, 0.1, 0.1)  # train/val/test for an unsplit folder, as the original
CLASS_SYNONYMS = {"anger": "angry", "mad": "angry", "sadness": "sad", "unhappy": "sad", "happiness": "happy",
                  "joy": "happy", "fearful": "fear", "afraid": "fear", "disgusted": "disgust",
                  "surprised": "surprise", "neutrality": "neutral", "contemptuous": "contempt"}


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
    return rows


def read_fer2013_rows(path, classes):
    """The rows of the classes asked for, checked line by line."""
    with open(path, newline="") as f:
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
                    or image.min() < 0 or image.max() > 255:
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


def plan_folder_copies(source, classes, seed):
    """[(split, class, source file)] for an image-folder source, split by seed and stratified by class."""
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
    for name in classes:
        if released:  # FER2013's image release: train stays, its test is halved into val and test
            plan += [("train", name, f) for f in list_image_files(parts["train"][name])]
            val, test = split_files(list_image_files(parts["test"][name]), (0.5, 0.5), rng)
            plan += [("val", name, f) for f in val] + [("test", name, f) for f in test]
        else:
            for split, files in zip(SPLITS, split_files(list_image_files(parts[""][name]), SPLIT_RATIOS, rng)):
                plan += [(split, name, f) for f in files]
    return plan, classes


def prepare_dataset(source, out, classes=None, seed=SEED, force=False, crop_faces=False):
    """Write out/{train,val,test}/<class>/ from a FER2013 CSV, its image release, or a folder of classes.

    Copies only (the source is never changed). Returns {(split, class): count} and the skipped files.
    """
    if not os.path.exists(source):
        raise UserError(f"source {source!r} does not exist; give fer2013.csv or a folder of class folders")
    if os.path.abspath(out) == os.path.abspath(source) or os.path.abspath(out).startswith(
            os.path.abspath(source) + os.sep):
        raise UserError(f"--out {out!r} lies inside the source; choose a folder outside it")
    if os.path.isdir(out) and os.listdir(out) and not force:
        raise UserError(f"{out!r} is not empty; pass --force to write into it (its split folders are replaced)")
    classes = [canonical_class(c) for c in classes] if classes else None
    if os.path.isfile(source):
        classes = classes or list(ORIGINAL_CLASSES)
        unknown = [c for c in classes if c not in FER2013_CODES]
        if unknown:
            raise UserError(f"class(es) {unknown} are not in FER2013; it has {', '.join(FER2013_CODES)}")
        items = read_fer2013_csv(source, classes)
    else:
        items, classes = plan_folder_copies(source, classes, seed)
    for split in SPLITS:
        shutil.rmtree(os.path.join(out, split), ignore_errors=True)
        for name in classes:
            os.makedirs(os.path.join(out, split, name))
    detector = load_face_detector() if crop_faces else None
    counts, skipped = {(s, c): 0 for s in SPLITS for c in classes}, []
    print(f"Writing {len(items)} images to {out}/")  # no Keras progress bar: prepare runs without TensorFlow
    for i, (split, name, item) in enumerate(items):
        target = os.path.join(out, split, name)
        if isinstance(item, np.ndarray):  # a decoded CSV row
            cv2.imwrite(os.path.join(target, f"{split}_{i:05d}.png"), item)
        elif detector is None:
            shutil.copy2(item, target)
        else:
            image = read_image(item)
            boxes = detect_faces(detector, image) if image is not None else []
            if not boxes:
                skipped.append(item)
                continue
            face = crop_face(image, max(boxes, key=lambda b: b[2] * b[3]))
            name_png = os.path.splitext(os.path.basename(item))[0] + ".png"
            cv2.imencode(".png", cv2.cvtColor(face, cv2.COLOR_RGB2BGR))[1].tofile(os.path.join(target, name_png))
        counts[split, name] += 1
    return counts, skipped


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


def report(metrics, labels, output_dir, show, history=None):
    """Print, save and plot the evaluation (and the training curves when it trained)."""
    import matplotlib
    if not show:
        matplotlib.use("Agg")  # files only: no window, and no display needed
    import matplotlib.pyplot as plt
    print_metrics(metrics)
    save_metrics(metrics, output_dir)
    plot_confusion_matrix(labels, metrics["predictions"], metrics["class_names"],
                          os.path.join(output_dir, "confusion_matrix.png"))
    if history:
        plot_training_curves(history, os.path.join(output_dir, "training_curves.png"))
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
                            "workers and this one's index); see the README")
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
    multiworker = args.distribute == "multiworker"
    # --mixed-precision: Keras' LossScaleOptimizer fails under MultiWorkerMirroredStrategy (see the README)
    single_machine = [flag for flag, on in (("--resume", args.resume), ("--cache-features", args.cache_features),
                                            ("--mixed-precision", args.mixed_precision)) if on]
    if multiworker and single_machine:
        raise UserError(f"{single_machine[0]} does not work with --distribute multiworker; leave one of them out")
    if args.cache_features and args.model != "vgg16":
        raise UserError("--cache-features needs a frozen base: use it with --model vgg16")
    class_names = check_dataset_layout(args.data)  # before TensorFlow is imported: a wrong path fails at once
    strategy = make_strategy(args.distribute)
    if not is_chief(strategy):  # every worker trains; only the chief's model file and results are kept
        scratch = tempfile.mkdtemp(prefix="emotion-worker-")
        atexit.register(shutil.rmtree, scratch, ignore_errors=True)  # nothing of it is wanted afterwards
        args.model_path, args.output_dir, args.show = os.path.join(scratch, MODEL_PATH), scratch, False
        print(f"Worker {strategy.cluster_resolver.task_id}: the chief keeps the results; this worker's go to {scratch}")
    if args.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    check_writable(args.output_dir)
    check_writable(os.path.dirname(os.path.abspath(args.model_path)))
    keras.utils.set_random_seed(args.seed)
    # all workers of a cluster must take part in training, whatever files each of them holds
    trained = args.train_again or args.resume or multiworker or not os.path.exists(args.model_path)
    history = None
    if not trained:
        model, metadata = load_trained_model(args.model_path)
        check_model_matches(metadata, model, class_names, args.model_path, args.image_size, args.color)
        print(f"Model loaded from {args.model_path} (train_again is False, so no training)")
        image_size, color = metadata["image_size"], metadata["color"]
    else:
        image_size, color = choose_image_settings(args.data, class_names, args.image_size, args.color,
                                                  min_image_size(args.model))
        if image_size < min_image_size(args.model):
            raise UserError(f"--image-size {image_size} is too small for --model {args.model}; "
                            f"use at least {min_image_size(args.model)}")
    settings = {**vars(args), "image_size": image_size, "color": color, "class_names": class_names,
                "trained": trained}
    print("Settings: " + ", ".join(f"{k}={v}" for k, v in settings.items() if k != "command"))
    cache_dir = os.path.join(args.output_dir, "cache")
    splits = {split: load_folder(os.path.join(args.data, split), class_names, image_size, color, cache_dir)
              for split in (SPLITS if trained else ("test",))}
    for split, (images, labels, _) in splits.items():
        per_class = np.bincount(labels, minlength=len(class_names))
        print(f"Found {len(labels)} {split} images ({', '.join(f'{n} {c}' for c, n in zip(class_names, per_class))})")
        empty = [name for name, n in zip(class_names, per_class) if n == 0]
        if empty:
            raise UserError(f"class folder {os.path.join(args.data, split, empty[0])!r} holds no readable images")
    num_classes = len(class_names)
    if trained:
        steps_per_epoch = math.ceil(len(splits["train"][1]) / args.batch_size)
        learning_rate = make_learning_rate(args.learning_rate, args.lr_schedule, args.epochs, steps_per_epoch)
        with strategy.scope():
            model = build_model(args.model, (image_size, image_size, 1 if color == "grayscale" else 3),
                                num_classes, learning_rate, args.vgg_weights, args.label_smoothing, args.weight_decay)
        metadata = {"class_names": class_names, "image_size": image_size, "color": color,
                    "model": args.model, "trained_on": os.path.abspath(args.data),
                    "created": datetime.datetime.now().isoformat(timespec="seconds")}
        augment = make_augmentation(args.seed, args.augment)
        start = time.perf_counter()
        head = None
        if args.cache_features:
            with strategy.scope():
                features, head = split_frozen_base(model)
                head.compile(optimizer=model.optimizer, loss=model.loss, metrics=["accuracy"])
            cache_dir = os.path.join(args.output_dir, "cache")
            train_ds = make_feature_dataset(
                extract_features(features, *splits["train"][:2], num_classes, INFERENCE_BATCH_SIZE, augment,
                                 FEATURE_VIEWS, cache_dir),
                splits["train"][1], num_classes, args.batch_size, shuffle=True, seed=args.seed)
            val_ds = make_feature_dataset(
                extract_features(features, *splits["val"][:2], num_classes, INFERENCE_BATCH_SIZE),
                splits["val"][1], num_classes, args.batch_size)
            print(f"Features ready in {time.perf_counter() - start:.0f} s; training the head on them")
        else:
            train_ds = make_dataset(*splits["train"][:2], num_classes, args.batch_size, shuffle=True,
                                    augment=augment, seed=args.seed, drop_remainder=multiworker)  # no empty shares
            val_ds = make_dataset(*splits["val"][:2], num_classes, args.batch_size)
        class_weight = balanced_class_weights(splits["train"][1], num_classes) if args.class_weight == "balanced" else None
        history = train_model(model, train_ds, val_ds, args.epochs, args.model_path, args.output_dir, metadata,
                              class_weight, args.lr_schedule == "plateau", args.resume, args.patience,
                              head, steps_per_epoch if head is not None else None)
        print(f"Trained {len(history['loss'])} epochs in {time.perf_counter() - start:.0f} s; "
              f"model saved to {args.model_path}")
        if multiworker:  # a local copy: the distributed model would need every worker for each prediction
            model, _ = load_trained_model(args.model_path)
    with open(os.path.join(args.output_dir, "config.json"), "w") as f:
        json.dump(settings, f, indent=2)
    images, labels, _ = splits["test"]
    metrics = evaluate_model(model, images, labels, class_names, args.batch_size, args.tta)
    report(metrics, labels, args.output_dir, args.show, history)


def run_evaluate(args):
    """Evaluate the saved model on any folder of <class>/ sub-folders (a subset of the model's classes)."""
    model, metadata = load_trained_model(args.model_path)
    folder_classes = list_class_names(args.folder)
    class_names = metadata.get("class_names") or folder_classes
    unknown = sorted(set(folder_classes) - set(class_names))
    if unknown:
        raise UserError(f"{args.folder!r} has classes {unknown} the model does not know; it knows {class_names}")
    check_writable(args.output_dir)
    images, labels, _ = load_folder(args.folder, class_names, metadata["image_size"], metadata["color"],
                                    os.path.join(args.output_dir, "cache"))
    if len(labels) == 0:
        raise UserError(f"no readable images under {args.folder!r}/<class>/")
    print(f"Evaluating {args.model_path} on {len(labels)} images from {args.folder}")
    metrics = evaluate_model(model, images, labels, class_names, args.batch_size, args.tta)
    report(metrics, labels, args.output_dir, args.show)


def class_names_of(model, metadata):
    """Class names saved with the model; a model from the original script has none, so say so."""
    if "class_names" not in metadata:
        metadata["class_names"] = [f"class_{i}" for i in range(model.output_shape[-1])]
        print("Warning: the model file stores no class names; labels are shown as class_0, class_1, ...")
    return metadata["class_names"]


def run_predict(args):
    """Label every face in the given images/folders; table or JSON lines; annotated copies with --save."""
    files, errors = expand_paths(args.paths)
    model, metadata = load_trained_model(args.model_path)
    class_names_of(model, metadata)
    detector = None if args.no_detect else load_face_detector()
    if args.save:
        check_writable(args.save)
    chunk, saved = 64, set()  # images per batch of face crops; names written to --save
    for start in range(0, len(files), chunk):
        paths, images = [], []
        for path in files[start:start + chunk]:
            image = read_image(path)
            if image is None:
                errors.append(f"{path}: not a readable image")
            else:
                paths.append(path)
                images.append(image)
        for path, image, faces in zip(paths, images, predict_images(model, metadata, images, detector, args.tta)):
            if args.json:
                print(json.dumps({"image": path, "faces": faces}))
            else:
                for face in faces:
                    where = f"face at {face['box']}" if face["detected"] else "no face found, whole image"
                    probs = " ".join(f"{n}={p:.2f}" for n, p in face["probabilities"].items())
                    print(f"{path}: {where}: {face['emotion']} ({face['confidence']:.0%})  {probs}")
            if args.save:  # a.jpg -> a_annotated.png; a second a.* (another folder or format) -> a_2_annotated.png
                stem, copy = os.path.splitext(os.path.basename(path))[0], 1
                name = f"{stem}_annotated.png"
                while name in saved:
                    copy += 1
                    name = f"{stem}_{copy}_annotated.png"
                saved.add(name)
                cv2.imwrite(os.path.join(args.save, name), annotate(image, faces))
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    if errors:
        raise SystemExit(1)


def run_prepare(args):
    classes = [c for c in args.classes.split(",") if c.strip()] if args.classes else None
    counts, skipped = prepare_dataset(args.source, args.out, classes, args.seed, args.force, args.crop_faces)
    if skipped:
        print(f"Skipped {len(skipped)} image(s) with no detectable face: " + ", ".join(skipped[:10])
              + (" ..." if len(skipped) > 10 else ""))
    print_counts(counts)
    print(f"Data set written to {args.out}/ (train with: python emotion_recognition.py --data {args.out})")


def run_webcam(args):
    model, metadata = load_trained_model(args.model_path)
    class_names_of(model, metadata)
    if args.output:
        check_writable(os.path.dirname(os.path.abspath(args.output)))
    frames, faces, seconds = run_video(model, metadata, args.source, args.display, args.output, args.max_frames,
                                       args.tta)
    print(f"Processed {frames} frames, {faces} faces, {frames / max(seconds, 1e-9):.1f} FPS on average"
          + (f"; annotated video written to {args.output}" if args.output else ""))


# -----------------------------------------------------------------------------
# Command line


def run_serve(args):
    """The upload/camera web page and JSON API (web/server.py), on the same prediction code as `predict`."""
    sys.modules.setdefault("emotion_recognition", sys.modules[__name__])  # web/ imports this script as a module
    from web.server import serve
    serve(args.model_path, args.host, args.port, args.tta)


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def model_file_arg(text):
    if not text.lower().endswith((".h5", ".hdf5")):
        raise argparse.ArgumentTypeError(f"expected a .h5 file (Keras' HDF5 format, as the original), got {text!r}")
    return text


def image_size_arg(text):
    return text if text == "auto" else positive_int(text)


def positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {value}")
    return value


def make_parser():
    parser = argparse.ArgumentParser(
        description="Facial emotion recognition. With no command, runs 'train' (the original script: "
                    "train or load, then evaluate on test/).",
        epilog="Each command's options, with their defaults: python emotion_recognition.py COMMAND --help "
               "(e.g. train --help).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    common.add_argument("--model-path", type=model_file_arg, default=MODEL_PATH, help="trained model file (.h5)")
    common.add_argument("--output-dir", default=OUTPUT_DIR, help="folder for metrics, reports and plots")
    common.add_argument("--batch-size", type=positive_int, default=BATCH_SIZE, help="images per batch")
    common.add_argument("--no-show", dest="show", action="store_false",
                        help="never open plot windows (plots are always saved as PNG)")
    common.add_argument("--tta", action=argparse.BooleanOptionalAction, default=TTA,
                        help="average predictions with the horizontally flipped image")

    train = commands.add_parser("train", parents=[common], formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                help="train (or load) a model, then evaluate it on test/ (the default)")
    train.add_argument("--data", default=DATA_DIR, help="data set folder with train/, val/, test/")
    train.add_argument("--model", default=MODEL, choices=("cnn", "vgg16", "compact"), help="architecture")
    train.add_argument("--train-again", action="store_true", default=train_again,
                       help="train even when --model-path exists")
    train.add_argument("--epochs", type=positive_int, default=EPOCHS, help="maximum training epochs")
    train.add_argument("--learning-rate", type=positive_float, default=LEARNING_RATE, help="Adam learning rate")
    train.add_argument("--image-size", type=image_size_arg, default=IMAGE_SIZE, help="'auto' or a side in pixels")
    train.add_argument("--color", default=COLOR, choices=("auto", "grayscale", "rgb"), help="input colour")
    train.add_argument("--vgg-weights", default=VGG_WEIGHTS, help="'imagenet', 'none', or a local notop .h5 file")
    train.add_argument("--seed", type=int, default=SEED, help="random seed")
    train.add_argument("--resume", action="store_true",
                       help="continue an interrupted training run from its last finished epoch (implies --train-again)")
    train.add_argument("--augment", default=AUGMENT, choices=("original", "light", "none"),
                       help="training augmentation strength")
    train.add_argument("--patience", type=positive_int, default=EARLY_STOPPING_PATIENCE,
                       help="EarlyStopping: epochs without val_loss improvement")
    train.add_argument("--lr-schedule", default=LR_SCHEDULE, choices=("plateau", "cosine"),
                       help="learning-rate schedule")
    train.add_argument("--label-smoothing", type=float, default=LABEL_SMOOTHING, help="label smoothing (0-1)")
    train.add_argument("--weight-decay", type=float, default=WEIGHT_DECAY,
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

    evaluate = commands.add_parser("evaluate", parents=[common], formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                   help="evaluate the saved model on a folder of <class>/ sub-folders")
    evaluate.add_argument("folder", help="folder whose sub-folders are classes (e.g. HASsplittedDS/test)")

    predict = commands.add_parser("predict", parents=[common], formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                  help="label each face in image files or folders")
    predict.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders of images")
    predict.add_argument("--no-detect", action="store_true", help="classify each whole image; no face detection")
    predict.add_argument("--json", action="store_true", help="one JSON object per image per line")
    predict.add_argument("--save", metavar="DIR", help="write annotated copies of the images here")

    webcam = commands.add_parser("webcam", parents=[common], formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                 help="label faces live from a camera or a video file (q quits)")
    webcam.add_argument("--source", default="0", help="camera index or video file")
    webcam.add_argument("--no-display", dest="display", action="store_false", help="run without a window")
    webcam.add_argument("--output", metavar="FILE", help="write the annotated video here (.mp4 or .avi)")
    webcam.add_argument("--max-frames", type=positive_int, help="stop after this many frames")

    prepare = commands.add_parser("prepare", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                  help="build train/val/test folders from FER2013 or a folder of classes")
    prepare.add_argument("--source", required=True,
                         help="fer2013.csv, FER2013's image release (train/, test/), or a folder of class folders")
    prepare.add_argument("--out", required=True, help="folder to write train/, val/, test/ into")
    prepare.add_argument("--classes", help="comma-separated classes (default: angry,happy,sad for FER2013, "
                                           "every sub-folder for a folder source)")
    prepare.add_argument("--seed", type=int, default=SEED, help="seed of the stratified split")
    prepare.add_argument("--force", action="store_true", help="write into a non-empty --out")
    prepare.add_argument("--crop-faces", action="store_true",
                         help="store the largest detected face of each photo; photos with none are skipped")
    serve = commands.add_parser("serve", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                help="a web page to try the model in a browser, plus a JSON API")
    serve.add_argument("--model-path", type=model_file_arg, default=MODEL_PATH, help="trained model file (.h5)")
    serve.add_argument("--host", default=SERVE_HOST, help="address to listen on (0.0.0.0: every network)")
    serve.add_argument("--port", type=positive_int, default=SERVE_PORT, help="port to listen on")
    serve.add_argument("--tta", action=argparse.BooleanOptionalAction, default=TTA,
                       help="average predictions with the horizontally flipped image")
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = make_parser()
    if not argv or argv[0] not in (*COMMANDS, "-h", "--help"):
        argv = ["train", *argv]  # the original script took no command
    args = parser.parse_args(argv)
    if getattr(args, "show", False) and not display_available():
        args.show = False
    try:
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
