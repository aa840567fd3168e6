"""Where results go: metrics.json and the classification report on disk, the names plots give a data set and whether
plot windows can open."""

import json
import os
import sys

from emotion.io.files import write_file
from emotion.train.data import SPLITS


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
