"""Model files and how a loaded model answers: atomic saving with the class names and image settings inside the
.h5, loading with clear errors (emotion/model_checks.py checks the file first), the answering model (precision,
calibration temperature, a subset of classes), its probabilities, and the options of every command that loads one."""

import argparse
import json
import os
import warnings

import numpy as np

from emotion.arguments import class_list, model_file_arg
from emotion.errors import ArgumentError, ModelError, UserError
from emotion.files import atomic_write
from emotion.lazy_import import LazyModule
from emotion.model_checks import (METADATA_KEY, check_model_file, check_weights, finite_probabilities,
                                  parse_attribute)
from emotion.models import vgg16_preprocess_class
from emotion.precision import PRECISION, PRECISIONS, choose_precision, float32_twin, with_precision

keras = LazyModule("keras")

FACES_MODEL_PATH = "EmotionRecognitionSystem7.h5"  # evaluate, predict, webcam, serve: the shipped seven-class model
SHIPPED_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "shipped")  # the shipped models (package data)
TTA = False  # average each prediction with that of the horizontally flipped image
INFERENCE_BATCH_SIZE = 256  # faces per model call when predicting


def add_model_arguments(parser, model_path=None):
    """The options of every command that loads (or trains) a model: its file, TTA and precision. model_path: train's
    file, in the working folder as the original; None: FACES_MODEL_PATH, from the working folder or else the shipped
    one (emotion_recognition.main resolves it)."""
    if model_path:
        parser.add_argument("--model-path", type=model_file_arg, default=model_path, help="trained model file (.h5)")
    else:
        parser.add_argument("--model-path", type=model_file_arg,
                            help=f"trained model file (.h5) (default: {FACES_MODEL_PATH}, from the working folder "
                                 "or else the one shipped with the package)")
    parser.add_argument("--tta", action=argparse.BooleanOptionalAction, default=TTA,
                        help="average predictions with the horizontally flipped image")
    parser.add_argument("--precision", default=PRECISION, choices=PRECISIONS,
                        help="float32, Keras' mixed bfloat16/float16, or auto (docs/performance.md)")


def add_classes_argument(parser):
    """--classes, of every command that answers with the model's classes."""
    parser.add_argument("--classes", type=class_list, metavar="A,B,...",
                        help="answer over these of the model's classes only (probabilities renormalised "
                             "over them), e.g. angry,happy,sad; default: all of them")


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
        return parse_attribute(f.attrs, METADATA_KEY, path)


def load_trained_model(path):
    """Load a model saved by this program: returns (model, metadata). Clear errors for bad files."""
    if not os.path.isfile(path):
        raise ModelError(f"model file {path!r} not found; train one first (python emotion_recognition.py "
                        "--train-again) or pass --model-path")
    vgg16_preprocess_class()  # registered, so that a vgg16 model's own layer can be read back
    try:
        metadata = check_model_file(path)  # nesting, size, input and metadata checked before a weight is allocated
        model = keras.models.load_model(path, compile=False, safe_mode=True)  # never runs code stored in the file
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise ModelError(f"{path!r} is not a readable Keras model ({type(error).__name__}); "
                        "delete it or retrain with --train-again") from None
    check_weights(model, path)
    metadata.setdefault("normalize", "none")  # saved before --normalize existed: fed as it was trained
    model.compile(loss="categorical_crossentropy", metrics=["accuracy"])  # for evaluate(); no optimizer needed
    return model, metadata


def class_names_of(model, metadata):
    """Class names saved with the model; a model from the original script has none, so say so."""
    if "class_names" not in metadata:
        metadata["class_names"] = [f"class_{i}" for i in range(model.output_shape[-1])]
        warnings.warn("the model file stores no class names; labels are shown as class_0, class_1, ...",
                      stacklevel=2)
    return metadata["class_names"]


def answering_model(model, metadata, classes=None, precision="float32"):
    """(model, metadata) as users get answers: in `precision` (see choose_precision), the stored temperature
    applied; given `classes`, those only."""
    model = with_precision(model, choose_precision(precision)[0])
    names = class_names_of(model, metadata)
    classes = list(classes or names)
    unknown = [c for c in classes if c not in names]
    if unknown:
        raise ArgumentError(f"the model has no class {unknown[0]!r}; its classes are {','.join(names)}")
    temperature = metadata.get("temperature", 1.0)
    if classes == names and temperature == 1.0:
        return model, metadata
    ops = keras.ops
    chosen = ops.take(model.output, [names.index(c) for c in classes], axis=1)
    # softmax(log p / T) over the kept classes: calibrated and renormalised in one step
    outputs = ops.softmax(ops.log(ops.maximum(chosen, 1e-12)) / temperature, axis=-1)
    return keras.Model(model.input, outputs, name=model.name), {**metadata, "class_names": classes}


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
    # a UserError for NaN, in every command
    return finite_probabilities(np.concatenate(parts) if parts else np.zeros((0, model.output_shape[-1]), np.float32))
