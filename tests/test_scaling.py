"""Fast transfer learning on cached frozen-base features, distribution strategies and mixed precision."""

import json
import os
import re
import socket
import subprocess
import sys
import types

import h5py
import numpy as np
import pytest
import tensorflow as tf

import emotion_recognition as er
from emotion.train.distributed import is_chief
from emotion.train.features import extract_features, make_feature_dataset, split_frozen_base

from conftest import SCRIPT, run_cli


@pytest.fixture(scope="module")
def vgg_parts():
    keras_model = er.build_model("vgg16", (32, 32, 1), 3, 1e-2, base_weights="none")
    features, head = split_frozen_base(keras_model)
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
    stored = extract_features(features, images, labels, 3, batch_size=4,
                                 augment=er.make_augmentation("original"), views=2)
    assert stored.shape == (2, 10, 1, 1, 512) and stored.dtype == np.float16
    np.testing.assert_allclose(stored[0], features.predict_on_batch(images.astype("float32")), rtol=1e-2, atol=1e-2)
    assert not np.allclose(stored[1], stored[0], atol=1e-2)  # the second view saw augmented faces
    assert extract_features(features, images, labels, 3, batch_size=4).shape == (1, 10, 1, 1, 512)

    ds = make_feature_dataset(stored, labels, 3, batch_size=4, shuffle=True, seed=0)
    seen = [batch for batch, _ in ds.take(5)]  # endless: draws from all 20 image-views
    assert all(b.shape[1:] == (1, 1, 512) for b in seen)


@pytest.mark.slow
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
    result = run_cli("--data", synthetic_data, "--model", "vgg16", "--base-weights", "none", "--cache-features",
                     "--mixup", "0.2", "--no-show", "--model-path", tmp_path / "m.h5", "--output-dir", tmp_path / "out")
    assert result.returncode == 1 and result.stderr.startswith("error: --mixup blends images") and not (
        tmp_path / "m.h5").exists()


@pytest.mark.slow
def test_mirrored_strategy_and_mixed_precision_train_on_cpu(synthetic_data, tmp_path):
    model_path = tmp_path / "m.h5"
    result = run_cli("--data", synthetic_data, "--epochs", 1, "--distribute", "mirrored", "--mixed-precision",
                     "--no-show", "--model-path", model_path, "--output-dir", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    with h5py.File(model_path) as f:
        config = f.attrs["model_config"]
    assert "Precision: float16 (as asked)" in result.stdout  # the alias of --precision float16
    assert "mixed_float16" not in config  # saved as a float32 network: it loads and runs the same anywhere
    model, _ = er.load_trained_model(str(model_path))
    probabilities = er.predict_probabilities(model, np.zeros((2, 48, 48, 1), np.uint8))
    assert probabilities.dtype == np.float32 and np.allclose(probabilities.sum(axis=1), 1, atol=1e-3)


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_two_workers_on_localhost_train_one_model(synthetic_data, tmp_path):
    """MultiWorkerMirroredStrategy through TF_CONFIG: two processes, as on two machines, train together."""
    cluster = {"worker": [f"localhost:{port}" for port in free_ports(2)]}
    env = {**os.environ, "MPLBACKEND": "Agg", "TF_CPP_MIN_LOG_LEVEL": "2"}
    (tmp_path / "w0").mkdir()  # the chief's folder for its model file, made first (a missing one is refused); the
    # other worker's outputs go to a scratch folder, so its w1 is never needed
    workers = [subprocess.Popen(
        [sys.executable, SCRIPT, "--data", synthetic_data, "--model", "cnn", "--epochs", "2", "--distribute",
         "multiworker", "--no-show", "--model-path", tmp_path / f"w{i}" / "m.h5", "--output-dir", tmp_path / f"w{i}"],
        env={**env, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    try:
        outputs = [worker.communicate(timeout=300) for worker in workers]
    finally:
        for worker in workers:
            worker.kill()
    assert [worker.returncode for worker in workers] == [0, 0], outputs[0][1][-2000:] + outputs[1][1][-2000:]
    chief, other = (stdout.replace("\r", "\n") for stdout, _ in outputs)

    epoch_logs = [re.findall(r"val_accuracy: [\d.]+ - val_loss: [\d.]+", out) for out in (chief, other)]
    assert len(epoch_logs[0]) == 2 and epoch_logs[0] == epoch_logs[1]  # one global result per epoch
    history = (tmp_path / "w0" / "history.csv").read_text().splitlines()
    assert len(history) == 3 and "val_loss" in history[0]
    assert not (tmp_path / "w1").exists()  # only the chief writes where it was told to
    _, metadata = er.load_trained_model(str(tmp_path / "w0" / "m.h5"))
    assert metadata["class_names"] == ["angry", "happy", "sad"]
    # both workers hold the same weights: each evaluates its own copy on test/ with the same result (the other
    # worker's copy lived in a scratch folder it removed on exit); BatchNormalization's statistics are per
    # worker, so the figures agree to the last digits only
    test_figures = [[float(line.split(": ")[1]) for line in out.splitlines() if line.startswith("Test ")]
                    for out in (chief, other)]
    assert len(test_figures[0]) == 4 and test_figures[0] == pytest.approx(test_figures[1], abs=2e-3)


@pytest.mark.parametrize("extra, message", [((), "TF_CONFIG"), (("--resume",), "--resume"),
                                            (("--mixed-precision",), "--precision float16"),
                                            (("--precision", "float16"), "--precision float16"),
                                            (("--cache-features", "--model", "vgg16"), "--cache-features"),
                                            (("--ema", "0.99"), "--ema")])
def test_multiworker_mistakes_are_one_line(synthetic_data, tmp_path, extra, message):
    result = run_cli("--data", synthetic_data, "--distribute", "multiworker", *extra, "--no-show",
                     "--model-path", tmp_path / "m.h5", "--output-dir", tmp_path / "out")
    assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr


DATA_PARALLEL_RUN = """
import json, os, sys
import numpy as np, tensorflow as tf, keras
sys.path.insert(0, {root!r})
import emotion_recognition as er
from emotion.train.distributed import fit_multiworker, shard_by_data
strategy = tf.distribute.MultiWorkerMirroredStrategy() if "TF_CONFIG" in os.environ else tf.distribute.get_strategy()
rng = np.random.default_rng(0)
x, y = rng.normal(size=(64, 8)).astype("float32"), np.eye(3, dtype="float32")[rng.integers(0, 3, 64)]
keras.utils.set_random_seed(1)
with strategy.scope():
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu", kernel_regularizer="l2"),
                              keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss=keras.losses.CategoricalCrossentropy())  # SGD: scale-sensitive
ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(16).with_options(shard_by_data())
if "TF_CONFIG" in os.environ:
    history = fit_multiworker(model, ds, ds, 3, [])
else:
    history = model.fit(ds, validation_data=ds, epochs=3, verbose=0)
print(json.dumps({{"val_loss": history.history["val_loss"],
                  "weights": np.concatenate([w.ravel() for w in model.get_weights()]).tolist()}}))
"""


@pytest.mark.slow
def test_two_workers_compute_what_one_process_computes(tmp_path):
    """fit_multiworker on two workers with half a batch each == model.fit in one process on whole batches,
    L2 penalty included (in the gradients and in the logged losses)."""
    script = tmp_path / "run.py"
    script.write_text(DATA_PARALLEL_RUN.format(root=os.path.dirname(SCRIPT)))
    cluster = {"worker": [f"localhost:{port}" for port in free_ports(2)]}
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("TF_CONFIG", None)
    runs = [subprocess.Popen([sys.executable, script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**env, **({"TF_CONFIG": json.dumps({"cluster": cluster, "task": {
                                 "type": "worker", "index": i}})} if i < 2 else {})}) for i in range(3)]
    try:
        outputs = [run.communicate(timeout=300) for run in runs]
    finally:
        for run in runs:
            run.kill()
    assert [run.returncode for run in runs] == [0, 0, 0], "".join(err[-1500:] for _, err in outputs)
    worker0, worker1, single = (json.loads(out.strip().splitlines()[-1]) for out, _ in outputs)
    np.testing.assert_allclose(worker0["weights"], worker1["weights"], atol=1e-6)
    np.testing.assert_allclose(worker0["weights"], single["weights"], atol=1e-5)
    np.testing.assert_allclose(worker0["val_loss"], single["val_loss"], rtol=1e-4)
    assert single["val_loss"][-1] < single["val_loss"][0]  # it did learn


@pytest.mark.parametrize("cluster, task, chief", [
    ({"worker": ["a:1", "b:1"]}, ("worker", 0), True), ({"worker": ["a:1", "b:1"]}, ("worker", 1), False),
    ({"chief": ["c:1"], "worker": ["a:1"]}, ("chief", 0), True),
    ({"chief": ["c:1"], "worker": ["a:1"]}, ("worker", 0), False)])  # a named chief: worker 0 only computes
def test_only_one_task_of_a_cluster_writes(cluster, task, chief):
    resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(tf.train.ClusterSpec(cluster), task_type=task[0],
                                                                     task_id=task[1])
    assert is_chief(types.SimpleNamespace(cluster_resolver=resolver)) is chief
