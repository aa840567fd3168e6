"""Fast transfer learning on cached frozen-base features, distribution strategy and mixed precision."""

import h5py
import json
import numpy as np
import pytest

import emotion_recognition as er
from conftest import run_cli


@pytest.fixture(scope="module")
def vgg_parts():
    keras_model = er.build_model("vgg16", (32, 32, 1), 3, 1e-2, vgg_weights="none")
    features, head = er.split_frozen_base(keras_model)
    head.compile(optimizer=keras_model.optimizer, loss=keras_model.loss)
    return keras_model, features, head


def test_frozen_base_split_shares_the_full_models_weights(vgg_parts):
    model, features, head = vgg_parts
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 1)).astype("float32")
    before = model.predict_on_batch(x)
    np.testing.assert_allclose(head.predict_on_batch(features.predict_on_batch(x)), before, atol=1e-5)
    assert features.trainable_weights == [] and head.count_params() < model.count_params()

    head.fit(np.random.default_rng(1).normal(size=(8, 1, 1, 512)), np.eye(3)[[0, 1, 2, 0, 1, 2, 0, 1]],
             epochs=2, verbose=0)
    after = model.predict_on_batch(x)
    assert not np.allclose(after, before, atol=1e-4)  # training the head trained the full model
    np.testing.assert_allclose(head.predict_on_batch(features.predict_on_batch(x)), after, atol=1e-5)


def test_extracted_features_hold_a_plain_and_an_augmented_view(vgg_parts):
    _, features, _ = vgg_parts
    rng = np.random.default_rng(2)
    images = rng.integers(0, 255, (10, 32, 32, 1), dtype=np.uint8)
    labels = rng.integers(0, 3, 10)
    stored = er.extract_features(features, images, labels, 3, batch_size=4,
                                 augment=er.make_augmentation(0), views=2)
    assert stored.shape == (2, 10, 1, 1, 512) and stored.dtype == np.float16
    np.testing.assert_allclose(stored[0], features.predict_on_batch(images.astype("float32")), rtol=1e-2, atol=1e-2)
    assert not np.allclose(stored[1], stored[0], atol=1e-2)  # the second view saw augmented faces
    assert er.extract_features(features, images, labels, 3, batch_size=4).shape == (1, 10, 1, 1, 512)

    ds = er.make_feature_dataset(stored, labels, 3, batch_size=4, shuffle=True, seed=0)
    seen = [batch for batch, _ in ds.take(5)]  # endless: draws from all 20 image-views
    assert all(b.shape[1:] == (1, 1, 512) for b in seen)


def test_cache_features_trains_and_saves_the_full_model(synthetic_data, tmp_path):
    model_path = tmp_path / "vgg.h5"
    result = run_cli("--data", synthetic_data, "--model", "vgg16", "--vgg-weights", "none", "--image-size", 32,
                     "--cache-features", "--epochs", 2, "--no-show", "--model-path", model_path,
                     "--output-dir", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert "Features ready" in result.stdout and "Test Accuracy" in result.stdout
    model, metadata = er.load_trained_model(str(model_path))
    assert model.input_shape == (None, 32, 32, 1) and model.get_layer("vgg16") is not None  # base + head
    evaluated = run_cli("evaluate", f"{synthetic_data}/test", "--model-path", model_path,
                        "--output-dir", tmp_path / "eval", "--no-show")
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["n_samples"] == 24


def test_cache_features_needs_a_frozen_base(synthetic_data, tmp_path):
    result = run_cli("--data", synthetic_data, "--model", "cnn", "--cache-features", "--no-show",
                     "--model-path", tmp_path / "m.h5", "--output-dir", tmp_path / "out")
    assert result.returncode == 1 and "--cache-features" in result.stderr and "Traceback" not in result.stderr


def test_mirrored_strategy_and_mixed_precision_train_on_cpu(synthetic_data, tmp_path):
    model_path = tmp_path / "m.h5"
    result = run_cli("--data", synthetic_data, "--epochs", 1, "--distribute", "mirrored", "--mixed-precision",
                     "--no-show", "--model-path", model_path, "--output-dir", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    with h5py.File(model_path) as f:
        config = f.attrs["model_config"]
    assert "mixed_float16" in config  # the policy really was on while building
    model, _ = er.load_trained_model(str(model_path))
    probabilities = er.predict_probabilities(model, np.zeros((2, 48, 48, 1), np.uint8))
    assert probabilities.dtype == np.float32 and np.allclose(probabilities.sum(axis=1), 1, atol=1e-3)
