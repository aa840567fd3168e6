"""Breakages no other test caught (issue 40): each test here was seen failing with the one-line breakage its
docstring names, and passes on the code as it is."""

import json
import os

import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf

import emotion_recognition as er
from emotion.train.distributed import fit_multiworker
from emotion.train.votes import VOTE_NAMES, VOTES_FILE, write_votes

from conftest import SHIPPED_MODEL, make_dataset, run_main


def test_the_original_callbacks_give_back_the_best_epoch_where_nothing_else_does():
    """Under MultiWorkerMirroredStrategy only EarlyStopping's restore_best_weights gives the model its best epoch
    (the checkpoint is not loaded there): fit_multiworker, in one process, with the original's callbacks. Breakage:
    restore_best_weights=False in make_callbacks."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x, val_x = rng.normal(size=(64, 8)).astype("float32"), rng.normal(size=(32, 8)).astype("float32")
    y, val_y = (np.eye(3, dtype="float32")[rng.integers(0, 3, n)] for n in (64, 32))  # random: val_loss soon rises
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(64, activation="relu"),
                              keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=keras.losses.CategoricalCrossentropy(),
                  metrics=["accuracy"])
    epochs = []
    record = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: epochs.append(
        (logs["val_loss"], model.get_weights())))
    fit_multiworker(model, tf.data.Dataset.from_tensor_slices((x, y)).batch(16),
                    tf.data.Dataset.from_tensor_slices((val_x, val_y)).batch(16), 20,
                    [*er.make_callbacks(patience=2), record])
    best = min(range(len(epochs)), key=lambda i: epochs[i][0])
    assert best < len(epochs) - 1  # the last epoch is worse than the best: restoring it matters
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), epochs[best][1]))


def test_an_unknown_model_name_is_refused_not_built_as_the_scratch_cnn():
    """Breakage: build_model's last branch builds the cnn for any name."""
    with pytest.raises(ValueError, match="unknown model 'resnet50'; build_model knows compact, cnn, vgg16"):
        er.build_model("resnet50", (48, 48, 1), 3, 1e-3)
    assert er.build_model("cnn", (48, 48, 1), 3, 1e-3).name == "cnn"


def votes(**counts):
    """A row of VOTES_FILE's vote columns from counts by name (happy=5, sad=5)."""
    return [counts.get(name, 0) for name in VOTE_NAMES]


def test_evaluate_gives_a_face_whose_votes_split_its_share_not_right_or_wrong(tmp_path, capsys):
    """Annotator agreement is the mean share of the votes each answer got: on a face that 6 people call angry and 4
    sad, the answer sad scores 0.4 (plain accuracy would score it 0 or 1). Breakage: agreement computed as the
    accuracy of the answers against each face's plurality (emotion/train/votes.py)."""
    data = make_dataset(tmp_path / "faces", per_class=(0, 0, 8))
    split_votes = {"angry": votes(angry=6, sad=4), "happy": votes(happy=5, angry=5), "sad": votes(sad=7, happy=3)}
    test = os.path.join(data, "test")
    write_votes(os.path.join(data, VOTES_FILE), [(os.path.join("test", name, file), split_votes[name])
                                                 for name in sorted(os.listdir(test))
                                                 for file in sorted(os.listdir(os.path.join(test, name)))])
    code, _, error = run_main(capsys, "evaluate", test, "--model-path", SHIPPED_MODEL, "--output-dir", tmp_path / "r",
                              "--no-show")
    assert code == 0, error
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    names, answers = metrics["class_names"], np.array(metrics["confusion_matrix"])  # rows: folder, columns: answer
    shares = {name: np.array([split_votes[name][VOTE_NAMES.index(n)] for n in names], float) for name in names}
    expected = sum(answers[i] @ (shares[name] / shares[name].sum()) for i, name in enumerate(names)) / answers.sum()
    assert abs(expected - metrics["accuracy"]) > 0.01  # the two measures differ on these answers
    assert metrics["annotator_agreement"] == pytest.approx(expected)


def test_a_cut_between_two_shots_of_one_face_framed_alike_ends_its_track(model_path, tmp_path, capsys, monkeypatch):
    """The same face at the same place in two shots with another background: the face alone looks alike across the
    cut, so only the scene-cut rule (the whole frame changed: every track ends) gives the second shot a new track.
    Breakage: the rule removed from emotion/core/frames.py's label_frames."""
    rng = np.random.default_rng(0)

    def texture(height, width):  # blocks of 8 px: the video codec keeps them
        return cv2.resize(rng.integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8), (width, height),
                          interpolation=cv2.INTER_NEAREST)
    face = texture(56, 56)  # the face and the margin its crop takes around the box
    clip = str(tmp_path / "cut.avi")
    writer = cv2.VideoWriter(clip, cv2.VideoWriter_fourcc(*"MJPG"), 10, (128, 96))
    for shot in range(2):
        frame = texture(96, 128)
        frame[20:76, 36:92] = face
        for _ in range(6):
            writer.write(frame)
    writer.release()
    monkeypatch.setattr("emotion.recognizer.detect_faces", lambda detector, image, max_side, **_looks: [
        {"box": [44, 28, 40, 40], "eyes": None}])
    code, _, error = run_main(capsys, "webcam", "--source", clip, "--no-display", "--detector", "haar",
                              "--model-path", model_path, "--json", tmp_path / "r.jsonl")
    assert code == 0, error
    records = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()][:-1]
    assert [[face["track"] for face in r["faces"]] for r in records] == [[1]] * 6 + [[2]] * 6
