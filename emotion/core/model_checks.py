"""Checks of a model file: its JSON nesting, its parameter count and its input are checked before any weight is
allocated; its stored metadata must describe the model it came with, and must fit the data and options of this
run; its answers must be numbers."""

import json
import re

import numpy as np

from emotion.io.arguments import MAX_IMAGE_SIZE
from emotion.io.errors import ModelError, UserError
from emotion.io.internals import model_from_h5_config

METADATA_KEY = "emotion_recognition"  # HDF5 attribute holding class names and image settings
TEMPERATURE_RANGE = (0.05, 20.0)  # calibration temperatures searched (and accepted in a model file)

MAX_JSON_DEPTH = 100  # model config and metadata nested deeper are refused unparsed (the shipped models: 10)
MAX_ATTRIBUTE_CHARS = {"emotion_recognition": 100_000,  # metadata and model config longer are refused unparsed
                       "model_config": 5_000_000}  # (the shipped models: 400 and 28,600 characters)
MAX_MODEL_PARAMS = 100_000_000  # models declaring more parameters (400 MB of float32) are refused unbuilt
#                                 (the largest architecture here, ResNet50V2 at 256 px, has 24 M)


def json_depth(text):
    """How deeply `text` nests [ and {, outside its strings, counted without recursion (json.loads recurses)."""
    depth = deepest = 0
    for bracket in re.findall(r"[\[\]{}]", re.sub(r'"(?:[^"\\]|\\.)*"', "", text)):
        depth += 1 if bracket in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def parse_attribute(attributes, key, path):
    """The JSON object in one attribute of the .h5 file (text, never deeper than MAX_JSON_DEPTH)."""
    text = attributes.get(key, "{}")
    text = text.decode("utf-8") if isinstance(text, bytes) else str(text)
    if len(text) > MAX_ATTRIBUTE_CHARS[key]:  # parsing takes about 100 times the text's size
        raise UserError(f"{path!r}: its stored {key} is longer than {MAX_ATTRIBUTE_CHARS[key]:,} characters "
                        "(MAX_ATTRIBUTE_CHARS); the file is damaged or was edited: retrain with --train-again")
    if json_depth(text) > MAX_JSON_DEPTH:
        raise ModelError(f"{path!r}: its stored {key} nests deeper than {MAX_JSON_DEPTH} levels (MAX_JSON_DEPTH); "
                        "the file is damaged or was made to crash a reader: retrain with --train-again")
    return json.loads(text)


def check_model_file(path):
    """The metadata of a model file, once its architecture was built without allocating a weight (Keras'
    StatelessScope, variables left uninitialised) and checked: at most MAX_MODEL_PARAMS parameters, a fixed
    input that the metadata describes (validate_model). For a model of the original script (no metadata),
    image_size and color are read from its input. OSError/ValueError/... when it is not a readable model."""
    import h5py
    with h5py.File(path, "r") as f:
        metadata, config = parse_attribute(f.attrs, METADATA_KEY, path), parse_attribute(f.attrs, "model_config", path)
    if not config:
        raise ValueError("no model config")
    lambdas = lambda_layers(config)
    if lambdas:  # Keras refuses them too (safe_mode), with a sentence about a flag; this one says what to do
        raise ModelError(f"{path!r}: its layer {lambdas[0]!r} is a Lambda, Python code stored in the model file, which "
                        "this script never runs (it could do anything); use a model made of Keras' own layers, or "
                        "retrain with --train-again")
    model = model_from_h5_config(config)
    if model.count_params() > MAX_MODEL_PARAMS:
        raise ModelError(f"{path!r}: the model declares {model.count_params():,} parameters, above the limit of "
                        f"{MAX_MODEL_PARAMS:,} (MAX_MODEL_PARAMS); the file is damaged or was edited: retrain with "
                        "--train-again")
    if isinstance(metadata, dict) and not {"image_size", "color"} <= set(metadata):  # a model from the original
        channels = model.input_shape[-1]  # script (no metadata) or stored without these: infer them
        metadata = {"image_size": model.input_shape[1], "color": "grayscale" if channels == 1 else "rgb", **metadata}
    validate_model(model, metadata, path)
    return metadata


def lambda_layers(config):
    """The names of the Lambda layers anywhere in a model config (nested models included), in no set order."""
    found, pending = [], [config]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            if item.get("class_name") == "Lambda":
                layer = item.get("config")
                found.append(str(layer.get("name", "?")) if isinstance(layer, dict) else "?")
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return found


def validate_model(model, metadata, path):
    """The stored metadata must describe the model it came with (a stored image_size of 30000 would decode
    every image at that size): one line naming the file when it does not, or when a weight is NaN."""
    def refuse(problem):
        raise ModelError(f"{path!r}: {problem}; the file is damaged or was edited: retrain with --train-again")
    if not isinstance(metadata, dict):
        refuse(f"stored metadata {metadata!r} is not a JSON object")
    shape, outputs = model.input_shape, model.output_shape
    if not (isinstance(shape, tuple) and len(shape) == 4 and isinstance(outputs, tuple) and len(outputs) == 2):
        refuse(f"the model takes {shape} and gives {outputs}, not one image batch in and class probabilities out")
    size, color, names = metadata.get("image_size"), metadata.get("color"), metadata.get("class_names")
    if type(size) is not int or shape[1:3] != (size, size) or not 0 < size <= MAX_IMAGE_SIZE:
        refuse(f"stored image_size {size!r} does not match the model's input {shape[1]}x{shape[2]}, a fixed size of "
               f"at most {MAX_IMAGE_SIZE} (MAX_IMAGE_SIZE)")
    if color not in ("grayscale", "rgb") or shape[3] != (1 if color == "grayscale" else 3):
        refuse(f"stored color {color!r} does not match the model's {shape[3]} input channel(s)")
    if names is not None and (not isinstance(names, list) or len(set(names)) != len(names) or len(names) != outputs[1]
                              or not all(isinstance(n, str) and n and n.isprintable() for n in names)):
        refuse(f"stored class_names {names!r} are not {outputs[1]} distinct names for the model's {outputs[1]} "
               "outputs, each printable")
    temperature = metadata.get("temperature", 1.0)
    if type(temperature) not in (int, float) or not TEMPERATURE_RANGE[0] <= temperature <= TEMPERATURE_RANGE[1]:
        refuse(f"stored temperature {temperature!r} is not a number from {TEMPERATURE_RANGE[0]} to "
               f"{TEMPERATURE_RANGE[1]}")
    if metadata.get("normalize", "none") not in ("equalize", "none"):
        refuse(f"stored normalize {metadata['normalize']!r} is not 'equalize' or 'none'")


def weights_finite(model):
    """False when any weight is NaN or infinite: such a model predicts NaN for every image."""
    return all(np.isfinite(w).all() for w in model.get_weights())


def check_weights(model, path):
    """The loaded weights must be numbers: a NaN weight makes every answer NaN."""
    if not weights_finite(model):
        raise ModelError(f"{path!r}: the model's weights hold NaN or infinite values (a diverged training run); the "
                        "file is damaged or was edited: retrain with --train-again")


def finite_probabilities(probabilities):
    """`probabilities`, when every one is a number; else a UserError: finite weights can still overflow."""
    if not np.isfinite(probabilities).all():
        bad = int((~np.isfinite(probabilities)).any(axis=1).sum())
        raise UserError(f"the model gave NaN or infinite probabilities for {bad} of {len(probabilities)} image(s) "
                        "(its weights overflow); retrain it with --train-again or use another --model-path")
    return probabilities


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
