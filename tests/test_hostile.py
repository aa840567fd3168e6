"""Hostile files, model files and options (issue 21): each refused cheaply, in one line, before it costs memory,
hangs or forges output."""

import contextlib
import io
import json
import os
import re
import signal
import subprocess
import sys

import cv2
import h5py
import numpy as np
import pytest
from test_robustness import GOOD, PIXELS, fer_csv, png_declaring, post_image, save_with, tree

import emotion_recognition as er
from emotion.core.model_checks import METADATA_KEY
from emotion.io.errors import UserError
from emotion.jobs.prepare import prepare_dataset
from emotion.train.fer2013 import read_fer2013_csv

from conftest import ROOT, SHIPPED_MODEL, draw_face, make_dataset, run_cli, run_main, write_video


def run_predict(capsys, *args):
    """predict in this process, where files it cannot label end it with SystemExit(1): (code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exit_:
        er.main(["predict", *map(str, args)])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return exit_.value.code, out, err


@contextlib.contextmanager
def deadline(seconds):
    """Fail (instead of hanging the suite) when the block takes longer than `seconds`."""
    def expire(*args):
        raise TimeoutError(f"still running after {seconds} s")
    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# -----------------------------------------------------------------------------
# Image files: the byte limit and the header before the bytes; only regular files; memory bounded by pixels


def test_a_huge_file_is_refused_unread_and_a_bomb_header_before_its_bytes(tmp_path):
    (tmp_path / "face.png").write_bytes(cv2.imencode(".png", draw_face("happy"))[1].tobytes())
    with open(tmp_path / "huge.jpg", "wb") as f:  # 1 GB, sparse: a real PNG, then zeros
        f.write((tmp_path / "face.png").read_bytes())
        f.truncate(1 << 30)
    with open(tmp_path / "bomb.png", "wb") as f:  # 200 MB (under the byte limit) declaring 50000x50000
        f.write(png_declaring(50_000, 50_000))
        f.truncate(200 << 20)
    code = ("import resource, sys; from emotion.io.images import read_image\n"
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "for path in sys.argv[1:]:\n"
            "    try: print('read', read_image(path) is not None)\n"
            "    except Exception as error: print(type(error).__name__, error)\n"
            "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)")
    result = subprocess.run([sys.executable, "-c", code, tmp_path / "huge.jpg", tmp_path / "bomb.png"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    *answers, grown_mb = result.stdout.splitlines()
    assert answers == [f"ImageTooLarge {tmp_path / 'huge.jpg'}: 1,073,741,824 bytes, above the limit of 268,435,456 "
                       "bytes (MAX_IMAGE_BYTES); scale it down or save it compressed",
                       f"ImageTooLarge {tmp_path / 'bomb.png'}: declares 50000x50000 pixels, above the limit of "
                       "40,000,000 pixels (MAX_IMAGE_PIXELS); scale it down"], result.stderr
    assert int(grown_mb) < 50  # neither file was read into memory


def test_a_fifo_named_like_an_image_is_skipped_in_every_command(tmp_path, capsys):
    for folder in ("photos", "data/happy", "data/sad"):
        os.makedirs(tmp_path / folder)
        cv2.imwrite(str(tmp_path / folder / "face.png"), draw_face("happy"))
        os.mkfifo(tmp_path / folder / "x.jpg")  # opening it would wait forever for a writer
    with deadline(120):
        code, out, err = run_predict(capsys, tmp_path / "photos", "--no-detect", "--json", "--model-path",
                                     SHIPPED_MODEL)
        assert code == 1 and '"image": "' + str(tmp_path / "photos" / "face.png") in out
        assert err == f"error: {tmp_path / 'photos' / 'x.jpg'}: not a regular file (a FIFO, device, socket or " \
                      "folder); skipped\n"
        images, _, _ = er.load_folder(str(tmp_path / "data"), ["happy", "sad"], 48, "grayscale", "none")
        assert len(images) == 2 and f"Warning: skipped {tmp_path / 'data' / 'sad' / 'x.jpg'}: not a regular file" \
            in capsys.readouterr().out
        counts, _, _ = prepare_dataset(str(tmp_path / "data"), str(tmp_path / "out"), group_pattern="none")
        assert sum(counts.values()) == 2 and "x.jpg: not a regular file" in capsys.readouterr().out


def test_predict_decodes_a_bounded_number_of_pixels_at_once(tmp_path, capsys, monkeypatch):
    for i in range(5):
        cv2.imwrite(str(tmp_path / f"{i}.png"), draw_face("happy"))
    monkeypatch.setattr("emotion.jobs.predict.PREDICT_BATCH_PIXELS", 2 * 48 * 48, raising=False)
    held = []
    analyze_images = __import__("emotion.recognizer", fromlist=["x"]).analyze_images

    def recording(images, *args):
        held.append(sum(im.shape[0] * im.shape[1] for im in images))
        return analyze_images(images, *args)
    monkeypatch.setattr("emotion.recognizer.analyze_images", recording)
    code, out, _ = run_main(capsys, "predict", tmp_path, "--no-detect", "--json", "--model-path", SHIPPED_MODEL)
    assert code == 0 and len(out.splitlines()) == 5
    assert held == [2 * 48 * 48, 2 * 48 * 48, 48 * 48]


# -----------------------------------------------------------------------------
# Model files: refused before a weight is allocated or an image decoded at their size


@pytest.fixture(scope="module")
def small_model():
    return er.build_model("compact", (48, 48, 1), 3, 1e-3)


def test_model_files_nested_too_deep_are_refused_unparsed(small_model, tmp_path):
    for key in (METADATA_KEY, "model_config"):
        path = save_with(small_model, tmp_path / f"{key}.h5", GOOD)
        with h5py.File(path, "a") as f:
            f.attrs[key] = "[" * 20_000 + "]" * 20_000
        with pytest.raises(UserError, match=f"its stored {key} nests deeper than 100 levels"):
            er.load_trained_model(path)


def test_model_file_metadata_of_megabytes_is_refused_unparsed(small_model, tmp_path):
    """5 MB of junk metadata cost about 500 MB more memory (the nesting count, then json.loads)."""
    from emotion.core.model_checks import MAX_ATTRIBUTE_CHARS
    from emotion.core.model_files import read_metadata
    for key in (METADATA_KEY, "model_config"):
        path = save_with(small_model, tmp_path / f"{key}.h5", GOOD)
        with h5py.File(path, "a") as f:
            f.attrs[key] = json.dumps({**json.loads(f.attrs[key]), "junk": "x" * MAX_ATTRIBUTE_CHARS[key]})
        with pytest.raises(UserError, match=f"its stored {key} is longer than {MAX_ATTRIBUTE_CHARS[key]:,} characters"):
            er.load_trained_model(path)
    with pytest.raises(UserError, match="is longer than"):
        read_metadata(tmp_path / f"{METADATA_KEY}.h5")


def test_a_model_declaring_too_many_parameters_is_refused_unbuilt(small_model, tmp_path):
    from keras.src.backend.common import global_state
    path = save_with(small_model, tmp_path / "m.h5", GOOD)
    with h5py.File(path, "a") as f:
        config = json.loads(f.attrs["model_config"])
        dense = [layer for layer in config["config"]["layers"] if layer["class_name"] == "Dense"][-1]
        dense["config"]["units"] = 1_000_000  # 258 M parameters (1 GB) in a file of a few MB
        f.attrs["model_config"] = json.dumps(config)
    with pytest.raises(UserError, match=r"declares 258,183,904 parameters, above the limit of 100,000,000"):
        er.load_trained_model(path)
    assert not global_state.get_global_attribute("uninitialized_variables", [])  # none left to allocate later


@pytest.mark.parametrize("size", [48, 4096])
def test_a_model_with_an_any_size_input_is_refused(tmp_path, size):
    path = save_with(er.build_model("compact", (None, None, 1), 3, 1e-3), tmp_path / "m.h5",
                     {**GOOD, "image_size": size})
    with pytest.raises(UserError, match=f"stored image_size {size} does not match the model's input NonexNone, a "
                                        "fixed size of at most 256"):
        er.load_trained_model(path)


# -----------------------------------------------------------------------------
# Finite weights that overflow: no command answers NaN


@pytest.fixture(scope="module")
def overflowing_model(tmp_path_factory):
    """Finite weights whose sums overflow: pixel 0 times 3e38 is inf, pixel 1 times -3e38 is -inf, their sum NaN."""
    keras = er.keras
    inputs = keras.Input((48, 48, 1))
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, outputs)
    kernel = np.zeros((48 * 48, 3), np.float32)
    kernel[0], kernel[1] = 3e38, -3e38
    model.set_weights([kernel, np.zeros(3, np.float32)])
    return save_with(model, tmp_path_factory.mktemp("nan") / "m.h5", GOOD)


def test_no_command_answers_nan(overflowing_model, tmp_path, capsys, monkeypatch):
    face = {"box": [0, 0, 40, 40], "eyes": None}
    monkeypatch.setattr("emotion.recognizer.detect_faces", lambda detector, image, max_side, **_looks: [dict(face)])
    data = make_dataset(tmp_path / "d", per_class=(1, 1, 1))
    cv2.imwrite(str(tmp_path / "face.png"), draw_face("happy"))
    video = write_video(tmp_path / "a.avi", frames=3)  # frame 0 is black (a sum of 0), frame 1 is not
    for args in (["evaluate", os.path.join(data, "test"), "--output-dir", tmp_path / "o", "--no-show"],
                 ["predict", tmp_path / "face.png", "--no-detect", "--json"],
                 ["webcam", "--source", video, "--no-display", "--detector", "haar"]):
        code, out, error = run_main(capsys, *args, "--model-path", overflowing_model)
        assert code == 1 and "NaN" not in out, (args, out)
        assert re.match(r"error: the model gave NaN or infinite probabilities for (\d+) of \1 image", error), args
    assert not os.path.exists(tmp_path / "o" / "metrics.json")


def test_serve_answers_an_overflowing_model_with_a_json_error(overflowing_model):
    pytest.importorskip("flask")
    from emotion.jobs.serve import make_serve_app
    client = make_serve_app(overflowing_model, detector="haar").test_client()
    response = post_image(client, cv2.imencode(".png", draw_face("happy"))[1].tobytes())
    assert response.status_code == 500
    json.loads(response.data, parse_constant=lambda constant: pytest.fail(f"{constant} in the JSON"))
    assert "NaN or infinite probabilities" in response.get_json()["error"]


# -----------------------------------------------------------------------------
# Options, outputs inside the data, symbolic links into --out, forged lines, CSVs, messages


@pytest.mark.parametrize("args, fragment", [
    (("serve", "--host", "999.1.1.1"), "--host: expected an IP address"),
    (("serve", "--host", ""), "--host: expected an IP address"),
    (("--image-size", "3000"), "--image-size: must be from 1 to 256, got 3000"),
])
def test_host_and_image_size_are_checked_at_parse_time(capsys, monkeypatch, args, fragment):
    for command in er.COMMANDS:
        monkeypatch.setitem(er.COMMANDS, command, lambda args: pytest.fail(f"accepted: {args}"))
    with pytest.raises(SystemExit) as exit_:
        er.main(list(args))
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and fragment in err.splitlines()[-1], err


def test_host_names_and_addresses_are_accepted():
    from emotion.io.arguments import host_arg
    assert [host_arg(h) for h in ("127.0.0.1", "0.0.0.0", "::1", "localhost")] == ["127.0.0.1", "0.0.0.0", "::1",
                                                                                  "localhost"]


def test_prepare_force_refuses_class_folders_linked_into_out(tmp_path, capsys):
    out = make_dataset(tmp_path / "out", per_class=(2, 1, 1))  # a previous prepare's output
    os.makedirs(tmp_path / "src")
    for name in ("angry", "happy", "sad"):
        os.symlink(os.path.join(out, "train", name), tmp_path / "src" / name)
    before = tree(out)
    code, _, error = run_main(capsys, "prepare", "--source", tmp_path / "src", "--out", out, "--force",
                              "--group-pattern", "none")
    assert code == 1 and "lies inside --out" in error and "np.str_" not in error and tree(out) == before


def test_an_output_dir_inside_the_data_is_refused(tmp_path, capsys):
    data = make_dataset(tmp_path / "d", per_class=(1, 1, 1))
    code, _, error = run_main(capsys, "evaluate", os.path.join(data, "test"), "--output-dir",
                              os.path.join(data, "test", "happy"), "--model-path", SHIPPED_MODEL)
    assert code == 1 and "lies inside the data folder" in error
    code, _, error = run_main(capsys, "--data", data, "--output-dir", os.path.join(data, "train", "happy"),
                              "--model-path", SHIPPED_MODEL)
    assert code == 1 and "lies inside the data folder" in error
    assert sorted(os.listdir(os.path.join(data, "test", "happy"))) == ["happy_000.png"]


def test_control_characters_never_forge_an_output_line(tmp_path, capsys, small_model):
    name = "a\nerror: forged \x1b[31mline.png"
    cv2.imwrite(str(tmp_path / "face.png"), draw_face("happy"))
    os.rename(tmp_path / "face.png", tmp_path / name)
    code, out, _ = run_main(capsys, "predict", tmp_path / name, "--no-detect", "--model-path", SHIPPED_MODEL)
    assert code == 0 and len(out.splitlines()) == 1 and "a\\nerror: forged \\x1b[31mline.png" in out
    with pytest.raises(UserError, match="each printable"):
        er.load_trained_model(save_with(small_model, tmp_path / "m.h5", {**GOOD, "class_names": ["a", "b\n", "c"]}))
    os.makedirs(tmp_path / "data" / "happy\x1b[2J")
    with pytest.raises(UserError, match=r"the class folder 'happy\\x1b\[2J' has control characters"):
        er.list_class_names(str(tmp_path / "data"))


def test_csv_with_a_trailing_blank_line_is_read_and_an_overlong_field_named(tmp_path):
    path = fer_csv(tmp_path / "f.csv", [(3, PIXELS, "Training"), (3, PIXELS, "PublicTest")])
    with open(path, "a") as f:
        f.write("\n")
    assert len(read_fer2013_csv(path, ["happy"])) == 2
    (tmp_path / "long.csv").write_text("emotion,pixels,Usage\n3," + "7 " * 70_000 + ",Training\n")
    with pytest.raises(UserError, match="a field is longer than 131,072 characters"):
        read_fer2013_csv(str(tmp_path / "long.csv"), ["happy"])


def test_prepare_says_when_a_class_is_named_twice(tmp_path, capsys):
    data = make_dataset(tmp_path / "d", per_class=(1, 1, 1))
    code, _, error = run_main(capsys, "prepare", "--source", data + "/train", "--out", tmp_path / "o",
                              "--classes", "happy,Happy")
    assert code == 1 and "--classes names happy more than once" in error


def test_serve_names_too_many_parts_and_an_unreadable_form(tmp_path):
    pytest.importorskip("flask")
    from emotion.jobs.web.server import create_app
    client = create_app(lambda data, name: pytest.fail("reached"), {}, 10).test_client()
    png = cv2.imencode(".png", draw_face("happy"))[1].tobytes()
    response = client.post("/api/predict", data={**{f"f{i}": "x" for i in range(5000)},
                                                 "image": (io.BytesIO(png), "x.png")}, content_type="multipart/form-data")
    assert response.status_code == 413 and "the form has more than 1,000 parts" in response.get_json()["error"]
    body = (b'--B\r\nContent-Disposition: form-data; name="image"; filename="a\xff.png"\r\n'
            b"Content-Type: image/png\r\n\r\n" + png + b"\r\n--B--\r\n")
    response = client.post("/api/predict", data=body, content_type="multipart/form-data; boundary=B")
    assert response.status_code == 400 and "the multipart form cannot be read" in response.get_json()["error"]


# -----------------------------------------------------------------------------
# Issue 31: no output over an input, whole outputs or none on a full disk, --resume keeps the best and the model,
# bounded --group-pattern, empty and huge videos, and the smaller things


@pytest.mark.parametrize("option", ["--csv", "--json", "--output", "--timeline"])
def test_webcam_never_writes_over_the_model_it_reads(tmp_path, capsys, option):
    video = write_video(tmp_path / "ok.avi", frames=3)
    victim = tmp_path / ("victim.png" if option == "--timeline" else "victim.h5")
    victim.write_bytes(open(SHIPPED_MODEL, "rb").read())
    os.link(victim, tmp_path / "also.h5")  # the same file under another name (a hard link)
    before = victim.read_bytes()
    for path in (victim, tmp_path / "also.h5"):
        code, _, error = run_main(capsys, "webcam", "--source", video, "--no-display", option, path,
                                  "--model-path", victim if option != "--timeline" else tmp_path / "also.h5")
        assert code == 1 and "is the model (--model-path), which this command reads" in error, error
    assert victim.read_bytes() == before


def test_training_never_deletes_or_replaces_the_model_it_starts_from(tmp_path, capsys):
    data = make_dataset(tmp_path / "d", per_class=(2, 1, 1))
    start = tmp_path / "m.checkpoint.h5"  # the name of m.h5's in-training checkpoint, which a new run deletes
    start.write_bytes(open(SHIPPED_MODEL, "rb").read())
    before = start.read_bytes()
    for model_path in (tmp_path / "m.h5", start):
        code, _, error = run_main(capsys, "--data", data, "--train-again", "--epochs", "1", "--initial-model", start,
                                  "--model-path", model_path, "--output-dir", tmp_path / "out", "--no-show")
        assert code == 1 and "is the --initial-model model, which this command reads" in error, error
    assert start.read_bytes() == before


def test_evaluate_never_writes_a_result_over_the_model_it_reads(tmp_path, capsys):
    data = make_dataset(tmp_path / "d", per_class=(1, 1, 1))
    model = tmp_path / "m.h5"
    model.write_bytes(open(SHIPPED_MODEL, "rb").read())
    (tmp_path / "out").mkdir()
    os.symlink(model, tmp_path / "out" / "confusion_matrix.png")  # a plot written through it would replace the model
    code, _, error = run_main(capsys, "evaluate", os.path.join(data, "test"), "--model-path", model,
                              "--output-dir", tmp_path / "out", "--no-show")
    assert code == 1 and "is the model (--model-path)" in error
    assert model.read_bytes() == open(SHIPPED_MODEL, "rb").read()


def run_limited(args, file_limit, timeout=300):
    """The script in a child whose files may not grow beyond `file_limit` bytes (RLIMIT_FSIZE): a disk that fills
    up, as OpenCV, Python and h5py each meet it (EFBIG, as ENOSPC)."""
    import resource

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))
    env = {**os.environ, "MPLBACKEND": "Agg", "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("DISPLAY", None)
    return subprocess.run([sys.executable, os.path.join(ROOT, "emotion_recognition.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, preexec_fn=limit, env=env)


def noise_video(path, frames=40, size=(320, 240)):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, size)
    rng = np.random.default_rng(0)
    for _ in range(frames):
        writer.write(rng.integers(0, 255, (size[1], size[0], 3), np.uint8))
    writer.release()
    return path


@pytest.mark.slow
def test_a_full_disk_during_webcam_is_one_line_and_leaves_the_old_outputs(tmp_path):
    video = noise_video(tmp_path / "noise.avi")  # noise compresses badly: the annotated video outgrows the limit
    for name in ("o.mp4", "o.json", "o.csv"):
        (tmp_path / name).write_text("the previous run's\n")
    result = run_limited(["webcam", "--source", video, "--no-display", "--detector", "haar", "--output",
                          tmp_path / "o.mp4", "--precision", "float32", "--model-path", SHIPPED_MODEL], 60_000)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert result.stderr.splitlines() == [f"error: writing the video '{tmp_path / 'o.mp4'}' failed (it holds 0 of the "
                                          f"40 frames written; is the disk full?); '{tmp_path / 'o.mp4'}' is "
                                          "unchanged; free some space or choose another folder"]
    result = run_limited(["webcam", "--source", write_video(tmp_path / "a.avi", frames=60), "--no-display",
                          "--detector", "haar", "--json", tmp_path / "o.json", "--csv", tmp_path / "o.csv",
                          "--precision", "float32", "--model-path", SHIPPED_MODEL], 1_000)  # about 20 frames' records
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert [line for line in result.stderr.splitlines() if line.startswith("error: cannot write the records")]
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert all((tmp_path / name).read_text() == "the previous run's\n" for name in ("o.mp4", "o.json", "o.csv"))
    assert sorted(os.listdir(tmp_path)) == ["a.avi", "noise.avi", "o.csv", "o.json", "o.mp4"]  # no temporary file


def test_an_empty_video_and_frames_above_the_pixel_limit_are_one_line_and_write_nothing(tmp_path, capsys):
    empty = tmp_path / "empty.avi"
    writer = cv2.VideoWriter(str(empty), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    writer.release()
    code, out, error = run_main(capsys, "webcam", "--source", empty, "--no-display", "--output", tmp_path / "o.mp4",
                                "--csv", tmp_path / "o.csv", "--model-path", SHIPPED_MODEL)
    assert (code, error) == (1, f"error: {empty}: no frame could be read (an empty or damaged video); nothing was "
                                "written") and "Processed" not in out
    huge = tmp_path / "huge.avi"
    writer = cv2.VideoWriter(str(huge), cv2.VideoWriter_fourcc(*"MJPG"), 10, (8000, 6000))
    writer.write(np.zeros((6000, 8000, 3), np.uint8))
    writer.release()
    code, _, error = run_main(capsys, "webcam", "--source", huge, "--no-display", "--output", tmp_path / "o.mp4",
                              "--csv", tmp_path / "o.csv", "--model-path", SHIPPED_MODEL)
    assert (code, error) == (1, f"error: {huge}: frames of 8000x6000 pixels, above the limit of 40,000,000 pixels "
                                "(MAX_IMAGE_PIXELS); scale the video down")
    assert sorted(os.listdir(tmp_path)) == ["empty.avi", "huge.avi"]


def test_a_frame_size_the_writer_refuses_is_named(tmp_path, monkeypatch):
    from emotion.core.timeline import open_video_output
    refusing = type("Refusing", (), {"isOpened": lambda self: False, "release": lambda self: None})
    monkeypatch.setattr(cv2, "VideoWriter", lambda *args: refusing())  # as for 10000x10000 frames, at the first
    with pytest.raises(UserError, match="with frames of 64x48: OpenCV's MPEG-4 writer refused it"):
        with open_video_output(str(tmp_path / "o.mp4"), 10) as write:
            write(np.zeros((48, 64, 3), np.uint8))
    assert os.listdir(tmp_path) == []


def test_a_group_pattern_that_backtracks_for_ever_is_stopped(tmp_path):
    for name in ("happy", "sad"):
        os.makedirs(tmp_path / "src" / name)
        for i in range(10):
            cv2.imwrite(str(tmp_path / "src" / name / f"S{i:03d}_{name}.png"), draw_face(name))
    cv2.imwrite(str(tmp_path / "src" / "happy" / "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!.png"), draw_face("happy"))
    result = run_cli("prepare", "--source", tmp_path / "src", "--out", tmp_path / "out", "--group-pattern", "(a+)+b",
                     timeout=90)  # before: still running after hours (2**30 ways to split 30 a's)
    assert result.returncode == 1 and result.stderr.splitlines() == [
        "error: --group-pattern '(a+)+b' took more than 10 s (GROUP_PATTERN_SECONDS) on the names of 21 files: a "
        "nested repetition such as (a+)+ backtracks without end; simplify it, or pass --group-pattern none"]
    assert not os.path.exists(tmp_path / "out")


def test_group_names_are_matched_as_before(tmp_path):
    from emotion.train.splits import groups_of
    paths = ["d/S010_001.png", "d/S010_002.png", "d/x.png", "d/caf\udcff1_a.png"]
    assert groups_of(paths, r"^[A-Za-z]*\d+[_.-]") == ["S010_", "S010_", "d/x.png", "d/caf\udcff1_a.png"]
    assert groups_of(paths, "none") == paths


def test_a_csv_pixel_that_is_not_a_whole_number_is_refused_and_a_missing_header_is_short(tmp_path):
    path = fer_csv(tmp_path / "f.csv", [(3, " ".join(["1.5"] * 2304), "Training")])
    with pytest.raises(UserError, match=r"line 2: .*2304 values in 0-255 \(whole numbers\)"):
        read_fer2013_csv(path, ["happy"])
    (tmp_path / "bare.csv").write_text(f"3,{PIXELS},Training\n")  # no header line
    with pytest.raises(UserError) as refused:
        read_fer2013_csv(str(tmp_path / "bare.csv"), ["happy"])
    assert len(str(refused.value)) < 200 and "expected FER2013's columns emotion,pixels,Usage" in str(refused.value)


def test_opencv_prints_nothing_of_its_own_for_a_broken_gif(tmp_path):
    from PIL import Image
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (23, 31, 3), np.uint8)).save(buffer, "GIF")
    data = bytearray(buffer.getvalue())
    descriptor = data.index(b"\x2c\x00\x00\x00\x00\x1f\x00\x17\x00")  # the image at 0,0, 31x23
    data[descriptor + 5] = 0xFF  # wider than the canvas: OpenCV's GIF reader fails an assertion and logs it
    (tmp_path / "broken.gif").write_bytes(bytes(data))
    code = "import sys; from emotion.io.images import read_image; print(read_image(sys.argv[1]) is None)"
    result = subprocess.run([sys.executable, "-c", code, tmp_path / "broken.gif"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.stdout.strip() in ("True", "False") and result.stderr == "", result.stderr


def test_a_lambda_layer_is_refused_by_name_and_never_run(tmp_path, monkeypatch):
    import keras
    marker = tmp_path / "ran"
    monkeypatch.setenv("LAMBDA_MARKER", str(marker))
    inputs = keras.Input((48, 48, 1))
    x = keras.layers.Lambda(lambda t: (open(os.environ["LAMBDA_MARKER"], "w").close(), t)[1],  # leaves a trace
                            name="payload")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    path = save_with(model, tmp_path / "lambda.h5", GOOD)
    marker.unlink()  # building the model ran it once, here
    with pytest.raises(UserError, match="its layer 'payload' is a Lambda, Python code stored in the model file"):
        er.load_trained_model(path)
    assert not marker.exists()


def test_models_are_loaded_with_safe_mode_and_keras_that_honours_it(tmp_path, monkeypatch, small_model):
    import keras
    calls = []
    load = keras.models.load_model
    monkeypatch.setattr(keras.models, "load_model", lambda *args, **kwargs: calls.append(kwargs) or load(*args,
                                                                                                         **kwargs))
    er.load_trained_model(save_with(small_model, tmp_path / "m.h5", GOOD))
    assert calls and calls[0].get("safe_mode") is True
    with open(os.path.join(ROOT, "pyproject.toml")) as f:  # the project's dependencies
        minimum = tuple(int(n) for n in re.search(r'"keras>=\s*([\d.]+)', f.read()).group(1).split("."))
    assert minimum >= (3, 11, 3)  # the first Keras that refuses Lambda layers in .h5 files (CVE-2025-9905)


def test_votes_inside_out_are_refused(tmp_path, capsys):
    data = make_dataset(tmp_path / "src", per_class=(1, 1, 1))
    (tmp_path / "out").mkdir()
    votes = tmp_path / "out" / "votes.csv"
    votes.write_text("path,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF\n")
    code, _, error = run_main(capsys, "prepare", "--source", data, "--out", tmp_path / "out", "--force",
                              "--votes", votes)
    assert code == 1 and "--votes" in error and "lies inside --out" in error
    assert votes.read_text().startswith("path,neutral")


@pytest.mark.parametrize("command", [
    lambda t, clip, data: ["webcam", "--source", clip, "--no-display", "--csv", t / "no" / "dir" / "x.csv"],
    lambda t, clip, data: ["webcam", "--source", clip, "--no-display", "--json", t / "no" / "dir" / "x.jsonl"],
    lambda t, clip, data: ["webcam", "--source", clip, "--no-display", "--output", t / "no" / "dir" / "x.mp4"],
    lambda t, clip, data: ["webcam", "--source", clip, "--no-display", "--timeline", t / "no" / "dir" / "x.png"],
    lambda t, clip, data: ["predict", clip, "--save", t / "no" / "dir"],
    lambda t, clip, data: ["evaluate", data + "/test", "--model-path", SHIPPED_MODEL, "--output-dir",
                           t / "no" / "dir"],
    lambda t, clip, data: ["prepare", "--source", data, "--out", t / "no" / "dir"],
    lambda t, clip, data: ["--data", data, "--model-path", t / "no" / "m.h5", "--epochs", "1", "--no-show",
                           "--output-dir", t / "out"],
])
def test_a_missing_parent_folder_of_an_output_is_refused_not_made(tmp_path, capsys, command):
    """As root, webcam --csv /nonexistent/dir/x.csv made /nonexistent/dir."""
    data = make_dataset(tmp_path / "data", per_class=(2, 2, 2))
    clip = write_video(tmp_path / "clip.avi", frames=3)
    code, _, error = run_main(capsys, *command(tmp_path, str(clip), data))
    assert code == 1 and "does not exist; create it first or choose another" in error.splitlines()[-1], error
    assert not os.path.exists(tmp_path / "no") and not os.path.exists(tmp_path / "out")
