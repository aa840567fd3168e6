"""Distillation (train --teacher): the training targets blended with trained networks' mean answer."""

import hashlib
import os
import pathlib
import re

import numpy as np
import pytest

from emotion.core.model_files import read_metadata
from emotion.io.errors import UserError

from conftest import make_dataset, run_main

CLASSES = ["angry", "happy", "sad"]


def saved_model(path, classes=CLASSES, image_size=48, normalize="equalize", seed=0, temperature=None):
    """A random compact network saved with its metadata; its classifier's weights enlarged, so that each seed answers
    each face differently (an untrained network answers about 1/3 everywhere)."""
    import keras

    import emotion_recognition as er
    keras.utils.set_random_seed(seed)
    metadata = {"class_names": classes, "image_size": image_size, "color": "grayscale", "normalize": normalize}
    if temperature:
        metadata["temperature"] = temperature
    model = er.build_model("compact", (image_size, image_size, 1), len(classes), 1e-3)
    kernel, bias = model.layers[-1].get_weights()
    model.layers[-1].set_weights([kernel * 300, np.random.default_rng(seed).normal(0, 1, bias.shape)])
    er.save_model(model, str(path), metadata)
    return str(path)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("faces"), per_class=(6, 3, 3))


def softmax_of(path, images, temperature=1.0):
    """What a saved model answers for `images`, computed here with Keras itself (not the code under test)."""
    import keras
    logits = np.log(np.maximum(keras.models.load_model(path, compile=False).predict(images.astype(np.float32),
                                                                                    verbose=0), 1e-12))
    scaled = np.exp(logits / temperature)
    return scaled / scaled.sum(axis=1, keepdims=True)


def test_teacher_targets_blend_the_own_targets_with_the_teachers_mean(tmp_path, data):
    import emotion_recognition as er
    from emotion.train.distill import teacher_targets
    images, labels, _ = er.load_folder(os.path.join(data, "train"), CLASSES, 48, "grayscale", "equalize")
    first = saved_model(tmp_path / "first.h5", seed=1)
    second = saved_model(tmp_path / "second.h5", seed=2, temperature=2.0)  # answered calibrated, as users get it
    teachers = (softmax_of(first, images) + softmax_of(second, images, 2.0)) / 2
    assert np.abs(softmax_of(first, images) - softmax_of(second, images, 2.0)).max() > 0.1  # two different answers
    assert np.ptp(softmax_of(first, images), axis=0).max() > 0.01  # and different faces too
    image = {"image_size": 48, "color": "grayscale", "normalize": "equalize"}
    blended, stored = teacher_targets(labels, [first, second], 0.3, images, CLASSES, image)
    np.testing.assert_allclose(blended, 0.7 * np.eye(3)[labels] + 0.3 * teachers, atol=1e-4)
    assert (stored["models"], stored["weight"]) == (["first.h5", "second.h5"], 0.3)
    assert stored["sha256"] == [hashlib.sha256(pathlib.Path(p).read_bytes()).hexdigest()[:12] for p in (first, second)]
    shares = np.full((len(labels), 3), 1 / 3, np.float32)  # vote shares are blended as they are
    np.testing.assert_allclose(teacher_targets(shares, [first], 1.0, images, CLASSES, image)[0],
                               softmax_of(first, images), atol=1e-4)
    wider = saved_model(tmp_path / "wider.h5", classes=["sad", "angry", "happy", "neutral"], seed=5)
    answers = softmax_of(wider, images)[:, [1, 2, 0]]  # its answers over the student's classes, in their order
    np.testing.assert_allclose(teacher_targets(labels, [wider], 1.0, images, CLASSES, image)[0],
                               answers / answers.sum(axis=1, keepdims=True), atol=1e-4)


def test_a_teacher_must_take_the_students_faces_and_know_its_classes(tmp_path, data):
    import emotion_recognition as er
    from emotion.train.distill import teacher_targets
    images, labels, _ = er.load_folder(os.path.join(data, "train"), CLASSES, 48, "grayscale", "equalize")
    image = {"image_size": 48, "color": "grayscale", "normalize": "equalize"}
    two = saved_model(tmp_path / "two.h5", classes=["angry", "happy"])
    for teacher, said in ((saved_model(tmp_path / "big.h5", image_size=64), "64x64 grayscale faces"),
                          (saved_model(tmp_path / "plain.h5", normalize="none"), "normalised 'none', of the classes"),
                          (two, "of the classes angry,happy;")):
        with pytest.raises(UserError, match=f"--teacher {re.escape(repr(teacher))} takes .*{said}"):
            teacher_targets(labels, [teacher], 0.5, images, CLASSES, image)
    (tmp_path / "broken.h5").write_bytes(b"not a model")
    with pytest.raises(UserError, match="--teacher: .*broken.h5' is not a readable Keras model"):
        teacher_targets(labels, [str(tmp_path / "broken.h5")], 0.5, images, CLASSES, image)


def test_train_learns_the_blend_and_stores_its_teachers(tmp_path, data, capsys, monkeypatch):
    import emotion_recognition as er
    teacher = saved_model(tmp_path / "teacher.h5", seed=3)
    asked, batches = [], er.make_dataset
    monkeypatch.setattr(er, "make_dataset", lambda images, targets, *a, **k: asked.append(targets) or
                        batches(images, targets, *a, **k))
    code, stdout, error = run_main(capsys, "--data", data, "--train-again", "--epochs", "1", "--teacher", teacher,
                                   "--teacher-weight", "0.25", "--model-path", tmp_path / "m.h5", "--output-dir",
                                   tmp_path / "r", "--no-show", "--precision", "float32")
    assert code == 0, error
    assert "0.75 of each training face's own, 0.25 of the mean answer of teacher.h5" in stdout
    images, labels, _ = er.load_folder(os.path.join(data, "train"), CLASSES, 48, "grayscale", "equalize")
    np.testing.assert_allclose(asked[0], 0.75 * np.eye(3)[labels] + 0.25 * softmax_of(teacher, images), atol=1e-4)
    assert asked[1].ndim == 1  # validation: the folders, as without a teacher
    stored = read_metadata(str(tmp_path / "m.h5"))["teachers"]
    assert (stored["models"], stored["weight"], len(stored["sha256"][0])) == (["teacher.h5"], 0.25, 12)


def test_train_refuses_to_write_over_its_teacher_a_missing_teacher_and_a_weight_without_one(tmp_path, data, capsys):
    teacher = saved_model(tmp_path / "teacher.h5", seed=4)
    before = pathlib.Path(teacher).read_bytes()
    code, _, error = run_main(capsys, "--data", data, "--train-again", "--epochs", "1", "--teacher", teacher,
                              "--model-path", teacher, "--output-dir", tmp_path / "r", "--no-show")
    assert code != 0 and "is the --teacher model" in error
    assert pathlib.Path(teacher).read_bytes() == before
    for args, said in ((["--teacher", str(tmp_path / "gone.h5")], "gone.h5': no such file"),
                       (["--teacher-weight", "0.3"], "give the teachers (--teacher)")):
        code, _, error = run_main(capsys, "--data", data, "--train-again", "--epochs", "1", *args, "--model-path",
                                  tmp_path / "m.h5", "--output-dir", tmp_path / "r2", "--no-show")
        assert code != 0 and said in error and not (tmp_path / "m.h5").exists()
