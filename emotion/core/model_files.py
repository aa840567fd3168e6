"""Model files: atomic saving with the class names and image settings inside the .h5, loading with clear errors
(emotion/core/model_checks.py checks the file first), and where the shipped models are. How a loaded model answers:
emotion/core/answers.py."""

import json
import os

from emotion.core.model_checks import METADATA_KEY, check_model_file, check_weights, parse_attribute
from emotion.core.models import vgg16_preprocess_class
from emotion.core.precision import float32_twin
from emotion.io.errors import ModelError, UserError
from emotion.io.files import atomic_write
from emotion.io.lazy_import import LazyModule

keras = LazyModule("keras")

FACES_MODEL_PATH = "EmotionRecognitionSystem7.h5"  # evaluate, predict, webcam, serve: the shipped seven-class model
SHIPPED_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "shipped")  # package data


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


def default_model_path(name, shipped_folder=SHIPPED_DIR):
    """--model-path when not given: `name` in the working folder when it is there, else the shipped model of
    that name in `shipped_folder`, so that it is found from any folder."""
    beside = os.path.join(shipped_folder, name)
    return beside if not os.path.exists(name) and os.path.exists(beside) else name
