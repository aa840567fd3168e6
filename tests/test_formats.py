"""Every image format the docs name is read from a real photo, on every command path (predict, evaluate,
training folders, prepare --crop-faces, serve); a tiled TIFF whose tile exceeds the pixel limit is refused."""

import io
import json
import os
import struct

import numpy as np
import pytest
from PIL import Image

from emotion.images import ImageTooLarge, decode_image, image_dimensions
from emotion.prepare import prepare_dataset
from emotion.serve import make_serve_app
import emotion_recognition as er
from conftest import real_photo, run_cli

FORMATS = {"bmp": "BMP", "gif": "GIF", "tif": "TIFF", "webp": "WEBP", "ppm": "PPM", "jpg": "JPEG", "png": "PNG"}


def encoded(photo, fmt, grey=False):
    buffer = io.BytesIO()
    image = Image.fromarray(photo)
    (image.convert("L") if grey else image).save(buffer, fmt)
    return buffer.getvalue()


def write_formats(folder, photo="astronaut"):
    """The photo in every format, plus a grey PGM and a WebP named .jpg (as photos saved from the web are)."""
    os.makedirs(folder, exist_ok=True)
    image = real_photo(photo)
    files = {f"{photo}.{ext}": encoded(image, fmt) for ext, fmt in FORMATS.items()}
    files[f"{photo}.pgm"] = encoded(image, "PPM", grey=True)
    files[f"{photo}_webp.jpg"] = encoded(image, "WEBP")
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return sorted(str(folder / name) for name in files)


def test_every_format_is_decoded():
    photo = real_photo("astronaut")
    for fmt in FORMATS.values():
        image = decode_image(np.frombuffer(encoded(photo, fmt), np.uint8))
        assert image is not None and image.shape == photo.shape, fmt
        if fmt not in ("JPEG", "WEBP", "GIF"):  # lossless (GIF: a palette)
            np.testing.assert_array_equal(image, photo)


def test_predict_reads_every_format(model_path, tmp_path):
    files = write_formats(tmp_path / "photos")
    result = run_cli("predict", *files, "--json", "--model-path", model_path)
    assert result.returncode == 0, result.stderr
    answers = {json.loads(line)["image"]: json.loads(line) for line in result.stdout.splitlines()}
    assert sorted(answers) == files
    assert all(len(a["faces"]) == 1 and a["detection"] == "detector" for a in answers.values())


def test_evaluate_and_training_folders_read_every_format(model_path, tmp_path):
    for name in ("calm", "joy", "rage"):
        write_formats(tmp_path / "faces" / name)
    images, labels, _ = er.load_folder(str(tmp_path / "faces"), ["calm", "joy", "rage"], 48, "grayscale", "equalize")
    assert len(labels) == 3 * 9
    result = run_cli("evaluate", tmp_path / "faces", "--model-path", model_path, "--output-dir", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["n_samples"] == 27


def test_prepare_crop_faces_reads_every_format(tmp_path):
    for name in ("happy", "sad"):
        write_formats(tmp_path / "src" / name)
    counts, skipped, _ = prepare_dataset(str(tmp_path / "src"), str(tmp_path / "out"), crop_faces=True,
                                         group_pattern="none")
    assert skipped == [] and sum(counts.values()) == 18


def test_serve_reads_every_format(model_path, tmp_path):
    pytest.importorskip("flask")
    client = make_serve_app(str(model_path)).test_client()
    for path in write_formats(tmp_path / "photos"):
        with open(path, "rb") as f:
            response = client.post("/api/predict", data={"image": (f, os.path.basename(path))},
                                   content_type="multipart/form-data")
        assert response.status_code == 200 and len(response.get_json()["faces"]) == 1, (path, response.get_json())


def tiled_tiff(width, height, tile):
    """A little-endian grey TIFF declaring width x height pixels in tiles of tile x tile (no pixel data)."""
    entries = [(256, 3, 1, width), (257, 3, 1, height), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
               (277, 3, 1, 1), (322, 3, 1, tile), (323, 3, 1, tile), (324, 4, 1, 8), (325, 4, 1, 16)]
    directory = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *e) for e in entries) + bytes(4)
    return b"II*\0" + struct.pack("<I", 24) + bytes(16) + directory


def test_a_tiff_tile_bomb_is_refused_undecoded():
    with pytest.raises(ImageTooLarge, match="16368x16368"):
        decode_image(np.frombuffer(tiled_tiff(16, 16, 16368), np.uint8), "bomb.tif")
    assert image_dimensions(np.frombuffer(tiled_tiff(16, 16, 16), np.uint8)) == (16, 16)
