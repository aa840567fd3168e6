"""Slower checks on real faces (FER2013 angry/happy/sad at ../shared/datasets/fer2013-has)."""

import json
import os

import pytest

from conftest import SHARED_DATA, SHIPPED_MODEL, SHIPPED_SEVEN, requires_shared_data, run_cli

pytestmark = [pytest.mark.real_data, requires_shared_data]


def link_subset(root, per_split):
    """Symlinks to the real data set: the first N files per class (by name), or all when N is None."""
    for split, n in per_split.items():
        for name in sorted(os.listdir(os.path.join(SHARED_DATA, split))):
            os.makedirs(os.path.join(root, split, name))
            files = sorted(os.listdir(os.path.join(SHARED_DATA, split, name)))
            for f in files[:n] if n else files:
                os.symlink(os.path.join(SHARED_DATA, split, name, f), os.path.join(root, split, name, f))
    return str(root)


def test_training_on_real_faces_beats_the_majority_baseline(tmp_path):
    data = link_subset(tmp_path / "fer", {"train": None, "val": 300, "test": None})
    result = run_cli("--data", data, "--model", "cnn", "--train-again", "--epochs", 3, "--model-path", tmp_path / "m.h5",
                     "--output-dir", tmp_path / "out", "--no-show")
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["n_samples"] == 1039
    assert metrics["majority_class_accuracy"] == pytest.approx(463 / 1039)
    assert metrics["accuracy"] > metrics["majority_class_accuracy"] + 0.03, metrics["accuracy"]


@pytest.mark.parametrize("folder, n_samples, at_least", [
    (os.path.join(SHARED_DATA, "val"), 976, 0.82),
    (os.path.join(SHARED_DATA, "..", "webfaces-dev"), 516, 0.82),
])
def test_the_shipped_model_on_validation_and_web_faces(tmp_path, folder, n_samples, at_least):
    """A guard against shipping a worse model: plain evaluate gave 0.8258 on val and 0.8295 on webfaces-dev."""
    if not os.path.isdir(folder):
        pytest.skip(f"{folder} not found")
    result = run_cli("evaluate", folder, "--model-path", SHIPPED_MODEL, "--output-dir", tmp_path / "out", "--no-show")
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["n_samples"] == n_samples and metrics["accuracy"] >= at_least, metrics["accuracy"]


@pytest.mark.parametrize("folder, n_samples, at_least", [
    (os.path.join(SHARED_DATA, "..", "fer2013-7", "val"), 1778, 0.56),  # FER2013's own labels: measured 0.5731
    (os.path.join(SHARED_DATA, "..", "webfaces7-dev"), 1154, 0.58),  # measured 0.5988
])
def test_the_shipped_seven_class_model_on_validation_and_web_faces(tmp_path, folder, n_samples, at_least):
    """A guard against shipping a worse seven-class model (docs/results.md has the measured figures)."""
    if not os.path.isdir(folder):
        pytest.skip(f"{folder} not found")
    result = run_cli("evaluate", folder, "--model-path", SHIPPED_SEVEN, "--output-dir", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["n_samples"] == n_samples and metrics["accuracy"] >= at_least, metrics["accuracy"]


def test_the_shipped_seven_class_model_against_the_annotators_votes(tmp_path):
    """The seven-class model learnt FER+'s votes: scored on fer2013-7/val filed by its vote plurality
    (prepare --votes), it gave 0.8186 accuracy and 0.7378 annotator agreement (docs/results.md)."""
    source = os.path.join(SHARED_DATA, "..", "fer2013-7")
    if not os.path.isfile(os.path.join(source, "ferplus.csv")):
        pytest.skip(f"{source}/ferplus.csv not found")
    src = tmp_path / "src"
    for name in sorted(os.listdir(os.path.join(source, "val"))):
        for split in ("train", "test"):  # empty: only val is scored
            os.makedirs(src / split / name)
        os.makedirs(src / "val" / name)
        for f in sorted(os.listdir(os.path.join(source, "val", name))):
            os.symlink(os.path.join(source, "val", name, f), src / "val" / name / f)
    with open(os.path.join(source, "ferplus.csv")) as full, open(tmp_path / "votes.csv", "w") as part:
        part.writelines(line for i, line in enumerate(full) if i == 0 or line.startswith("val/"))
    result = run_cli("prepare", "--source", src, "--votes", tmp_path / "votes.csv", "--out", tmp_path / "ferplus")
    assert result.returncode == 0, result.stderr
    result = run_cli("evaluate", tmp_path / "ferplus" / "val", "--model-path", SHIPPED_SEVEN,
                     "--output-dir", tmp_path / "out", "--no-show")
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["n_samples"] == 1676
    assert metrics["accuracy"] >= 0.80 and metrics["annotator_agreement"] >= 0.72, metrics
