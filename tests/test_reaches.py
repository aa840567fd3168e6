"""Each setting reaches the step it is for, seen through what the user gets: the model's contrast normalisation
in predict and evaluate (on a model whose temperature is 1, so its answers follow its input), --class-weight and
the cosine schedule in training, and a track number never given twice in a video."""

import csv
import json
import os

import cv2
import numpy as np
import pytest

import emotion_recognition as er
from emotion.core.model_files import save_model

from conftest import draw_face, make_dataset, run_main

CLASSES = ["angry", "happy", "sad"]


def dull(face):
    """The face as a duller camera sees it: a third of the contrast, lifted towards grey."""
    return (face.astype(np.float32) / 3 + 100).astype(np.uint8)


@pytest.fixture(scope="module")
def contrast_model(tmp_path_factory):
    """A model whose answers follow its input's pixels closely (a softmax over fixed random weights of each pixel),
    saved with normalize "equalize" and no temperature (1): an equalised face and a dull one get other answers."""
    keras = er.keras
    inputs = keras.Input((48, 48, 1))
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(
        inputs)))
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(0, 0.3, (48 * 48, 3)).astype(np.float32), np.zeros(3, np.float32)])
    path = tmp_path_factory.mktemp("contrast") / "m.h5"
    save_model(model, str(path), {"class_names": CLASSES, "image_size": 48, "color": "grayscale",
                                  "normalize": "equalize"})
    return model, path


def answers(model, faces):
    return model.predict(np.stack(faces)[..., np.newaxis].astype(np.float32), verbose=0)


def test_predict_equalises_as_the_model_was_trained(contrast_model, tmp_path, capsys):
    model, path = contrast_model
    face = dull(draw_face("happy", 48, np.random.default_rng(2)))
    cv2.imwrite(str(tmp_path / "dull.png"), face)
    code, out, error = run_main(capsys, "predict", tmp_path / "dull.png", "--no-detect", "--json",
                                "--model-path", path, "--precision", "float32")  # auto may be bfloat16
    assert code == 0, error
    reported = json.loads(out.strip().splitlines()[-1])["faces"][0]["probabilities"]
    reported = [reported[c] for c in CLASSES]
    equalised, raw = answers(model, [cv2.equalizeHist(face), face])
    assert np.abs(equalised - raw).max() > 0.05  # the check below can tell them apart
    assert reported == pytest.approx(equalised.tolist(), abs=1e-3)


def test_evaluate_equalises_as_the_model_was_trained(contrast_model, tmp_path, capsys):
    model, path = contrast_model
    faces, labels = [], []
    for label, name in enumerate(CLASSES):
        os.makedirs(tmp_path / "faces" / name)
        for i in range(4):
            face = dull(draw_face(name, 48, np.random.default_rng(10 * label + i)))
            cv2.imwrite(str(tmp_path / "faces" / name / f"{i}.png"), face)
            faces.append(face)
            labels.append(label)
    code, _, error = run_main(capsys, "evaluate", tmp_path / "faces", "--model-path", path,
                              "--output-dir", tmp_path / "out", "--no-show", "--precision", "float32")
    assert code == 0, error
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    from sklearn.metrics import log_loss
    equalised = log_loss(labels, answers(model, [cv2.equalizeHist(f) for f in faces]), labels=[0, 1, 2])
    raw = log_loss(labels, answers(model, faces), labels=[0, 1, 2])
    assert abs(equalised - raw) > 0.01
    assert metrics["loss"] == pytest.approx(equalised, rel=1e-4)


@pytest.fixture(scope="module")
def cosine_balanced_run(tmp_path_factory):
    """Three epochs of the cnn on imbalanced drawn faces (24 angry, 12 happy, 6 sad for training), with
    --class-weight balanced and --lr-schedule cosine; returns (history.csv rows, the class_weight fit got)."""
    root = tmp_path_factory.mktemp("run")
    data = make_dataset(root / "data", per_class=(24, 4, 4))
    for name, keep in (("happy", 12), ("sad", 6)):
        for file in sorted(os.listdir(data + f"/train/{name}"))[keep:]:
            os.remove(os.path.join(data, "train", name, file))
    fits = []
    real_fit = er.keras.Model.fit

    def recording_fit(model, *args, **kwargs):
        fits.append(kwargs.get("class_weight"))
        return real_fit(model, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(er.keras.Model, "fit", recording_fit)
        code = er.main(["--data", data, "--model", "cnn", "--epochs", "3", "--learning-rate", "1e-3",
                        "--class-weight", "balanced", "--lr-schedule", "cosine", "--model-path", str(root / "m.h5"),
                        "--output-dir", str(root / "out"), "--no-show"])
    assert code == 0
    with open(root / "out" / "history.csv", newline="") as f:
        return list(csv.DictReader(f)), fits


def test_class_weight_balanced_reaches_fit(cosine_balanced_run):
    _, fits = cosine_balanced_run
    counts = np.array([24, 12, 6])
    assert fits and fits[0] == pytest.approx(dict(enumerate(counts.sum() / (3 * counts))))


def test_the_cosine_schedule_decays_over_the_whole_run(cosine_balanced_run):
    rows, _ = cosine_balanced_run
    rates = [float(row["learning_rate"]) / 1e-3 for row in rows]
    # after epoch k of 3 the cosine is at (1 + cos(pi k / 3)) / 2: 0.75, 0.25, 0
    assert rates == pytest.approx([0.75, 0.25, 0.0], abs=0.02)


def test_a_face_that_leaves_and_comes_back_gets_a_new_track_number(model_path, tmp_path, capsys, monkeypatch):
    """Frames 0-5 and 12-17 show a face, 6-11 none: the second visit is another track, never number 1 again."""
    clip = str(tmp_path / "a.avi")
    scene = cv2.resize(np.random.default_rng(0).integers(0, 256, (12, 16, 3), dtype=np.uint8), (64, 48),
                       interpolation=cv2.INTER_NEAREST)  # one textured shot throughout: no scene cut
    writer = cv2.VideoWriter(clip, cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for _ in range(18):
        writer.write(scene)
    writer.release()
    calls = []

    def detect(detector, image, max_side, **_looks):  # called on frames 0, 3, 6, 9, 12 and 15
        calls.append(1)
        return [] if len(calls) in (3, 4) else [{"box": [10, 8, 30, 30], "eyes": None}]
    monkeypatch.setattr("emotion.recognizer.detect_faces", detect)
    monkeypatch.setattr("emotion.core.frames.VIDEO_DETECT_EVERY", 3)  # the frames the detector's answers are for
    code, _, error = run_main(capsys, "webcam", "--source", clip, "--no-display", "--detector", "haar",
                              "--model-path", model_path, "--json", tmp_path / "r.jsonl")
    assert code == 0, error
    records = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()][:-1]
    tracks = [[face["track"] for face in r["faces"]] for r in records]
    assert tracks == [[1]] * 6 + [[]] * 6 + [[2]] * 6
