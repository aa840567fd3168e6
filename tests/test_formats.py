"""Every image format the docs name is read from a real photo, on every command path (predict, evaluate,
training folders, prepare --crop-faces, serve); a tiled TIFF whose tile exceeds the pixel limit is refused."""

import importlib.util
import io
import json
import os
import struct
import warnings

import numpy as np
import pytest
from PIL import Image

from emotion.images import ImageRefused, ImageTooLarge, decode_image, image_dimensions, read_image
from emotion.prepare import prepare_dataset
from emotion.serve import make_serve_app
import emotion_recognition as er
from conftest import SHIPPED_SEVEN, real_photo, run_cli

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


def heic_header():
    """The start of an iPhone photo: an ISO BMFF 'ftyp' box with the HEIC brand, then a metadata box."""
    return struct.pack(">I4s4sI8s", 24, b"ftyp", b"heic", 0, b"mif1heic") + struct.pack(">I4s", 16, b"meta") + bytes(8)


def test_an_avif_photo_is_read():
    from PIL import features
    if not features.check("avif"):
        pytest.skip("this Pillow has no AVIF support")
    photo = real_photo("astronaut")
    image = decode_image(np.frombuffer(encoded(photo, "AVIF"), np.uint8), "a.avif")
    assert image is not None and image.shape == photo.shape
    assert np.abs(image.astype(int) - photo).mean() < 8  # lossy, but the same photo


def test_a_heic_photo_is_refused_with_what_to_do(tmp_path):
    if importlib.util.find_spec("pillow_heif"):
        pytest.skip("pillow-heif is installed: HEIC photos are read")
    with pytest.raises(ImageRefused, match=r"^x\.heic: a HEIC photo \(Apple's HEIF format\), which this installation "
                                           r"cannot read; convert it to JPEG or PNG \(or pip install pillow-heif\)$"):
        decode_image(np.frombuffer(heic_header(), np.uint8), "x.heic")
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "IMG_0001.HEIC").write_bytes(heic_header())
    result = run_cli("predict", tmp_path / "photos", "--model-path", SHIPPED_SEVEN)  # a folder of iPhone photos
    assert result.returncode == 1 and result.stderr.splitlines() == [
        f"error: {tmp_path / 'photos' / 'IMG_0001.HEIC'}: a HEIC photo (Apple's HEIF format), which this "
        "installation cannot read; convert it to JPEG or PNG (or pip install pillow-heif)"]


def test_a_multi_page_tiff_is_judged_on_its_first_page_with_a_warning(tmp_path, capsys):
    photo, other = real_photo("astronaut"), real_photo("camera")
    path = tmp_path / "scan.tif"
    Image.fromarray(photo).save(path, save_all=True, append_images=[Image.fromarray(other)])
    with pytest.warns(UserWarning) as warned:  # the library warns; the command line prints it as one line
        image = read_image(str(path))
    np.testing.assert_array_equal(image, photo)
    assert [str(w.message) for w in warned] == [
        f"{path}: a TIFF of 2 pages; only its first page is judged (save each page as its own file to "
        "judge the others)"]
    assert capsys.readouterr().err == ""
    Image.fromarray(photo).save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one page: nothing to say
        read_image(str(path))


def test_serve_refuses_a_heic_upload_with_what_to_do(model_path):
    pytest.importorskip("flask")
    if importlib.util.find_spec("pillow_heif"):
        pytest.skip("pillow-heif is installed: HEIC photos are read")
    client = make_serve_app(str(model_path), detector="haar").test_client()
    response = client.post("/api/predict", data={"image": (io.BytesIO(heic_header()), "IMG_0001.HEIC")},
                           content_type="multipart/form-data")
    assert response.status_code == 415
    assert response.get_json()["error"] == ("IMG_0001.HEIC: a HEIC photo (Apple's HEIF format), which this "
                                            "installation cannot read; convert it to JPEG or PNG (or pip install "
                                            "pillow-heif)")
