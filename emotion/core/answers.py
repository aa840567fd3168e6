"""How a loaded model answers: in the precision asked, with its stored calibration temperature, over all its classes
or some of them (answering_model), and its probabilities for a batch of faces, with flip TTA (predict_probabilities)."""

import warnings

import numpy as np

from emotion.core.model_checks import finite_probabilities
from emotion.core.precision import choose_precision, with_precision
from emotion.io.errors import ArgumentError
from emotion.io.lazy_import import LazyModule

keras = LazyModule("keras")

TTA = False  # average each prediction with that of the horizontally flipped image
INFERENCE_BATCH_SIZE = 256  # faces per model call when predicting


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
