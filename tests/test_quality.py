"""Faces from other cameras: the shared contrast normalisation, camera augmentation, fine-tuning, the
weight-averaged recipe, and evaluate saying which faces a number is about."""

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import tensorflow as tf

import emotion_recognition as er
from emotion.io.images import prepare_image

from conftest import ROOT, draw_face, run_cli


def flat_copy(face):
    """The same face seen by a duller camera: a third of the contrast, lifted towards grey."""
    return (face.astype(np.float32) / 3 + 100).astype(np.uint8)


def test_equalize_makes_a_dull_face_look_like_the_sharp_one():
    face = cv2.cvtColor(draw_face("happy", 96, np.random.default_rng(3)), cv2.COLOR_GRAY2RGB)
    sharp = prepare_image(face, 48, "grayscale", "equalize").astype(np.float32)
    dull = prepare_image(flat_copy(face), 48, "grayscale", "equalize").astype(np.float32)
    assert np.abs(sharp - dull).mean() < 10  # near the same input (the dull copy lost grey levels)
    raw_sharp = prepare_image(face, 48, "grayscale", "none").astype(np.float32)
    raw_dull = prepare_image(flat_copy(face), 48, "grayscale", "none").astype(np.float32)
    assert np.abs(raw_sharp - raw_dull).mean() > 30  # without it they differ a lot
    assert dull.std() > 2 * raw_dull.std()
    rgb = prepare_image(flat_copy(face), 48, "rgb", "equalize")
    assert rgb.shape == (48, 48, 3) and rgb.std() > 2 * flat_copy(face).std()


@pytest.mark.slow
def test_a_model_saved_without_normalize_loads_as_before(tmp_path):
    model = er.build_model("compact", (48, 48, 1), 3, 1e-3)
    path = str(tmp_path / "old.h5")
    er.save_model(model, path, {"class_names": ["angry", "happy", "sad"], "image_size": 48, "color": "grayscale"})
    _, metadata = er.load_trained_model(path)
    assert metadata["normalize"] == "none"
    photo = tmp_path / "dull.png"
    face = flat_copy(draw_face("sad", 48, np.random.default_rng(1)))
    cv2.imwrite(str(photo), face)
    result = run_cli("predict", photo, "--no-detect", "--json", "--model-path", path, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    reported = json.loads(result.stdout.strip().splitlines()[-1])["faces"][0]["probabilities"]
    expected = model.predict(face[np.newaxis, ..., np.newaxis].astype(np.float32), verbose=0)[0]  # raw pixels
    assert [reported[c] for c in ("angry", "happy", "sad")] == pytest.approx(expected.tolist(), abs=1e-3)


@pytest.fixture(scope="module")
def camera_run(tmp_path_factory, synthetic_data):
    """One short training run with the camera augmentation, shared by the tests below."""
    out = tmp_path_factory.mktemp("camera")
    result = run_cli("--data", synthetic_data, "--model", "cnn", "--epochs", 1, "--model-path", out / "m.h5",
                     "--output-dir", out / "train", "--no-show", "--augment", "camera", cwd=out)
    assert result.returncode == 0, result.stderr
    return out


@pytest.mark.slow
def test_training_stores_normalize_and_every_command_applies_it(camera_run, tmp_path):
    model, metadata = er.load_trained_model(str(camera_run / "m.h5"))
    assert metadata["normalize"] == "equalize"
    # at temperature 1: a one-epoch model calibrates to a high temperature, whose near-uniform answers would
    # hide whether predict equalised the face
    er.save_model(model, str(tmp_path / "t1.h5"), {**metadata, "temperature": 1.0})
    face = flat_copy(draw_face("happy", 48, np.random.default_rng(2)))
    cv2.imwrite(str(tmp_path / "dull.png"), face)
    result = run_cli("predict", tmp_path / "dull.png", "--no-detect", "--json", "--model-path", tmp_path / "t1.h5",
                     "--precision", "float32", cwd=tmp_path)
    reported = json.loads(result.stdout.strip().splitlines()[-1])["faces"][0]["probabilities"]
    equalized = cv2.equalizeHist(face)[np.newaxis, ..., np.newaxis].astype(np.float32)
    expected, raw = model.predict(np.concatenate([equalized, face[np.newaxis, ..., np.newaxis].astype(np.float32)]),
                                  verbose=0)
    assert np.abs(expected - raw).max() > 2e-3  # the check below tells an equalised face from a raw one
    assert [reported[c] for c in metadata["class_names"]] == pytest.approx(expected.tolist(), abs=1e-3)


def test_camera_augmentation_changes_contrast_and_sharpness_and_repeats_for_a_seed():
    x = np.stack([draw_face(e, 48, np.random.default_rng(i)) for i, e in enumerate(("angry", "happy") * 16)])
    x = x[..., np.newaxis].astype(np.float32)
    seed = tf.constant([5, 6], tf.int64)
    camera, original = er.make_augmentation("camera"), er.make_augmentation("original")
    a, b = camera(x, seed).numpy(), camera(x, seed).numpy()
    np.testing.assert_array_equal(a, b)
    assert a.min() >= 0 and a.max() <= 255
    geometric = original(x, seed).numpy()  # same warp, no photometric changes
    assert not np.allclose(a, geometric, atol=1)
    stds, geometric_stds = a.std(axis=(1, 2, 3)), geometric.std(axis=(1, 2, 3))
    assert (stds / geometric_stds).max() > 1.15 and (stds / geometric_stds).min() < 0.85  # contrast both ways
    sharpness = [cv2.Laplacian(im, cv2.CV_32F).var() for im in a]
    geometric_sharpness = [cv2.Laplacian(im, cv2.CV_32F).var() for im in geometric]
    assert sum(s < 0.6 * g for s, g in zip(sharpness, geometric_sharpness)) >= 4  # some faces blurred


def test_photo_augmentation_ends_in_the_models_contrast_and_repeats_for_a_seed():
    # inference equalises every face after its photometric changes (prepare_image); "photo" must too, or the
    # network trains on contrasts it never meets
    x = np.stack([flat_copy(draw_face(e, 48, np.random.default_rng(i))) for i, e in enumerate(("sad", "happy") * 16)])
    x = x[..., np.newaxis].astype(np.float32)
    seed = tf.constant([5, 6], tf.int64)
    photo = er.make_augmentation("photo", "equalize")
    a = photo(x, seed).numpy()
    np.testing.assert_array_equal(a, photo(x, seed).numpy())
    assert a.shape == x.shape and np.array_equal(a, np.rint(a)) and a.min() >= 0 and a.max() <= 255
    equalised = np.stack([cv2.equalizeHist(im[..., 0].astype(np.uint8)) for im in a])[..., np.newaxis]
    assert np.abs(a - equalised).mean() < 3  # already equalised: equalising again changes next to nothing
    assert x.std(axis=(1, 2, 3)).max() < 35 and a.std(axis=(1, 2, 3)).min() > 70  # the dull faces' contrast restored
    unnormalised = er.make_augmentation("photo", "none")(x, seed).numpy()
    assert unnormalised.std(axis=(1, 2, 3)).max() < 60  # with --normalize none the contrast stays the camera's


def test_photo_degradations_lose_detail_and_add_jpeg_blocks():
    from emotion.train.augmentation import degrade_images
    x = np.stack([draw_face(e, 48, np.random.default_rng(i)) for i, e in enumerate(("angry", "happy"))])
    x = (x[..., np.newaxis] + np.random.default_rng(0).normal(0, 20, (2, 48, 48, 1))).clip(0, 255).astype(np.float32)
    kept = degrade_images(x, np.zeros(2), np.zeros(2), "none")
    np.testing.assert_array_equal(kept, np.rint(x))  # side 0, quality 0: unchanged
    small = degrade_images(x, np.full(2, 20.0), np.zeros(2), "none")
    assert all(cv2.Laplacian(s, cv2.CV_32F).var() < 0.3 * cv2.Laplacian(k, cv2.CV_32F).var()
               for s, k in zip(small, kept))  # a 20 px face resized to 48 lost its fine detail
    coded = degrade_images(x, np.zeros(2), np.full(2, 20.0), "none")
    assert 2 < np.abs(coded - kept).mean() < 30  # JPEG at quality 20: changed, still the face
    colour = degrade_images(np.repeat(x, 3, axis=-1), np.full(2, 30.0), np.full(2, 50.0), "equalize")
    assert colour.shape == (2, 48, 48, 3)


@pytest.mark.slow
def test_initial_model_fine_tunes_from_its_weights(camera_run, tmp_path, synthetic_data):
    first = camera_run / "m.h5"
    common = ("--data", synthetic_data, "--model", "cnn", "--epochs", 1, "--output-dir", tmp_path / "out",
              "--no-show", "--train-again")
    result = run_cli(*common, "--model-path", tmp_path / "tuned.h5", "--initial-model", first,
                     "--learning-rate", 1e-9, cwd=tmp_path)  # a rate too small to move the weights
    assert result.returncode == 0, result.stderr
    assert f"Starting from the weights of {first}" in result.stdout
    before, _ = er.load_trained_model(str(first))
    after, _ = er.load_trained_model(str(tmp_path / "tuned.h5"))
    for w0, w1 in zip(before.trainable_weights, after.trainable_weights):  # BatchNorm's statistics still move
        np.testing.assert_allclose(np.asarray(w0), np.asarray(w1), atol=1e-4)
    result = run_cli(*common, "--model", "compact", "--model-path", tmp_path / "x.h5", "--initial-model", first,
                     cwd=tmp_path)
    assert result.returncode == 1 and "has another architecture or input" in result.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "x.h5").exists()


@pytest.mark.slow
def test_evaluate_names_the_folder_in_its_results(camera_run, synthetic_data):
    metrics = json.loads((camera_run / "train" / "metrics.json").read_text())
    assert metrics["data"] == os.path.abspath(os.path.join(synthetic_data, "test"))
    result = run_cli("evaluate", os.path.join(synthetic_data, "val"), "--model-path", camera_run / "m.h5",
                     "--output-dir", camera_run / "eval", "--no-show", cwd=camera_run)
    assert result.returncode == 0, result.stderr
    assert json.loads((camera_run / "eval" / "metrics.json").read_text())["data"] == os.path.abspath(
        os.path.join(synthetic_data, "val"))
    assert er.data_label(os.path.join(synthetic_data, "val")) == os.path.basename(synthetic_data) + "/val"
    assert er.data_label("/photos/webfaces-dev/") == "webfaces-dev"


@pytest.mark.slow
def test_soup_averages_fine_tuned_models_and_refuses_another_architecture(camera_run, tmp_path):
    model, metadata = er.load_trained_model(str(camera_run / "m.h5"))
    shifted = [w + 0.5 for w in model.get_weights()]
    model.set_weights(shifted)
    er.save_model(model, str(tmp_path / "tuned.h5"), metadata)
    tool = os.path.join(ROOT, "tools", "soup.py")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run([sys.executable, tool, camera_run / "m.h5", tmp_path / "tuned.h5", "--out",
                             tmp_path / "soup.h5"], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    soup, soup_metadata = er.load_trained_model(str(tmp_path / "soup.h5"))
    original, _ = er.load_trained_model(str(camera_run / "m.h5"))
    for w0, w1, mean in zip(original.get_weights(), shifted, soup.get_weights()):
        np.testing.assert_allclose(mean, (w0 + w1) / 2, atol=1e-5)
    assert soup_metadata["class_names"] == metadata["class_names"] and "m.h5, tuned.h5" in soup_metadata["recipe"]
    old_metadata = {k: v for k, v in metadata.items() if k != "normalize"}  # saved before --normalize existed
    er.save_model(model, str(tmp_path / "old.h5"), old_metadata)
    result = subprocess.run([sys.executable, tool, tmp_path / "tuned.h5", tmp_path / "old.h5", "--out",
                             tmp_path / "mixed.h5"], capture_output=True, text=True, env=env)
    assert result.returncode == 0 and "Warning: the models differ in normalize" in result.stdout
    assert er.load_trained_model(str(tmp_path / "mixed.h5"))[1]["normalize"] == metadata["normalize"]
    er.save_model(er.build_model("compact", (48, 48, 1), 3, 1e-3), str(tmp_path / "other.h5"), metadata)
    result = subprocess.run([sys.executable, tool, camera_run / "m.h5", tmp_path / "other.h5", "--out",
                             tmp_path / "bad.h5"], capture_output=True, text=True, env=env)
    assert result.returncode == 1 and "is not the same architecture" in result.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "bad.h5").exists()
