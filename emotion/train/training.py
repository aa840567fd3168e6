"""The training machinery around emotion_recognition.py's model.fit: what a run fits (TrainingRun), the extras that
make a fit safe (safe_training: the best-model checkpoint and history.csv, --resume's backup, Ctrl-C at a step
boundary, the free-space check, the run's best epoch given back), the progress bar, the learning-rate schedule, class
weights, fine-tuning from a saved model, and what a failed fit (Ctrl-C, a full disk, a diverged loss, another run's
backup) leaves behind and says."""

import contextlib
import math
import os
from typing import Any, Callable, NamedTuple

import numpy as np

from emotion.core.model_checks import weights_finite
from emotion.core.model_files import load_trained_model, save_model
from emotion.io.errors import UserError
from emotion.io.lazy_import import LazyModule
from emotion.train.recovery import (backup_path_for, check_free_space, check_resume_matches, checkpoint_path_for,
                                    ctrl_c_between_steps, keep_best_epoch, plain_optimizer, resumable_state,
                                    run_identity, start_or_resume)

keras = LazyModule("keras")
tf = LazyModule("tensorflow")


class TrainingRun(NamedTuple):
    """What a training run fits and saves (emotion_recognition.make_training_run builds it)."""
    model: Any  # the whole model: checkpointed, saved and evaluated
    metadata: dict  # saved with it: classes, image settings, architecture, targets
    fitted: Any  # the part of `model` that fit trains: a head on cached features, else `model` itself
    fit: Callable  # fitted.fit, or distributed.fit_multiworker in its place under MultiWorkerMirroredStrategy
    train_ds: Any
    val_ds: Any
    steps_per_epoch: Any = None  # a head on cached features: its data set repeats endlessly
    class_weight: Any = None  # {class index: weight} for --class-weight balanced


@contextlib.contextmanager
def safe_training(run, callbacks, model_path, output_dir, resume=False):
    """Around fit and save: yields the callbacks to add after `callbacks` (the run's own, with its EarlyStopping and
    ReduceLROnPlateau, whose counters --resume carries over). Before: an earlier run's leftovers cleared (or, with
    `resume`, checked to be this run's) and the free space checked. The callbacks: --resume's per-epoch backup, the
    averaged weights put in the model (build_model's `ema`), the best-model checkpoint, history.csv, a stop at the
    first NaN, the counters' state, and at the end the check that the run converged and the best epoch of the whole
    run given back to the model; Ctrl-C waits for a step boundary (the last callback). A failure becomes one sentence
    and `model_path` keeps its old model or, after Ctrl-C, the best epoch so far; on success the checkpoint goes once
    the block (the save) is done."""
    checkpoint_path = checkpoint_path_for(model_path)
    best_val_loss = start_or_resume(checkpoint_path, os.path.join(output_dir, "history.csv"), resume, model_path)
    backup, identity = backup_path_for(checkpoint_path), run_identity(run.fitted, run.metadata)
    if resume:
        check_resume_matches(backup, identity)
    check_free_space(run.model, model_path)
    # several workers (fit_multiworker): no per-epoch backup (--resume is for one machine), and the best epoch is
    # EarlyStopping's restore, the checkpoint not loaded back
    multiworker = isinstance(run.model.distribute_strategy, tf.distribute.MultiWorkerMirroredStrategy)
    with fit_failures_explained(model_path, checkpoint_path, resume), ctrl_c_between_steps() as interrupt_point:
        yield [*([] if multiworker else [backup_callback(checkpoint_path)]),
               *averaged_weights_shown(run.fitted),  # after the backup (the run's true state), before the rest
               *record_callbacks(run.model, checkpoint_path, output_dir, run.metadata, best_val_loss),
               resumable_state(backup, identity, callbacks, resume),
               best_epoch_kept(run.model, checkpoint_path, model_path, keep=not multiworker),
               interrupt_point]  # last: after the epoch-end saves
    if os.path.exists(checkpoint_path):
        os.remove(checkpoint_path)


def averaged_weights_shown(fitted):
    """With an optimizer that keeps a moving average of the weights (build_model's `ema`): Keras' SwapEMAWeights,
    which puts the average in the model for validation and from each epoch's end to the next epoch's start, so the
    callbacks after it (the best-model checkpoint, and so the saved model) see the averaged weights. Placed after
    --resume's backup, which keeps the weights being trained and the average where the optimizer holds them."""
    return [keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if plain_optimizer(fitted).use_ema else []


def best_epoch_kept(model, checkpoint_path, model_path, keep=True):
    """A callback that, as training ends, refuses a diverged run (check_converged) and, with `keep`, gives `model`
    the checkpoint's weights (keep_best_epoch: the best epoch of the whole run, before a --resume included)."""
    losses = []

    def finish(logs=None):
        check_converged(model, {"loss": losses}, checkpoint_path, model_path)
        if keep:
            keep_best_epoch(model, checkpoint_path)
    return keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: losses.append((logs or {}).get("loss", 0)),
                                          on_train_end=finish)


def best_model_checkpoint(model, path, metadata, best=math.inf):
    """A callback that atomically saves `model` (with metadata) to `path` whenever val_loss improves; `model`
    is the whole model, also when only part of it is fitted (a head on cached features)."""
    def save_if_better(epoch, logs=None):
        nonlocal best
        val_loss = (logs or {}).get("val_loss", math.inf)
        if val_loss < best:
            best = val_loss
            save_model(model, path, {**metadata, "epoch": epoch + 1, "val_loss": float(val_loss)})
    return keras.callbacks.LambdaCallback(on_epoch_end=save_if_better)


def progress_bar():
    """Keras' per-epoch progress bar, kept from counting past its total in a shorter last steps_per_execution, with
    the fitted optimizer's learning rate added to each epoch's logs (shown, and kept in history.csv)."""
    class EpochProgressBar(keras.callbacks.ProgbarLogger):
        steps = None  # per epoch, from fit's params (the public Callback API)

        def set_params(self, params):
            super().set_params(params)
            self.steps = params.get("steps")

        def on_train_batch_end(self, batch, logs=None):
            super().on_train_batch_end(min(batch, (self.steps or math.inf) - 1), logs)

        def on_epoch_end(self, epoch, logs=None):
            if logs is not None:  # ReduceLROnPlateau, later in the list, logs the same rate (before it reduces it)
                logs.setdefault("learning_rate", float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))
            super().on_epoch_end(epoch, logs)
    return EpochProgressBar()


def record_callbacks(model, checkpoint_path, output_dir, metadata, best_val_loss=math.inf):
    """What a fit leaves behind besides the weights: the best-model checkpoint, history.csv (with the learning rate
    the progress bar logs), and a stop at the first NaN loss."""
    return [
        best_model_checkpoint(model, checkpoint_path, metadata, best_val_loss),
        keras.callbacks.CSVLogger(os.path.join(output_dir, "history.csv"), append=True),
        keras.callbacks.TerminateOnNaN(),  # a diverged run stops at once; check_converged keeps the old model file
    ]


def backup_callback(checkpoint_path):
    """The per-epoch backup (weights, optimizer, epoch) that --resume continues from; double_checkpoint: if Ctrl-C
    lands mid-write, Keras falls back to the previous epoch's backup."""
    return keras.callbacks.BackupAndRestore(backup_path_for(checkpoint_path), double_checkpoint=True)


def make_learning_rate(initial, schedule, epochs, steps_per_epoch):
    """A float for "plateau" (ReduceLROnPlateau adjusts it), else cosine decay over all training steps."""
    if schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(initial, decay_steps=epochs * steps_per_epoch)
    return initial


def time_budget_callbacks(minutes, initial_rate, epochs, cosine):
    """[TimeBudget] for --time-budget (it sets a cosine rate itself; else it only stops), [] without a budget."""
    if not minutes:
        return []
    from emotion.train.budget import TimeBudget  # a keras.callbacks.Callback: Keras is imported only when it is used
    return [TimeBudget(minutes, initial_rate, epochs, cosine)]


def balanced_class_weights(labels, num_classes):
    """Inverse-frequency weights (scikit-learn's "balanced"), as a dict for model.fit."""
    from sklearn.utils.class_weight import compute_class_weight
    weights = compute_class_weight("balanced", classes=np.arange(num_classes), y=labels)
    return dict(enumerate(weights.tolist()))


def start_from(model, path):
    """Fine-tuning: copy a saved model's weights into the freshly built `model` (same architecture and input).

    A saved model with another number of classes gives every layer but its last (the classifier starts anew),
    so a three-class model can start a seven-class one.
    """
    saved, _ = load_trained_model(path)
    source = [layer for layer in saved.layers if layer.weights]
    target = [layer for layer in model.layers if layer.weights]
    new_head = saved.output_shape[-1] != model.output_shape[-1]
    try:
        if len(source) != len(target):
            raise ValueError("another number of layers")
        for saved_layer, layer in list(zip(source, target))[:-1 if new_head else None]:
            layer.set_weights(saved_layer.get_weights())
    except ValueError:
        raise UserError(f"--initial-model {path!r} has another architecture or input than this run "
                        f"({saved.name}, input {saved.input_shape[1:]}); pass the same --model, --image-size "
                        "and --color as it was trained with") from None
    print(f"Starting from the weights of {path}" + (" (a new last layer for this run's classes)" if new_head else ""))


@contextlib.contextmanager
def fit_failures_explained(model_path, checkpoint_path, resume):
    """Around model.fit: a failure becomes one sentence, and `model_path` keeps its old model or, after Ctrl-C,
    the best epoch so far (the checkpoint)."""
    try:
        yield
    except ValueError as error:
        if resume and "could not be loaded" in str(error):  # BackupAndRestore found another architecture
            raise UserError(f"the interrupted run in {backup_path_for(checkpoint_path)} was for another model; run "
                            "--resume with the same options as that run, or train without --resume") from None
        raise
    except (OSError, RuntimeError) as error:  # the per-epoch backup (h5py: RuntimeError) or the history, disk full
        if isinstance(error, RuntimeError) and "write failed" not in str(error):
            raise
        raise UserError(f"training stopped: a write failed ({getattr(error, 'strerror', None) or 'disk full?'}); "
                        f"{model_path!r} is unchanged; free some space and train again") from None
    except KeyboardInterrupt:
        if not os.path.exists(checkpoint_path):
            raise UserError("training interrupted before the first epoch ended; nothing was saved "
                            f"and {model_path!r} is unchanged") from None
        os.replace(checkpoint_path, model_path)
        raise UserError(f"training interrupted; the best model so far was saved to {model_path!r}") from None


def check_converged(model, history, checkpoint_path, model_path):
    """A UserError (and no checkpoint left) when the loss or a weight became NaN or infinite."""
    diverged = [v for v in history.get("loss", []) if not math.isfinite(v)]
    if diverged or not weights_finite(model):
        if os.path.exists(checkpoint_path):
            os.remove(checkpoint_path)
        raise UserError(f"training diverged (the loss became {diverged[0] if diverged else 'nan'}); nothing was saved "
                        f"and {model_path!r} is unchanged; try a lower --learning-rate")
