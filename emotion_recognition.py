"""Facial emotion recognition: train, evaluate and use a Keras classifier on face images.

    python emotion_recognition.py                                   # train (or load) + evaluate on HASsplittedDS/
    python emotion_recognition.py --data path/to/HASsplittedDS --train-again --epochs 5
    python emotion_recognition.py evaluate path/to/faces            # any folder of <class>/ sub-folders
    python emotion_recognition.py predict photo.jpg --json          # one label per detected face
    python emotion_recognition.py webcam                            # live, camera 0 (q quits)
    python emotion_recognition.py serve                             # a web page at http://127.0.0.1:8000/
    python emotion_recognition.py prepare --source fer2013.csv --out HASsplittedDS
    python emotion_recognition.py train --help                      # each option and its default

A port of a published single-file Keras script (happy / sad / angry, scratch CNN or frozen VGG16),
rewritten for Keras 3 with a cached tf.data input pipeline, plus a compact model for 48 px faces.
"""

import argparse
import datetime
import functools
import json
import logging
import math
import os
import sys
import time
import warnings

import numpy as np

from emotion.core.answers import TTA, answering_model, predict_probabilities
from emotion.core.model_checks import check_model_matches
from emotion.core.model_files import (FACES_MODEL_PATH, SHIPPED_DIR, default_model_path, load_trained_model,
                                      read_metadata, save_model)
from emotion.core.models import (BASES, build_application, build_compact, load_base, min_image_size,
                                 vgg16_preprocess_class)
from emotion.core.precision import choose_precision, global_precision
from emotion.io.arguments import (SEED_ARG, check_utf8_options, float_in_range, image_size_arg, model_file_arg,
                                  positive_float, positive_int)
from emotion.io.errors import EmotionError, UserError
from emotion.io.files import check_output_dir, check_writable, write_file
from emotion.io.internals import HelpFormatter
from emotion.io.lazy_import import LazyModule
from emotion.jobs import predict, prepare, serve, video
from emotion.jobs.options import add_classes_argument, add_model_arguments, add_results_arguments
from emotion.train.augmentation import AUGMENTATIONS, make_augmentation
from emotion.train.calibration import calibrate_model, calibration_bins, plot_reliability
from emotion.train.data import (SPLITS, check_dataset_layout, choose_image_settings, list_class_names, load_folder,
                                load_splits, make_dataset)
from emotion.train.distributed import fit_method, is_chief, make_strategy, send_worker_outputs_to_scratch
from emotion.train.features import FEATURE_VIEWS, make_feature_data
from emotion.train.recovery import check_training_files
from emotion.train.reporting import data_label, display_available, learning_warnings, save_metrics
from emotion.train.training import (TrainingRun, balanced_class_weights, make_learning_rate, progress_bar,
                                    safe_training, start_from, time_budget_callbacks)
from emotion.train.votes import folder_agreement, training_targets

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter off the console
logging.getLogger("absl").setLevel(logging.ERROR)  # Keras warns on every .h5 save that the format is "legacy"
tf = LazyModule("tensorflow")
keras = LazyModule("keras")

# -----------------------------------------------------------------------------
# Defaults of training and evaluation, each in one place (every other job keeps its own in its module in emotion/;
# the command-line options show theirs in COMMAND --help)

train_again = False  # False: reuse MODEL_PATH when it exists; True: always train a new model
DATA_DIR = "HASsplittedDS"  # folder with train/, val/, test/, each holding one sub-folder per class
MODEL = "compact"  # "compact" (VGG-style, for 48 px faces; beats "cnn" on FER2013), "cnn" (the original's scratch CNN),
#                    "vgg16" (the original's frozen VGG16 + head), or a Keras application of BASES (emotion/core/models.py)
MODELS = ("compact", "cnn", *BASES)  # --model's choices; vgg16's base stays frozen, the other bases are trained
MODEL_PATH = "EmotionRecognitionSystem.h5"  # train: the model file (classes, image settings inside); shipped: 3 classes
OUTPUT_DIR = "results"  # metrics.json, classification report, plots, history.csv, config.json
EPOCHS = 30  # maximum epochs; EarlyStopping usually ends sooner
BATCH_SIZE = 32  # images per training step (and per evaluation batch)
LEARNING_RATE = 1e-3  # Adam's initial learning rate
IMAGE_SIZE = "auto"  # side in pixels; "auto" follows the data (48 for FER2013), the original used 200
COLOR = "auto"  # "grayscale", "rgb", or "auto" (grayscale when every sampled image is grey)
NORMALIZE = "equalize"  # contrast of every face after resizing: "equalize" (histogram equalisation, as FER2013's
# faces here are) or "none" (as models saved before this option, which load with "none"); stored with the model
BASE_WEIGHTS = "imagenet"  # the base of BASES: "imagenet" (Keras download/cache), "none" (untrained) or a notop .h5
SEED = 42  # seeds shuffling, augmentation and weight initialisation
AUGMENT = "original"  # "original" (the original's rotation, shift, shear, zoom and flip), "camera" (original +
#                       photometric), "photo" (camera + side light, lost resolution, JPEG, then --normalize again),
#                       "light" (a third of each geometric range, no shear) or "none"
LR_SCHEDULE = "plateau"  # "plateau" (the original's ReduceLROnPlateau) or "cosine" (decay to 0 over the epochs)
LABEL_SMOOTHING = 0.0  # cross-entropy label smoothing, 0 = off (the original)
MIXUP = 0.0  # mixup: blend training faces and their targets in pairs, weights from Beta(MIXUP, MIXUP); 0 = off
WEIGHT_DECAY = 0.0  # decoupled weight decay (AdamW) when above 0; 0 = plain Adam (the original)
EMA = 0.0  # momentum of an exponential moving average of the weights, validated and saved in their place; 0 = off
CLASS_WEIGHT = "none"  # "balanced" weights the loss by inverse class frequency; "none" = the original
TARGETS = "votes"  # with annotators' votes beside the data (prepare --votes): "votes" learns each face's share
#                    of them (Barsoum et al.'s best), "folders" the one-hot class folder (its vote plurality)
FOLDER_WEIGHT = 0.0  # with votes: each training face learns this much of its folder's class, the rest of its votes
TEACHER_WEIGHT = 0.5  # with --teacher: each training face learns this much of the teachers' mean answer
STEPS_PER_EXECUTION = 8  # training steps per call into TensorFlow: less Python overhead per step for small models
EARLY_STOPPING_PATIENCE = 5  # epochs without val_loss improvement before stopping
REDUCE_LR_PATIENCE = 3  # epochs without val_loss improvement before halving the learning rate
REDUCE_LR_FACTOR = 0.5  # learning-rate multiplier on a plateau
MIN_LEARNING_RATE = 1e-6  # floor for ReduceLROnPlateau
CACHE_FEATURES = False  # vgg16: run the frozen base once per image and train the head on the stored features
DISTRIBUTE = "auto"  # "auto" (all GPUs via MirroredStrategy when any is visible), "mirrored", "none",
#                      "multiworker" (MultiWorkerMirroredStrategy over the machines in $TF_CONFIG)
TIME_BUDGET = None  # minutes: training ends at the last epoch that fits, a cosine rate decaying over it; None: off


# -----------------------------------------------------------------------------
# Models: the original's two (preprocessing inside each model); the others live in emotion/core/models.py


def build_cnn(input_shape, num_classes):
    """The original scratch CNN, layer for layer: four conv/BN/pool blocks, dropout, L2 dense head."""
    inputs = keras.Input(input_shape)
    x = keras.layers.Rescaling(1 / 255)(inputs)
    for block, filters in enumerate((16, 32, 64, 128)):
        x = keras.layers.Conv2D(filters, 3, activation="relu")(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.MaxPooling2D(2)(x)
        if block > 0:
            x = keras.layers.Dropout(0.3)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(512, activation="relu", kernel_regularizer=keras.regularizers.l2(0.01))(x)
    x = keras.layers.Dropout(0.5)(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", dtype="float32")(x)  # float32 under mixed precision
    return keras.Model(inputs, outputs, name="cnn")


def build_vgg16(input_shape, num_classes, weights=BASE_WEIGHTS):
    """Frozen VGG16 + the original head; 'same' padding in the head when the base output is under 4x4."""
    inputs = keras.Input(input_shape)
    x = keras.layers.Concatenate()([inputs] * 3) if input_shape[-1] == 1 else inputs  # grey -> 3 channels
    x = vgg16_preprocess_class()()(x)
    base = load_base("vgg16", (input_shape[0], input_shape[1], 3), weights)
    base.trainable = False
    x = base(x, training=False)
    padding = "valid" if x.shape[1] >= 4 else "same"  # 200 px: 6x6 as the original; 48 px: 1x1
    x = keras.layers.Conv2D(256, 3, activation="relu", padding=padding)(x)
    x = keras.layers.MaxPooling2D(2, padding=padding)(x)
    x = keras.layers.Flatten()(x)
    for units, rate in ((512, 0.5), (256, 0.4)):
        x = keras.layers.Dense(units, activation="relu", kernel_regularizer=keras.regularizers.l2(0.01))(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.Dropout(rate)(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", dtype="float32")(x)  # float32 under mixed precision
    return keras.Model(inputs, outputs, name="vgg16_transfer")


def build_model(name, input_shape, num_classes, learning_rate, base_weights=BASE_WEIGHTS, label_smoothing=0.0,
                weight_decay=0.0, ema=0.0):
    """Build and compile one of the architectures; `learning_rate` may be a Keras schedule; `ema` > 0: the
    optimizer keeps a moving average of the weights with that momentum (safe_training validates and saves it)."""
    if name == "vgg16":
        model = build_vgg16(input_shape, num_classes, base_weights)
    elif name in BASES:
        model = build_application(name, input_shape, num_classes, base_weights)
    elif name == "compact":
        model = build_compact(input_shape, num_classes)
    elif name == "cnn":
        model = build_cnn(input_shape, num_classes)
    else:
        raise ValueError(f"unknown model {name!r}; build_model knows {', '.join(MODELS)}")
    average = {"use_ema": True, "ema_momentum": ema} if ema else {}
    if weight_decay:
        optimizer = keras.optimizers.AdamW(learning_rate, weight_decay=weight_decay, **average)
    else:
        optimizer = keras.optimizers.Adam(learning_rate, **average)
    model.compile(optimizer=optimizer, steps_per_execution=STEPS_PER_EXECUTION,
                  loss=keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing), metrics=["accuracy"])
    return model


# -----------------------------------------------------------------------------
# Training: the original's callbacks, model.fit and save (the extras that make a run safe, from the best-model
# checkpoint to --resume and Ctrl-C, come as callbacks from emotion/train/training.py's safe_training)


def make_callbacks(patience=EARLY_STOPPING_PATIENCE, reduce_on_plateau=True):
    """The original's callbacks: Keras' progress bar, EarlyStopping (best weights restored) and ReduceLROnPlateau."""
    callbacks = [
        progress_bar(),
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True, verbose=1),
    ]
    if reduce_on_plateau:  # a cosine schedule sets the rate itself
        callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=REDUCE_LR_FACTOR,
                                                           patience=REDUCE_LR_PATIENCE, min_lr=MIN_LEARNING_RATE,
                                                           verbose=1))
    return callbacks


def train_model(run, callbacks, epochs, model_path, output_dir, resume=False):
    """Fit `run` (a TrainingRun) with the callbacks, then save: `model_path` is replaced only when the run succeeds
    (Ctrl-C: by the best epoch so far). Returns the per-epoch logs (fit's history.history)."""
    with safe_training(run, callbacks, model_path, output_dir, resume) as extras:
        history = run.fit(run.train_ds, validation_data=run.val_ds, epochs=epochs,
                          shuffle=False,  # the data set shuffles itself
                          steps_per_epoch=run.steps_per_epoch, class_weight=run.class_weight,
                          verbose=1 if sys.stdout.isatty() else 2,  # a file: a line an epoch
                          callbacks=[*callbacks, *extras])
        save_model(run.model, model_path, run.metadata)
    return history.history


def make_training_run(args, strategy, splits, class_names, image):
    """Build the model (or start from --initial-model) and its data: a TrainingRun."""
    num_classes, train_labels = len(class_names), splits["train"][1]
    steps_per_epoch = math.ceil(len(train_labels) / args.batch_size)
    # a time budget sets the rate itself (TimeBudget), as the run's length is known only once it runs
    learning_rate = make_learning_rate(args.learning_rate, "plateau" if args.time_budget else args.lr_schedule,
                                       args.epochs, steps_per_epoch)
    input_shape = (image["image_size"], image["image_size"], 1 if image["color"] == "grayscale" else 3)
    with strategy.scope():
        model = build_model(args.model, input_shape, num_classes, learning_rate, args.base_weights,
                            args.label_smoothing, args.weight_decay, args.ema)
        if args.initial_model:
            start_from(model, args.initial_model)
    metadata = {"class_names": class_names, **image, "model": args.model, "trained_on": data_label(args.data),
                "created": datetime.datetime.now().isoformat(timespec="seconds")}
    augment = make_augmentation(args.augment, image["normalize"])  # "photo" ends with the model's normalisation
    targets, stored = training_targets(args, splits, class_names, image)  # folders, vote shares, teachers' answers
    metadata.update(stored)
    class_weight = balanced_class_weights(train_labels, num_classes) if args.class_weight == "balanced" else None
    if args.cache_features:
        start = time.perf_counter()
        head, train_ds, val_ds = make_feature_data(model, strategy, splits, targets, num_classes, augment,
                                                   cache_dir=os.path.join(args.output_dir, "cache"),
                                                   batch_size=args.batch_size, seed=args.seed)
        print(f"Features ready in {time.perf_counter() - start:.0f} s; training the head on them")
        return TrainingRun(model, metadata, head, head.fit, train_ds, val_ds, steps_per_epoch, class_weight)
    train_ds = make_dataset(splits["train"][0], targets["train"], num_classes, args.batch_size, shuffle=True,
                            augment=augment, seed=args.seed, mixup=args.mixup,
                            drop_remainder=args.distribute == "multiworker")  # no empty shares
    val_ds = make_dataset(splits["val"][0], targets["val"], num_classes, args.batch_size)
    return TrainingRun(model, metadata, model, fit_method(model), train_ds, val_ds, class_weight=class_weight)


# -----------------------------------------------------------------------------
# Evaluation and plots


def evaluate_model(model, images, labels, class_names, batch_size=BATCH_SIZE, tta=TTA):
    """Loss, accuracy, F1 and report, all from one pass of predictions (with TTA when asked). The loss is the mean
    cross-entropy of those probabilities (log_loss), without the L2 penalties: a training cost, not a test error."""
    from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, f1_score, log_loss
    probabilities = predict_probabilities(model, images, tta, batch_size)
    loss = log_loss(labels, probabilities, labels=list(range(len(class_names))))
    predictions = probabilities.argmax(axis=1)
    indices = list(range(len(class_names)))
    report = classification_report(labels, predictions, labels=indices, target_names=class_names,
                                   digits=4, zero_division=0)
    per_class = classification_report(labels, predictions, labels=indices, target_names=class_names,
                                      output_dict=True, zero_division=0)
    counts = np.bincount(labels, minlength=len(class_names))
    bins, ece = calibration_bins(probabilities, labels)
    return {
        "loss": float(loss),
        "accuracy": float(accuracy_score(labels, predictions)),
        "weighted_f1": float(f1_score(labels, predictions, labels=indices, average="weighted", zero_division=0)),
        "macro_f1": float(f1_score(labels, predictions, labels=indices, average="macro", zero_division=0)),
        "majority_class_accuracy": float(counts.max() / counts.sum()),
        "expected_calibration_error": ece,
        "calibration_bins": bins,
        "n_samples": int(len(labels)),
        "class_names": list(class_names),
        "support": {name: int(n) for name, n in zip(class_names, counts)},
        "per_class": {name: {k: float(per_class[name][k]) for k in ("precision", "recall", "f1-score")}
                      for name in class_names},
        "confusion_matrix": confusion_matrix(labels, predictions, labels=indices).tolist(),
        "classification_report": report,
        "predictions": predictions,
        "warnings": learning_warnings(predictions, labels, class_names),
    }


def evaluate_folder(model, class_names, folder, split, batch_size=BATCH_SIZE, tta=TTA):
    """evaluate_model on `split` (images, labels, skipped files: the faces load_folder read from `folder`), with the
    annotators' agreement when the folder's data set has a votes file (prepare --votes; else None)."""
    images, labels, skipped = split
    metrics = evaluate_model(model, images, labels, class_names, batch_size, tta)
    metrics["annotator_agreement"] = folder_agreement(folder, class_names, skipped, metrics["predictions"])
    return metrics


def print_metrics(metrics):
    """The original's printout, plus macro F1, the majority-class baseline and the calibration error."""
    majority = max(metrics["support"], key=metrics["support"].get)
    for name, key in (("Test Loss", "loss"), ("Test Accuracy", "accuracy"), ("Test F1-Score", "weighted_f1"),
                      ("Test Macro F1-Score", "macro_f1"), (f"Majority-class accuracy (always '{majority}')",
                      "majority_class_accuracy"), ("Expected calibration error", "expected_calibration_error")):
        print(f"{name}: {metrics[key]:.4f}")
    if metrics.get("annotator_agreement") is not None:
        print(f"Annotator agreement (mean share of the votes the answers got): {metrics['annotator_agreement']:.4f}")
    print("Classification Report:\n" + metrics["classification_report"])
    for line in metrics["warnings"]:
        print(line)


def plot_confusion_matrix(labels, predictions, class_names, data_name, path):
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay
    fig, ax = plt.subplots(figsize=(max(4.5, 1.5 + 1.2 * len(class_names)), 1 + 1.2 * len(class_names)))
    ConfusionMatrixDisplay.from_predictions(labels, predictions, labels=list(range(len(class_names))),
                                            display_labels=class_names, cmap="Blues", ax=ax, colorbar=False)
    ax.set_title(f"Confusion matrix: {data_name} ({len(labels)} faces)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return fig


def plot_training_curves(history, path):
    """Training vs validation loss and accuracy, side by side, as the original."""
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    epochs = range(1, len(history["loss"]) + 1)
    for ax, key in zip(axes, ("loss", "accuracy")):
        ax.plot(epochs, history[key], label=f"Training {key}")
        ax.plot(epochs, history[f"val_{key}"], label=f"Validation {key}")
        ax.set_xlabel("Epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)  # epochs 1, 2, 3, not 0.25 steps
        ax.set_title(f"Training and validation {key}")
        if key == "accuracy":
            ax.set_ylim(0, 1)  # the whole scale: a change from 0.335 to 0.365 looks as small as it is
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return fig


def report(metrics, labels, source, output_dir, show, history=None):
    """Print, save and plot the evaluation of the faces in folder `source` (and the training curves)."""
    metrics = {**metrics, "data": os.path.abspath(source)}  # which faces a number is about travels with it
    import matplotlib
    if not show:
        matplotlib.use("Agg")  # files only: no window, and no display needed
    import matplotlib.pyplot as plt

    print_metrics(metrics)
    save_metrics(metrics, output_dir)
    try:  # class names and folder names as written: "$\\happy$" is no math text to typeset (it raised)
        with matplotlib.rc_context({"text.parse_math": False}):
            plot_confusion_matrix(labels, metrics["predictions"], metrics["class_names"], data_label(source),
                                  os.path.join(output_dir, "confusion_matrix.png"))
            plot_reliability(metrics["calibration_bins"], metrics["expected_calibration_error"], data_label(source),
                             os.path.join(output_dir, "reliability_diagram.png"))
            if history:
                plot_training_curves(history, os.path.join(output_dir, "training_curves.png"))
    except OSError as error:
        raise UserError(f"cannot write the plots to {output_dir!r} ({error.strerror}); free some space") from None
    print(f"Results written to {output_dir}/")
    if show:
        plt.show()
    plt.close("all")


# -----------------------------------------------------------------------------
# Commands: train (the original's flow) and evaluate; every other job is a module of emotion/


def run_train(args):
    """The original script's flow: train (or load) the model, save it, then evaluate it on test/."""
    # the skip rule: an existing model file is reused unless train_again; every worker of a cluster trains
    trained = (args.train_again or args.resume or args.distribute == "multiworker"
               or not os.path.exists(args.model_path))
    class_names = check_train_options(args, trained)  # before TensorFlow is imported: a wrong path fails at once
    strategy = make_strategy(args.distribute)
    if not is_chief(strategy):
        send_worker_outputs_to_scratch(args, strategy)
    check_writable(os.path.dirname(os.path.abspath(args.model_path)), f"--model-path {args.model_path!r}",
                   made=False)  # before --output-dir is made: a refused run makes no folder
    check_output_dir(args.output_dir, args.data, check_training_files(args, trained))
    keras.utils.set_random_seed(args.seed)
    if trained:
        image = choose_input(args, class_names)
    else:
        model, metadata = load_saved_model(args.model_path, class_names, args.precision, class_names,
                                           "the data's classes {}", args.image_size, args.color)
        print(f"Model loaded from {args.model_path} (train_again is False, so no training)")
        image = {key: metadata[key] for key in ("image_size", "color", "normalize")}
    settings = {**vars(args), **image, "class_names": class_names, "trained": trained}
    shown = settings if trained else {k: settings[k] for k in ("model_path", "data", "output_dir", "batch_size", "tta",
                                                               "precision", *image, "class_names")}
    print("Settings: " + ", ".join(f"{k}={v}" for k, v in shown.items() if k != "command"))
    splits = load_splits(args.data, class_names, image, SPLITS if trained else ("test",),
                         os.path.join(args.output_dir, "cache"))
    history = None
    if trained:
        model, history = train_new_model(args, strategy, splits, class_names, image)
    write_file(os.path.join(args.output_dir, "config.json"), json.dumps(settings, indent=2))
    test = os.path.join(args.data, "test")
    metrics = evaluate_folder(model, class_names, test, splits["test"], args.batch_size, args.tta)
    report(metrics, splits["test"][1], test, args.output_dir, args.show, history)


def train_new_model(args, strategy, splits, class_names, image):
    """Build, train, save and calibrate a new model: (the model as it answers, its training history)."""
    start = time.perf_counter()
    precision, why = choose_precision(args.precision, args.distribute == "multiworker")
    print(f"Precision: {precision} ({why})")
    with global_precision(precision):  # for the models built to train; the process's own policy back after
        run = make_training_run(args, strategy, splits, class_names, image)
        callbacks = make_callbacks(args.patience, reduce_on_plateau=args.lr_schedule == "plateau")
        callbacks += time_budget_callbacks(args.time_budget, args.learning_rate, args.epochs,
                                           args.lr_schedule == "cosine")
        history = train_model(run, callbacks, args.epochs, args.model_path, args.output_dir, args.resume)
    if not history.get("loss"):  # --resume: fit found every epoch done; the model file holds the run's best
        print(f"Warning: --resume: the interrupted run had already trained its --epochs {args.epochs} (the total, "
              "not more epochs), so no epoch was trained; to train on, resume with a larger --epochs")
        history = None
    print(f"Trained {len(history['loss']) if history else 0} epochs in {time.perf_counter() - start:.0f} s; "
          f"model saved to {args.model_path}")
    model, metadata = run.model, run.metadata
    if args.distribute == "multiworker":  # a local copy: the distributed model needs every worker to predict
        model, _ = load_trained_model(args.model_path)
    metadata["temperature"] = calibrate_model(model, metadata, *splits["val"][:2], args.model_path)
    return answering_model(model, metadata)[0], history


def check_train_options(args, trained):
    """Refuse option combinations that cannot work, and check the data set's layout (only test/ if not `trained`)."""
    # float16: Keras' LossScaleOptimizer fails under MultiWorkerMirroredStrategy (docs/design.md)
    single_machine = [flag for flag, on in (("--resume", args.resume), ("--cache-features", args.cache_features),
                                            ("--precision float16", args.precision == "float16"),
                                            ("--ema", args.ema)) if on]
    if args.distribute == "multiworker" and single_machine:
        raise UserError(f"{single_machine[0]} does not work with --distribute multiworker; leave one of them out")
    if args.cache_features and args.model != "vgg16":
        raise UserError("--cache-features needs a frozen base: use it with --model vgg16")
    if args.cache_features and args.mixup:
        raise UserError("--mixup blends images, which --cache-features never shows the head; leave one of them out")
    if args.teacher_weight != TEACHER_WEIGHT and not args.teacher:
        raise UserError("--teacher-weight sets the share of the teachers' answer: give the teachers (--teacher)")
    if args.folder_weight and args.targets == "folders":
        raise UserError("--folder-weight blends each face's votes with its folder's class; --targets folders learns "
                        "the folders alone: leave one of them out")
    return check_dataset_layout(args.data, SPLITS if trained else ("test",))


def choose_input(args, class_names):
    """The new model's input: size and colour ("auto" resolved from the data) and the contrast normalisation."""
    image_size, color = choose_image_settings(args.data, class_names, args.image_size, args.color,
                                              min_image_size(args.model))
    if image_size < min_image_size(args.model):
        raise UserError(f"--image-size {image_size} is too small for --model {args.model}; "
                        f"use at least {min_image_size(args.model)}")
    return {"image_size": image_size, "color": color, "normalize": args.normalize}


def load_saved_model(model_path, data_classes, precision, classes, restricted_to, image_size=None, color=None):
    """The saved model and its metadata, answering over `classes`, else over the data's classes when they are fewer
    than it knows (said in one line, ending with `restricted_to`), else over all it knows. A model from the original
    script stores no class names: it knows `data_classes`. image_size, color: train's, which the model must take,
    as it must know the data's classes (check_model_matches); None: evaluate, which names what the answers lack."""
    model, metadata = load_trained_model(model_path)
    if image_size is not None:
        check_model_matches(metadata, model, data_classes, model_path, image_size, color)
    known = metadata.setdefault("class_names", data_classes)
    if classes is None and set(data_classes) < set(known):
        classes = data_classes
    if classes and classes != known and restricted_to:
        print(f"The model knows {','.join(known)}: its answers are restricted to "
              f"{restricted_to.format(','.join(classes))}")
    return answering_model(model, metadata, classes, precision)


def run_evaluate(args):
    """Evaluate the saved model on any folder of <class>/ sub-folders (a subset of the model's classes)."""
    folder_classes = list_class_names(args.folder)
    model, metadata = load_saved_model(args.model_path, folder_classes, args.precision, args.classes,
                                       None if args.classes else "the folder's classes {} (--classes chooses others)")
    known = read_metadata(args.model_path).get("class_names", folder_classes)  # all the model learned
    class_names = metadata["class_names"]
    never = sorted(set(folder_classes) - set(known))
    if never:  # --classes only chooses among the model's classes: it cannot add one
        raise UserError(f"{args.folder!r} has classes {never} that the model {args.model_path!r} was never trained "
                        f"for (it knows {','.join(known)}); evaluate a folder of only those classes, or a model "
                        "trained for these (another --model-path)")
    unknown = sorted(set(folder_classes) - set(class_names))
    if unknown:
        raise UserError(f"{args.folder!r} has classes {unknown} that the model's answers "
                        f"({','.join(class_names)}) lack; pass --classes {','.join(folder_classes)} to match the "
                        "folder, or another folder")
    check_output_dir(args.output_dir, args.folder, {"the model (--model-path)": args.model_path})
    split = load_folder(args.folder, class_names, metadata["image_size"], metadata["color"], metadata["normalize"],
                        os.path.join(args.output_dir, "cache"))
    if len(split[1]) == 0:
        raise UserError(f"no readable images under {args.folder!r}/<class>/")
    print(f"Evaluating {args.model_path} on {len(split[1])} images from {args.folder}")
    metrics = evaluate_folder(model, class_names, args.folder, split, args.batch_size, args.tta)
    report(metrics, split[1], args.folder, args.output_dir, args.show)


COMMANDS = {"train": run_train, "evaluate": run_evaluate, "predict": predict.run_predict, "webcam": video.run_webcam,
            "prepare": prepare.run_prepare, "serve": serve.run_serve}


def make_parser():
    parser = argparse.ArgumentParser(
        description="Facial emotion recognition. With no command, runs 'train' (the original script: "
                    "train or load, then evaluate on test/).",
        epilog="Each command's options, with their defaults: python emotion_recognition.py COMMAND --help "
               "(e.g. train --help).",
        formatter_class=HelpFormatter)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND",  # each with its defaults in --help
                                     parser_class=functools.partial(argparse.ArgumentParser,
                                                                    formatter_class=HelpFormatter))
    add_train_arguments(commands.add_parser("train", help="train (or load) a model, then evaluate it on test/ "
                                                          "(the default)"))
    evaluate = commands.add_parser("evaluate", help="evaluate the saved model on a folder of <class>/ sub-folders")
    add_model_arguments(evaluate)
    add_results_arguments(evaluate, OUTPUT_DIR, BATCH_SIZE)
    add_classes_argument(evaluate)
    evaluate.add_argument("folder", help="folder whose sub-folders are classes (e.g. HASsplittedDS/test)")
    for name, job, summary in (
            ("predict", predict, "label each face in image files or folders"),
            ("webcam", video, "label faces live from a camera or a video file (q or Ctrl-C quits)"),
            ("prepare", prepare, "build train/val/test folders from FER2013 or a folder of classes"),
            ("serve", serve, "a web page to try the model in a browser, plus a JSON API")):
        job.add_arguments(commands.add_parser(name, help=summary))  # each job declares its own options
    return parser


def add_train_arguments(train):
    """train's options: each overrides one of the defaults at the top of this file."""
    add_model_arguments(train, MODEL_PATH)
    add_results_arguments(train, OUTPUT_DIR, BATCH_SIZE)
    train.add_argument("--data", default=DATA_DIR, help="data set folder with train/, val/, test/")
    train.add_argument("--model", default=MODEL, choices=MODELS, help="architecture")
    train.add_argument("--train-again", action="store_true", default=train_again,
                       help="train even when --model-path exists")
    train.add_argument("--epochs", type=positive_int, default=EPOCHS, help="maximum training epochs")
    train.add_argument("--learning-rate", type=positive_float, default=LEARNING_RATE, help="Adam learning rate")
    train.add_argument("--image-size", type=image_size_arg, default=IMAGE_SIZE, help="'auto' or a side in pixels")
    train.add_argument("--color", default=COLOR, choices=("auto", "grayscale", "rgb"), help="input colour")
    train.add_argument("--normalize", default=NORMALIZE, choices=("equalize", "none"),
                       help="contrast normalisation of every face, stored with the model")
    train.add_argument("--base-weights", "--vgg-weights", dest="base_weights", default=BASE_WEIGHTS,
                       help="the ImageNet base of --model vgg16, resnet, mobilenet or efficientnet: 'imagenet', "
                            "'none' (train from scratch), or a local notop .h5 file")
    train.add_argument("--seed", type=SEED_ARG, default=SEED, help="random seed (0 to 2**32-1)")
    train.add_argument("--initial-model", type=model_file_arg,
                       help="fine-tune: start from this trained model's weights (e.g. the shipped model)")
    train.add_argument("--teacher", type=model_file_arg, nargs="+", metavar="MODEL",
                       help="distil: each training face also learns these trained models' mean answer")
    train.add_argument("--teacher-weight", type=float_in_range(0, 1), default=TEACHER_WEIGHT, metavar="W",
                       help="with --teacher: the share of the teachers' answer in each training face's target")
    train.add_argument("--resume", action="store_true",
                       help="continue an interrupted training run from its last finished epoch (implies --train-again)")
    train.add_argument("--augment", default=AUGMENT, choices=AUGMENTATIONS, help="training augmentation strength")
    train.add_argument("--patience", type=positive_int, default=EARLY_STOPPING_PATIENCE,
                       help="EarlyStopping: epochs without val_loss improvement")
    train.add_argument("--lr-schedule", default=LR_SCHEDULE, choices=("plateau", "cosine"), help="rate schedule")
    train.add_argument("--label-smoothing", type=float_in_range(0, 1, high_included=False), default=LABEL_SMOOTHING,
                       help="label smoothing (0 to 1, 1 excluded)")
    train.add_argument("--mixup", type=float_in_range(0, 1), default=MIXUP, metavar="ALPHA",
                       help="mixup: blend training faces and targets in pairs, weights from Beta(ALPHA, ALPHA); 0: off")
    train.add_argument("--folder-weight", type=float_in_range(0, 1), default=FOLDER_WEIGHT, metavar="W",
                       help="with votes (prepare --votes): each training face learns W of its folder's class and 1-W "
                            "of its vote shares (prepare --votes --train-folders source keeps the source's classes)")
    train.add_argument("--weight-decay", type=float_in_range(0, math.inf, high_included=False), default=WEIGHT_DECAY,
                       help="AdamW decoupled weight decay; 0 uses plain Adam")
    train.add_argument("--ema", type=float_in_range(0, 1, high_included=False), default=EMA, metavar="MOMENTUM",
                       help="validate, checkpoint and save an exponential moving average of the weights, updated each "
                            "step with this momentum (e.g. 0.999); 0: off")
    train.add_argument("--cache-features", action="store_true", default=CACHE_FEATURES,
                       help=f"vgg16: fit the head on the frozen base's stored outputs ({FEATURE_VIEWS} views a face)")
    train.add_argument("--distribute", default=DISTRIBUTE, choices=("auto", "mirrored", "multiworker", "none"),
                       help="auto: MirroredStrategy when a GPU is visible; multiworker: the machines in $TF_CONFIG")
    train.add_argument("--mixed-precision", dest="precision", action="store_const", const="float16",
                       help="the same as --precision float16")
    train.add_argument("--time-budget", type=positive_float, metavar="MINUTES", default=TIME_BUDGET,
                       help="train for at most this long (the best epoch is kept); see --lr-schedule")
    train.add_argument("--class-weight", default=CLASS_WEIGHT, choices=("none", "balanced"), help="class weights")
    train.add_argument("--targets", default=TARGETS, choices=("votes", "folders"),
                       help="with a votes file beside the data (prepare --votes): learn each face's share of the "
                            "votes, or its class folder")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = make_parser()
    if not argv or argv[0] not in (*COMMANDS, "-h", "--help"):
        argv = ["train", *argv]  # the original script took no command
    args = parser.parse_args(argv)
    for stream in (sys.stdout, sys.stderr):  # a file name that is not UTF-8 prints as \udcff, never a traceback
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    if getattr(args, "model_path", "") is None:
        args.model_path = default_model_path(FACES_MODEL_PATH, SHIPPED_DIR)
    if getattr(args, "show", False) and not display_available():
        args.show = False
    try:
        with warnings.catch_warnings():  # the library warns (warnings.warn); the command line prints them, one line each
            warnings.simplefilter("default")
            # but not the libraries' notes to their own callers (numpy 2's __array__ copy note after every epoch)
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.showwarning = lambda message, *_, **__: print(f"Warning: {message}", file=sys.stderr)
            check_utf8_options(args)
            COMMANDS[args.command](args)
    except EmotionError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # training handles its own Ctrl-C (it keeps the best model); this is any other step
        print(f"error: interrupted (Ctrl-C) during {args.command}", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
