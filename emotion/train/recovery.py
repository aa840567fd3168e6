"""What lets a training run survive Ctrl-C, a kill or a full disk: the checkpoint and --resume backup paths,
Ctrl-C held to a step boundary (or a video's next frame), and the free-space check before training starts."""

import contextlib
import json
import math
import os
import shutil
import signal
import threading

from emotion.core.model_files import read_metadata
from emotion.io.errors import UserError
from emotion.io.files import check_not_inputs, write_file
from emotion.io.internals import callback_counters, set_callback_counters
from emotion.io.lazy_import import LazyModule

keras = LazyModule("keras")

RUN_FILE = "run.json"  # in the backup folder: what defines the run's model and input, and its callbacks' state


def checkpoint_path_for(model_path):
    """The in-training checkpoint sits beside the model file and never overwrites it."""
    root, ext = os.path.splitext(model_path)
    return f"{root}.checkpoint{ext or '.h5'}"


def backup_path_for(checkpoint_path):
    """BackupAndRestore's folder, beside the checkpoint; Keras deletes it when training ends."""
    return os.path.splitext(checkpoint_path)[0] + ".backup"


def start_or_resume(checkpoint_path, history_path, resume, model_path=None):
    """Clear what an earlier run left, or, with --resume, keep it: returns the best val_loss to beat (that of the
    interrupted run's checkpoint, else infinity)."""
    backup = backup_path_for(checkpoint_path)
    if os.path.isdir(backup) and not resume:
        shutil.rmtree(backup)  # a stale backup would silently continue an old run
    elif resume and not os.path.isdir(backup):
        print(f"Warning: --resume found no interrupted run ({backup} is missing); starting from epoch 1")
    elif resume:
        print(f"Resuming the interrupted run saved in {backup}")
        if model_path and os.path.exists(model_path) and not os.path.exists(checkpoint_path) \
                and "val_loss" in read_metadata(model_path):
            shutil.copy2(model_path, checkpoint_path)  # Ctrl-C moved the run's best epoch there: again the one to beat
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
    backup (weights, Adam's two moments and with --ema the average, twice), the checkpoint and the temporary model
    file. A disk that fills mid-write leaves h5py in a state that can crash the interpreter."""
    copies = 4 if getattr(plain_optimizer(model), "use_ema", False) else 3
    need = model.count_params() * 4 * (copies * 2 + 2)
    folder = os.path.dirname(os.path.abspath(model_path))
    free = shutil.disk_usage(folder).free
    if free < need:
        raise UserError(f"training needs about {need / 2**20:.0f} MB free in {folder!r} (backup, checkpoint, model) "
                        f"but {free / 2**20:.0f} MB are free; free some space or choose another --model-path")


def check_training_files(args, trained):
    """No file the run reads (--initial-model, the --teacher models, a --base-weights file, the model it loads) may be
    one it writes: the model, its checkpoint (a stale one is deleted at the start) or a file in --output-dir. A
    --teacher that is not there is refused here, before the data is read."""
    missing = next((path for path in args.teacher or () if not os.path.isfile(path)), None)
    if missing:  # before the data is read and the model built
        raise UserError(f"--teacher {missing!r}: no such file; give a model this program saved (train --model-path)")
    inputs = {"the --initial-model model": args.initial_model,
              **{f"the --teacher model {path!r}": path for path in args.teacher or ()},
              "the --base-weights file": args.base_weights if os.path.isfile(args.base_weights) else None}
    if trained:
        check_not_inputs({"--model-path": args.model_path,
                          "--model-path's checkpoint": checkpoint_path_for(args.model_path)}, inputs)
    return {**inputs, "the model (--model-path)": args.model_path}


def plain_optimizer(model):
    """`model`'s optimizer, unwrapped from the loss scaling float16 puts around it."""
    return getattr(model.optimizer, "inner_optimizer", model.optimizer)


def run_identity(fitted, metadata):
    """What a --resume must not change, keyed by the option that sets it: the model, its input and its optimizer."""
    optimizer = plain_optimizer(fitted)
    return {"--model": metadata.get("model"), "--image-size": metadata.get("image_size"),
            "--color": metadata.get("color"), "--normalize": metadata.get("normalize"),
            "--data (its classes)": metadata.get("class_names"), "--targets": metadata.get("targets", "folders"),
            "--cache-features": fitted.name == "head", "--precision": fitted.dtype_policy.name,
            "--weight-decay": type(optimizer).__name__, "--ema": optimizer.ema_momentum if optimizer.use_ema else 0,
            "--folder-weight": metadata.get("folder_weight", 0),
            "--teacher": teacher_files(metadata.get("teachers")),
            "--teacher-weight": (metadata.get("teachers") or {}).get("weight", 0)}


def teacher_files(teachers):
    """--teacher as --resume compares it: each teacher's file name and the start of its SHA-256 (another file under
    the same name is another teacher), or "none"."""
    if not teachers:
        return "none"
    return [f"{name} (sha256 {digest})" for name, digest in zip(teachers["models"], teachers.get("sha256", []))]


def read_run_file(backup):
    """What resumable_state stored in the backup folder, or None (none yet, or a backup of an older version)."""
    try:
        with open(os.path.join(backup, RUN_FILE), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def check_resume_matches(backup, identity):
    """Refuse a --resume that would continue the interrupted run with another model or input, naming the option."""
    def shown(value):
        return ",".join(map(str, value)) if isinstance(value, list) else value
    stored = (read_run_file(backup) or {}).get("identity", {})
    for option, value in json.loads(json.dumps(identity)).items():
        if option in stored and stored[option] != value:
            raise UserError(f"--resume: the interrupted run in {backup} was trained with {option} "
                            f"{shown(stored[option])}, this one with {shown(value)}; resume with the same options as "
                            "that run, or train without --resume")


def resumable_state(backup, identity, callbacks, resume):
    """A callback that stores `identity` and the counters of the EarlyStopping and ReduceLROnPlateau among
    `callbacks` in backup/RUN_FILE after each epoch (BackupAndRestore keeps only weights, optimizer and epoch), and
    with `resume` sets those counters back when training starts. It must come after them in the callback list."""
    kept = [c for c in callbacks if isinstance(c, (keras.callbacks.EarlyStopping, keras.callbacks.ReduceLROnPlateau))]

    def restore(logs=None):
        saved = (read_run_file(backup) or {}).get("callbacks", []) if resume else []
        for callback, state in zip(kept, saved):
            if state.pop("class", None) == type(callback).__name__:
                set_callback_counters(callback, state)

    def store(epoch, logs=None):
        if os.path.isdir(backup):  # BackupAndRestore has written this epoch's backup there
            state = [{"class": type(c).__name__, **callback_counters(c)} for c in kept]
            write_file(os.path.join(backup, RUN_FILE), json.dumps({"identity": identity, "callbacks": state},
                                                                  default=float))
    return keras.callbacks.LambdaCallback(on_train_begin=restore, on_epoch_end=store)


def keep_best_epoch(model, checkpoint_path):
    """Give `model` the checkpoint's weights: the epoch of lowest val_loss of the whole run, an interrupted part
    before --resume included (EarlyStopping restores only the best epoch of its own fit)."""
    if os.path.exists(checkpoint_path):
        model.load_weights(checkpoint_path)
