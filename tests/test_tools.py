"""tools/calibrate.py: a model made before calibration existed gets a temperature fitted on val."""

import json
import os
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest

import emotion_recognition as er
from emotion.train.calibration import fit_temperature

from conftest import ROOT, draw_face, make_dataset


@pytest.mark.slow
def test_calibrate_stores_a_temperature_and_keeps_every_answer(tmp_path):
    data = make_dataset(tmp_path / "faces", per_class=(1, 12, 1))
    rng = np.random.default_rng(1)
    for i in range(300):  # mostly sad, which the model answers least; 336 val faces: enough to calibrate
        cv2.imwrite(os.path.join(data, "val", "sad", f"more_{i:03d}.png"), draw_face("sad", 48, rng))
    path = str(tmp_path / "m.h5")
    er.keras.utils.set_random_seed(5)
    model = er.build_model("compact", (48, 48, 1), 3, 1e-3)
    model.layers[-1].set_weights([w * 30 for w in model.layers[-1].get_weights()])  # overconfident: T > 1 helps
    er.save_model(model, path, {"class_names": ["angry", "happy", "sad"], "image_size": 48, "color": "grayscale",
                                "normalize": "equalize"})
    images, labels, _ = er.load_folder(os.path.join(data, "val"), ["angry", "happy", "sad"], 48, "grayscale",
                                       "equalize")
    before = er.predict_probabilities(model, images)
    result = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "calibrate.py"), path, "--data",
                             os.path.join(data, "val")], capture_output=True, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr
    loaded, metadata = er.load_trained_model(path)
    assert metadata["temperature"] == fit_temperature(before, labels) > 1
    assert f"temperature {metadata['temperature']} " in result.stdout
    answer, _ = er.answering_model(loaded, metadata)
    after = er.predict_probabilities(answer, images)
    np.testing.assert_array_equal(after.argmax(1), before.argmax(1))
    expected = before ** (1 / metadata["temperature"])
    np.testing.assert_allclose(after, expected / expected.sum(1, keepdims=True), atol=1e-5)
    result = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "calibrate.py"), path, "--data",
                             tmp_path / "missing"], capture_output=True, text=True)
    assert result.returncode == 1 and result.stderr.startswith("error: ")


@pytest.mark.slow
def test_time_to_accuracy_benchmark_prints_its_curve_and_last_line(tmp_path):
    data = make_dataset(tmp_path / "faces", per_class=(8, 4, 4))
    result = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "time_to_accuracy.py"), "--data", data,
                             "--minutes", "0.001", "--recipes", "default,cosine", "--plot", tmp_path / "c.png",
                             "--output", tmp_path / "c.json"], capture_output=True, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr
    figures = json.loads((tmp_path / "c.json").read_text())
    for name in ("default", "cosine"):
        (seconds, accuracy), = figures["results"][name]["curve"]  # a budget under an epoch: one epoch, one point
        assert 0 < seconds <= figures["results"][name]["seconds"] and 0 <= accuracy <= 1
    last = result.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"time_to_accuracy: (default|cosine) reached val [01]\.\d{4} and test [01]\.\d{4} in \d+ s",
                        last), last
    assert (tmp_path / "c.png").stat().st_size > 1000
