"""Where results go: metrics.json and the classification report on disk, the names plots give a data set and whether
plot windows can open."""

import json
import os
import sys

import numpy as np

from emotion.io.files import write_file
from emotion.train.data import SPLITS

ONE_CLASS_SHARE = 0.95  # a model giving one answer to this share of faces or more has (nearly) learned one class


def learning_warnings(predictions, labels, class_names, where=""):
    """Plain warnings for a model that learned nothing: it answers (nearly) one class, or it is no more accurate
    than always answering the most common class. [] for a model that did learn."""
    answers = np.bincount(predictions, minlength=len(class_names))
    counts = np.bincount(labels, minlength=len(class_names))
    warnings = []
    if answers.max() >= ONE_CLASS_SHARE * len(predictions):
        warnings.append(f"Warning: {where}the model answers {class_names[answers.argmax()]!r} for "
                        f"{answers.max() / len(predictions):.0%} of {len(predictions)} faces: it has learned (nearly) "
                        "one class only, and its confidence and calibration mean nothing; train longer or on more "
                        "varied data")
    accuracy, majority = float(np.mean(predictions == labels)), counts.max() / max(counts.sum(), 1)
    if accuracy <= majority:
        warnings.append(f"Warning: {where}accuracy {accuracy:.4f} is no better than always answering the most common "
                        f"class {class_names[counts.argmax()]!r} ({majority:.4f}): the model has learned nothing "
                        "useful for these faces")
    return warnings


def save_metrics(metrics, output_dir):
    """metrics.json and classification_report.txt."""
    write_file(os.path.join(output_dir, "metrics.json"),
               json.dumps({k: v for k, v in metrics.items() if k != "predictions"}, indent=2))
    write_file(os.path.join(output_dir, "classification_report.txt"), metrics["classification_report"])


def data_label(folder):
    """A folder's name for plot titles, with its parent for split folders: "fer2013-has/test", "webfaces-dev"."""
    parts = os.path.normpath(os.path.abspath(folder)).split(os.sep)
    return "/".join(parts[-2:]) if parts[-1] in SPLITS else parts[-1]


def display_available():
    return sys.platform in ("win32", "darwin") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
