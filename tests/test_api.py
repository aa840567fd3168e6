"""The library, through its public names only (emotion.__all__): EmotionRecognizer's answers equal the command
line's on real photos and a clip, every picture type gives the same faces, one recognizer shared by 8 threads, each
error type, the process state left as found, the README's example, and the package installed with pip."""

import concurrent.futures
import importlib.util
import json
import logging
import os
import pathlib
import re
import shutil
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest
from PIL import Image

import emotion
from emotion import ArgumentError, EmotionError, EmotionRecognizer, Face, ImageError, ModelError

from conftest import ROOT, SHIPPED_MODEL, real_photo, run_here

PHOTO = os.path.join(ROOT, "samples", "astronaut.jpg")


@pytest.fixture(scope="module")
def recognizer():
    return EmotionRecognizer()


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Real photos as files: the sample portrait (JPEG), a man with a camera and a cat (no face), PNG."""
    folder = tmp_path_factory.mktemp("photos")
    paths = [PHOTO]
    for name in ("camera", "chelsea"):
        photo = real_photo(name)
        path = folder / f"{name}.png"
        cv2.imwrite(str(path), cv2.cvtColor(photo if photo.ndim == 3 else cv2.cvtColor(photo, cv2.COLOR_GRAY2RGB),
                                            cv2.COLOR_RGB2BGR))
        paths.append(str(path))
    return paths


def test_the_public_names():
    assert sorted(emotion.__all__) == sorted(["EmotionRecognizer", "Face", "EmotionError", "ImageError", "ModelError",
                                              "ArgumentError"])
    assert all(issubclass(kind, EmotionError) for kind in (ImageError, ModelError, ArgumentError))


def test_importing_the_package_does_not_import_tensorflow():
    code = "import sys, emotion; from emotion import EmotionRecognizer; print('tensorflow' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "False", result.stderr


def test_analyze_answers_as_predict_json_does(recognizer, photos, capsys):
    result = run_here(capsys, "predict", *photos, "--json")
    assert result.returncode == 0, result.stderr
    printed = {record["image"]: record["faces"] for record in map(json.loads, result.stdout.splitlines())}
    for path in photos:
        assert [face.to_dict() for face in recognizer.analyze(path)] == printed[path]
    assert len(printed[PHOTO]) == 1 and printed[photos[-1]] == []  # the astronaut's face; the cat has none
    assert [[f.to_dict() for f in faces] for faces in recognizer.analyze_many(photos)] == [printed[p] for p in photos]


def test_every_picture_type_gives_the_same_faces(recognizer):
    rgb = np.asarray(Image.open(PHOTO).convert("RGB"))
    with open(PHOTO, "rb") as f:
        data = f.read()
    answers = {"path": recognizer.analyze(PHOTO), "Path": recognizer.analyze(pathlib.Path(PHOTO)),
               "bytes": recognizer.analyze(data), "PIL": recognizer.analyze(Image.open(PHOTO)),
               "RGB array": recognizer.analyze(rgb),
               "BGR array": recognizer.analyze(cv2.imread(PHOTO), channel_order="bgr"),
               "grey array": recognizer.analyze(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))}
    reference = answers["path"]
    assert len(reference) == 1
    assert answers["BGR array"] == answers["RGB array"]  # the same pixels once the order is said
    for kind, faces in answers.items():
        assert len(faces) == 1, kind
        assert np.abs(np.subtract(faces[0].box, reference[0].box)).max() <= 2, kind
        assert faces[0].emotion == reference[0].emotion, kind


def test_detect_finds_the_faces_analyze_classifies_in_any_picture_type(recognizer, photos):
    for path in photos:
        faces = recognizer.detect(path)
        assert [tuple(face["box"]) for face in faces] == [face.box for face in recognizer.analyze(path)]
        assert all(face["eyes"] is not None and len(face["eyes"]) == 2 for face in faces)  # mtcnn's eyes
    with open(PHOTO, "rb") as f:
        assert recognizer.detect(f.read()) == recognizer.detect(cv2.imread(PHOTO), "bgr") == recognizer.detect(PHOTO)
    with pytest.raises(ImageError, match="no such file"):
        recognizer.detect(PHOTO + ".missing")


def test_classify_takes_crops_as_predict_no_detect_does(recognizer, tmp_path, capsys):
    face = recognizer.analyze(PHOTO)[0]
    x, y, w, h = face.box
    crop = np.asarray(Image.open(PHOTO).convert("RGB"))[y:y + h, x:x + w]
    cv2.imwrite(str(tmp_path / "crop.png"), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
    result = run_here(capsys, "predict", tmp_path / "crop.png", "--no-detect", "--json")
    (answer,) = recognizer.classify([crop])
    assert answer.to_dict() == json.loads(result.stdout)["faces"][0]
    assert answer.box == (0, 0, w, h) and not answer.detected


def test_classes_restrict_the_answers_as_on_the_command_line(capsys):
    restricted = EmotionRecognizer(classes=["angry", "happy", "sad"])
    result = run_here(capsys, "predict", PHOTO, "--json", "--classes", "angry,happy,sad")
    assert [f.to_dict() for f in restricted.analyze(PHOTO)] == json.loads(result.stdout)["faces"]
    assert restricted.class_names == ["angry", "happy", "sad"]


def test_analyze_video_gives_webcam_json_records(recognizer, tmp_path, capsys):
    clip = tmp_path / "clip.avi"
    photo = cv2.resize(cv2.imread(PHOTO), (240, 240))
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    for i in range(12):  # the astronaut drifting a pixel a frame across a grey frame
        frame = np.full((240, 320, 3), 120, np.uint8)
        frame[:, 20 + i:260 + i] = photo
        writer.write(frame)
    writer.release()
    result = run_here(capsys, "webcam", "--source", clip, "--no-display", "--json", tmp_path / "r.jsonl")
    assert result.returncode == 0, result.stderr
    written = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    records = list(recognizer.analyze_video(str(clip)))
    assert [r for r in records if "summary" not in r] == written[:-1] and len(records) == 13
    assert all(len(r["faces"]) == 1 and r["faces"][0]["track"] == 1 for r in records[:-1])
    timing = ("seconds", "fps")
    assert ({k: v for k, v in records[-1]["summary"].items() if k not in timing}
            == {k: v for k, v in written[-1]["summary"].items() if k not in timing})
    assert sorted(os.listdir(tmp_path)) == ["clip.avi", "r.jsonl"]  # no file unless asked


def test_one_recognizer_shared_by_eight_threads_answers_as_serial_calls(recognizer, photos):
    pictures = [path for path in photos for _ in range(3)]
    serial = [recognizer.analyze(p) for p in pictures]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        threaded = list(pool.map(recognizer.analyze, pictures))
    assert threaded == serial


def hostile_model(folder):
    """A model file holding a Lambda layer: Python code that loading would run."""
    import keras
    inputs = keras.Input((48, 48, 1))
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(keras.layers.Lambda(lambda x: x)(
        inputs)))
    path = os.path.join(folder, "hostile.h5")
    keras.Model(inputs, outputs).save(path)
    return path


@pytest.mark.parametrize("case", ["not an image", "empty array", "4-channel float array", "float RGB array",
                                  "truncated JPEG",
                                  "no such path", "text file", "an int"])
def test_bad_pictures_raise_an_image_error_in_one_line(case, recognizer, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with open(PHOTO, "rb") as f:
        jpeg = f.read()
    (tmp_path / "notes.jpg").write_text("not a photo")
    picture = {"not an image": b"GIF89a but not really", "empty array": np.zeros((0, 0, 3), np.uint8),
               "4-channel float array": np.zeros((48, 48, 4), np.float32),
               "float RGB array": np.full((48, 48, 3), 0.5, np.float32), "truncated JPEG": jpeg[:len(jpeg) // 3],
               "no such path": "missing.jpg", "text file": "notes.jpg", "an int": 7}[case]
    kind = ArgumentError if case == "an int" else ImageError
    with pytest.raises(kind) as raised:
        recognizer.analyze(picture)
    assert len(str(raised.value).splitlines()) == 1 and str(raised.value)
    assert capsys.readouterr() == ("", "")
    assert sorted(os.listdir(tmp_path)) == ["notes.jpg"]


def test_bad_models_and_arguments_raise_their_kind(tmp_path, capsys):
    (tmp_path / "junk.h5").write_bytes(os.urandom(4096))
    for path in (tmp_path / "missing.h5", tmp_path / "junk.h5", hostile_model(str(tmp_path))):
        with pytest.raises(ModelError) as raised:
            EmotionRecognizer(path)
        assert len(str(raised.value).splitlines()) == 1
    for arguments in ({"classes": ["joy"]}, {"detector": "yolo"}, {"precision": "int8"}):
        with pytest.raises(ArgumentError):
            EmotionRecognizer(**arguments)
    with pytest.raises(ArgumentError):
        EmotionRecognizer(SHIPPED_MODEL).analyze(PHOTO, channel_order="grb")
    assert capsys.readouterr() == ("", "")
    assert sorted(os.listdir(tmp_path)) == ["hostile.h5", "junk.h5"]


def test_the_library_leaves_the_process_as_it_found_it(tmp_path, monkeypatch):
    import keras
    import tensorflow as tf
    keras.mixed_precision.set_global_policy("float32")
    before = (keras.mixed_precision.global_policy().name, os.getcwd(), list(logging.getLogger().handlers),
              logging.getLogger().level, tf.config.threading.get_intra_op_parallelism_threads(),
              tf.config.threading.get_inter_op_parallelism_threads())
    recognizer = EmotionRecognizer(SHIPPED_MODEL, precision="bfloat16", tta=True)
    recognizer.analyze(PHOTO)
    after = (keras.mixed_precision.global_policy().name, os.getcwd(), list(logging.getLogger().handlers),
             logging.getLogger().level, tf.config.threading.get_intra_op_parallelism_threads(),
             tf.config.threading.get_inter_op_parallelism_threads())
    assert after == before


def test_a_face_is_a_value_with_the_json_of_predict():
    face = Face((1, 2, 3, 4), "happy", 0.9, {"happy": 0.9, "sad": 0.1}, True)
    assert face.to_dict() == {"box": [1, 2, 3, 4], "detected": True, "emotion": "happy", "confidence": 0.9,
                              "probabilities": {"happy": 0.9, "sad": 0.1}}
    assert list(Face((1, 2, 3, 4), "sad", 0.6, {}, True, track=3).to_dict())[0] == "track"


def test_the_readme_example_runs_as_written():
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    section = readme.split("## Use it from Python", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert len(section.strip().splitlines()) <= 15
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "happy" in result.stdout and "(135, 46, 64, 82)" in result.stdout


def test_the_installed_package_runs_from_another_folder(tmp_path):
    """pip install --no-deps into a folder of its own; from an empty folder, the library and the console script
    find the shipped model inside the installed package."""
    target, elsewhere, source = tmp_path / "site", tmp_path / "elsewhere", tmp_path / "source"
    elsewhere.mkdir()
    # a copy of the tree as a clone has it: pip builds in the source folder (build/, *.egg-info), never in this one
    shutil.copytree(ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(
        ".*", "build", "*.egg-info", "__pycache__", "results", "HASsplittedDS", "tests", "docs", "benchmarks"))
    # the build backend from this environment when it has one (no download), else pip's isolated build
    offline = ["--no-build-isolation"] if importlib.util.find_spec("setuptools") else []
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", *offline, "--target",
                              str(target), str(source)], capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr
    assert {"EmotionRecognitionSystem.h5", "EmotionRecognitionSystem7.h5", "face_detection_short_range.tflite",
            "face_detection_short_range.LICENSE.txt"} <= set(os.listdir(target / "emotion" / "shipped"))
    env = {**os.environ, "PYTHONPATH": str(target), "TF_CPP_MIN_LOG_LEVEL": "2"}
    code = textwrap.dedent(f"""
        import json
        import emotion
        from emotion import EmotionRecognizer
        recognizer = EmotionRecognizer()
        print(emotion.__file__, recognizer.model_path)
        print(json.dumps([face.to_dict() for face in recognizer.analyze({PHOTO!r})]))
    """)
    library = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=elsewhere, env=env,
                             timeout=300)
    assert library.returncode == 0, library.stderr
    where, faces = library.stdout.splitlines()
    assert all(p.startswith(str(target)) for p in where.split()), where
    script = subprocess.run([str(target / "bin" / "emotion-recognition"), "predict", PHOTO, "--json"],
                            capture_output=True, text=True, cwd=elsewhere, env=env, timeout=300)
    assert script.returncode == 0, script.stderr
    assert json.loads(script.stdout)["faces"] == json.loads(faces)  # the same answer, by both doors
    assert os.listdir(elsewhere) == []

