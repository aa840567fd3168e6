"""Each option and rule that several commands share, on every command that has it: a test here fails when one
command ignores the option or skips the rule (the main path of each is tested with its feature elsewhere)."""

import os

import cv2
import pytest

import emotion_recognition as er
from emotion.core.answers import INFERENCE_BATCH_SIZE
from emotion.core.detection import DETECTOR

from conftest import ROOT, SHIPPED_MODEL, SHIPPED_SEVEN, draw_face, make_dataset, run_main, write_video

ANSWERING = ("evaluate", "predict", "webcam", "serve")  # the commands that load a model and answer with it


@pytest.fixture
def inputs(tmp_path):
    """What each command reads: a data set (train, evaluate), a photo (predict, serve), a video (webcam)."""
    photo = tmp_path / "face.png"
    cv2.imwrite(str(photo), cv2.resize(draw_face("happy"), (64, 64)))
    return {"data": make_dataset(tmp_path / "data", per_class=(2, 2, 2)), "photo": photo,
            "video": write_video(tmp_path / "a.avi", frames=3)}


def command_line(command, inputs, tmp_path):
    """The command with its inputs, reading the shipped model that fits them (train: the three-class one, loaded
    and evaluated, not trained)."""
    return {"train": ["--data", inputs["data"], "--output-dir", tmp_path / "out", "--model-path", SHIPPED_MODEL],
            "evaluate": ["evaluate", os.path.join(inputs["data"], "test"), "--output-dir", tmp_path / "out",
                         "--model-path", SHIPPED_SEVEN],
            "predict": ["predict", inputs["photo"], "--json", "--model-path", SHIPPED_SEVEN],
            "webcam": ["webcam", "--source", inputs["video"], "--no-display", "--model-path", SHIPPED_SEVEN],
            "serve": ["serve", "--model-path", SHIPPED_SEVEN]}[command]


def run_command(capsys, monkeypatch, command, args, photo):
    """run_main; serve's app is not put on a port but asked once, through Flask's test client, about `photo`."""
    import emotion.jobs.web.server
    apps = []
    monkeypatch.setattr(emotion.jobs.web.server, "serve_app", lambda app, *rest: apps.append(app))
    code, out, error = run_main(capsys, *args)
    if command == "serve" and code == 0:
        with open(photo, "rb") as f:
            response = apps[0].test_client().post("/api/predict", data={"image": (f, "face.png")})
        assert response.status_code == 200, response.get_json()
    return code, out, error


@pytest.fixture
def one_face_everywhere(monkeypatch):
    """Every detector call finds one face at the top left: each command gets a face to classify, at no CPU cost."""
    found = lambda detector, image, max_side=None, **_looks: [{"box": [0, 0, 40, 40], "eyes": None}]
    monkeypatch.setattr("emotion.recognizer.detect_faces", found)


@pytest.mark.parametrize("command", ["predict", "webcam", "serve"])
@pytest.mark.parametrize("option", [["--output-dir", "x"], ["--batch-size", "7"], ["--no-show"]])
def test_commands_that_write_no_results_refuse_the_results_options(command, option, capsys):
    """predict, webcam and serve took --output-dir, --batch-size and --no-show and did nothing with them."""
    with pytest.raises(SystemExit) as exit_:
        er.main([command, *(["face.png"] if command == "predict" else []), *option])
    assert exit_.value.code == 2 and f"unrecognized arguments: {option[0]}" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["train", *ANSWERING])
def test_tta_batch_size_and_no_show_reach_each_command(command, inputs, tmp_path, capsys, monkeypatch,
                                                       one_face_everywhere):
    calls = []
    real = er.predict_probabilities
    spy = lambda model, images, tta=er.TTA, batch_size=INFERENCE_BATCH_SIZE: calls.append(
        (tta, batch_size)) or real(model, images, tta, batch_size)
    monkeypatch.setattr(er, "predict_probabilities", spy)  # train's and evaluate's evaluate_model
    monkeypatch.setattr("emotion.core.faces.predict_probabilities", spy)  # predict, webcam, serve: classify_crops
    import matplotlib.pyplot
    shown = []
    monkeypatch.setattr(er, "display_available", lambda: True)  # a screen: only --no-show keeps plots off it
    monkeypatch.setattr(matplotlib.pyplot, "show", lambda *a, **k: shown.append(1))
    results = ["--batch-size", 7, "--no-show"] if command in ("train", "evaluate") else []
    code, _, error = run_command(capsys, monkeypatch, command, [*command_line(command, inputs, tmp_path), "--tta",
                                                                *results], inputs["photo"])
    assert code == 0, error
    assert calls and all(tta for tta, _ in calls), calls
    if results:
        assert {size for _, size in calls} == {7} and not shown


@pytest.mark.parametrize("command", ["predict", "webcam", "serve", "prepare"])
def test_detector_reaches_each_command(command, inputs, tmp_path, capsys, monkeypatch):
    import emotion.core.detection
    asked = []
    real = emotion.core.detection.load_face_detector
    spy = lambda name=DETECTOR: asked.append(name) or real(name)
    for module in ("recognizer", "jobs.prepare"):  # each imports it by name (predict, webcam, serve: the recognizer)
        monkeypatch.setattr(f"emotion.{module}.load_face_detector", spy)
    args = (["prepare", "--source", os.path.join(inputs["data"], "train"), "--out", tmp_path / "prepared",
             "--crop-faces"] if command == "prepare" else command_line(command, inputs, tmp_path))
    code, _, error = run_command(capsys, monkeypatch, command, [*args, "--detector", "haar"], inputs["photo"])
    assert code == 0, error
    assert asked == ["haar"]


@pytest.mark.parametrize("command", ANSWERING)
@pytest.mark.parametrize("content", [None, b"this is not a model"])
def test_each_command_checks_its_model_file(command, content, inputs, tmp_path, capsys, monkeypatch):
    model = tmp_path / "m.h5"
    if content is not None:
        model.write_bytes(content)
    code, _, error = run_command(capsys, monkeypatch, command, [*command_line(command, inputs, tmp_path),
                                                                "--model-path", model], inputs["photo"])
    assert code == 1 and repr(str(model)) in error
    assert ("not found" if content is None else "is not a readable Keras model") in error, error
    assert not os.path.exists(tmp_path / "out")  # refused before anything is written


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_an_unwritable_output_dir_is_refused_by_each_command(command, inputs, tmp_path, capsys, monkeypatch):
    (tmp_path / "file").write_text("a file where a folder should be")
    code, out, error = run_command(capsys, monkeypatch, command, [*command_line(command, inputs, tmp_path),
                                                                  "--output-dir", tmp_path / "file" / "out"],
                                   inputs["photo"])
    assert code == 1 and "cannot write" in error, error
    assert "Test Accuracy" not in out  # refused before the evaluation, not when its results are written


def test_seed_reaches_train_as_it_reaches_prepare(inputs, tmp_path, capsys, monkeypatch):
    """prepare's --seed is tested by its splits (test_prepare.py); train's seeds Keras before anything random."""
    seeded = []
    monkeypatch.setattr(er.keras.utils, "set_random_seed", seeded.append)
    code, _, error = run_main(capsys, *command_line("train", inputs, tmp_path), "--seed", 7)
    assert code == 0, error
    assert seeded == [7]


@pytest.mark.parametrize("command", ANSWERING)
def test_the_shipped_model_is_found_from_any_folder(command, inputs, tmp_path, capsys, monkeypatch):
    """No --model-path: the working folder's EmotionRecognitionSystem7.h5 when there, else the one shipped in
    the package; a path the user gives stays relative to the working folder."""
    import emotion.jobs.web.server
    monkeypatch.setattr(emotion.jobs.web.server, "serve_app", lambda *args, **kwargs: None)  # serve: never listening
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    args = {"evaluate": ["evaluate", os.path.join(inputs["data"], "test"), "--output-dir", tmp_path / "out",
                         "--no-show"],
            "predict": ["predict", inputs["photo"], "--json"],
            "webcam": ["webcam", "--source", inputs["video"], "--no-display"],
            "serve": ["serve"]}[command]
    code, _, error = run_main(capsys, *args)
    assert code == 0, error
    code, _, error = run_main(capsys, *args, "--model-path", os.path.basename(SHIPPED_SEVEN))
    assert code == 1 and "'EmotionRecognitionSystem7.h5' not found" in error


def test_a_model_in_the_working_folder_comes_before_the_shipped_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert os.path.samefile(er.default_model_path(er.FACES_MODEL_PATH, er.SHIPPED_DIR), SHIPPED_SEVEN)
    (tmp_path / er.FACES_MODEL_PATH).write_bytes(b"")
    assert er.default_model_path(er.FACES_MODEL_PATH, er.SHIPPED_DIR) == er.FACES_MODEL_PATH


def test_usage_names_the_default_detector_where_it_says_how_predict_finds_faces():
    """docs/usage.md said predict finds faces with `mtcnn` after the default became mtcnn+hog."""
    import re
    with open(os.path.join(ROOT, "docs", "usage.md"), encoding="utf-8") as f:
        text = " ".join(f.read().split())
    said = re.search(r"For each image it finds faces with `([^`]+)`", text)
    assert said and said.group(1) == DETECTOR
