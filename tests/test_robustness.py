"""Hostile and careless input: oversized and malformed images, in one decoding path (er.decode_image)."""

import io
import os
import struct
import time
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

import emotion_recognition as er

FUZZ_CASES = int(os.environ.get("FUZZ_CASES", 3000))  # docs/robustness.md gives the figures of a larger run
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
        image = er.decode_image(np.frombuffer(data, np.uint8), "fuzz")
    except er.ImageTooLarge:
        return "too large"
    if image is None:
        return "unreadable"
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert image.shape[0] * image.shape[1] <= er.MAX_IMAGE_PIXELS
    return "image"


def test_a_tiny_file_declaring_a_huge_image_is_refused_before_decoding(monkeypatch):
    decoded = []
    monkeypatch.setattr(er.cv2, "imdecode", lambda *a: decoded.append(a) or None)
    with pytest.raises(er.ImageTooLarge, match=r"bomb.png: declares 50000x50000 pixels, above the limit of "):
        er.decode_image(np.frombuffer(png_declaring(50_000, 50_000), np.uint8), "bomb.png")
    assert decoded == []


def test_an_image_at_the_limit_is_decoded_and_one_above_is_not(monkeypatch):
    monkeypatch.setattr(er, "MAX_IMAGE_PIXELS", 30 * 40)
    ok = cv2.imencode(".png", np.zeros((30, 40, 3), np.uint8))[1]
    assert er.decode_image(ok).shape == (30, 40, 3)
    with pytest.raises(er.ImageTooLarge, match="41x30"):
        er.decode_image(cv2.imencode(".png", np.zeros((30, 41, 3), np.uint8))[1])


def test_opencv_errors_never_escape(monkeypatch):
    def failing(*args):
        raise cv2.error("corrupt")
    monkeypatch.setattr(er.cv2, "imdecode", failing)
    assert er.decode_image(cv2.imencode(".png", np.zeros((3, 3, 3), np.uint8))[1]) is None


def fuzz(cases, seed=FUZZ_SEED):
    """Feed `cases` malformed images through decode_image; returns the count of each outcome."""
    rng = np.random.default_rng(seed)
    seeds = seed_images(rng)
    counts = {"image": 0, "unreadable": 0, "too large": 0}
    for _ in range(cases):
        counts[decode_outcome(mutate(seeds, rng))] += 1
    return counts


def test_fuzz_malformed_images_in_bounded_time():
    start = time.perf_counter()
    counts = fuzz(FUZZ_CASES)
    seconds = time.perf_counter() - start
    assert sum(counts.values()) == FUZZ_CASES
    assert min(counts.values()) > 0, counts  # the mutations reach every outcome
    assert seconds < 0.01 * FUZZ_CASES + 10, f"{FUZZ_CASES} cases took {seconds:.1f} s"


# -----------------------------------------------------------------------------
# The command line: each refusal one line, the run goes on for the other files, nothing lost


from conftest import SHIPPED_MODEL, draw_face, run_cli  # noqa: E402


def test_predict_refuses_a_bomb_and_labels_the_other_files(tmp_path):
    cv2.imwrite(str(tmp_path / "face.png"), draw_face("happy"))
    (tmp_path / "bomb.png").write_bytes(png_declaring(50_000, 50_000))
    result = run_cli("predict", tmp_path / "face.png", tmp_path / "bomb.png", "--no-detect", "--json",
                     "--model-path", SHIPPED_MODEL)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert '"image": "' + str(tmp_path / "face.png") in result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: {tmp_path / 'bomb.png'}: declares 50000x50000 pixels, above the limit of "
                      f"{er.MAX_IMAGE_PIXELS:,} pixels (MAX_IMAGE_PIXELS); scale it down"]


def test_folder_load_skips_a_bomb_with_one_line_and_keeps_the_rest(tmp_path, capsys):
    for i in range(3):
        os.makedirs(tmp_path / "happy", exist_ok=True)
        cv2.imwrite(str(tmp_path / "happy" / f"{i}.png"), draw_face("happy"))
    (tmp_path / "happy" / "bomb.png").write_bytes(png_declaring(32_000, 32_000))
    images, labels, skipped = er.load_folder(str(tmp_path), ["happy"], 48, "grayscale")
    assert len(images) == 3 and skipped == [str(tmp_path / "happy" / "bomb.png")]
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"Warning: skipped {tmp_path / 'happy' / 'bomb.png'}: declares 32000x32000 pixels, above the "
                     f"limit of {er.MAX_IMAGE_PIXELS:,} pixels (MAX_IMAGE_PIXELS); scale it down"]


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
    with pytest.raises(er.UserError, match="retrain") as error:
        er.load_trained_model(path)
    assert str(error.value).startswith(repr(path)) and fragment in str(error.value)
    assert "\n" not in str(error.value)


def test_metadata_that_is_not_an_object_and_nan_weights_are_refused(tiny_model, tmp_path):
    path = save_with(tiny_model, tmp_path / "m.h5", GOOD)
    import h5py
    import json
    with h5py.File(path, "a") as f:
        f.attrs[er.METADATA_KEY] = json.dumps(5)
    with pytest.raises(er.UserError, match="is not a JSON object"):
        er.load_trained_model(path)
    broken = er.build_model("compact", (48, 48, 1), 3, 1e-3)
    broken.set_weights([np.full_like(w, np.nan) for w in broken.get_weights()])
    with pytest.raises(er.UserError, match="NaN or infinite"):
        er.load_trained_model(save_with(broken, tmp_path / "nan.h5", GOOD))


def test_a_good_model_still_loads(tiny_model, tmp_path):
    model, metadata = er.load_trained_model(save_with(tiny_model, tmp_path / "m.h5", GOOD))
    assert metadata["class_names"] == GOOD["class_names"]


# -----------------------------------------------------------------------------
# serve: JSON for every error, bombs refused undecoded, web/ independent of the script


@pytest.fixture(scope="module")
def serve_client(tmp_path_factory):
    pytest.importorskip("flask")
    path = tmp_path_factory.mktemp("serve") / "m.h5"
    er.save_model(er.build_model("compact", (48, 48, 1), 3, 1e-3), str(path), GOOD)
    return er.make_serve_app(str(path)).test_client()


def post_image(client, data, name="x.png"):
    return client.post("/api/predict", data={"image": (io.BytesIO(data), name)}, content_type="multipart/form-data")


def test_serve_answers_a_bomb_413_in_json_without_decoding(serve_client, monkeypatch):
    monkeypatch.setattr(er.cv2, "imdecode", lambda *a: pytest.fail("a bomb was decoded"))
    response = post_image(serve_client, png_declaring(50_000, 50_000), "bomb.png")
    assert response.status_code == 413
    assert response.get_json()["error"].startswith("bomb.png: declares 50000x50000 pixels, above the limit")


@pytest.mark.parametrize("method, url, status", [("GET", "/nope", 404), ("GET", "/api/predict", 405),
                                                 ("DELETE", "/", 405)])
def test_serve_errors_are_json(serve_client, method, url, status):
    response = serve_client.open(url, method=method)
    assert response.status_code == status and response.is_json and response.get_json()["error"]


def test_serve_internal_error_is_json_and_one_log_line(tmp_path, capsys):
    from web.server import create_app

    def broken(data, name):
        raise RuntimeError("boom")
    client = create_app(broken, {}, 1).test_client()
    response = post_image(client, b"data")
    assert response.status_code == 500 and "internal error" in response.get_json()["error"]
    assert capsys.readouterr().err == "error: POST /api/predict: RuntimeError: boom\n"


def test_web_does_not_import_the_script():
    import subprocess
    import sys
    from conftest import ROOT
    code = "import sys, web.server; assert 'emotion_recognition' not in sys.modules, 'cycle'"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0
