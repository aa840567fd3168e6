"""Where results go: metrics.json and the classification report on disk, the names plots give a data set, whether
plot windows can open, and the options of the commands that write results (train, evaluate)."""

import json
import os
import sys

from emotion.data import SPLITS
from emotion.arguments import positive_int
from emotion.files import write_file


def add_results_arguments(parser, output_dir, batch_size):
    """--output-dir, --batch-size and --no-show, with the calling command's defaults."""
    parser.add_argument("--output-dir", default=output_dir, help="folder for metrics, reports and plots")
    parser.add_argument("--batch-size", type=positive_int, default=batch_size, help="images per batch")
    parser.add_argument("--no-show", dest="show", action="store_false",
                        help="never open plot windows (plots are always saved as PNG)")


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
