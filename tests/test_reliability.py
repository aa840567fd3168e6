"""Interruption never loses a model: SIGKILL, Ctrl-C (SIGINT) and --resume; seeded runs repeat."""

import os
import re
import signal
import subprocess
import sys
import time
import warnings

import keras
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import emotion_recognition as er
from emotion.core.model_checks import METADATA_KEY
from emotion.io.errors import UserError
from emotion.io.images import prepare_image, read_image
from emotion.train.recovery import backup_path_for, checkpoint_path_for
from emotion.train.training import TrainingRun

from conftest import SCRIPT, make_dataset, run_cli


@pytest.fixture(scope="module")
def bigger_data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("faces"), per_class=(150, 20, 10))


def start_training(data, model_path, out, *extra):
    env = {**os.environ, "MPLBACKEND": "Agg"}
    env.pop("DISPLAY", None)
    return subprocess.Popen([sys.executable, SCRIPT, "--data", data, "--model", "cnn", "--train-again", "--epochs", "40",
                             "--model-path", str(model_path), "--output-dir", str(out), "--no-show", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def wait_for(path, process, timeout=300):
    deadline = time.time() + timeout
    while not os.path.exists(path):
        assert process.poll() is None, process.communicate()
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.02)


def previous_model(tmp_path):
    path = tmp_path / "model.h5"
    er.save_model(er.build_model("cnn", (48, 48, 1), 3, 1e-3), str(path),
                  {"class_names": ["angry", "happy", "sad"], "image_size": 48, "color": "grayscale"})
    return path, path.read_bytes()


@pytest.mark.slow
@pytest.mark.parametrize("when", ["during start-up", "right after a checkpoint", "a while after a checkpoint"])
def test_sigkill_leaves_the_previous_model_byte_for_byte(bigger_data, tmp_path, when):
    model_path, before = previous_model(tmp_path)
    process = start_training(bigger_data, model_path, tmp_path / "out")
    if when == "during start-up":
        time.sleep(3)
    else:
        wait_for(checkpoint_path_for(str(model_path)), process)
        time.sleep(0 if when == "right after a checkpoint" else 1.5)
    process.kill()
    process.wait()
    assert model_path.read_bytes() == before
    _, meta = er.load_trained_model(str(model_path))  # still a whole, loadable model
    assert meta["class_names"] == ["angry", "happy", "sad"]


@pytest.mark.slow
def test_ctrl_c_saves_the_best_model_so_far_and_resume_continues(bigger_data, tmp_path):
    model_path, before = previous_model(tmp_path)
    process = start_training(bigger_data, model_path, tmp_path / "out")
    wait_for(checkpoint_path_for(str(model_path)), process)
    time.sleep(1.0)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 1, stderr
    assert "best model so far was saved" in stderr and "Traceback" not in stderr
    assert model_path.read_bytes() != before
    model, meta = er.load_trained_model(str(model_path))
    assert meta["epoch"] >= 1 and meta["class_names"] == ["angry", "happy", "sad"]
    backup = backup_path_for(checkpoint_path_for(str(model_path)))
    assert os.path.isdir(backup)
    done = len(open(tmp_path / "out" / "history.csv").read().strip().splitlines()) - 1

    total = done + 3
    mismatch = run_cli("--data", bigger_data, "--resume", "--model", "compact", "--epochs", total,
                       "--model-path", model_path, "--output-dir", tmp_path / "wrong", "--no-show")
    assert mismatch.returncode == 1 and "same options" in mismatch.stderr and "Traceback" not in mismatch.stderr
    result = run_cli("--data", bigger_data, "--model", "cnn", "--resume", "--epochs", total, "--patience", total,
                     "--model-path", model_path, "--output-dir", tmp_path / "out", "--no-show")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Resuming the interrupted run" in result.stdout
    # the backup is written before history.csv, so the run restarts at the logged epoch or the one after
    assert "Epoch 1/" not in result.stdout and f"Epoch {total}/{total}" in result.stdout
    assert not os.path.isdir(backup)  # Keras removes it when training ends


@pytest.mark.slow
def test_same_seed_same_run(tmp_path):
    data = make_dataset(tmp_path / "data", per_class=(12, 4, 4))
    losses = []
    for run in ("a", "b"):
        result = run_cli("--data", data, "--train-again", "--epochs", 2, "--model-path", tmp_path / f"{run}.h5",
                         "--output-dir", tmp_path / run, "--no-show")
        assert result.returncode == 0, result.stderr
        losses.append((tmp_path / run / "history.csv").read_text())
    assert losses[0] == losses[1]


@pytest.mark.filterwarnings("ignore::UserWarning:PIL")  # Pillow's complaints about the malformed headers fed
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.binary(max_size=2000),
                 st.tuples(st.sampled_from([".png", ".jpg", ".bmp", ".tiff", ".webp"]),
                           st.integers(1, 40), st.integers(1, 40), st.sampled_from([1, 3, 4]),
                           st.sampled_from(["uint8", "uint16"]), st.integers(0, 2**32 - 1),
                           st.integers(0, 100))))
def test_fuzz_image_loader_never_crashes(tmp_path, case):
    """Random bytes, and random valid-but-odd images (tiny, 16-bit, alpha, truncated), never crash the loader."""
    import cv2
    path = tmp_path / "fuzz.img"
    if isinstance(case, bytes):
        path.write_bytes(case)
    else:
        ext, h, w, channels, dtype, seed, keep_percent = case
        if ext in (".jpg", ".webp", ".bmp") and dtype == "uint16":
            dtype = "uint8"
        rng = np.random.default_rng(seed)
        image = rng.integers(0, np.iinfo(dtype).max, (h, w, channels), dtype=dtype)
        ok, data = cv2.imencode(ext, image if channels != 4 or ext in (".png", ".tiff", ".webp") else image[..., :3])
        assert ok
        data = data.tobytes()
        path.write_bytes(data[: max(1, len(data) * keep_percent // 100)])
    image = read_image(str(path))
    if image is not None:
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        prepared = prepare_image(image, 48, "grayscale", "equalize")
        assert prepared.shape == (48, 48, 1)


def tiny_run(tmp_path):
    """A 2-class model and data small enough to fit in a second, the model path and the output folder."""
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 255, (16, 48, 48, 1), dtype=np.uint8), np.arange(16) % 2
    ds = er.make_dataset(images, labels, 2, 8)
    (tmp_path / "out").mkdir()
    return er.build_model("cnn", (48, 48, 1), 2, 1e-3), ds, str(tmp_path / "model.h5"), str(tmp_path / "out")


def run_of(model, ds, metadata=None):
    """train_model's TrainingRun for `model` on `ds` (its fit looked up now: a test may have replaced it)."""
    return TrainingRun(model, metadata or {"class_names": ["x", "y"]}, model, model.fit, ds, ds)


def train(model, ds, model_path, out, epochs, metadata=None, resume=False, patience=er.EARLY_STOPPING_PATIENCE):
    """train_model with the original's callbacks, as the script calls it."""
    return er.train_model(run_of(model, ds, metadata), er.make_callbacks(patience), epochs, model_path, out, resume)


def interrupt_after_fit(model):
    """Ctrl-C as fit returns: the epochs it ran are done, then the interrupt lands."""
    fit = model.fit

    def interrupted(*args, **kwargs):
        fit(*args, **kwargs)
        raise KeyboardInterrupt
    model.fit = interrupted


def test_ctrl_c_before_the_first_epoch_never_promotes_a_stale_checkpoint(tmp_path):
    model, ds, model_path, out = tiny_run(tmp_path)
    previous, before = previous_model(tmp_path)  # tmp_path/model.h5, the model to keep
    stale = checkpoint_path_for(model_path)  # left by an earlier run that was killed
    er.save_model(er.build_model("cnn", (48, 48, 1), 4, 1e-3), stale, {"class_names": list("abcd")})
    model.fit = lambda *args, **kwargs: (_ for _ in ()).throw(KeyboardInterrupt)
    with pytest.raises(UserError, match="before the first epoch"):
        train(model, ds, model_path, out, epochs=1)
    assert previous.read_bytes() == before and not os.path.exists(stale)


def test_resume_keeps_the_interrupted_runs_best_model_until_beaten(tmp_path):
    model, ds, model_path, out = tiny_run(tmp_path)
    checkpoint = checkpoint_path_for(model_path)
    er.save_model(model, checkpoint, {"class_names": ["x", "y"], "epoch": 7, "val_loss": 1e-9})  # unbeatable
    interrupt_after_fit(model)
    with pytest.raises(UserError, match="best model so far"):
        train(model, ds, model_path, out, epochs=1, resume=True)
    assert er.load_trained_model(model_path)[1]["epoch"] == 7  # not this run's worse epoch 1


def test_ctrl_c_during_the_epoch_end_backup_leaves_a_backup_resume_can_load(tmp_path, monkeypatch):
    """The cause of a flaky resume: a Ctrl-C inside BackupAndRestore's write left a partial weights file."""
    import h5py
    model, ds, model_path, out = tiny_run(tmp_path)
    create_dataset, written = h5py.Group.create_dataset, []

    def ctrl_c_mid_write(group, *args, **kwargs):  # the first save of the run is the backup's
        written.append(args[0] if args else kwargs.get("name"))
        if len(written) == 5:
            os.kill(os.getpid(), signal.SIGINT)
        return create_dataset(group, *args, **kwargs)
    monkeypatch.setattr(h5py.Group, "create_dataset", ctrl_c_mid_write)
    with pytest.raises(UserError, match="best model so far"):
        train(model, ds, model_path, out, epochs=3)
    monkeypatch.undo()
    backup = backup_path_for(checkpoint_path_for(model_path))
    fresh = er.build_model("cnn", (48, 48, 1), 2, 1e-3)
    fresh.optimizer.build(fresh.trainable_variables)
    fresh.load_weights(os.path.join(backup, "latest.weights.h5"))  # whole: every layer's weights are there


def test_ctrl_c_outside_training_is_one_line(monkeypatch, capsys, tmp_path):
    def decoding_interrupted(args):
        raise KeyboardInterrupt
    monkeypatch.setitem(er.COMMANDS, "evaluate", decoding_interrupted)
    assert er.main(["evaluate", str(tmp_path)]) == 130
    assert capsys.readouterr().err.strip() == "error: interrupted (Ctrl-C) during evaluate"


def test_the_command_line_prints_the_librarys_warnings_not_other_libraries_deprecations(monkeypatch, capsys, tmp_path):
    def evaluate(args):
        warnings.warn("a photo was skipped")
        warnings.warn("__array__ implementation doesn't accept a copy keyword", DeprecationWarning)
    monkeypatch.setitem(er.COMMANDS, "evaluate", evaluate)
    assert er.main(["evaluate", str(tmp_path)]) == 0
    assert capsys.readouterr().err == "Warning: a photo was skipped\n"


def same_weights(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a.get_weights(), b.get_weights()))


class CtrlCAtEpoch(keras.callbacks.Callback):
    """Ctrl-C as a user would press it once epoch `last` (from 1) has ended, among the run's own callbacks."""

    def __init__(self, last):
        super().__init__()
        self.last = last

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.last:
            raise KeyboardInterrupt


def interrupted_at_epoch(model, last):
    """model.fit, stopped as Ctrl-C would once epoch `last` (from 1) and its backup are done: the stop comes after
    every callback fit is given."""
    fit = model.fit

    def stop(epoch, logs=None):
        if epoch + 1 == last:
            raise KeyboardInterrupt

    def interrupted(*args, callbacks=(), **kwargs):
        return fit(*args, callbacks=[*callbacks, keras.callbacks.LambdaCallback(on_epoch_end=stop)], **kwargs)
    model.fit = interrupted


def test_resume_ends_with_the_interrupted_runs_best_epoch_when_no_later_one_beats_it(tmp_path):
    model, ds, model_path, out = tiny_run(tmp_path)
    best = er.build_model("cnn", (48, 48, 1), 2, 1e-3)  # the interrupted run's best epoch: other weights
    er.save_model(best, checkpoint_path_for(model_path), {"class_names": ["x", "y"], "epoch": 7, "val_loss": 1e-9})
    train(model, ds, model_path, out, epochs=2, resume=True)  # ends normally, its epochs all worse
    assert same_weights(er.load_trained_model(model_path)[0], best)
    assert same_weights(model, best)  # in memory too: the run's evaluation and calibration use it
    assert not os.path.exists(checkpoint_path_for(model_path))


def test_resume_after_ctrl_c_keeps_the_best_epoch_it_saved_until_beaten(tmp_path):
    """Ctrl-C moves the best epoch so far into the model file (the checkpoint is gone): --resume must still beat it."""
    import json

    import h5py
    model, ds, model_path, out = tiny_run(tmp_path)
    interrupted_at_epoch(model, 1)
    with pytest.raises(UserError, match="best model so far"):
        train(model, ds, model_path, out, epochs=4)
    with h5py.File(model_path, "a") as f:  # that epoch made unbeatable
        f.attrs[METADATA_KEY] = json.dumps({**json.loads(f.attrs[METADATA_KEY]), "val_loss": 1e-9})
    interrupted = er.load_trained_model(model_path)[0]
    resumed = er.build_model("cnn", (48, 48, 1), 2, 1e-3)
    train(resumed, ds, model_path, out, epochs=3, resume=True)
    assert same_weights(er.load_trained_model(model_path)[0], interrupted)


def capture_callbacks(model):
    """model.fit, recording the callbacks it was given."""
    fit, seen = model.fit, []

    def recording(*args, callbacks=(), **kwargs):
        seen.extend(callbacks)
        return fit(*args, callbacks=callbacks, **kwargs)
    model.fit = recording
    return seen


def test_resume_continues_early_stopping_and_reduce_lr_where_they_were(tmp_path):
    model, ds, model_path, out = tiny_run(tmp_path)
    metadata = {"class_names": ["x", "y"], "image_size": 48, "color": "grayscale", "normalize": "none"}
    first = capture_callbacks(model)
    interrupted_at_epoch(model, 3)
    with pytest.raises(UserError, match="best model so far"):
        train(model, ds, model_path, out, epochs=6, metadata=metadata, patience=9)
    kinds = (keras.callbacks.EarlyStopping, keras.callbacks.ReduceLROnPlateau)
    before = [{k: getattr(c, k) for k in ("wait", "best", "best_epoch", "cooldown_counter") if hasattr(c, k)}
              for c in first if isinstance(c, kinds)]
    assert len(before) == 2 and all(np.isfinite(state["best"]) for state in before)
    resumed = er.build_model("cnn", (48, 48, 1), 2, 1e-3)
    second = capture_callbacks(resumed)
    train(resumed, ds, model_path, out, epochs=3, metadata=metadata, patience=9,
          resume=True)  # 3 epochs are done: nothing to fit, the counters are only set back
    assert [{k: getattr(c, k) for k in state} for c, state in zip([c for c in second if isinstance(c, kinds)],
                                                                   before)] == before


def test_ema_validates_and_saves_the_averaged_weights_not_those_being_trained(tmp_path):
    """--ema: each epoch's val_loss is the moving average's, and the saved model is the best epoch's average, not the
    weights being trained at that epoch's end."""
    _, ds, model_path, out = tiny_run(tmp_path)
    model = er.build_model("cnn", (48, 48, 1), 2, 1e-3, ema=0.9)
    kernel = model.trainable_weights[0]
    trained = []  # the first kernel being trained, at each epoch's end (this callback comes before the swap)
    seen = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: trained.append(kernel.numpy().copy()))
    history = er.train_model(run_of(model, ds), [seen, *er.make_callbacks()], 4, model_path, out)
    best = int(np.argmin(history["val_loss"]))
    saved, _ = er.load_trained_model(model_path)
    assert saved.evaluate(ds, verbose=0)[0] == pytest.approx(history["val_loss"][best], rel=1e-4)
    assert np.abs(saved.trainable_weights[0].numpy() - trained[best]).max() > 1e-4


def test_resume_with_ema_continues_from_the_weights_being_trained_not_their_average(tmp_path):
    """--ema and --resume: the backup keeps the weights being trained (the average stays in the optimizer), so the
    resumed run's first step starts from them, not from the average the checkpoint was given."""
    _, ds, model_path, out = tiny_run(tmp_path)
    model = er.build_model("cnn", (48, 48, 1), 2, 1e-3, ema=0.9)
    kernel, trained = model.trainable_weights[0], []  # at each epoch's end (this callback comes before the swap)
    seen = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: trained.append(kernel.numpy().copy()))
    interrupted_at_epoch(model, 2)
    with pytest.raises(UserError, match="best model so far"):
        er.train_model(run_of(model, ds), [seen, *er.make_callbacks()], 4, model_path, out)
    averaged = er.load_trained_model(model_path)[0].trainable_weights[0].numpy()  # the best epoch's average
    resumed = er.build_model("cnn", (48, 48, 1), 2, 1e-3, ema=0.9)
    first = []
    start = keras.callbacks.LambdaCallback(
        on_train_batch_begin=lambda batch, logs: first or first.append(resumed.trainable_weights[0].numpy().copy()))
    er.train_model(run_of(resumed, ds), [start, *er.make_callbacks()], 4, model_path, out, resume=True)
    assert np.abs(first[0] - trained[1]).max() < 1e-6 and np.abs(trained[1] - averaged).max() > 1e-4


@pytest.mark.parametrize("change, said", [
    ({"image_size": 64}, "was trained with --image-size 48, this one with 64"),
    ({"normalize": "equalize"}, "--normalize none, this one with equalize"),
    ({"model": "compact"}, "--model cnn, this one with compact"),
    ({"class_names": ["x", "z"]}, "--data (its classes) x,y, this one with x,z"),
    ({"folder_weight": 0.25}, "--folder-weight 0, this one with 0.25"),
    ({"teachers": None}, "--teacher a.h5 (sha256 0123456789ab), this one with none"),
    ({"teachers": {"models": ["a.h5"], "weight": 0.5, "sha256": ["ba9876543210"]}},  # another file, the same name
     "--teacher a.h5 (sha256 0123456789ab), this one with a.h5 (sha256 ba9876543210)"),
    ({"teachers": {"models": ["a.h5"], "weight": 0.3, "sha256": ["0123456789ab"]}},
     "--teacher-weight 0.5, this one with 0.3"),
])
def test_resume_with_another_model_or_input_is_refused_naming_the_option(tmp_path, change, said):
    model, ds, model_path, out = tiny_run(tmp_path)
    metadata = {"class_names": ["x", "y"], "image_size": 48, "color": "grayscale", "normalize": "none",
                "model": "cnn", "teachers": {"models": ["a.h5"], "weight": 0.5, "sha256": ["0123456789ab"]}}
    interrupted_at_epoch(model, 1)
    with pytest.raises(UserError, match="best model so far"):
        train(model, ds, model_path, out, epochs=4, metadata=metadata)
    resumed = er.build_model("cnn", (48, 48, 1), 2, 1e-3)  # the same weights' shapes: Keras would load them
    resumed.fit = lambda *args, **kwargs: pytest.fail("trained a different model")
    with pytest.raises(UserError, match=re.escape(said)):
        train(resumed, ds, model_path, out, epochs=4, metadata={**metadata, **change}, resume=True)
    assert os.path.isdir(backup_path_for(checkpoint_path_for(model_path)))  # still there for a proper --resume


def test_resume_with_fewer_epochs_than_were_done_ends_with_the_model_and_its_report(tmp_path, capsys, monkeypatch):
    """--resume --epochs 1 after 2 finished epochs: KeyError 'loss' after the model was saved, and no report."""
    from conftest import run_here
    data = make_dataset(tmp_path / "data", per_class=(6, 3, 3))
    model_path, out = tmp_path / "m.h5", tmp_path / "out"
    common = ["--data", data, "--model", "compact", "--model-path", model_path, "--output-dir", out, "--no-show"]
    with monkeypatch.context() as patch:  # a Ctrl-C once the second epoch and its backup are done
        patch.setattr(er, "time_budget_callbacks", lambda *args: [CtrlCAtEpoch(2)])
        result = run_here(capsys, *common, "--train-again", "--epochs", "4")
    assert result.returncode == 1 and "best model so far" in result.stderr
    assert os.path.isdir(backup_path_for(checkpoint_path_for(str(model_path))))
    result = run_here(capsys, *common, "--resume", "--epochs", "1")
    assert result.returncode == 0, result.stderr
    assert ("Warning: --resume: the interrupted run had already trained its --epochs 1 (the total, not more epochs), "
            "so no epoch was trained; to train on, resume with a larger --epochs") in result.stdout
    assert os.path.isfile(out / "metrics.json") and er.load_trained_model(str(model_path))
