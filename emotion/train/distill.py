"""Distillation (train --teacher): each training face learns a blend of its own target and the mean answer of one or
more trained networks, the teachers (an ensemble taught to one network of one network's cost at inference)."""

import hashlib
import os
import pathlib

import numpy as np

from emotion.core.answers import answering_model, predict_probabilities
from emotion.core.model_files import load_trained_model
from emotion.io.errors import ModelError, UserError


def load_teacher(path, class_names, image):
    """A teacher as users get its answers (its stored temperature), over `class_names` in that order. A UserError,
    naming the teacher, for one that cannot be read, takes other faces (size, colour, normalisation) than the student,
    or lacks one of the classes."""
    try:
        model, metadata = load_trained_model(path)
    except ModelError as error:
        raise UserError(f"--teacher: {error}") from None
    if "class_names" not in metadata and model.output_shape[-1] == len(class_names):
        metadata["class_names"] = list(class_names)  # the original script's file: it knows the data's classes
    takes = (metadata["image_size"], metadata["color"], metadata.get("normalize", "none"))
    wanted = (image["image_size"], image["color"], image["normalize"])
    missing = [c for c in class_names if c not in metadata.get("class_names", [])]
    if takes != wanted or missing:
        raise UserError(f"--teacher {path!r} takes {takes[0]}x{takes[0]} {takes[1]} faces, normalised {takes[2]!r}, "
                        f"of the classes {','.join(metadata.get('class_names', ['(not stored)']))}; the student "
                        f"learns {wanted[0]}x{wanted[0]} {wanted[1]} faces, normalised {wanted[2]!r}, of "
                        f"{','.join(class_names)}: teach it with a model trained for those")
    return answering_model(model, metadata, class_names, "float32")[0]


def teacher_probabilities(paths, images, class_names, image):
    """The teachers' mean probabilities over `class_names` (in that order) for `images`, the faces as the student
    reads them (no augmentation)."""
    return sum(predict_probabilities(load_teacher(path, class_names, image), images) for path in paths) / len(paths)


def teacher_targets(targets, paths, weight, images, class_names, image):
    """Training targets blended with the teachers': (1 - weight) of each face's own (its vote shares, or its folder's
    class) and `weight` of the teachers' mean answer for it; and what the model file stores of it (the teachers' file
    names, the first 12 hex digits of each file's SHA-256, and the weight). Says what it did in one line."""
    own = targets if targets.ndim == 2 else np.eye(len(class_names), dtype=np.float32)[targets]
    taught = teacher_probabilities(paths, images, class_names, image)
    stored = {"models": [os.path.basename(p) for p in paths], "weight": weight,
              "sha256": [hashlib.sha256(pathlib.Path(p).read_bytes()).hexdigest()[:12] for p in paths]}
    print(f"Targets: {1 - weight:g} of each training face's own, {weight:g} of the mean answer of "
          f"{', '.join(stored['models'])} (--teacher)")
    return ((1 - weight) * own + weight * taught).astype(np.float32), stored
