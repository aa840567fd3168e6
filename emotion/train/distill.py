"""Distillation (train --teacher): each training face learns a blend of its own target and the mean answer of one or
more trained networks, the teachers (an ensemble taught to one network of one network's cost at inference)."""

import os

import numpy as np

from emotion.core.answers import answering_model, predict_probabilities
from emotion.core.model_checks import check_model_matches
from emotion.core.model_files import load_trained_model
from emotion.io.errors import UserError


def teacher_probabilities(paths, images, class_names, image):
    """The teachers' mean probabilities over `class_names` (in that order) for `images`, the faces as the student
    reads them (no augmentation), each teacher answering as users get its answers (its stored temperature). A
    UserError for a teacher that takes another input (size, colour, normalisation) or lacks a class."""
    total = 0.0
    for path in paths:
        model, metadata = load_trained_model(path)
        check_model_matches(metadata, model, class_names, path, image["image_size"], image["color"])
        if metadata.get("normalize", "none") != image["normalize"]:
            raise UserError(f"teacher {path!r} takes faces normalised {metadata.get('normalize', 'none')!r}, the "
                            f"student {image['normalize']!r}; pass --normalize {metadata.get('normalize', 'none')} "
                            "or another --teacher")
        model, _ = answering_model(model, metadata, class_names, "float32")
        total = total + predict_probabilities(model, images)
    return total / len(paths)


def teacher_targets(targets, paths, weight, images, class_names, image):
    """Training targets blended with the teachers': (1 - weight) of each face's own (its vote shares, or its folder's
    class) and `weight` of the teachers' mean answer for it; and what the model file stores of it (the teachers' file
    names and the weight). Says what it did in one line."""
    own = targets if targets.ndim == 2 else np.eye(len(class_names), dtype=np.float32)[targets]
    taught = teacher_probabilities(paths, images, class_names, image)
    stored = {"models": [os.path.basename(p) for p in paths], "weight": weight}
    print(f"Targets: {1 - weight:g} of each training face's own, {weight:g} of the mean answer of "
          f"{', '.join(stored['models'])} (--teacher)")
    return ((1 - weight) * own + weight * taught).astype(np.float32), stored
