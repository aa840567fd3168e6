"""Hostile and careless input: oversized and malformed images, in one decoding path (decode_image)."""

import io
import json
import os
import re
import struct
import time
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

import emotion_recognition as er
from emotion.core.model_checks import METADATA_KEY
from emotion.io.errors import UserError
from emotion.io.files import write_file
from emotion.io.images import MAX_IMAGE_PIXELS, ImageTooLarge, decode_image
from emotion.jobs.serve import make_serve_app
from emotion.train.fer2013 import read_fer2013_csv
from emotion.train.recovery import check_free_space

FUZZ_CASES = int(os.environ.get("FUZZ_CASES", 20_000))  # about 1 s; docs/robustness.md gives a 100,000-case run
FUZZ_SEED = 16


def png_declaring(width, height, body=b"\0" * 1000):
    """A small PNG whose header declares width x height RGB pixels (its data is far too short for them)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(body)) + chunk(b"IEND", b""))


def seed_images(rng):
    """Valid small images in every format the script reads: the fuzzer's starting points."""
    pixels = rng.integers(0, 256, (23, 31, 3), dtype=np.uint8)
    seeds = [cv2.imencode(ext, pixels)[1].tobytes() for ext in (".png", ".jpg", ".bmp", ".tiff", ".webp", ".ppm")]
    seeds.append(cv2.imencode(".pgm", pixels[..., 0])[1].tobytes())
    gif = io.BytesIO()
    Image.fromarray(pixels).convert("P").save(gif, "GIF")
    return seeds + [gif.getvalue()]


def lie_about_size(data, rng):
    """Overwrite the width/height fields of the seed's header with random (often huge) values."""
    data = bytearray(data)
    side = lambda bits: int(rng.choice([0, 1, 2**bits - 1, int(rng.integers(0, 2**bits))]))
    if data.startswith(b"\x89PNG"):
        return png_declaring(side(31), side(31), bytes(rng.integers(0, 256, 200, dtype=np.uint8)))
    if data.startswith(b"\xff\xd8"):
        sof = data.find(b"\xff\xc0")
        if sof > 0:
            data[sof + 5:sof + 9] = struct.pack(">HH", side(16), side(16))
    elif data.startswith(b"BM"):
        data[18:26] = struct.pack("<ii", side(31) - (2**30 if rng.random() < 0.3 else 0), side(31))
    elif data.startswith(b"GIF"):
        data[6:10] = struct.pack("<HH", side(16), side(16))
    elif data.startswith((b"II", b"MM")) or data.startswith(b"RIFF"):
        where = int(rng.integers(0, len(data) - 4))
        data[where:where + 4] = struct.pack("<I", side(32))
    elif data.startswith(b"P"):
        return f"P{rng.choice([5, 6])}\n{side(31)} {side(31)}\n255\n".encode() + bytes(data[15:])
    return bytes(data)


def mutate(seeds, rng):
    data = seeds[int(rng.integers(len(seeds)))]
    kind = int(rng.integers(5))
    if kind == 0:  # truncated
        return data[:int(rng.integers(0, len(data)))]
    if kind == 1:  # bit flips
        data = bytearray(data)
        for where in rng.integers(0, len(data), int(rng.integers(1, 10))):
            data[where] ^= 1 << int(rng.integers(8))
        return bytes(data)
    if kind == 2:  # lying header
        return lie_about_size(data, rng)
    if kind == 3:  # a huge declared size
        return png_declaring(int(rng.integers(8000, 2**31)), int(rng.integers(8000, 2**31)))
    return bytes(rng.integers(0, 256, int(rng.integers(0, 300)), dtype=np.uint8))  # noise


def decode_outcome(data):
    """'image', 'unreadable' or 'too large': the three things decode_image may do with any bytes."""
    try:
        image = decode_image(np.frombuffer(data, np.uint8), "fuzz")
    except ImageTooLarge:
        return "too large"
    if image is None:
        return "unreadable"
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert image.shape[0] * image.shape[1] <= MAX_IMAGE_PIXELS
    return "image"


def test_a_tiny_file_declaring_a_huge_image_is_refused_before_decoding(monkeypatch):
    decoded = []
    monkeypatch.setattr("emotion.io.images.cv2.imdecode", lambda *a: decoded.append(a) or None)
    with pytest.raises(ImageTooLarge, match=r"bomb.png: declares 50000x50000 pixels, above the limit of "):
        decode_image(np.frombuffer(png_declaring(50_000, 50_000), np.uint8), "bomb.png")
    assert decoded == []


def test_an_image_at_the_limit_is_decoded_and_one_above_is_not(monkeypatch):
    monkeypatch.setattr("emotion.io.images.MAX_IMAGE_PIXELS", 30 * 40)
    ok = cv2.imencode(".png", np.zeros((30, 40, 3), np.uint8))[1]
    assert decode_image(ok).shape == (30, 40, 3)
    with pytest.raises(ImageTooLarge, match="41x30"):
        decode_image(cv2.imencode(".png", np.zeros((30, 41, 3), np.uint8))[1])


def test_a_png_chunk_longer_than_the_file_is_not_handed_to_opencv(monkeypatch):
    data = bytearray(cv2.imencode(".png", np.zeros((23, 31, 3), np.uint8))[1].tobytes())
    data[33:37] = struct.pack(">I", 2**30)  # the IDAT chunk claims 1 GB: OpenCV 4.14 would allocate it
    monkeypatch.setattr("emotion.io.images.cv2.imdecode", lambda *a: pytest.fail("handed to OpenCV"))
    assert decode_image(np.frombuffer(bytes(data), np.uint8)) is None


def test_opencv_errors_never_escape(monkeypatch):
    def failing(*args):
        raise cv2.error("corrupt")
    monkeypatch.setattr("emotion.io.images.cv2.imdecode", failing)
    assert decode_image(cv2.imencode(".png", np.zeros((3, 3, 3), np.uint8))[1]) is None


def fuzz(cases, seed=FUZZ_SEED):
    """Feed `cases` malformed images through decode_image; returns the count of each outcome."""
    rng = np.random.default_rng(seed)
    seeds = seed_images(rng)
    counts = {"image": 0, "unreadable": 0, "too large": 0}
    for _ in range(cases):
        counts[decode_outcome(mutate(seeds, rng))] += 1
    return counts


@pytest.mark.filterwarnings("ignore::UserWarning:PIL")  # Pillow's complaints about the malformed headers fed
def test_fuzz_malformed_images_in_bounded_time():
    start = time.perf_counter()
    counts = fuzz(FUZZ_CASES)
    seconds = time.perf_counter() - start
    assert sum(counts.values()) == FUZZ_CASES
    assert min(counts.values()) > 0, counts  # the mutations reach every outcome
    assert seconds < 0.01 * FUZZ_CASES + 10, f"{FUZZ_CASES} cases took {seconds:.1f} s"


# -----------------------------------------------------------------------------
# The command line: each refusal one line, the run goes on for the other files, nothing lost


from conftest import (SHIPPED_MODEL, SHIPPED_SEVEN, draw_face, real_photo, run_cli, run_here, run_main,  # noqa: E402
                      write_video)


def test_predict_refuses_a_bomb_and_labels_the_other_files(tmp_path):
    cv2.imwrite(str(tmp_path / "face.png"), draw_face("happy"))
    (tmp_path / "bomb.png").write_bytes(png_declaring(50_000, 50_000))
    result = run_cli("predict", tmp_path / "face.png", tmp_path / "bomb.png", "--no-detect", "--json",
                     "--model-path", SHIPPED_MODEL)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert '"image": "' + str(tmp_path / "face.png") in result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: {tmp_path / 'bomb.png'}: declares 50000x50000 pixels, above the limit of "
                      f"{MAX_IMAGE_PIXELS:,} pixels (MAX_IMAGE_PIXELS); scale it down"]


def test_folder_load_skips_a_bomb_with_one_line_and_keeps_the_rest(tmp_path, capsys):
    for i in range(3):
        os.makedirs(tmp_path / "happy", exist_ok=True)
        cv2.imwrite(str(tmp_path / "happy" / f"{i}.png"), draw_face("happy"))
    (tmp_path / "happy" / "bomb.png").write_bytes(png_declaring(32_000, 32_000))
    images, labels, skipped = er.load_folder(str(tmp_path), ["happy"], 48, "grayscale", "none")
    assert len(images) == 3 and skipped == [str(tmp_path / "happy" / "bomb.png")]
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"Warning: skipped {tmp_path / 'happy' / 'bomb.png'}: declares 32000x32000 pixels, above the "
                     f"limit of {MAX_IMAGE_PIXELS:,} pixels (MAX_IMAGE_PIXELS); scale it down"]


# -----------------------------------------------------------------------------
# Model files: stored metadata checked against the model itself


@pytest.fixture(scope="module")
def tiny_model():
    return er.build_model("compact", (48, 48, 1), 3, 1e-3)


def save_with(model, path, metadata):
    er.save_model(model, str(path), metadata)
    return str(path)


GOOD = {"class_names": ["angry", "happy", "sad"], "image_size": 48, "color": "grayscale"}


@pytest.mark.parametrize("change, fragment", [
    ({"image_size": 30000}, "stored image_size 30000 does not match the model's input 48x48"),
    ({"image_size": [1, 2]}, "stored image_size [1, 2]"),
    ({"image_size": "48"}, "stored image_size '48'"),
    ({"color": "rgb"}, "stored color 'rgb' does not match the model's 1 input channel"),
    ({"class_names": ["happy"]}, "are not 3 distinct names"),
    ({"class_names": 5}, "stored class_names 5"),
    ({"class_names": ["a", "a", "b"]}, "are not 3 distinct names"),
])
def test_metadata_that_contradicts_the_model_is_refused(tiny_model, tmp_path, change, fragment):
    path = save_with(tiny_model, tmp_path / "m.h5", {**GOOD, **change})
    with pytest.raises(UserError, match="retrain") as error:
        er.load_trained_model(path)
    assert str(error.value).startswith(repr(path)) and fragment in str(error.value)
    assert "\n" not in str(error.value)


def test_metadata_that_is_not_an_object_and_nan_weights_are_refused(tiny_model, tmp_path):
    path = save_with(tiny_model, tmp_path / "m.h5", GOOD)
    import json

    import h5py
    with h5py.File(path, "a") as f:
        f.attrs[METADATA_KEY] = json.dumps(5)
    with pytest.raises(UserError, match="is not a JSON object"):
        er.load_trained_model(path)
    broken = er.build_model("compact", (48, 48, 1), 3, 1e-3)
    broken.set_weights([np.full_like(w, np.nan) for w in broken.get_weights()])
    with pytest.raises(UserError, match="NaN or infinite"):
        er.load_trained_model(save_with(broken, tmp_path / "nan.h5", GOOD))


def test_a_good_model_still_loads(tiny_model, tmp_path):
    model, metadata = er.load_trained_model(save_with(tiny_model, tmp_path / "m.h5", GOOD))
    assert metadata["class_names"] == GOOD["class_names"]


# -----------------------------------------------------------------------------
# serve: JSON for every error, bombs refused undecoded, emotion/jobs/web/ independent of the script (tests/test_layers.py)


@pytest.fixture(scope="module")
def serve_client(tmp_path_factory):
    pytest.importorskip("flask")
    path = tmp_path_factory.mktemp("serve") / "m.h5"
    er.save_model(er.build_model("compact", (48, 48, 1), 3, 1e-3), str(path), GOOD)
    return make_serve_app(str(path)).test_client()


def post_image(client, data, name="x.png"):
    return client.post("/api/predict", data={"image": (io.BytesIO(data), name)}, content_type="multipart/form-data")


def test_serve_answers_a_bomb_413_in_json_without_decoding(serve_client, monkeypatch):
    monkeypatch.setattr("emotion.io.images.cv2.imdecode", lambda *a: pytest.fail("a bomb was decoded"))
    response = post_image(serve_client, png_declaring(50_000, 50_000), "bomb.png")
    assert response.status_code == 413
    assert response.get_json()["error"].startswith("bomb.png: declares 50000x50000 pixels, above the limit")


@pytest.mark.parametrize("method, url, status", [("GET", "/nope", 404), ("GET", "/api/predict", 405),
                                                 ("DELETE", "/", 405)])
def test_serve_errors_are_json(serve_client, method, url, status):
    response = serve_client.open(url, method=method)
    assert response.status_code == status and response.is_json and response.get_json()["error"]


def test_serve_internal_error_is_json_and_one_log_line(tmp_path, capsys):
    from emotion.jobs.web.server import create_app

    def broken(data, name):
        raise RuntimeError("boom")
    client = create_app(broken, {}, 1).test_client()
    response = post_image(client, b"data")
    assert response.status_code == 500 and "internal error" in response.get_json()["error"]
    assert capsys.readouterr().err == "error: POST /api/predict: RuntimeError: boom\n"


# -----------------------------------------------------------------------------
# Nothing lost: outputs never over inputs, checked and atomic writes, a diverged run saves nothing


def tree(folder):
    """{relative path: bytes} of every file under folder."""
    return {os.path.relpath(os.path.join(root, f), folder): open(os.path.join(root, f), "rb").read()
            for root, _, files in os.walk(folder) for f in files}


def test_prepare_refuses_an_out_folder_that_holds_the_source(tmp_path, capsys):
    from conftest import make_dataset
    data = make_dataset(tmp_path / "X", per_class=(2, 1, 1))
    before = tree(data)
    code, _, error = run_main(capsys, "prepare", "--source", tmp_path / "X" / "train", "--out", tmp_path / "X",
                              "--force")
    assert code == 1 and "lies inside --out" in error and tree(data) == before
    code, _, error = run_main(capsys, "prepare", "--source", tmp_path / "X", "--out", tmp_path / "X" / "train",
                              "--force")
    assert code == 1 and "lies inside the source" in error and tree(data) == before
    (tmp_path / "file").write_text("mine")
    code, _, error = run_main(capsys, "prepare", "--source", tmp_path / "X", "--out", tmp_path / "file", "--force")
    assert code == 1 and "is a file" in error and (tmp_path / "file").read_text() == "mine"


def test_webcam_refuses_to_write_over_its_source(tmp_path, capsys):
    video = write_video(tmp_path / "a.avi")
    before = video.read_bytes()
    code, _, error = run_main(capsys, "webcam", "--source", video, "--output", video, "--no-display",
                              "--model-path", SHIPPED_MODEL)
    assert code == 1 and "is the --source video" in error and video.read_bytes() == before


def test_a_video_cut_short_gives_a_warning(tmp_path, capsys):
    video = write_video(tmp_path / "a.avi")
    data = video.read_bytes()
    video.write_bytes(data[:len(data) // 2])  # cut mid-file: OpenCV still opens it and reads a few frames
    result = run_here(capsys, "webcam", "--source", video, "--no-display", "--model-path", SHIPPED_MODEL)
    assert result.returncode == 0 and f"Warning: {video} ended after " in result.stderr
    assert "of its 30 frames" in result.stderr


def test_predict_save_never_overwrites_an_input(tmp_path, capsys):
    cv2.imwrite(str(tmp_path / "me.png"), draw_face("happy"))
    cv2.imwrite(str(tmp_path / "me_annotated.png"), draw_face("sad"))
    before = tree(tmp_path)
    code, _, _ = run_main(capsys, "predict", tmp_path, "--save", tmp_path, "--no-detect", "--model-path", SHIPPED_MODEL)
    after = tree(tmp_path)
    assert code == 0 and {k: after[k] for k in before} == before
    assert sorted(set(after) - set(before)) == ["me_2_annotated.png", "me_annotated_annotated.png"]


def test_a_failed_write_is_an_error_and_leaves_nothing(tmp_path, capsys, monkeypatch):
    cv2.imwrite(str(tmp_path / "me.png"), draw_face("happy"))
    (tmp_path / "out").mkdir()

    def disk_full(*args):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr("emotion.io.files.os.replace", disk_full)
    with pytest.raises(UserError, match=r"cannot write .*metrics.json' \(No space left on device\)"):
        write_file(str(tmp_path / "out" / "metrics.json"), "{}")
    code, _, error = run_main(capsys, "predict", tmp_path / "me.png", "--save", tmp_path / "out", "--no-detect",
                              "--model-path", SHIPPED_MODEL)
    assert code == 1 and "No space left on device" in error
    assert os.listdir(tmp_path / "out") == []  # no temporary file, no half image


@pytest.mark.slow
def test_a_run_whose_loss_becomes_nan_keeps_the_model_file(tmp_path, capsys):
    from conftest import make_dataset
    data = make_dataset(tmp_path / "data", per_class=(8, 2, 2))
    model = tmp_path / "m.h5"
    model.write_bytes(open(SHIPPED_MODEL, "rb").read())
    code, out, error = run_main(capsys, "--data", data, "--train-again", "--learning-rate", "1e30", "--epochs", "3",
                                "--model-path", model, "--output-dir", tmp_path / "o", "--augment", "none")
    assert code == 1 and "training diverged" in error and "is unchanged" in error
    assert model.read_bytes() == open(SHIPPED_MODEL, "rb").read()
    assert sorted(os.listdir(tmp_path)) == ["data", "m.h5", "o"]  # no checkpoint or temporary file left


# -----------------------------------------------------------------------------
# Options and CSVs: nonsense refused in one line


@pytest.mark.parametrize("args, fragment", [
    (("serve", "--port", "70000"), "--port: must be from 1 to 65535"), (("serve", "--port", "0"), "--port"),
    (("--seed", "-1"), "--seed: must be from 0 to 4294967295"), (("--seed", "1e20"), "--seed"),
    (("--label-smoothing", "-5"), "--label-smoothing"), (("--label-smoothing", "1"), "--label-smoothing"),
    (("--label-smoothing", "nan"), "--label-smoothing"), (("--weight-decay", "-1"), "--weight-decay"),
    (("--weight-decay", "inf"), "--weight-decay"), (("--learning-rate", "inf"), "--learning-rate"),
    (("--mixup", "-0.1"), "--mixup: must be from 0 to 1"), (("--mixup", "2"), "--mixup"), (("--mixup", "nan"), "--mixup"),
    (("--ema", "1"), "--ema: must be from 0 to 1 (excluded)"), (("--ema", "-0.5"), "--ema"),
    (("--learning-rate", "nan"), "--learning-rate"), (("--model-path", "M.H5"), "expected a .h5 file"),
    (("prepare", "--source", "x", "--out", "y", "--seed", "-1"), "--seed"),
])
def test_option_values_out_of_range_are_refused(capsys, monkeypatch, args, fragment):
    for command in er.COMMANDS:  # an accepted value must not start a server or a training run
        monkeypatch.setitem(er.COMMANDS, command, lambda args: pytest.fail(f"accepted: {args}"))
    with pytest.raises(SystemExit) as exit_:
        er.main(list(args))
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and fragment in err.splitlines()[-1], err


def fer_csv(path, rows, prefix=""):
    lines = ["emotion,pixels,Usage"] + [f"{code},{pixels},{usage}" for code, pixels, usage in rows]
    path.write_bytes((prefix + "\n".join(lines) + "\n").encode("utf-8"))
    return str(path)


PIXELS = " ".join(["7"] * 2304)


def test_csv_with_a_byte_order_mark_is_read(tmp_path):
    path = fer_csv(tmp_path / "f.csv", [(3, PIXELS, "Training"), (3, PIXELS, "PublicTest")], prefix="\ufeff")
    assert len(read_fer2013_csv(path, ["happy"])) == 2


def test_csv_with_nan_pixels_or_only_training_rows_is_refused(tmp_path):
    nan = " ".join(["nan"] + ["7"] * 2303)
    with pytest.raises(UserError, match="line 3: .*2304 values in 0-255"):
        read_fer2013_csv(fer_csv(tmp_path / "a.csv", [(3, PIXELS, "Training"), (3, nan, "Training")]), ["happy"])
    with pytest.raises(UserError, match="only Training rows, none for val .PublicTest. or test .PrivateTest."):
        read_fer2013_csv(fer_csv(tmp_path / "b.csv", [(3, PIXELS, "Training")] * 3), ["happy"])


# -----------------------------------------------------------------------------
# File names that are not UTF-8 (Linux keeps their bytes as surrogates): handled or refused, never a segfault


def test_non_utf8_paths_are_read_or_refused(tmp_path, capsys):
    folder = os.fsencode(tmp_path) + b"/bad\xff"
    os.mkdir(folder)
    cv2.imencode(".png", draw_face("happy"))[1].tofile(os.fsdecode(folder + b"/face\xfe.png"))
    code, out, _ = run_main(capsys, "predict", os.fsdecode(folder), "--no-detect", "--json", "--model-path",
                            SHIPPED_MODEL, "--save", tmp_path)
    assert code == 0 and "face\\udcfe.png" in out and os.listdir(os.fsencode(tmp_path / "")).count(
        b"face\xfe_annotated.png") == 1
    for option in ("--source", "--output"):
        args = {"--source": "0", "--output": None, option: os.fsdecode(folder + b"/v.avi")}
        code, _, error = run_main(capsys, "webcam", "--no-display", "--model-path", SHIPPED_MODEL,
                                  *[a for k, v in args.items() if v for a in (k, v)])
        assert code == 1 and error == f"error: {option} {os.fsdecode(folder + b'/v.avi')!r} is not valid UTF-8; " \
                                      "rename the file or folder"


def test_serve_and_predict_give_one_answer_for_a_large_photo(tmp_path, capsys):
    """serve labelled photos above 2048 px on a smaller copy: other boxes and emotions than predict, sometimes other
    faces. Both now run EmotionRecognizer.analyze on the photo as it is."""
    photo = tmp_path / "large.png"
    cv2.imwrite(str(photo), cv2.resize(cv2.cvtColor(real_photo("astronaut"), cv2.COLOR_RGB2BGR), (2600, 2600)))
    client = make_serve_app(SHIPPED_SEVEN).test_client()
    served = post_image(client, photo.read_bytes()).get_json()["faces"]
    result = run_here(capsys, "predict", photo, "--json", "--model-path", SHIPPED_SEVEN)
    printed = json.loads(result.stdout)["faces"]
    assert len(printed) == 1 and [{k: v for k, v in f.items() if k != "message"} for f in served] == printed


def test_serve_handles_one_large_photo_at_a_time_and_answers_503_to_a_second(serve_client, monkeypatch):
    import threading
    monkeypatch.setattr("emotion.jobs.serve.SERVE_LARGE_PIXELS", 100)
    monkeypatch.setattr("emotion.jobs.serve.SERVE_LARGE_WAIT", 0.2)
    decoding, release = threading.Event(), threading.Event()
    decode = decode_image

    def slow_decode(*args):
        decoding.set()
        release.wait(10)
        return decode(*args)
    monkeypatch.setattr("emotion.jobs.serve.decode_image", slow_decode)
    photo = cv2.imencode(".png", np.full((30, 40), 90, np.uint8))[1].tobytes()
    first = []
    thread = threading.Thread(target=lambda: first.append(post_image(serve_client, photo, "first.png")))
    thread.start()
    assert decoding.wait(10)
    second = post_image(serve_client, photo, "second.png")
    release.set()
    thread.join()
    assert second.status_code == 503 and "busy with another large photo" in second.get_json()["error"]
    assert first[0].status_code == 200
    small = post_image(serve_client, cv2.imencode(".png", np.full((5, 5), 90, np.uint8))[1].tobytes())
    assert small.status_code == 200  # 25 pixels: not large, takes no turn


def test_training_stops_before_it_starts_when_the_disk_is_too_full(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setattr("emotion.train.recovery.shutil.disk_usage", lambda folder: type("Usage", (), {"free": 2**20})())
    with pytest.raises(UserError, match=r"training needs about \d+ MB free in .* but 1 MB are free"):
        check_free_space(tiny_model, str(tmp_path / "m.h5"))


def test_the_free_space_training_needs_counts_the_average_of_the_weights_with_ema(tmp_path, monkeypatch):
    """The per-epoch backup holds one more copy of the weights with --ema: 10 copies in all instead of 8."""
    needs = []
    for ema in (0.0, 0.99):
        free = type("Usage", (), {"free": 0})()
        monkeypatch.setattr("emotion.train.recovery.shutil.disk_usage", lambda folder: free)
        model = er.build_model("compact", (48, 48, 1), 7, 1e-3, ema=ema)
        with pytest.raises(UserError) as error:
            check_free_space(model, str(tmp_path / "m.h5"))
        needs.append(int(re.search(r"needs about (\d+) MB", str(error.value)).group(1)))
    assert needs[1] == pytest.approx(needs[0] * 10 / 8, abs=1)
