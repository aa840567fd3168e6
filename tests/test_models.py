"""Architectures, preprocessing inside the model, VGG16 weights handling, atomic saving."""

import os

import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf

import emotion_recognition as er
from emotion.io.errors import UserError
from emotion.train.augmentation import Augmentation, warp_images

from conftest import SHIPPED_MODEL, draw_face, run_cli


def test_cnn_is_the_original_architecture():
    model = er.build_cnn((200, 200, 3), 3)
    convs = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [16, 32, 64, 128]
    assert all(c.padding == "valid" and c.kernel_size == (3, 3) for c in convs)
    assert len([l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]) == 4
    assert [l.rate for l in model.layers if isinstance(l, keras.layers.Dropout)] == [0.3, 0.3, 0.3, 0.5]
    dense = [l for l in model.layers if isinstance(l, keras.layers.Dense)]
    assert [d.units for d in dense] == [512, 3]
    assert dense[0].kernel_regularizer.l2 == pytest.approx(0.01)
    assert isinstance(model.layers[1], keras.layers.Rescaling)  # preprocessing inside the model
    assert model.output_shape == (None, 3)


@pytest.mark.parametrize("size,channels,expected_padding", [(200, 3, "valid"), (48, 1, "same"), (32, 1, "same")])
def test_vgg16_head_and_frozen_base(size, channels, expected_padding):
    model = er.build_vgg16((size, size, channels), 3, weights="none")
    base = model.get_layer("vgg16")
    assert not base.trainable and base.trainable_weights == []
    head_conv = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)][0]
    assert head_conv.filters == 256 and head_conv.padding == expected_padding
    assert [d.units for d in model.layers if isinstance(d, keras.layers.Dense)] == [512, 256, 3]
    if size == 200:
        assert base.output.shape[1:] == (6, 6, 512)  # as the original
    out = model(np.random.default_rng(0).uniform(0, 255, (2, size, size, channels)).astype("float32"))
    assert out.shape == (2, 3) and np.allclose(out.numpy().sum(axis=1), 1, atol=1e-5)


def test_vgg16_preprocessing_matches_keras_preprocess_input():
    x = np.random.default_rng(1).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    expected = keras.applications.vgg16.preprocess_input(x.copy())
    assert np.allclose(er.vgg16_preprocess_class()()(x), expected, atol=1e-4)


def test_vgg16_loads_a_local_weights_file(tmp_path):
    keras.utils.set_random_seed(3)
    source = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    path = str(tmp_path / "vgg16_notop.weights.h5")
    source.save_weights(path)
    model = er.build_vgg16((32, 32, 1), 3, weights=path)
    for saved, loaded in zip(source.get_weights(), model.get_layer("vgg16").get_weights()):
        np.testing.assert_array_equal(saved, loaded)


@pytest.mark.slow
def test_vgg16_trains_from_the_command_line_with_a_local_weights_file(synthetic_data, tmp_path):
    keras.utils.set_random_seed(4)
    source = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    weights = str(tmp_path / "vgg16_notop.weights.h5")
    source.save_weights(weights)
    result = run_cli("--data", synthetic_data, "--model", "vgg16", "--vgg-weights", weights, "--image-size", 32,
                     "--epochs", 1, "--train-again", "--no-show", "--model-path", tmp_path / "vgg.h5",
                     "--output-dir", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert "Test Accuracy" in result.stdout
    assert len((tmp_path / "out" / "history.csv").read_text().splitlines()) == 2  # header + the one epoch
    model, _ = er.load_trained_model(str(tmp_path / "vgg.h5"))
    for saved, trained in zip(source.get_weights(), model.get_layer("vgg16").get_weights()):
        np.testing.assert_array_equal(saved, trained)  # the file's weights, and frozen through training


@pytest.mark.filterwarnings("ignore:`input_shape` is undefined:UserWarning")  # mobilenet at 32 px, asked for
@pytest.mark.parametrize("name", ["vgg16", "resnet", "mobilenet", "efficientnet"])
def test_offline_imagenet_download_gives_a_sentence(monkeypatch, name):
    from keras.src.utils import file_utils  # where every Keras application fetches its weights

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- [Errno -3]")
    monkeypatch.setattr(file_utils, "get_file", offline)
    with pytest.raises(UserError, match=f"ImageNet {name} weights .*--base-weights PATH"):
        er.build_model(name, (32, 32, 3), 3, 1e-3, base_weights="imagenet")


def test_vgg16_missing_or_corrupt_weights_file(tmp_path):
    with pytest.raises(UserError, match="not found"):
        er.load_base("vgg16", (32, 32, 3), str(tmp_path / "nope.h5"))
    bad = tmp_path / "bad.weights.h5"
    bad.write_bytes(b"not an hdf5 file at all")
    with pytest.raises(UserError, match="could not load vgg16 weights"):
        er.load_base("vgg16", (32, 32, 3), str(bad))


def test_save_is_atomic_and_keeps_metadata(tmp_path):
    model = er.build_model("cnn", (48, 48, 1), 2, 1e-3)
    path = tmp_path / "m.h5"
    meta = {"class_names": ["a", "b"], "image_size": 48, "color": "grayscale"}
    er.save_model(model, str(path), meta)
    assert sorted(os.listdir(tmp_path)) == ["m.h5"]  # no temporary file left behind
    loaded, loaded_meta = er.load_trained_model(str(path))
    assert loaded_meta == {**meta, "normalize": "none"}  # saved without it: fed raw pixels, as before
    x = np.random.default_rng(0).uniform(0, 255, (2, 48, 48, 1)).astype("float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def test_failed_save_leaves_the_previous_model_untouched(tmp_path, monkeypatch):
    model = er.build_model("cnn", (48, 48, 1), 2, 1e-3)
    path = tmp_path / "m.h5"
    er.save_model(model, str(path), {"class_names": ["a", "b"]})
    before = path.read_bytes()

    def crash(self, filepath, *args, **kwargs):
        with open(filepath, "wb") as f:
            f.write(b"half a fi")
        raise OSError("disk full")
    monkeypatch.setattr(keras.Model, "save", crash)
    with pytest.raises(UserError, match="cannot save the model to .* the file there is unchanged"):
        er.save_model(model, str(path), {"class_names": ["a", "b"]})
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["m.h5"]


def test_augmentation_changes_images_but_keeps_shape_and_repeats_per_seed():
    augment = er.make_augmentation("original")
    x = np.random.default_rng(0).uniform(0, 255, (4, 48, 48, 1)).astype("float32")
    y = augment(x, tf.constant([3, 4], tf.int64)).numpy()
    assert y.shape == x.shape and not np.allclose(x, y)
    assert y.min() >= 0 and y.max() <= 255  # nearest fill, no black borders beyond the data range
    assert np.array_equal(augment(x, tf.constant([3, 4], tf.int64)).numpy(), y)  # stateless: same seed, same warp
    assert not np.allclose(augment(x, tf.constant([5, 6], tf.int64)).numpy(), y)


def test_fused_augmentation_geometry():
    x = np.random.default_rng(0).uniform(0, 255, (2, 20, 30, 1)).astype("float32")
    seed = tf.constant([1, 2], tf.int64)
    assert np.allclose(Augmentation(0, 0, 0, 0, flip=False)(x, seed).numpy(), x, atol=1e-3)  # identity
    mirrored = Augmentation(0, 0, 0, 0, flip=True)(np.repeat(x[:1], 64, axis=0), seed).numpy()
    flipped = [np.allclose(m, x[0, :, ::-1], atol=1e-3) for m in mirrored]
    unchanged = [np.allclose(m, x[0], atol=1e-3) for m in mirrored]
    assert all(f or u for f, u in zip(flipped, unchanged)) and 10 < sum(flipped) < 54  # about half mirrored


def test_opencv_warp_matches_keras_affine_transform():
    # warp_images (OpenCV) must read the same input pixels as keras.ops.image.affine_transform with
    # bilinear interpolation and nearest fill, for the matrices the augmentation draws.
    rng = np.random.default_rng(0)
    x = np.stack([cv2.GaussianBlur(i, (5, 5), 2) for i in rng.uniform(0, 255, (8, 40, 50, 3)).astype("float32")])
    matrices = er.make_augmentation("original").matrices(8, 40.0, 50.0, tf.constant([7, 8], tf.int64)).numpy()
    keras_transforms = np.concatenate([matrices.reshape(8, 6), np.zeros((8, 2), "float32")], axis=1)
    expected = keras.ops.image.affine_transform(x, keras_transforms, interpolation="bilinear", fill_mode="nearest")
    warped = warp_images(x, matrices)
    assert not np.allclose(warped, x, atol=5)
    assert np.abs(warped - np.asarray(expected)).max() < 2  # OpenCV steps sub-pixel positions in 1/32 pixel


def test_augmentation_strengths():
    assert er.make_augmentation("none") is None
    original, light = er.make_augmentation("original"), er.make_augmentation("light")
    assert original.rotation == pytest.approx(np.radians(30)) and original.shear == pytest.approx(np.radians(0.2))
    assert light.rotation == pytest.approx(np.radians(10)) and light.shear == 0  # a third, no shear
    assert light.shift == pytest.approx(0.2 / 3) and light.zoom == pytest.approx(0.2 / 3)


def test_compact_model_is_small_and_takes_any_size_from_16px():
    model = er.build_compact((48, 48, 1), 3)
    assert 1.0e6 < model.count_params() < 1.4e6
    assert er.build_compact((16, 16, 1), 5).output_shape == (None, 5)


def test_tta_averages_each_face_with_its_mirror_image():
    model, _ = er.load_trained_model(SHIPPED_MODEL)  # trained: its answer for a face and its mirror differ
    rng = np.random.default_rng(0)
    images = np.stack([np.roll(draw_face(e, 48, rng), 9, axis=1) for e in ("angry", "happy", "sad", "sad", "happy")])
    images = images[..., None]  # faces shifted right: their mirror images are shifted left
    plain = er.predict_probabilities(model, images, tta=False, batch_size=2)
    mirrored = er.predict_probabilities(model, images[:, :, ::-1], tta=False, batch_size=2)
    np.testing.assert_allclose(er.predict_probabilities(model, images, tta=True, batch_size=2),
                               (plain + mirrored) / 2, atol=1e-6)
    assert np.abs(plain - mirrored).max() > 0.02  # the mirror image really is another input
