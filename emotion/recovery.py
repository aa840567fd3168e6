"""What lets a training run survive Ctrl-C, a kill or a full disk: the checkpoint and --resume backup paths,
Ctrl-C held to a step boundary (or a video's next frame), and the free-space check before training starts."""

import contextlib
import math
import os
import shutil
import signal
import threading

from emotion.errors import UserError
from emotion.lazy_import import LazyModule
from emotion.model_files import read_metadata

keras = LazyModule("keras")


def checkpoint_path_for(model_path):
    """The in-training checkpoint sits beside the model file and never overwrites it."""
    root, ext = os.path.splitext(model_path)
    return f"{root}.checkpoint{ext or '.h5'}"


def backup_path_for(checkpoint_path):
    """BackupAndRestore's folder, beside the checkpoint; Keras deletes it when training ends."""
    return os.path.splitext(checkpoint_path)[0] + ".backup"


def start_or_resume(checkpoint_path, history_path, resume):
    """Clear what an earlier run left, or, with --resume, keep it: returns the best val_loss to beat (that of the
    interrupted run's checkpoint, else infinity)."""
    backup = backup_path_for(checkpoint_path)
    if os.path.isdir(backup) and not resume:
        shutil.rmtree(backup)  # a stale backup would silently continue an old run
    elif resume and not os.path.isdir(backup):
        print(f"Warning: --resume found no interrupted run ({backup} is missing); starting from epoch 1")
    elif resume:
        print(f"Resuming the interrupted run saved in {backup}")
    if resume and os.path.exists(checkpoint_path):  # the interrupted run's best epoch stays unless this run beats it
        return read_metadata(checkpoint_path).get("val_loss", math.inf)
    for path in (checkpoint_path, history_path):
        if not resume and os.path.exists(path):  # a killed run's checkpoint must never pass as this run's best
            os.remove(path)
    return math.inf


@contextlib.contextmanager
def hold_ctrl_c():
    """Hold a Ctrl-C until the caller looks; yields a function that says whether one came. A second Ctrl-C
    stops at once, as usual. Outside the main thread (which alone may set signal handlers) nothing is held."""
    pressed = []

    def on_ctrl_c(signum, frame):
        pressed.append(signum)
        signal.signal(signal.SIGINT, signal.default_int_handler)

    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, on_ctrl_c) if in_main_thread else None
    try:
        yield lambda: bool(pressed)
    finally:
        if in_main_thread:
            signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def ctrl_c_between_steps():
    """Hold a Ctrl-C until the next batch or epoch boundary; yields the callback that raises it there.

    A KeyboardInterrupt raised inside BackupAndRestore's epoch-end write leaves a well-formed but partial
    weights file, which --resume then cannot load.
    """
    with hold_ctrl_c() as pressed:
        def raise_if_pressed(*args, **kwargs):
            if pressed():
                raise KeyboardInterrupt

        yield keras.callbacks.LambdaCallback(on_epoch_begin=raise_if_pressed, on_epoch_end=raise_if_pressed,
                                             on_train_batch_end=raise_if_pressed, on_test_batch_end=raise_if_pressed)
        raise_if_pressed()


def check_free_space(model, model_path):
    """Stop before training when the model's folder cannot hold what training writes there: the per-epoch
    backup (weights and Adam's two moments, twice), the checkpoint and the temporary model file. A disk
    that fills mid-write leaves h5py in a state that can crash the interpreter."""
    need = model.count_params() * 4 * (3 * 2 + 2)
    folder = os.path.dirname(os.path.abspath(model_path))
    free = shutil.disk_usage(folder).free
    if free < need:
        raise UserError(f"training needs about {need / 2**20:.0f} MB free in {folder!r} (backup, checkpoint, model) "
                        f"but {free / 2**20:.0f} MB are free; free some space or choose another --model-path")
