"""The architectures of --model measured side by side on one data set, at an equal training-time budget.

    python benchmarks/architectures.py                                  # FER2013's seven classes at ../shared
    python benchmarks/architectures.py --minutes 4 --models compact,mobilenet --json architectures.json

For each model (from scratch, 48 px grey faces, the training recipe of the shipped model: camera
augmentation, cosine schedule over the budget, label smoothing 0.1, AdamW 0.05) it prints the parameter
count, the saved file's size, training and prediction throughput, and the val accuracy and macro F1
reached within --minutes of training. test/ is never read. Figures depend on the machine: compare the
rows of one run, not runs on different machines.
"""

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import emotion_recognition as er  # noqa: E402

DEFAULT_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "datasets",
                            "fer2013-7")
BATCH_SIZE = 64


def measure(name, splits, class_names, minutes):
    """One architecture: size, speed, and what `minutes` of training give on val."""
    from sklearn.metrics import accuracy_score, f1_score
    keras = er.keras
    (train_x, train_y, _), (val_x, val_y, _) = splits["train"], splits["val"]
    keras.utils.set_random_seed(er.SEED)
    # the cosine schedule is sized to the budget from a first measurement of the step time (below)
    probe = er.build_model(name, train_x.shape[1:], len(class_names), 1e-3, base_weights="none")
    probe_ds = er.make_dataset(train_x[:BATCH_SIZE * 24], train_y[:BATCH_SIZE * 24], len(class_names), BATCH_SIZE,
                               shuffle=True, augment=er.make_augmentation("camera"))
    probe.fit(probe_ds, epochs=1, verbose=0)  # traces the step
    start = time.perf_counter()
    probe.fit(probe_ds, epochs=1, verbose=0)
    train_rate = BATCH_SIZE * 24 / (time.perf_counter() - start)
    steps = max(1, int(minutes * 60 * train_rate / BATCH_SIZE))  # the budget, in training steps
    schedule = er.make_learning_rate(1e-3, "cosine", 1, steps)
    model = er.build_model(name, train_x.shape[1:], len(class_names), schedule, base_weights="none",
                           label_smoothing=0.1, weight_decay=0.05)
    train_ds = er.make_dataset(train_x, train_y, len(class_names), BATCH_SIZE, shuffle=True,
                               augment=er.make_augmentation("camera")).repeat()
    start = time.perf_counter()
    model.fit(train_ds, epochs=1, steps_per_epoch=steps, verbose=0)
    trained_s = time.perf_counter() - start
    er.predict_probabilities(model, val_x[:256])  # warm-up
    start = time.perf_counter()
    probabilities = er.predict_probabilities(model, val_x)
    predict_rate = len(val_y) / (time.perf_counter() - start)
    predictions = probabilities.argmax(axis=1)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "m.h5")
        er.save_model(model, path, {"class_names": class_names, "image_size": int(train_x.shape[1]),
                                    "color": "grayscale"})
        size_mb = os.path.getsize(path) / 2**20
    return {"model": name, "parameters": int(model.count_params()), "file_mb": round(size_mb, 2),
            "train_images_per_s": round(train_rate), "predict_faces_per_s": round(predict_rate),
            "epochs": round(steps * BATCH_SIZE / len(train_y), 2), "train_s": round(trained_s),
            "val_accuracy": round(float(accuracy_score(val_y, predictions)), 4),
            "val_macro_f1": round(float(f1_score(val_y, predictions, average="macro")), 4)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data", default=DEFAULT_DATA, help="data set with train/ and val/")
    parser.add_argument("--models", default="compact,resnet,mobilenet,efficientnet", help="comma-separated")
    parser.add_argument("--minutes", type=er.positive_float, default=4.0, help="training budget per model")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()
    try:
        class_names = er.check_dataset_layout(args.data)
        image = {"image_size": 48, "color": "grayscale", "normalize": er.NORMALIZE}
        splits = er.load_splits(args.data, class_names, image, ("train", "val"), None)
    except er.UserError as error:
        sys.exit(f"error: {error}")
    rows = []
    for name in args.models.split(","):
        rows.append(measure(name, splits, class_names, args.minutes))
        print(json.dumps(rows[-1]), flush=True)
    print(f"{'model':<13}{'params':>11}{'MB':>7}{'train/s':>9}{'predict/s':>11}{'epochs':>8}{'val acc':>9}"
          f"{'macro F1':>10}")
    for r in rows:
        print(f"{r['model']:<13}{r['parameters']:>11,}{r['file_mb']:>7.1f}{r['train_images_per_s']:>9}"
              f"{r['predict_faces_per_s']:>11}{r['epochs']:>8.2f}{r['val_accuracy']:>9.4f}{r['val_macro_f1']:>10.4f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"data": os.path.abspath(args.data), "minutes": args.minutes, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
