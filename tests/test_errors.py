"""User mistakes and messy data: one clear line on stderr, non-zero exit, nothing saved is lost."""

import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

import emotion_recognition as er
from emotion.io.images import prepare_image, read_image

from conftest import ROOT, SHIPPED_MODEL, make_dataset, run_cli, run_main


def assert_clean_error(result, *fragments):
    """One sentence, the last line on stderr (above it only TensorFlow's start-up lines, which it prints
    whatever TF_CPP_MIN_LOG_LEVEL says: tensorflow/tensorflow#100442)."""
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    last = lines[-1]
    assert last.startswith("error: ") and sum(line.startswith("error: ") for line in lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in last, result.stderr


@pytest.fixture
def data(tmp_path):
    return make_dataset(tmp_path / "data", per_class=(4, 2, 2))


def test_missing_data_folder(tmp_path):
    assert_clean_error(run_cli("--data", tmp_path / "nope", "--output-dir", tmp_path / "o"), "does not exist")


@pytest.mark.parametrize("layout", ["fresh clone", "no folder", "no model"])
def test_plain_run_without_data_says_what_is_missing_and_how_to_make_it(layout, tmp_path, capsys, monkeypatch):
    """The bare command in a fresh clone (HASsplittedDS/ holds only its README) only evaluates the shipped model."""
    monkeypatch.chdir(tmp_path)
    if layout != "no model":
        shutil.copy(SHIPPED_MODEL, tmp_path / er.MODEL_PATH)
    if layout == "fresh clone":
        (tmp_path / er.DATA_DIR).mkdir()
        shutil.copy(os.path.join(ROOT, er.DATA_DIR, "README.md"), tmp_path / er.DATA_DIR)
    code, _, error = run_main(capsys, "--output-dir", tmp_path / "o")
    assert code == 1 and "--data DIR" in error and "python emotion_recognition.py prepare --source fer2013.csv " \
        f"--out {er.DATA_DIR}" in error, error
    needs = f"training needs {er.DATA_DIR}/train/" if layout == "no model" else f"evaluating needs {er.DATA_DIR}/test/"
    assert needs in error and ("missing: test/" if layout == "fresh clone" else "does not exist") in error, error
    assert layout == "no model" or "train/" not in error, error


def test_plain_run_evaluates_the_model_on_test_alone(tmp_path, capsys, monkeypatch):
    data = make_dataset(tmp_path / "data", per_class=(0, 0, 2))
    for split in ("train", "val"):
        shutil.rmtree(os.path.join(data, split))
    code, out, error = run_main(capsys, "--data", data, "--model-path", SHIPPED_MODEL, "--output-dir", tmp_path / "o",
                                "--no-show")
    assert code == 0, error
    assert "Test Accuracy" in out and (tmp_path / "o" / "metrics.json").exists()


def test_missing_split(data, tmp_path):
    shutil.rmtree(os.path.join(data, "val"))
    assert_clean_error(run_cli("--data", data, "--output-dir", tmp_path / "o"), "val", "missing")


def test_empty_class_folder(data, tmp_path):
    for f in os.listdir(os.path.join(data, "test", "sad")):
        os.remove(os.path.join(data, "test", "sad", f))
    assert_clean_error(run_cli("--data", data, "--output-dir", tmp_path / "o"), "holds no images")


def test_class_folder_without_readable_images(data, tmp_path):
    folder = os.path.join(data, "val", "sad")
    for f in os.listdir(folder):
        os.remove(os.path.join(folder, f))
    (tmp_path / "notes").write_text("not an image")
    shutil.copy(tmp_path / "notes", os.path.join(folder, "notes.txt"))
    assert_clean_error(run_cli("--data", data, "--train-again", "--model-path", tmp_path / "m.h5",
                               "--output-dir", tmp_path / "o"), "val/sad", "no readable images")
    assert not (tmp_path / "m.h5").exists()


def test_model_path_must_be_hdf5(data, tmp_path):
    result = run_cli("--data", data, "--train-again", "--model-path", tmp_path / "m.keras", "--output-dir", tmp_path / "o")
    assert result.returncode == 2 and "--model-path" in result.stderr and ".h5" in result.stderr
    assert not (tmp_path / "m.keras").exists()


def test_classes_differ_between_splits(data, tmp_path):
    os.rename(os.path.join(data, "val", "sad"), os.path.join(data, "val", "sadness"))
    assert_clean_error(run_cli("--data", data, "--output-dir", tmp_path / "o"), "differ")


@pytest.mark.parametrize("args,fragment", [
    (("--image-size", "0"), "--image-size"), (("--image-size", "-3"), "--image-size"),
    (("--image-size", "big"), "--image-size"), (("--epochs", "0"), "--epochs"),
    (("--model", "resnet9000"), "--model"), (("--learning-rate", "-1"), "--learning-rate"),
])
def test_bad_options(data, tmp_path, args, fragment):
    result = run_cli("--data", data, "--output-dir", tmp_path / "o", *args)
    assert result.returncode == 2 and fragment in result.stderr and "Traceback" not in result.stderr


def test_image_size_too_small_for_the_model(data, tmp_path):
    assert_clean_error(run_cli("--data", data, "--train-again", "--model", "cnn", "--image-size", "40", "--model-path",
                               tmp_path / "m.h5", "--output-dir", tmp_path / "o"), "at least 46")


def test_unwritable_output_dir_fails_before_training(data, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    result = run_cli("--data", data, "--train-again", "--model-path", tmp_path / "m.h5",
                     "--output-dir", blocker / "results")
    assert_clean_error(result, "cannot write")
    assert "Epoch" not in result.stdout


@pytest.mark.parametrize("content", [b"", b"this is not a model", b"\x89HDF\r\n\x1a\n" + b"\0" * 100, "cut"])
def test_bad_model_file(data, tmp_path, content):
    path = tmp_path / "m.h5"
    if content == "cut":  # a real model file cut short, as by a full disk or a partial copy
        er.save_model(er.build_model("cnn", (48, 48, 1), 3, 1e-3), str(path),
                      {"class_names": ["angry", "happy", "sad"], "image_size": 48, "color": "grayscale"})
        content = path.read_bytes()[: path.stat().st_size * 2 // 3]
    path.write_bytes(content)
    assert_clean_error(run_cli("--data", data, "--model-path", path, "--output-dir", tmp_path / "o"),
                       "--train-again")
    assert path.read_bytes() == content  # not deleted, not overwritten


def test_model_for_other_classes_suggests_retraining(data, tmp_path):
    model = er.build_model("cnn", (48, 48, 1), 2, 1e-3)
    er.save_model(model, str(tmp_path / "m.h5"), {"class_names": ["cat", "dog"], "image_size": 48, "color": "grayscale"})
    assert_clean_error(run_cli("--data", data, "--model-path", tmp_path / "m.h5", "--output-dir", tmp_path / "o"),
                       "cat", "--train-again")


def test_evaluate_missing_model_and_unknown_classes(data, tmp_path):
    assert_clean_error(run_cli("evaluate", os.path.join(data, "test"), "--model-path", tmp_path / "none.h5"),
                       "not found")
    model = er.build_model("cnn", (48, 48, 1), 2, 1e-3)
    er.save_model(model, str(tmp_path / "m.h5"), {"class_names": ["happy", "sad"], "image_size": 48, "color": "grayscale"})
    assert_clean_error(run_cli("evaluate", os.path.join(data, "test"), "--model-path", tmp_path / "m.h5",
                               "--output-dir", tmp_path / "o"), "angry")


def write_messy_files(folder):
    """Every kind of odd file the loader must survive; returns (readable, unreadable) counts."""
    face = np.random.default_rng(0).integers(0, 255, (48, 48), dtype=np.uint8)
    ok, jpeg = cv2.imencode(".jpg", face)
    jpeg = jpeg.tobytes()
    (folder / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 3])
    (folder / "empty.jpg").write_bytes(b"")
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (folder / "notes.txt").write_text("labelled by hand")
    cv2.imwrite(str(folder / "alpha.png"), np.dstack([face] * 4))
    cv2.imwrite(str(folder / "sixteen.png"), face.astype(np.uint16) * 257)
    cv2.imwrite(str(folder / "UPPER.JPG"), face)
    cv2.imencode(".png", face)[1].tofile(str(folder / "naïve face 1.png"))
    cv2.imwrite(str(folder / "big.jpg"), cv2.resize(face, (3000, 2000)))
    return 5, 2  # readable: alpha, sixteen, UPPER, naïve, big; skipped: empty, notes (.DS_Store is hidden)


@pytest.mark.slow
def test_messy_files_are_read_or_skipped_with_one_warning(data, tmp_path):
    readable, skipped = write_messy_files(tmp_path / "data" / "train" / "happy")
    images, labels, skipped_files = er.load_folder(os.path.join(data, "train"), ["angry", "happy", "sad"], 48,
                                                   "grayscale", "none")
    names = sorted(os.path.basename(f) for f in skipped_files)
    assert {"empty.jpg", "notes.txt"} <= set(names)
    assert len(labels) == 12 + readable + (1 if "truncated.jpg" not in names else 0)
    assert images.shape[1:] == (48, 48, 1)
    result = run_cli("--data", data, "--epochs", 1, "--model-path", tmp_path / "m.h5",
                     "--output-dir", tmp_path / "o", "--no-show")
    assert result.returncode == 0, result.stderr
    assert "Warning: skipped" in result.stdout and "empty.jpg" in result.stdout


def test_palette_cmyk_and_huge_images_are_read(tmp_path):
    from PIL import Image
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 255, (60, 50, 3), dtype=np.uint8))
    rgb.convert("P").save(tmp_path / "palette.png")
    rgb.convert("CMYK").save(tmp_path / "cmyk.jpg")
    Image.fromarray(rng.integers(0, 255, (4000, 6000), dtype=np.uint8)).save(tmp_path / "huge.png")
    for name in ("palette.png", "cmyk.jpg", "huge.png"):
        image = read_image(str(tmp_path / name))
        assert image is not None and image.dtype == np.uint8 and image.shape[2] == 3, name
        assert prepare_image(image, 48, "rgb", "equalize").shape == (48, 48, 3)


def test_large_splits_go_to_a_memory_mapped_file_cache(data, tmp_path, monkeypatch):
    monkeypatch.setattr("emotion.train.data.MAX_IN_MEMORY_MB", 0)  # every split counts as "larger than memory"
    write_messy_files(tmp_path / "data" / "train" / "happy")  # skipped files must not pull it into memory
    images, labels, _ = er.load_folder(os.path.join(data, "train"), ["angry", "happy", "sad"], 48, "grayscale",
                                       "none", cache_dir=str(tmp_path / "cache"))
    assert isinstance(images, np.memmap) and images.filename.startswith(str(tmp_path / "cache" / "train-"))
    assert os.listdir(tmp_path / "cache") == []  # deleted at once: the mapping keeps it until the array is freed
    in_memory, same_labels, _ = er.load_folder(os.path.join(data, "train"), ["angry", "happy", "sad"], 48,
                                               "grayscale", "none")
    np.testing.assert_array_equal(np.asarray(images), in_memory)
    batch_images, batch_labels = next(iter(er.make_dataset(images, labels, 3, 5)))
    np.testing.assert_array_equal(batch_images.numpy(), in_memory[:5].astype("float32"))


@pytest.mark.slow
def test_model_for_another_input_size_suggests_retraining(data, tmp_path):
    model = er.build_model("cnn", (64, 64, 1), 3, 1e-3)
    er.save_model(model, str(tmp_path / "m.h5"), {"class_names": ["angry", "happy", "sad"], "image_size": 64,
                                                  "color": "grayscale"})
    assert_clean_error(run_cli("--data", data, "--model-path", tmp_path / "m.h5", "--image-size", 48,
                               "--output-dir", tmp_path / "o"), "64x64", "--train-again")


@pytest.mark.slow
def test_model_for_another_colour_suggests_retraining(data, tmp_path):
    er.save_model(er.build_model("cnn", (48, 48, 1), 3, 1e-3), str(tmp_path / "m.h5"),
                  {"class_names": ["angry", "happy", "sad"], "image_size": 48, "color": "grayscale"})
    assert_clean_error(run_cli("--data", data, "--model-path", tmp_path / "m.h5", "--color", "rgb",
                               "--output-dir", tmp_path / "o"), "grayscale", "--color rgb")


def test_help_points_to_each_commands_options(capsys):
    for argv, expected in ((["--help"], "train --help"), (["train", "--help"], "default: 30")):
        with pytest.raises(SystemExit):
            er.main(argv)
        assert expected in capsys.readouterr().out


@pytest.mark.slow
def test_a_job_modules_error_is_one_line_when_the_script_runs_as_main(tmp_path):
    """predict runs in emotion/jobs/predict.py: run as `python emotion_recognition.py`, its main() catches what the job
    module raises (one UserError class, in emotion/io/errors.py), and no module beneath loads a second copy of the
    script by name."""
    photo = tmp_path / "face.png"
    cv2.imwrite(str(photo), cv2.resize(np.full((48, 48), 128, np.uint8), (64, 64)))
    assert_clean_error(run_cli("predict", photo, "--model-path", tmp_path / "missing.h5"),
                       "model file", "not found")
    not_a_folder = tmp_path / "file.txt"
    not_a_folder.write_text("x")
    assert_clean_error(run_cli("predict", photo, "--save", not_a_folder / "out", "--model-path", SHIPPED_MODEL),
                       "cannot write to")
    code = ("import runpy, sys; sys.argv = ['emotion_recognition.py', '--help']\n"
            "try:\n    runpy.run_path(sys.argv[0], run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "print('emotion_recognition' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.stdout.splitlines()[-1] == "False", result.stderr
