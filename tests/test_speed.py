"""--precision (what auto picks, bfloat16/float16 twins, float32 files) and --time-budget (when it stops, the
cosine rate it sets), plus the training output a file gets."""

import csv
import json
import math
import os

import cv2
import numpy as np
import pytest

import emotion_recognition as er
from emotion.core import answers, precision
from emotion.io.images import prepare_image
from emotion.train import budget

from conftest import ROOT, SHIPPED_MODEL, SHIPPED_SEVEN, draw_face, make_dataset, run_cli, run_main, write_video


@pytest.fixture
def fresh_choice():
    precision.choose_precision.cache_clear()
    yield
    precision.choose_precision.cache_clear()


def test_auto_precision_follows_the_hardware(monkeypatch, fresh_choice):
    monkeypatch.setattr(precision.tf.config, "list_physical_devices", lambda kind: [])
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx2", "fma"})
    assert precision.choose_precision("auto")[0] == "float32"  # no bfloat16 units: never bfloat16
    precision.choose_precision.cache_clear()
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx512_bf16", "amx_bf16"})
    monkeypatch.setattr(precision, "conv_seconds", lambda dtype: 1.0 if dtype == precision.tf.bfloat16 else 3.0)
    assert precision.choose_precision("auto") == ("bfloat16", "bfloat16 convolutions measured 3.0x faster")
    precision.choose_precision.cache_clear()
    monkeypatch.setattr(precision, "conv_seconds", lambda dtype: 2.0 if dtype == precision.tf.bfloat16 else 1.0)
    assert precision.choose_precision("auto")[0] == "float32"  # the units are there but measure slower
    precision.choose_precision.cache_clear()
    monkeypatch.setattr(precision.tf.config, "list_physical_devices", lambda kind: ["GPU:0"])
    assert precision.choose_precision("auto")[0] == "float16"
    assert precision.choose_precision("auto", multiworker=True)[0] == "float32"  # Keras' loss scaling fails there
    assert precision.choose_precision("bfloat16") == ("bfloat16", "as asked")


@pytest.mark.parametrize("name, tolerance", [("bfloat16", 0.05), ("float16", 0.005)])
def test_lower_precision_agrees_with_float32_and_saves_float32(name, tolerance, tmp_path):
    model, metadata = er.load_trained_model(SHIPPED_SEVEN)
    rng = np.random.default_rng(0)
    faces = np.stack([prepare_image(np.repeat(draw_face(e, 48, rng)[..., None], 3, -1), 48, "grayscale",
                                       "equalize") for e in ("angry", "happy", "sad") * 20]).astype(np.float32)
    twin = precision.with_precision(model, name)
    assert {layer.dtype_policy.name for layer in twin.layers[1:-1]} == {precision.POLICIES[name]}
    assert twin.layers[-1].dtype_policy.name == "float32"  # the softmax
    expected, got = model.predict_on_batch(faces), np.asarray(twin.predict_on_batch(faces), np.float32)
    assert np.abs(expected - got).max() <= tolerance  # the tolerance docs/performance.md states
    assert (expected.argmax(1) == got.argmax(1)).mean() >= 0.95
    er.save_model(twin, str(tmp_path / "m.h5"), metadata)
    loaded, _ = er.load_trained_model(str(tmp_path / "m.h5"))
    assert {layer.dtype_policy.name for layer in loaded.layers} == {"float32"}  # loads and runs anywhere
    np.testing.assert_allclose(loaded.predict_on_batch(faces), expected, atol=1e-6)


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class FakeModel:
    def __init__(self):
        self.stop_training = False
        self.optimizer = type("Optimizer", (), {})()
        self.optimizer.learning_rate = er.keras.Variable(1e-3)


def run_budget(monkeypatch, minutes, epoch_seconds, epochs=100, steps=10, cosine=True):
    """Drive a TimeBudget through fake epochs of `epoch_seconds`; returns (epochs run, rate at each step)."""
    clock = FakeClock()
    monkeypatch.setattr(budget.time, "perf_counter", clock)
    callback, model = budget.TimeBudget(minutes, 1e-3, epochs, cosine=cosine), FakeModel()
    callback.set_model(model)
    callback.set_params({"steps": steps})
    callback.on_train_begin()
    rates = []
    for epoch in range(epochs):
        callback.on_epoch_begin(epoch)
        for step in range(steps):
            callback.on_train_batch_begin(step)
            rates.append(float(model.optimizer.learning_rate.numpy()))
            clock.now += epoch_seconds / steps
        callback.on_epoch_end(epoch)
        if model.stop_training:
            return epoch + 1, rates
    return epochs, rates


def test_time_budget_stops_at_the_last_epoch_that_fits(monkeypatch):
    epochs, rates = run_budget(monkeypatch, minutes=3.5, epoch_seconds=60)
    assert epochs == 3  # 3 minutes done; a fourth would end at 4 > 3.5
    assert rates[0] == pytest.approx(1e-3) and all(a >= b for a, b in zip(rates, rates[1:]))
    # after the first epoch the end is known (3 epochs = 180 s): the rate reaches ~0 at the last step
    assert rates[-1] < 0.01 * 1e-3
    assert rates[15] == pytest.approx(1e-3 * (1 + math.cos(math.pi * 90 / 180)) / 2, rel=1e-3)
    assert run_budget(monkeypatch, minutes=0.5, epoch_seconds=60)[0] == 1  # at least one epoch always runs
    assert run_budget(monkeypatch, minutes=60, epoch_seconds=60, epochs=5)[0] == 5  # --epochs still caps it
    epochs, rates = run_budget(monkeypatch, minutes=3.5, epoch_seconds=60, cosine=False)
    assert epochs == 3 and rates == pytest.approx([1e-3] * 30)  # plateau: the budget only stops


def test_a_time_budgeted_run_in_a_log_file(tmp_path):
    """One run with output to a file (not a terminal) and a budget shorter than any epoch: it stops after the
    one epoch that always runs, with the cosine rate decayed to about 0 by its end (history.csv's column), and
    the log is plain lines without progress-bar escapes. (When it stops with more time: the test above.)"""
    # 48 a class: 18 steps, three calls of STEPS_PER_EXECUTION (the rate is set as each call starts, so the
    # later ones start past the 0.06 s budget on any machine: the first call traces the model)
    data = make_dataset(tmp_path / "data", per_class=(48, 4, 4))
    result = run_cli("--data", data, "--train-again", "--epochs", 50, "--time-budget", 0.001, "--lr-schedule",
                     "cosine", "--batch-size", 8, "--model-path", tmp_path / "m.h5", "--output-dir", tmp_path / "out",
                     "--precision", "float32")  # auto picks bfloat16 on CPUs with bfloat16 units
    assert result.returncode == 0, result.stderr
    assert "Time budget: 1 epoch in" in result.stdout and "Precision: float32 (as asked)" in result.stdout
    with open(tmp_path / "out" / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and float(rows[0]["learning_rate"]) < 0.01 * er.LEARNING_RATE
    assert "\x1b[" not in result.stdout and "\r" not in result.stdout
    assert result.stdout.count("val_loss:") == 1


def test_a_training_run_leaves_the_process_precision_as_it_found_it(tmp_path, capsys):
    """Training in bfloat16 inside a longer process (a notebook, these tests): the models the process builds
    afterwards are float32 again, as before the run."""
    data = make_dataset(tmp_path / "data", per_class=(4, 2, 2))
    assert er.keras.mixed_precision.global_policy().name == "float32"
    code, out, error = run_main(capsys, "--data", data, "--train-again", "--epochs", 1, "--batch-size", 8,
                                "--model-path", tmp_path / "m.h5", "--output-dir", tmp_path / "out", "--no-show",
                                "--precision", "bfloat16")
    assert code == 0, error
    assert "Precision: bfloat16 (as asked)" in out
    assert er.keras.mixed_precision.global_policy().name == "float32"
    model = er.build_model("compact", (48, 48, 1), 3, 1e-3)
    assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}


def test_help_shows_defaults_only_where_there_is_one():
    for command in ("train", "evaluate", "predict", "prepare"):
        result = run_cli(command, "--help")
        assert result.returncode == 0
        assert "(default: None)" not in result.stdout and "(default: True)" not in result.stdout, command
        flags = result.stdout.split("--precision {")[-1]  # after --tta, whose --no-tta form shows its default
        assert "(default: False)" not in flags, command  # store_true flags: nothing to show
    assert "(default: auto)" in run_cli("train", "--help").stdout


def test_training_curves_count_whole_epochs(tmp_path):
    history = {key: [1.0, 0.8, 0.7] for key in ("loss", "val_loss", "accuracy", "val_accuracy")}
    fig = er.plot_training_curves(history, str(tmp_path / "curves.png"))
    for ax in fig.axes:
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks)
        assert list(ax.lines[0].get_xdata()) == [1, 2, 3]


def test_the_accuracy_curve_is_not_zoomed_into_a_small_change(tmp_path):
    history = {"loss": [1.1, 1.09, 1.08], "val_loss": [1.1, 1.1, 1.09], "accuracy": [0.335, 0.35, 0.365],
               "val_accuracy": [0.34, 0.345, 0.36]}
    fig = er.plot_training_curves(history, str(tmp_path / "curves.png"))
    accuracy = next(ax for ax in fig.axes if "accuracy" in ax.get_title())
    low, high = accuracy.get_ylim()
    assert low <= 0 and high >= 1  # three points of accuracy fill a tenth of the panel, not all of it


@pytest.mark.parametrize("command", ["predict", "evaluate", "webcam", "serve", "train"])
def test_each_command_that_answers_computes_in_the_precision_asked(command, tmp_path, capsys, monkeypatch):
    import emotion.jobs.web.server
    asked = []
    real = answers.with_precision
    monkeypatch.setattr(answers, "with_precision", lambda model, name: asked.append(name) or real(model, name))
    monkeypatch.setattr(emotion.jobs.web.server, "serve_app", lambda *args, **kwargs: None)  # serve: never listening
    data = make_dataset(tmp_path / "data", per_class=(2, 2, 2))
    args = {"predict": ["predict", os.path.join(ROOT, "samples", "astronaut.jpg")],
            "evaluate": ["evaluate", os.path.join(data, "test"), "--output-dir", tmp_path / "out"],
            "webcam": ["webcam", "--source", write_video(tmp_path / "a.avi"), "--no-display"],
            "serve": ["serve"],
            "train": ["--data", data, "--output-dir", tmp_path / "out"]}[command]
    model = SHIPPED_MODEL if command == "train" else SHIPPED_SEVEN
    code, _, error = run_main(capsys, *args, "--model-path", model, "--precision", "bfloat16")
    assert code == 0, error
    assert asked == ["bfloat16"]


def test_predict_in_bfloat16_agrees_with_float32(capsys, tmp_path):
    # a drawn face, whole: the shipped model is unsure of it, so its probabilities show bfloat16's rounding (on the
    # astronaut it answers happy 0.9987 either way, equal to the 4 decimals of --json)
    photo = str(tmp_path / "drawn.png")
    cv2.imwrite(photo, draw_face("sad", 96, np.random.default_rng(0)))
    answers = {}
    for name in ("float32", "bfloat16"):
        code, out, _ = run_main(capsys, "predict", photo, "--json", "--no-detect", "--precision", name)
        assert code == 0
        answers[name] = json.loads(out.splitlines()[0])["faces"][0]["probabilities"]
    differences = [abs(answers["float32"][c] - answers["bfloat16"][c]) for c in answers["float32"]]
    assert 0 < max(differences) <= 0.05  # really computed otherwise, within the stated tolerance
