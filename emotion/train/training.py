"""The training machinery around emotion_recognition.py's model.fit: the best-model checkpoint, the history and
progress callbacks, the learning-rate schedule, class weights, fine-tuning from a saved model, and what a failed
fit (Ctrl-C, a full disk, a diverged loss, another run's backup) leaves behind and says."""

import contextlib
import math
import os

import numpy as np

from emotion.core.model_checks import weights_finite
from emotion.core.model_files import load_trained_model, save_model
from emotion.io.errors import UserError
from emotion.io.lazy_import import LazyModule
from emotion.train.recovery import backup_path_for

keras = LazyModule("keras")


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
    """Keras' per-epoch progress bar, kept from counting past its total in a shorter last steps_per_execution."""
    class EpochProgressBar(keras.callbacks.ProgbarLogger):
        def on_train_batch_end(self, batch, logs=None):
            super().on_train_batch_end(min(batch, (self.target or math.inf) - 1), logs)
    return EpochProgressBar()


def record_callbacks(model, checkpoint_path, output_dir, metadata, best_val_loss=math.inf):
    """What a fit leaves behind besides the weights: the best-model checkpoint, history.csv (with the fitted
    optimizer's learning rate), a stop at the first NaN loss, and the progress bar."""
    return [
        best_model_checkpoint(model, checkpoint_path, metadata, best_val_loss),
        rate := keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: logs.setdefault(  # history.csv's,
            "learning_rate", float(keras.ops.convert_to_numpy(rate.model.optimizer.learning_rate)))),  # of the fit
        keras.callbacks.CSVLogger(os.path.join(output_dir, "history.csv"), append=True),
        keras.callbacks.TerminateOnNaN(),  # a diverged run stops at once; check_converged keeps the old model file
        progress_bar(),
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
