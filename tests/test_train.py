"""The original flow through the real command line: train -> save -> reload -> evaluate."""

import json
import os
import re

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

import emotion_recognition as er
from emotion.train.recovery import checkpoint_path_for

from conftest import make_dataset, run_cli


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Drawn faces with an imbalanced test split (2 angry, 8 happy, 8 sad), where weighted F1 != macro F1."""
    root = make_dataset(tmp_path_factory.mktemp("faces"))
    for name in sorted(os.listdir(os.path.join(root, "test", "angry")))[2:]:
        os.remove(os.path.join(root, "test", "angry", name))
    return root


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    """One 3-epoch training run shared by the tests below. Its learning rate is so high that the validation
    loss is best after epoch 1 and far worse after epoch 3, so the saved model must be epoch 1's."""
    out = tmp_path_factory.mktemp("run")
    model_path = out / "model.h5"
    result = run_cli("--data", data, "--model", "compact", "--epochs", 3, "--learning-rate", 0.01,
                     "--model-path", model_path, "--output-dir", out / "results", "--no-show",
                     "--precision", "float32")  # auto is bfloat16 on a CPU with bfloat16 units, where fit's logged
    #                                              loss and a float32 evaluate differ by about 1 %
    assert result.returncode == 0, result.stderr
    return out, model_path, result


def test_training_writes_model_and_all_outputs(trained):
    out, model_path, result = trained
    assert model_path.is_file()
    assert not os.path.exists(checkpoint_path_for(str(model_path)))  # checkpoint removed after success
    for name in ("metrics.json", "confusion_matrix.png", "training_curves.png", "history.csv",
                 "classification_report.txt", "config.json"):
        assert (out / "results" / name).is_file(), name
    assert "Epoch 1/3" in result.stdout
    # not a terminal: one plain line an epoch, no progress-bar escapes; 72 images in batches of 32 make 3 steps,
    # and Keras, running 8 per call, used to count up to 8/3
    assert "\x1b[" not in result.stdout and "━" not in result.stdout
    counts = [(int(done), int(total)) for done, total in re.findall(r"^(\d+)/(\d+) - ", result.stdout, re.M)]
    assert len(counts) == 3 and all(done == total == 3 for done, total in counts), counts
    for line in ("Test Loss: ", "Test Accuracy: ", "Test F1-Score: ", "Classification Report:"):
        assert line in result.stdout
    assert len((out / "results" / "history.csv").read_text().strip().splitlines()) == 4  # header + 3 epochs
    metrics = json.loads((out / "results" / "metrics.json").read_text())
    for key in ("loss", "accuracy", "weighted_f1", "macro_f1", "class_names", "confusion_matrix", "n_samples",
                "per_class", "majority_class_accuracy"):
        assert key in metrics
    assert metrics["class_names"] == ["angry", "happy", "sad"]
    assert metrics["n_samples"] == 18
    assert set(metrics["per_class"]["sad"]) == {"precision", "recall", "f1-score"}


def test_second_run_loads_instead_of_training(trained, data):
    out, model_path, _ = trained
    before = model_path.read_bytes()
    result = run_cli("--data", data, "--model-path", model_path, "--output-dir", out / "again", "--no-show")
    assert result.returncode == 0, result.stderr
    assert "loaded" in result.stdout.lower() and str(model_path) in result.stdout
    assert "Epoch" not in result.stdout
    settings = next(line for line in result.stdout.splitlines() if line.startswith("Settings: "))
    assert "model_path=" in settings and "epochs=" not in settings and "learning_rate=" not in settings
    assert not (out / "again" / "training_curves.png").exists()
    assert model_path.read_bytes() == before
    first = json.loads((out / "results" / "metrics.json").read_text())
    second = json.loads((out / "again" / "metrics.json").read_text())
    assert second["confusion_matrix"] == first["confusion_matrix"]
    assert second["loss"] == pytest.approx(first["loss"], abs=1e-5)


def test_metrics_match_scikit_learn_on_the_same_predictions(trained, data):
    out, model_path, _ = trained
    metrics = json.loads((out / "results" / "metrics.json").read_text())
    model, meta = er.answering_model(*er.load_trained_model(str(model_path)))  # with the stored temperature
    images, labels, _ = er.load_folder(os.path.join(data, "test"), meta["class_names"],
                                       meta["image_size"], meta["color"], meta["normalize"])
    probabilities = er.predict_probabilities(model, images)
    predictions = probabilities.argmax(axis=1)
    # on this imbalanced split the two F1 averages differ, so one computed as the other shows
    assert f1_score(labels, predictions, average="weighted") != pytest.approx(f1_score(labels, predictions,
                                                                                       average="macro"))
    assert metrics["accuracy"] == pytest.approx(accuracy_score(labels, predictions), abs=1e-6)
    assert metrics["weighted_f1"] == pytest.approx(f1_score(labels, predictions, average="weighted"), abs=1e-6)
    assert metrics["macro_f1"] == pytest.approx(f1_score(labels, predictions, average="macro"), abs=1e-6)
    # the loss is the cross-entropy of these same predictions, clipped as scikit-learn's log_loss clips (at float32's
    # eps, not Keras' 1e-7: the two differ by 1 % when, with no temperature fitted on 24 val faces, answers saturate)
    from sklearn.metrics import log_loss
    assert metrics["loss"] == pytest.approx(log_loss(labels, probabilities, labels=[0, 1, 2]), rel=1e-4)
    counts = np.zeros((3, 3), int)
    np.add.at(counts, (labels, predictions), 1)
    assert metrics["confusion_matrix"] == counts.tolist()
    assert metrics["majority_class_accuracy"] == pytest.approx(8 / 18)


def test_the_saved_model_is_the_best_epochs_not_the_last(trained, data):
    out, model_path, result = trained
    rows = (out / "results" / "history.csv").read_text().strip().splitlines()
    val_losses = [float(row.split(",")[rows[0].split(",").index("val_loss")]) for row in rows[1:]]
    assert val_losses[-1] > 1.5 * min(val_losses)  # the run the fixture sets up: the last epoch is worse
    model, meta = er.load_trained_model(str(model_path))
    images, labels, _ = er.load_folder(os.path.join(data, "val"), meta["class_names"], meta["image_size"],
                                       meta["color"], meta["normalize"])
    # Keras' own loss, as fit logged it (from the softmax's logits: far above what clipped probabilities give)
    loss, _ = model.evaluate(er.make_dataset(images, labels, 3, 32), verbose=0)
    assert loss == pytest.approx(min(val_losses), rel=1e-3)


def test_model_file_carries_class_names_and_image_settings(trained):
    _, model_path, _ = trained
    model, meta = er.load_trained_model(str(model_path))
    assert meta["class_names"] == ["angry", "happy", "sad"]
    assert (meta["image_size"], meta["color"]) == (48, "grayscale")  # "auto" on 48x48 grey faces
    assert model.input_shape == (None, 48, 48, 1)


@pytest.mark.slow
def test_evaluate_command_on_another_folder(trained, tmp_path):
    out, model_path, _ = trained
    other = make_dataset(tmp_path / "other", per_class=(0, 0, 5), classes=("happy", "sad"), seed=7)
    result = run_cli("evaluate", os.path.join(other, "test"), "--model-path", model_path,
                     "--output-dir", tmp_path / "eval", "--no-show")
    assert result.returncode == 0, result.stderr
    assert "Test Accuracy: " in result.stdout
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["n_samples"] == 10
    # the folder has two of the model's three classes: the answers are restricted to them, as a plain run does
    assert metrics["support"] == {"happy": 5, "sad": 5}
    assert "its answers are restricted to the folder's classes" in result.stdout


@pytest.mark.slow
def test_more_classes_and_colour_images_work(tmp_path):
    data = make_dataset(tmp_path / "data", per_class=(6, 2, 2), classes=("angry", "happy", "sad", "zz_other"),
                        size=64, color=True)
    result = run_cli("--data", data, "--epochs", 1, "--model-path", tmp_path / "m.h5",
                     "--output-dir", tmp_path / "out", "--no-show")
    assert result.returncode == 0, result.stderr
    _, meta = er.load_trained_model(str(tmp_path / "m.h5"))
    assert meta["class_names"] == ["angry", "happy", "sad", "zz_other"]
    assert (meta["image_size"], meta["color"]) == (64, "rgb")


@pytest.mark.slow
def test_explicit_size_reproduces_the_original_200px_rgb_input(tmp_path):
    data = make_dataset(tmp_path / "data", per_class=(3, 1, 1))
    result = run_cli("--data", data, "--epochs", 1, "--model", "cnn", "--image-size", 200, "--color", "rgb",
                     "--model-path", tmp_path / "m.h5", "--output-dir", tmp_path / "out", "--no-show")
    assert result.returncode == 0, result.stderr
    model, _ = er.load_trained_model(str(tmp_path / "m.h5"))
    assert model.input_shape == (None, 200, 200, 3)
