"""Fit a model's calibration temperature on a folder of faces and store it in the model file.

    python tools/calibrate.py EmotionRecognitionSystem.h5 --data HASsplittedDS/val

Training does this by itself on `val` (the temperature is stored with the model); this tool is for a
model trained before that, or made by tools/soup.py. Use a validation folder, never the test split.
The file is rewritten atomically; every answer stays the same, only the confidences change.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from emotion.core.answers import class_names_of
import emotion_recognition as er  # noqa: E402  (the script sits one folder up)
from emotion.train.calibration import calibrate_model  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="the model file to calibrate (rewritten in place)")
    parser.add_argument("--data", required=True, help="validation folder of <class>/ sub-folders")
    args = parser.parse_args()
    try:
        model, metadata = er.load_trained_model(args.model)
        metadata.pop("temperature", None)  # fitted afresh on the model's own probabilities
        class_names = class_names_of(model, metadata)
        images, labels, _ = er.load_folder(args.data, class_names, metadata["image_size"], metadata["color"],
                                           metadata["normalize"])
        if len(labels) == 0:
            raise er.UserError(f"no readable images under {args.data!r}/<class>/")
        calibrate_model(model, metadata, images, labels, args.model)
    except er.UserError as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
