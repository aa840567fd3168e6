"""How a loaded model answers: in the precision asked, with its stored calibration temperature, over all its classes
or some of them (answering_model), and its probabilities for a batch of faces, with flip TTA (predict_probabilities)."""

import warnings

import numpy as np

from emotion.core.model_checks import finite_probabilities
from emotion.core.precision import choose_precision, with_precision
from emotion.io.errors import ArgumentError
from emotion.io.opencv_nets import checked_net

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
    applied; given `classes`, those only. The model returned has what predict_probabilities uses of a Keras model
    (predict_on_batch, output_shape): the Keras model itself when it answers as it is, else an Answers. In float32 on
    a CPU, a network of layers OpenCV's DNN module runs (the compact and original ones) is answered by OpenCV, the
    same answers within 1e-4 for about half the CPU a face (docs/detection.md)."""
    precision = choose_precision(precision)[0]
    model = with_precision(model, precision)
    names = class_names_of(model, metadata)
    classes = list(classes or names)
    unknown = [c for c in classes if c not in names]
    if unknown:
        raise ArgumentError(f"the model has no class {unknown[0]!r}; its classes are {','.join(names)}")
    net = checked_net(model, model.input_shape[1:], 1, 0, 255) if precision == "float32" and \
        None not in model.input_shape[1:] else None  # OpenCV's, where it answers as Keras does (else Keras')
    network = model.predict_on_batch if net is None else (lambda batch: net(batch)[0])
    answers = Answers(network, [names.index(c) for c in classes], metadata.get("temperature", 1.0), len(names))
    if net is None and answers.whole:
        return model, metadata
    return answers, metadata if classes == names else {**metadata, "class_names": classes}


class Answers:
    """A network's probabilities over the `kept` classes (their indices), calibrated by `temperature` and
    renormalised in one step, softmax(log p / T); `network` computes a batch's probabilities over all classes (the
    Keras model's predict_on_batch, or OpenCV's run of the same layers)."""

    def __init__(self, network, kept, temperature, classes):
        self.network, self.kept, self.temperature = network, kept, temperature
        self.output_shape = (None, len(kept))
        self.whole = kept == list(range(classes)) and temperature == 1.0  # all `classes`, as they are

    def predict_on_batch(self, batch):
        probabilities = np.asarray(self.network(batch))
        if self.whole:
            return probabilities
        from scipy.special import softmax
        return softmax(np.log(np.maximum(probabilities[:, self.kept], 1e-12)) / self.temperature, axis=-1)


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
