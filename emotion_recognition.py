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
import concurrent.futures
import datetime
import functools
import importlib
import json
import logging
import math
import os
import sys
import time

import cv2
import numpy as np

from emotion.arguments import (SEED_ARG, HelpFormatter, check_utf8_options, class_list, default_model_path,
                               float_in_range, host_arg, host_name_arg, image_size_arg, int_in_range, model_file_arg,
                               positive_float, positive_int, regex_arg)
from emotion.files import UserError, atomic_write, check_output_dir, check_writable, open_cache, write_file
from emotion.images import ImageRefused, read_image
from emotion.lazy_import import LazyModule
from emotion.precision import PRECISIONS, choose_precision, float32_twin, set_precision, with_precision
from emotion.recovery import (backup_path_for, check_free_space, check_resume_matches, check_training_files,
                              checkpoint_path_for, ctrl_c_between_steps, keep_best_epoch, resumable_state, run_identity,
                              start_or_resume)

if __name__ == "__main__":  # emotion/'s modules import this file by name: they find this copy, never load a second
    sys.modules.setdefault("emotion_recognition", sys.modules[__name__])

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter off the console
logging.getLogger("absl").setLevel(logging.ERROR)  # Keras warns on every .h5 save that the format is "legacy"
tf = LazyModule("tensorflow")
keras = LazyModule("keras")

# -----------------------------------------------------------------------------
# Defaults, each in one place (the command-line options among them show theirs in COMMAND --help)

train_again = False  # False: reuse MODEL_PATH when it exists; True: always train a new model
DATA_DIR = "HASsplittedDS"  # folder with train/, val/, test/, each holding one sub-folder per class
MODEL = "compact"  # "compact" (VGG-style, for 48 px faces; beats "cnn" on FER2013), "cnn" (the original's scratch CNN),
#                    "vgg16" (the original's frozen VGG16 + head), or a Keras application of BASES below
MODEL_PATH = "EmotionRecognitionSystem.h5"  # train: the model file (classes, image settings inside); shipped: 3 classes
FACES_MODEL_PATH = "EmotionRecognitionSystem7.h5"  # evaluate, predict, webcam, serve: the shipped seven-class model
OUTPUT_DIR = "results"  # metrics.json, classification report, plots, history.csv, config.json
EPOCHS = 30  # maximum epochs; EarlyStopping usually ends sooner
BATCH_SIZE = 32  # images per training step
LEARNING_RATE = 1e-3  # Adam's initial learning rate
IMAGE_SIZE = "auto"  # side in pixels; "auto" follows the data (48 for FER2013), the original used 200
COLOR = "auto"  # "grayscale", "rgb", or "auto" (grayscale when every sampled image is grey)
NORMALIZE = "equalize"  # contrast of every face after resizing: "equalize" (histogram equalisation, as FER2013's
# faces here are) or "none" (as models saved before this option, which load with "none"); stored with the model
BASE_WEIGHTS = "imagenet"  # the base of BASES: "imagenet" (Keras download/cache), "none" (untrained) or a notop .h5
BASES = {"vgg16": "VGG16", "resnet": "ResNet50V2", "mobilenet": "MobileNetV2", "efficientnet": "EfficientNetB0"}
MODELS = ("compact", "cnn", *BASES)  # --model's choices; vgg16's base stays frozen, the other bases are trained
SEED = 42  # seeds shuffling, augmentation and weight initialisation
LR_SCHEDULE = "plateau"  # "plateau" (the original's ReduceLROnPlateau) or "cosine" (decay to 0 over the epochs)
LABEL_SMOOTHING = 0.0  # cross-entropy label smoothing, 0 = off (the original)
WEIGHT_DECAY = 0.0  # decoupled weight decay (AdamW) when above 0; 0 = plain Adam (the original)
CLASS_WEIGHT = "none"  # "balanced" weights the loss by inverse class frequency; "none" = the original
TARGETS = "votes"  # with annotators' votes beside the data (prepare --votes): "votes" learns each face's share
#                    of them (Barsoum et al.'s best), "folders" the one-hot class folder (its vote plurality)
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
PRECISION = "auto"  # float32, bfloat16 or float16 (Keras' mixed policies); auto: see emotion/precision.py
TIME_BUDGET = None  # minutes: training ends at the last epoch that fits, a cosine rate decaying over it; None: off
SPLITS = ("train", "val", "test")
METADATA_KEY = "emotion_recognition"  # HDF5 attribute holding class names and image settings
DETECTOR = "mtcnn"  # face detector: "mtcnn" (CNN with eye landmarks, weights in its pip package) or "haar"
DETECTORS = ("mtcnn", "haar")  # --detector's choices; "haar" is OpenCV's cascade, as the original used
SERVE_HOST = "127.0.0.1"  # serve: loopback only, unless --host says otherwise
SERVE_PORT = 8000  # serve: TCP port of the page and the JSON API
GROUP_PATTERN = r"^[A-Za-z]*\d+[_.-]"  # prepare: names starting alike (CK+'s "S010_") share a split; "none": off


# -----------------------------------------------------------------------------
# Data: scan folders, decode every image once, then a cached tf.data pipeline


def list_class_names(folder):
    """Sorted sub-folder names of `folder`, i.e. its classes."""
    if not os.path.isdir(folder):
        raise UserError(f"data folder {folder!r} does not exist; expected one sub-folder per class")
    names = sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d)) and not d.startswith("."))
    if not all(name.isprintable() for name in names):  # a newline or an escape in a class name forges output lines
        raise UserError(f"{folder!r}: the class folder {[n for n in names if not n.isprintable()][0]!r} has control "
                        "characters in its name; rename it")
    if not names:
        raise UserError(f"{folder!r} has no class sub-folders; expected e.g. {folder}/happy/, {folder}/sad/")
    return names


def check_dataset_layout(data_dir, splits=SPLITS):
    """Validate DATA/<split>/<class>/ for `splits` and return the class names (sorted, from the first split)."""
    missing = [split for split in splits if not os.path.isdir(os.path.join(data_dir, split))]
    if missing:
        what = f"missing: {'/, '.join(missing)}/" if os.path.isdir(data_dir) else "the folder does not exist"
        raise UserError(f"no data set in {data_dir!r} ({what}); {'training' if 'train' in splits else 'evaluating'} "
                        f"needs {', '.join(f'{data_dir}/{s}/' for s in splits)} with one sub-folder per class. Point "
                        f"--data DIR at one, or make one: python emotion_recognition.py prepare --source fer2013.csv "
                        f"--out {data_dir}")
    class_names = list_class_names(os.path.join(data_dir, splits[0]))
    if len(class_names) < 2:
        raise UserError(f"{os.path.join(data_dir, splits[0])!r} has only the class {class_names}; need at least two")
    for split in splits[1:]:
        names = list_class_names(os.path.join(data_dir, split))
        if names != class_names:
            raise UserError(f"classes in {os.path.join(data_dir, split)!r} {names} differ from {splits[0]}'s "
                            f"{class_names}; every split needs the same class folders")
    for split in splits:
        for name in class_names:
            if not list_image_files(os.path.join(data_dir, split, name)):
                raise UserError(f"class folder {os.path.join(data_dir, split, name)!r} holds no images")
    return class_names


def list_image_files(folder):
    """Entries of `folder` that are not hidden or folders (non-images, FIFOs and such are refused when read)."""
    return sorted(os.path.join(folder, f) for f in os.listdir(folder)
                  if not f.startswith(".") and not os.path.isdir(os.path.join(folder, f)))


def prepare_image(image, image_size, color, normalize):
    """Resize an RGB uint8 image to the model's square input, colour and contrast: (S, S, 1 or 3) uint8. The one
    preprocessing path of every command: "equalize" makes a flat webcam face look like the equalised training faces."""
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
        except ImageRefused:  # load_folder reports it, once
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


def folder_files(folder, class_names):
    """The image files under folder/<class>/ in load_folder's order, and their labels (indices of class_names)."""
    files, labels = [], []
    for label, name in enumerate(class_names):
        class_dir = os.path.join(folder, name)
        if os.path.isdir(class_dir):
            paths = list_image_files(class_dir)
            files += paths
            labels += [label] * len(paths)
    return files, labels


def load_folder(folder, class_names, image_size, color, normalize, cache_dir=None):
    """Decode every image under folder/<class>/ once, resized: (images uint8, labels, skipped paths). Labels index
    `class_names` (a folder may hold a subset); splits above MAX_IN_MEMORY_MB go to a memory-mapped file cache."""
    files, labels = folder_files(folder, class_names)
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
        except ImageRefused as error:
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


def make_augmentation(strength):
    """The training augmentation (run in tf.data, never saved in the model), or None for "none". "original": the
    original's ranges; "light": a third of each, no shear; "camera": the original's plus photometric changes."""
    if strength == "none":
        return None
    from emotion.augmentation import Augmentation
    k = 1 / 3 if strength == "light" else 1
    return Augmentation(k * ROTATION_DEGREES, k * SHIFT_FRACTION, 0.0 if strength == "light" else SHEAR_DEGREES,
                        k * ZOOM_FRACTION, photometric=strength == "camera")


def make_dataset(images, labels, num_classes, batch_size, shuffle=False, augment=None, seed=SEED, drop_remainder=False):
    """Batches of (float32 pixels 0-255, targets) read from the decoded array; order kept unless shuffle. Targets:
    one-hot of integer `labels`, or `labels` themselves when they are rows of class shares (annotators' votes)."""
    ds = tf.data.Dataset.range(len(images))
    if shuffle:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    image_shape = images.shape[1:]

    def take(index):
        batch = tf.numpy_function(lambda i: images[i], [index], tf.uint8)
        batch = tf.ensure_shape(batch, (None, *image_shape))
        targets = tf.gather(labels, index)
        return tf.cast(batch, tf.float32), targets if labels.ndim == 2 else tf.one_hot(targets, num_classes)

    ds = ds.map(take, num_parallel_calls=tf.data.AUTOTUNE)
    if augment is not None:
        # A fresh seed pair per batch, from a seeded stream that differs each epoch: reproducible and parallel.
        batch_seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip(ds, batch_seeds).map(lambda batch, s: (augment(batch[0], s), batch[1]),
                                                      num_parallel_calls=tf.data.AUTOTUNE)
    from emotion.distributed import shard_by_data
    return ds.with_options(shard_by_data()).prefetch(tf.data.AUTOTUNE)


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
    x = keras.layers.Rescaling(1 / 255)(inputs)
    for block, filters in enumerate((16, 32, 64, 128)):
        x = keras.layers.Conv2D(filters, 3, activation="relu")(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.MaxPooling2D(2)(x)
        if block > 0:
            x = keras.layers.Dropout(0.3)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(512, activation="relu", kernel_regularizer=keras.regularizers.l2(0.01))(x)
    x = keras.layers.Dropout(0.5)(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", dtype="float32")(x)  # float32 under mixed precision
    return keras.Model(inputs, outputs, name="cnn")


def conv_bn_relu(x, filters):
    x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
    x = keras.layers.BatchNormalization()(x)
    return keras.layers.ReLU()(x)


def build_compact(input_shape, num_classes):
    """A VGG-style net sized for 48x48 faces on CPU: 9 conv layers, about 1.2 M parameters, 85 MFLOP per face."""
    inputs = keras.Input(input_shape)
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = conv_bn_relu(x, 32)
    for filters in (32, 64, 128, 256):
        x = keras.layers.MaxPooling2D(2)(x)
        x = conv_bn_relu(x, filters)
        x = conv_bn_relu(x, filters)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.4)(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", dtype="float32")(x)  # float32 under mixed precision
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
    x = keras.layers.Concatenate()([inputs] * 3) if input_shape[-1] == 1 else inputs  # grey -> 3 channels
    x = vgg16_preprocess_class()()(x)
    base = load_base("vgg16", (input_shape[0], input_shape[1], 3), weights)
    base.trainable = False
    x = base(x, training=False)
    padding = "valid" if x.shape[1] >= 4 else "same"  # 200 px: 6x6 as the original; 48 px: 1x1
    x = keras.layers.Conv2D(256, 3, activation="relu", padding=padding)(x)
    x = keras.layers.MaxPooling2D(2, padding=padding)(x)
    x = keras.layers.Flatten()(x)
    for units, rate in ((512, 0.5), (256, 0.4)):
        x = keras.layers.Dense(units, activation="relu", kernel_regularizer=keras.regularizers.l2(0.01))(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.Dropout(rate)(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", dtype="float32")(x)  # float32 under mixed precision
    return keras.Model(inputs, outputs, name="vgg16_transfer")


def build_model(name, input_shape, num_classes, learning_rate, base_weights=BASE_WEIGHTS, label_smoothing=0.0,
                weight_decay=0.0):
    """Build and compile one of the architectures; `learning_rate` may be a Keras schedule."""
    if name == "vgg16":
        model = build_vgg16(input_shape, num_classes, base_weights)
    elif name in BASES:
        from emotion.transfer import build_application
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
    """Class probabilities for uint8 images (N, S, S, C); with TTA, averaged with the mirror images'. One batch
    at a time is made float32, so a memory-mapped split is never copied whole into memory."""
    parts = []
    for i in range(0, len(images), batch_size):
        batch = np.asarray(images[i:i + batch_size], dtype=np.float32)
        if tta:  # the faces and their mirror images in one call
            batch = np.concatenate([batch, batch[:, :, ::-1]])
        # predict_on_batch: model.predict's per-call set-up costs more than classifying a few faces
        probabilities = np.asarray(model.predict_on_batch(batch))
        parts.append((probabilities[:len(batch) // 2] + probabilities[len(batch) // 2:]) / 2 if tta else probabilities)
    from emotion.model_checks import finite_probabilities  # a UserError for NaN, in every command
    return finite_probabilities(np.concatenate(parts) if parts else np.zeros((0, model.output_shape[-1]), np.float32))


# -----------------------------------------------------------------------------
# Saving and loading: atomic writes, class names and image settings stored inside the .h5


def save_model(model, path, metadata):
    """Write the model and its metadata with atomic_write: `path` holds the old model or the new one, whole."""
    try:
        import h5py
        with atomic_write(path, ".tmp.h5") as tmp_path:  # Keras only accepts .h5/.keras names
            float32_twin(model).save(tmp_path, include_optimizer=False)  # loads anywhere; --resume keeps the optimizer
            with h5py.File(tmp_path, "a") as f:
                f.attrs[METADATA_KEY] = json.dumps(metadata)
    except OSError as error:  # a full disk: the file at `path` is the previous one, whole
        raise UserError(f"cannot save the model to {path!r} ({error.strerror}); the file there is unchanged; "
                        "free some space and train again") from None


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
    from emotion.model_checks import check_model_file, check_weights
    vgg16_preprocess_class()  # registered, so that a vgg16 model's own layer can be read back
    try:
        metadata = check_model_file(path)  # nesting, size, input and metadata checked before a weight is allocated
        model = keras.models.load_model(path, compile=False, safe_mode=True)  # never runs code stored in the file
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise UserError(f"{path!r} is not a readable Keras model ({type(error).__name__}); "
                        "delete it or retrain with --train-again") from None
    check_weights(model, path)
    metadata.setdefault("normalize", "none")  # saved before --normalize existed: fed as it was trained
    model.compile(loss="categorical_crossentropy", metrics=["accuracy"])  # for evaluate(); no optimizer needed
    return model, metadata


def class_names_of(model, metadata):
    """Class names saved with the model; a model from the original script has none, so say so."""
    if "class_names" not in metadata:
        metadata["class_names"] = [f"class_{i}" for i in range(model.output_shape[-1])]
        print("Warning: the model file stores no class names; labels are shown as class_0, class_1, ...")
    return metadata["class_names"]


def answering_model(model, metadata, classes=None, precision="float32"):
    """(model, metadata) as users get answers: in `precision` (see choose_precision), the stored temperature
    applied; given `classes`, those only."""
    model = with_precision(model, choose_precision(precision)[0])
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


# -----------------------------------------------------------------------------
# Training


def best_model_checkpoint(model, path, metadata, best=math.inf):
    """A callback that atomically saves `model` (with metadata) to `path` whenever val_loss improves; `model`
    is the whole model, also when only part of it is fitted (a head on cached features)."""
    def save_if_better(epoch, logs=None):
        nonlocal best
        val_loss = (logs or {}).get("val_loss", math.inf)
        if val_loss < best:
            best = val_loss
            save_model(model, path, {**metadata, "epoch": epoch + 1, "val_loss": float(val_loss)})
    return keras.callbacks.LambdaCallback(on_epoch_end=save_if_better)


def progress_bar():
    """Keras' per-epoch progress bar, kept from counting past its total in a shorter last steps_per_execution."""
    bar = keras.callbacks.ProgbarLogger()
    update = bar.on_train_batch_end
    bar.on_train_batch_end = lambda batch, logs=None: update(min(batch, (bar.target or math.inf) - 1), logs)
    return bar


def make_callbacks(model, checkpoint_path, output_dir, metadata, reduce_on_plateau=True,
                   patience=EARLY_STOPPING_PATIENCE, backup=True, best_val_loss=math.inf):
    """The original's EarlyStopping and ReduceLROnPlateau, plus a best-model checkpoint, a CSV history,
    and a per-epoch backup (weights, optimizer, epoch) that --resume continues from."""
    callbacks = [
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True, verbose=1),
        best_model_checkpoint(model, checkpoint_path, metadata, best_val_loss),
        rate := keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: logs.setdefault(  # history.csv's,
            "learning_rate", float(keras.ops.convert_to_numpy(rate.model.optimizer.learning_rate)))),  # of the fit
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


def time_budget_callbacks(args):
    """[TimeBudget] for --time-budget (it sets a cosine rate itself; with "plateau" it only stops), else []."""
    from emotion.budget import TimeBudget
    return [TimeBudget(args.time_budget, args.learning_rate, args.epochs, args.lr_schedule == "cosine")
            ] if args.time_budget else []


def balanced_class_weights(labels, num_classes):
    """Inverse-frequency weights (scikit-learn's "balanced"), as a dict for model.fit."""
    from sklearn.utils.class_weight import compute_class_weight
    weights = compute_class_weight("balanced", classes=np.arange(num_classes), y=labels)
    return dict(enumerate(weights.tolist()))


def train_model(model, train_ds, val_ds, *, epochs, model_path, output_dir, metadata, class_weight=None,
                reduce_on_plateau=True, resume=False, patience=EARLY_STOPPING_PATIENCE, head=None,
                steps_per_epoch=None, extra_callbacks=()):
    """Fit with the callbacks; on success the model replaces `model_path`. Ctrl-C keeps the best epoch so far.
    head: the part of `model` to fit on cached features (train_ds then yields features, endlessly)."""
    checkpoint_path = checkpoint_path_for(model_path)
    backup = backup_path_for(checkpoint_path)
    best_val_loss = start_or_resume(checkpoint_path, os.path.join(output_dir, "history.csv"), resume, model_path)
    identity = run_identity(head or model, metadata)
    if resume:
        check_resume_matches(backup, identity)
    multiworker = isinstance(model.distribute_strategy, tf.distribute.MultiWorkerMirroredStrategy)
    check_free_space(model, model_path)
    try:
        callbacks = make_callbacks(model, checkpoint_path, output_dir, metadata, reduce_on_plateau, patience,
                                   backup=not multiworker, best_val_loss=best_val_loss)
        callbacks += [resumable_state(backup, identity, callbacks, resume), *extra_callbacks]
        with ctrl_c_between_steps() as interrupt_point:  # last: it runs after the epoch-end saves
            if multiworker:
                from emotion.distributed import fit_multiworker
                history = fit_multiworker(model, train_ds, val_ds, epochs, [*callbacks, interrupt_point], class_weight)
            else:
                history = (head or model).fit(train_ds, validation_data=val_ds, epochs=epochs, shuffle=False,
                                              steps_per_epoch=steps_per_epoch, class_weight=class_weight,
                                              verbose=1 if sys.stdout.isatty() else 2,  # a file: a line an epoch
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
    if not multiworker:
        keep_best_epoch(model, checkpoint_path)
    save_model(model, model_path, metadata)
    if os.path.exists(checkpoint_path):
        os.remove(checkpoint_path)
    return history.history


def weights_finite(model):
    """False when any weight is NaN or infinite: such a model predicts NaN for every image."""
    return all(np.isfinite(w).all() for w in model.get_weights())


# -----------------------------------------------------------------------------
# Evaluation and plots


def evaluate_model(model, images, labels, class_names, batch_size=BATCH_SIZE, tta=TTA):
    """Loss, accuracy, F1 and report, all from one pass of predictions (with TTA when asked). The loss is the mean
    cross-entropy of those probabilities (log_loss), without the L2 penalties: a training cost, not a test error."""
    from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, f1_score, log_loss
    probabilities = predict_probabilities(model, images, tta, batch_size)
    loss = log_loss(labels, probabilities, labels=list(range(len(class_names))))
    predictions = probabilities.argmax(axis=1)
    indices = list(range(len(class_names)))
    report = classification_report(labels, predictions, labels=indices, target_names=class_names,
                                   digits=4, zero_division=0)
    per_class = classification_report(labels, predictions, labels=indices, target_names=class_names,
                                      output_dict=True, zero_division=0)
    counts = np.bincount(labels, minlength=len(class_names))
    from emotion.calibration import calibration_bins
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


def agreement(folder, class_names, skipped, metrics):
    """The mean share of annotators' votes the answers got, when the data set has votes (prepare --votes)."""
    from emotion.votes import vote_agreement
    files = [f for f in folder_files(folder, class_names)[0] if f not in set(skipped)]
    return vote_agreement(folder, files, metrics["predictions"], class_names)


def print_metrics(metrics):
    """The original's printout, plus macro F1, the majority-class baseline and the calibration error."""
    majority = max(metrics["support"], key=metrics["support"].get)
    for name, key in (("Test Loss", "loss"), ("Test Accuracy", "accuracy"), ("Test F1-Score", "weighted_f1"),
                      ("Test Macro F1-Score", "macro_f1"), (f"Majority-class accuracy (always '{majority}')",
                      "majority_class_accuracy"), ("Expected calibration error", "expected_calibration_error")):
        print(f"{name}: {metrics[key]:.4f}")
    if metrics.get("annotator_agreement") is not None:
        print(f"Annotator agreement (mean share of the votes the answers got): {metrics['annotator_agreement']:.4f}")
    print("Classification Report:\n" + metrics["classification_report"])


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


def plot_training_curves(history, path):
    """Training vs validation loss and accuracy, side by side, as the original."""
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    epochs = range(1, len(history["loss"]) + 1)
    for ax, key in zip(axes, ("loss", "accuracy")):
        ax.plot(epochs, history[key], label=f"Training {key}")
        ax.plot(epochs, history[f"val_{key}"], label=f"Validation {key}")
        ax.set_xlabel("Epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)  # epochs 1, 2, 3, not 0.25 steps
        ax.set_title(f"Training and validation {key}")
        if key == "accuracy":
            ax.set_ylim(0, 1)  # the whole scale: a change from 0.335 to 0.365 looks as small as it is
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return fig


def display_available():
    return sys.platform in ("win32", "darwin") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def report(metrics, labels, source, output_dir, show, history=None):
    """Print, save and plot the evaluation of the faces in folder `source` (and the training curves)."""
    metrics = {**metrics, "data": os.path.abspath(source)}  # which faces a number is about travels with it
    import matplotlib
    if not show:
        matplotlib.use("Agg")  # files only: no window, and no display needed
    import matplotlib.pyplot as plt

    from emotion.calibration import plot_reliability
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


# -----------------------------------------------------------------------------
# Commands (train is the original's flow; the others live in emotion/) and the command line


def run_train(args):
    """The original script's flow: load or train, save, then evaluate on test/."""
    # all workers of a cluster must take part in training, whatever files each of them holds
    trained = (args.train_again or args.resume or args.distribute == "multiworker"
               or not os.path.exists(args.model_path))
    class_names = check_train_options(args, trained)  # before TensorFlow is imported: a wrong path fails at once
    from emotion.distributed import is_chief, make_strategy, send_worker_outputs_to_scratch
    strategy = make_strategy(args.distribute)
    if not is_chief(strategy):
        send_worker_outputs_to_scratch(args, strategy)
    check_output_dir(args.output_dir, args.data, check_training_files(args, trained))
    check_writable(os.path.dirname(os.path.abspath(args.model_path)))
    keras.utils.set_random_seed(args.seed)
    if trained:
        image = choose_input(args, class_names)
    else:
        model, metadata = load_trained_model(args.model_path)
        from emotion.model_checks import check_model_matches
        check_model_matches(metadata, model, class_names, args.model_path, args.image_size, args.color)
        metadata.setdefault("class_names", class_names)  # a model from the original script: the data's classes
        if metadata["class_names"] != class_names:
            print(f"The model knows {','.join(metadata['class_names'])}: its answers are restricted to the data's "
                  f"classes {','.join(class_names)}")
        model, metadata = answering_model(model, metadata, class_names, args.precision)
        print(f"Model loaded from {args.model_path} (train_again is False, so no training)")
        image = {key: metadata[key] for key in ("image_size", "color", "normalize")}
    settings = {**vars(args), **image, "class_names": class_names, "trained": trained}
    shown = settings if trained else {k: settings[k] for k in ("model_path", "data", "output_dir", "batch_size", "tta",
                                                               "precision", *image, "class_names")}
    print("Settings: " + ", ".join(f"{k}={v}" for k, v in shown.items() if k != "command"))
    splits = load_splits(args.data, class_names, image, SPLITS if trained else ("test",),
                         os.path.join(args.output_dir, "cache"))
    history = None
    if trained:
        model, history = train_new_model(args, strategy, splits, class_names, image)
    write_file(os.path.join(args.output_dir, "config.json"), json.dumps(settings, indent=2))
    images, labels, skipped = splits["test"]
    metrics = evaluate_model(model, images, labels, class_names, args.batch_size, args.tta)
    metrics["annotator_agreement"] = agreement(os.path.join(args.data, "test"), class_names, skipped, metrics)
    report(metrics, labels, os.path.join(args.data, "test"), args.output_dir, args.show, history)


def check_train_options(args, trained):
    """Refuse option combinations that cannot work, and check the data set's layout (only test/ if not `trained`)."""
    # float16: Keras' LossScaleOptimizer fails under MultiWorkerMirroredStrategy (docs/design.md)
    single_machine = [flag for flag, on in (("--resume", args.resume), ("--cache-features", args.cache_features),
                                            ("--precision float16", args.precision == "float16")) if on]
    if args.distribute == "multiworker" and single_machine:
        raise UserError(f"{single_machine[0]} does not work with --distribute multiworker; leave one of them out")
    if args.cache_features and args.model != "vgg16":
        raise UserError("--cache-features needs a frozen base: use it with --model vgg16")
    return check_dataset_layout(args.data, SPLITS if trained else ("test",))


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


def vote_targets(data_dir, splits, class_names):
    """{split: each face's share of the annotators' votes among class_names} for train and val, when the data set
    has a votes file (prepare --votes); else None. A face with no vote among the classes keeps its folder's class."""
    from emotion.votes import VOTE_NAMES, find_votes_file, vote_shares, votes_for
    path = find_votes_file(data_dir)
    if path is None:
        return None
    if not set(class_names) <= set(VOTE_NAMES):
        print(f"Targets: class folders ({path} has no votes for {sorted(set(class_names) - set(VOTE_NAMES))})")
        return None
    targets = {}
    for split in ("train", "val"):
        _, labels, skipped = splits[split]
        files = [f for f in folder_files(os.path.join(data_dir, split), class_names)[0] if f not in set(skipped)]
        shares, has_votes = vote_shares(votes_for(files, path), class_names)
        shares[~has_votes] = np.eye(len(class_names), dtype=np.float32)[labels[~has_votes]]
        if not has_votes.all():
            print(f"Warning: {(~has_votes).sum()} {split} face(s) have no votes among {','.join(class_names)} in "
                  f"{path}; each learns its folder's class")
        targets[split] = shares
    print(f"Targets: each face's share of the annotators' votes in {path} (--targets folders: the class folders)")
    return targets


def train_new_model(args, strategy, splits, class_names, image):
    """Build (or start from --initial-model), make the data, fit and save: returns (model, history)."""
    precision, why = choose_precision(args.precision, args.distribute == "multiworker")
    print(f"Precision: {precision} ({why})")
    set_precision(precision)
    num_classes, train_labels = len(class_names), splits["train"][1]
    steps_per_epoch = math.ceil(len(train_labels) / args.batch_size)
    # a time budget sets the rate itself (TimeBudget), as the run's length is known only once it runs
    learning_rate = make_learning_rate(args.learning_rate, "plateau" if args.time_budget else args.lr_schedule,
                                       args.epochs, steps_per_epoch)
    input_shape = (image["image_size"], image["image_size"], 1 if image["color"] == "grayscale" else 3)
    with strategy.scope():
        model = build_model(args.model, input_shape, num_classes, learning_rate, args.base_weights,
                            args.label_smoothing, args.weight_decay)
        if args.initial_model:
            from emotion.transfer import start_from
            start_from(model, args.initial_model)
    metadata = {"class_names": class_names, **image, "model": args.model, "trained_on": data_label(args.data),
                "created": datetime.datetime.now().isoformat(timespec="seconds")}
    augment = make_augmentation(args.augment)
    targets = {split: splits[split][1] for split in ("train", "val")}
    if args.targets == "votes":
        targets = vote_targets(args.data, splits, class_names) or targets
    metadata["targets"] = "votes" if targets["train"].ndim == 2 else "folders"
    start = time.perf_counter()
    if args.cache_features:
        from emotion.features import make_feature_data
        head, train_ds, val_ds = make_feature_data(model, strategy, splits, targets, num_classes, augment, args)
        print(f"Features ready in {time.perf_counter() - start:.0f} s; training the head on them")
    else:
        head = None
        train_ds = make_dataset(splits["train"][0], targets["train"], num_classes, args.batch_size, shuffle=True,
                                augment=augment, seed=args.seed,
                                drop_remainder=args.distribute == "multiworker")  # no empty shares
        val_ds = make_dataset(splits["val"][0], targets["val"], num_classes, args.batch_size)
    history = train_model(
        model, train_ds, val_ds, epochs=args.epochs, model_path=args.model_path, output_dir=args.output_dir,
        metadata=metadata, reduce_on_plateau=args.lr_schedule == "plateau", resume=args.resume,
        patience=args.patience, head=head, steps_per_epoch=steps_per_epoch if head is not None else None,
        extra_callbacks=time_budget_callbacks(args),
        class_weight=balanced_class_weights(train_labels, num_classes) if args.class_weight == "balanced" else None)
    print(f"Trained {len(history['loss'])} epochs in {time.perf_counter() - start:.0f} s; "
          f"model saved to {args.model_path}")
    if args.distribute == "multiworker":  # a local copy: the distributed model needs every worker to predict
        model, _ = load_trained_model(args.model_path)
    from emotion.calibration import calibrate_model
    metadata["temperature"] = calibrate_model(model, metadata, *splits["val"][:2], args.model_path)
    return answering_model(model, metadata)[0], history


def make_parser():
    parser = argparse.ArgumentParser(
        description="Facial emotion recognition. With no command, runs 'train' (the original script: "
                    "train or load, then evaluate on test/).",
        epilog="Each command's options, with their defaults: python emotion_recognition.py COMMAND --help "
               "(e.g. train --help).",
        formatter_class=HelpFormatter)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND",  # each with its defaults in --help
                                     parser_class=functools.partial(argparse.ArgumentParser,
                                                                    formatter_class=HelpFormatter))

    def model_options(model_path, results=True):
        """Options of every command that loads a model (serve too); `results`: it also writes results."""
        options = argparse.ArgumentParser(add_help=False)
        if model_path == MODEL_PATH:  # train reads and writes it in the working folder, as the original
            options.add_argument("--model-path", type=model_file_arg, default=model_path,
                                 help="trained model file (.h5)")
        else:  # None: main() takes the working folder's, else the shipped one beside this script
            options.add_argument("--model-path", type=model_file_arg,
                                 help=f"trained model file (.h5) (default: {model_path}, from the working folder "
                                      "or else the one beside this script)")
        options.add_argument("--tta", action=argparse.BooleanOptionalAction, default=TTA,
                             help="average predictions with the horizontally flipped image")
        options.add_argument("--precision", default=PRECISION, choices=PRECISIONS,
                             help="float32, Keras' mixed bfloat16/float16, or auto (docs/performance.md)")
        if results:
            options.add_argument("--output-dir", default=OUTPUT_DIR, help="folder for metrics, reports and plots")
            options.add_argument("--batch-size", type=positive_int, default=BATCH_SIZE, help="images per batch")
            options.add_argument("--no-show", dest="show", action="store_false",
                                 help="never open plot windows (plots are always saved as PNG)")
        return options

    classes_option = argparse.ArgumentParser(add_help=False)  # every command that answers with the model's classes
    classes_option.add_argument("--classes", type=class_list, metavar="A,B,...",
                                help="answer over these of the model's classes only (probabilities renormalised "
                                     "over them), e.g. angry,happy,sad; default: all of them")
    detector_option = argparse.ArgumentParser(add_help=False)  # every command that finds faces
    detector_option.add_argument("--detector", default=DETECTOR, choices=DETECTORS,
                                 help="face detector: a CNN whose weights come in its pip package, or OpenCV's Haar "
                                      "cascade, as the original")
    common, answers = model_options(MODEL_PATH), model_options(FACES_MODEL_PATH)
    labels = model_options(FACES_MODEL_PATH, results=False)  # predict, webcam, serve write no metrics or plots

    train = commands.add_parser("train", parents=[common],
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
    train.add_argument("--lr-schedule", default=LR_SCHEDULE, choices=("plateau", "cosine"), help="rate schedule")
    train.add_argument("--label-smoothing", type=float_in_range(0, 1, high_included=False), default=LABEL_SMOOTHING,
                       help="label smoothing (0 to 1, 1 excluded)")
    train.add_argument("--weight-decay", type=float_in_range(0, math.inf, high_included=False), default=WEIGHT_DECAY,
                       help="AdamW decoupled weight decay; 0 uses plain Adam")
    train.add_argument("--cache-features", action="store_true", default=CACHE_FEATURES,
                       help=f"vgg16: fit the head on the frozen base's stored outputs ({FEATURE_VIEWS} views a face)")
    train.add_argument("--distribute", default=DISTRIBUTE, choices=("auto", "mirrored", "multiworker", "none"),
                       help="auto: MirroredStrategy when a GPU is visible; multiworker: the machines in $TF_CONFIG")
    train.add_argument("--mixed-precision", dest="precision", action="store_const", const="float16",
                       help="the same as --precision float16")
    train.add_argument("--time-budget", type=positive_float, metavar="MINUTES", default=TIME_BUDGET,
                       help="train for at most this long (the best epoch is kept); see --lr-schedule")
    train.add_argument("--class-weight", default=CLASS_WEIGHT, choices=("none", "balanced"), help="class weights")
    train.add_argument("--targets", default=TARGETS, choices=("votes", "folders"),
                       help="with a votes file beside the data (prepare --votes): learn each face's share of the "
                            "votes, or its class folder")

    evaluate = commands.add_parser("evaluate", parents=[answers, classes_option],
                                   help="evaluate the saved model on a folder of <class>/ sub-folders")
    evaluate.add_argument("folder", help="folder whose sub-folders are classes (e.g. HASsplittedDS/test)")

    predict = commands.add_parser("predict", parents=[labels, classes_option, detector_option],
                                  help="label each face in image files or folders")
    predict.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders of images")
    predict.add_argument("--no-detect", action="store_true", help="classify each whole image; no face detection")
    predict.add_argument("--json", action="store_true", help="one JSON object per image per line")
    predict.add_argument("--save", metavar="DIR", help="write annotated copies of the images here")

    webcam = commands.add_parser("webcam", parents=[labels, classes_option, detector_option],
                                 help="label faces live from a camera or a video file (q or Ctrl-C quits)")
    webcam.add_argument("--source", default="0", help="camera index or video file")
    webcam.add_argument("--no-display", dest="display", action="store_false", help="run without a window")
    webcam.add_argument("--output", metavar="FILE", help="write the annotated video here (.mp4 or .avi)")
    webcam.add_argument("--max-frames", type=positive_int, help="stop after this many frames")
    webcam.add_argument("--json", metavar="FILE", help="one JSON line per frame (time, faces, tracks), a summary last")
    webcam.add_argument("--csv", metavar="FILE", help="one CSV row per face per frame")
    webcam.add_argument("--timeline", metavar="FILE", help="plot each tracked face's probabilities over time (.png)")

    prepare = commands.add_parser("prepare", parents=[detector_option],
                                  help="build train/val/test folders from FER2013 or a folder of classes")
    prepare.add_argument("--source", required=True,
                         help="fer2013.csv, FER2013's image release (train/, test/), or a folder of class folders")
    prepare.add_argument("--out", required=True, help="folder to write train/, val/, test/ into")
    prepare.add_argument("--classes", type=class_list, metavar="A,B,...",
                         help="comma-separated (default: angry,happy,sad for FER2013, each sub-folder of a folder)")
    prepare.add_argument("--seed", type=SEED_ARG, default=SEED, help="seed of the stratified split")
    prepare.add_argument("--force", action="store_true", help="write into a non-empty --out")
    prepare.add_argument("--group-pattern", type=regex_arg, default=GROUP_PATTERN,
                         help="files whose names begin with the same match (a person's id) share a split; 'none': off")
    prepare.add_argument("--crop-faces", action="store_true",
                         help="store the largest detected face of each photo; photos with none are skipped")
    prepare.add_argument("--votes", metavar="VOTES.csv",
                         help="annotators' votes keyed by image path under --source (FER+ columns): file each face "
                              "under its vote plurality and keep the votes for training (default classes: seven)")
    prepare.add_argument("--ferplus", metavar="fer2013new.csv",
                         help="FER+'s votes for --source fer2013.csv, row for row: as --votes")
    serve = commands.add_parser("serve", parents=[labels, classes_option, detector_option],
                                help="a web page to try the model in a browser, plus a JSON API")
    serve.add_argument("--host", type=host_arg, default=SERVE_HOST, help="address to listen on (0.0.0.0: any network)")
    serve.add_argument("--port", type=int_in_range(1, 65535), default=SERVE_PORT, help="TCP port to listen on")
    serve.add_argument("--allowed-host", action="append", default=[], type=host_name_arg, metavar="NAME",
                       help="also answer requests whose Host is NAME (a reverse proxy's public name); localhost and "
                            "the --host address always are, no other (DNS rebinding). May be repeated")
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
    if getattr(args, "model_path", "") is None:
        args.model_path = default_model_path(FACES_MODEL_PATH, os.path.dirname(os.path.abspath(__file__)))
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


def job(module, function):
    """A command of a module in emotion/, imported only when that command runs."""
    return lambda args: getattr(importlib.import_module(f"emotion.{module}"), function)(args)


COMMANDS = {"train": run_train, "evaluate": job("evaluate", "run_evaluate"), "predict": job("faces", "run_predict"),
            "webcam": job("video", "run_webcam"), "prepare": job("prepare", "run_prepare"),
            "serve": job("serve", "run_serve")}

if __name__ == "__main__":
    sys.exit(main())
