"""Checks of a loaded model file: its stored metadata must describe the model it came with, and must fit the
data and options of this run."""

from emotion.files import UserError
from emotion_recognition import TEMPERATURE_RANGE, weights_finite


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
