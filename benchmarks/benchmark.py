"""Speed, memory and accuracy of this project against the original script, side by side on the same data.

    python benchmarks/benchmark.py --quick                      # a few minutes: fewer steps, a subset of the images
    python benchmarks/benchmark.py                              # the full run (roughly 20 minutes on 2 cores)
    python benchmarks/benchmark.py --data path/to/HASsplittedDS --output results/benchmark.json
    python benchmarks/benchmark.py --quick --parts cnn_project,cnn_bound,inference

--data defaults to $FER_DATA, else ../shared/datasets/fer2013-has beside the repository. The results go
to --output (default benchmark.json in the current folder) and a table is printed. Only train/ and
val/ are read; test/ never is.

What is measured (every part runs in its own process, so its peak memory, ru_maxrss, is its own):
- Training images/s at 200x200 RGB, for the original CNN and the frozen-VGG16 model (weights "none":
  the same arithmetic as ImageNet weights), fed three ways: the original pipeline (legacy
  ImageDataGenerator.flow_from_directory with the original's augmentation, decoding every image
  every epoch; Keras 3's model.fit runs it with workers=1, in one tf.data prefetch thread), this
  project's pipeline (load_folder decodes once, then make_dataset with make_augmentation), and the
  compute bound (one decoded batch held in memory, no augmentation). All three rows train the very
  same er.build_model network: the original's rescale=1/255 is left out of the generator because
  the model's own Rescaling layer (VGG16: its input conversion) does that multiplication, so the
  network's work is identical in every row.
- Throughput: a few warm-up steps trace the training function, then a fixed number of steps is
  timed on a fresh pass over the data (the input pipeline starts empty, so it gets no head start
  while the graph is traced). Seconds per epoch = train images / images per second; at
  --image-size auto (48x48 grey for FER2013) a whole epoch of the whole train split is timed
  instead, in --quick too (it takes seconds).
- Timings are noisy when other work shares the cores: the load average is printed, and
  --rounds N runs every speed part N times, interleaved, and reports the median run.
- Validation accuracy of the original's CNN trained for the same epochs on the same images at auto size
  and at 200 px RGB (the original's input), with this project's pipeline (full run: 2 epochs on 8,000
  train images; --quick: 1 epoch on 640, a smoke check only).
- Inference with the default model (untrained weights: speed does not depend on them): face crops/s
  through classify_crops in one batch, per-frame latency of one crop per call, and the FPS of
  the webcam's frame loop (frames.run_frames) on a 640x480 video with one face (a FER2013 face enlarged to 200 px).
"""

import argparse
import functools
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)
from emotion.io.arguments import positive_int  # noqa: E402
from emotion.core.detection import detect_faces, load_face_detector  # noqa: E402
from emotion.core.faces import classify_crops  # noqa: E402
from emotion.train.features import extract_features, make_feature_dataset, split_frozen_base  # noqa: E402
from emotion.io.errors import UserError  # noqa: E402
from emotion.io.images import read_image  # noqa: E402
from emotion.core.frames import VIDEO_DETECT_WIDTH, run_frames  # noqa: E402
from emotion.io.images import prepare_image  # noqa: E402
from emotion.train.data import ORIGINAL_IMAGE_SIZE, list_image_files
import emotion_recognition as er  # noqa: E402  (the code under test)
import cv2  # noqa: E402
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

DEFAULT_DATA = os.environ.get("FER_DATA", os.path.join(REPO_ROOT, "..", "shared", "datasets", "fer2013-has"))
OUTPUT = "benchmark.json"  # written to the current folder unless --output says otherwise
BATCH_SIZE = er.BATCH_SIZE  # 32, as the original
ORIGINAL_SIZE = ORIGINAL_IMAGE_SIZE  # 200: the original's input side (RGB)
SUBSET_RULE = "the first images of each class by sorted file name, in proportion to the class sizes"
RESULT_PREFIX = "BENCHMARK_PART_RESULT "  # marks the one JSON line a part process prints

# Work per mode. Steps are (warm-up steps, timed steps) per training step of one batch.
FULL = {
    "train_images": None,  # None: the whole train split
    "val_images": None,  # None: the whole val split
    "steps_cnn": (3, 20),  # CNN at 200 px: 0.5-2 s per step
    "steps_vgg16": (2, 8),  # frozen VGG16 at 200 px: 3-8 s per step
    "steps_auto_bound": (10, 500),  # CNN at auto size, in-memory batch: 15-35 ms per step
    "accuracy_train_images": 8000,  # images both accuracy runs train on (the same ones), half the train split
    "accuracy_epochs": 2,
    "inference_repeats": 5,  # batch timings; the median is reported
    "latency_calls": 200,  # one-crop classify calls; median and 90th percentile reported
    "video_frames": 300,
    "vgg_cache_images": 256,  # 200 px images whose frozen-VGG16 features are timed (about 10 images/s)
    "vgg_cache_epochs": 2,  # accuracy check of --cache-features at auto size, on accuracy_train_images
}
QUICK = {
    "train_images": 640,
    "val_images": 300,
    "steps_cnn": (2, 5),
    "steps_vgg16": (1, 3),
    "steps_auto_bound": (5, 200),
    "accuracy_train_images": 640,
    "accuracy_epochs": 1,
    "inference_repeats": 3,
    "latency_calls": 50,
    "video_frames": 100,
    "vgg_cache_images": 64,
    "vgg_cache_epochs": 1,
}
INFERENCE_BATCH = 1024  # face crops classified in one call
VIDEO_SIZE = (640, 480)  # width, height of the synthetic video
VIDEO_FACE_SIDE = 200  # pixels: a FER2013 face enlarged to a typical webcam face size
TARGETS = {  # from the issue
    "project_vs_bound_min": 0.90,  # same model and size: project pipeline / compute bound
    "auto_epoch_speedup_min": 30,  # original's epoch time / project's at auto size
    "crops_per_s_min": 1000,
    "video_fps_min": 30,
}


# -----------------------------------------------------------------------------
# Data subsets (symlinks, so both pipelines read the very same files)


def first_files(folder, class_names, limit):
    """The first files of each class (sorted names), `limit` in total, split in proportion to class sizes."""
    per_class = {name: list_image_files(os.path.join(folder, name)) for name in class_names}
    total = sum(len(files) for files in per_class.values())
    if limit is None or limit >= total:
        return per_class
    return {name: files[:max(1, round(limit * len(files) / total))] for name, files in per_class.items()}


def count_images(folder, class_names):
    return sum(len(list_image_files(os.path.join(folder, name))) for name in class_names)


def link_subset(files_per_class, folder):
    """A folder of <class>/ symlinks to the chosen files; returns (folder, number of images)."""
    for name, files in files_per_class.items():
        os.makedirs(os.path.join(folder, name))
        for path in files:
            os.symlink(os.path.abspath(path), os.path.join(folder, name, os.path.basename(path)))
    return folder, sum(len(files) for files in files_per_class.values())


def make_plan(data, quick, workdir):
    """Everything a part needs, decided once by the parent and handed to each part as a JSON file."""
    try:
        class_names = er.check_dataset_layout(data)
    except UserError as error:
        raise UserError(f"{error}, or set FER_DATA") from None
    mode = QUICK if quick else FULL
    min_size = max(er.min_image_size("cnn"), er.min_image_size(er.MODEL))  # auto-size parts use both
    size, color = er.choose_image_settings(data, class_names, "auto", "auto", min_size)
    n_train_full = count_images(os.path.join(data, "train"), class_names)

    def split_dir(split, limit, name):
        """The split itself, or a linked subset of `limit` of its images: (folder, number of images)."""
        if limit is None:
            return os.path.join(data, split), count_images(os.path.join(data, split), class_names)
        return link_subset(first_files(os.path.join(data, split), class_names, limit), os.path.join(workdir, name))

    train_dir, n_train = split_dir("train", mode["train_images"], "train")
    val_dir, n_val = split_dir("val", mode["val_images"], "val")
    accuracy_dir, n_accuracy = split_dir("train", mode["accuracy_train_images"], "accuracy_train")
    vgg_cache_dir, n_vgg_cache = split_dir("train", mode["vgg_cache_images"], "vgg_cache")
    return {**mode, "data": os.path.abspath(data), "quick": quick, "workdir": workdir, "class_names": class_names,
            "full_train_dir": os.path.join(data, "train"), "n_train_full": n_train_full,
            "train_dir": train_dir, "n_train": n_train, "val_dir": val_dir, "n_val": n_val,
            "accuracy_train_dir": accuracy_dir, "n_accuracy_train": n_accuracy,
            "vgg_cache_dir": vgg_cache_dir, "n_vgg_cache": n_vgg_cache,
            "sizes": {"original": [ORIGINAL_SIZE, "rgb"], "auto": [size, color]},
            "batch_size": BATCH_SIZE, "seed": er.SEED}


# -----------------------------------------------------------------------------
# Parts: each runs in its own process and returns a dict of figures


class StepTimer(keras.callbacks.Callback):
    """Clock time when the pass over the data starts and at the end of every training step."""

    def __init__(self):
        super().__init__()
        self.start, self.times = None, []

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter())


def time_fit(model, data, warmup, steps, batch_size, n_images=None):
    """Images/s over `steps` training steps, timed on a fresh pass over `data` after `warmup` untimed steps.

    The warm-up traces the training function. The timed pass starts with an empty input pipeline (no batches
    prefetched during tracing), so a pipeline slower than the network cannot hide behind a head start.
    """
    model.fit(data, steps_per_epoch=warmup, epochs=1, verbose=0)
    timer = StepTimer()
    model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0, callbacks=[timer])
    executions = -(-steps // model.steps_per_execution)  # Keras calls back once per execution of N steps
    if len(timer.times) != executions:
        raise RuntimeError(f"expected {steps} training steps, the data gave {len(timer.times)} executions")
    images = min(n_images or steps * batch_size, steps * batch_size)  # a whole epoch may end with a short batch
    seconds = timer.times[-1] - timer.start
    return {"images_per_s": images / seconds, "warmup_steps": warmup, "timed_steps": steps,
            "timed_images": images, "timed_seconds": seconds}


def input_shape(plan, size_key):
    size, color = plan["sizes"][size_key]
    return (size, size, 1 if color == "grayscale" else 3)


def new_model(plan, model_name, size_key):
    keras.utils.set_random_seed(plan["seed"])
    return er.build_model(model_name, input_shape(plan, size_key), len(plan["class_names"]), er.LEARNING_RATE,
                          base_weights="none")


def part_original(plan, model_name):
    """The original's input pipeline: ImageDataGenerator decoding and augmenting every image, every epoch."""
    generator = tf.keras.preprocessing.image.ImageDataGenerator(  # legacy class, still shipped with Keras 3
        rotation_range=30, width_shift_range=0.2, height_shift_range=0.2, shear_range=0.2, zoom_range=0.2,
        horizontal_flip=True, fill_mode="nearest")  # rescale=1/255 is the model's Rescaling layer here
    flow = generator.flow_from_directory(plan["train_dir"], target_size=(ORIGINAL_SIZE, ORIGINAL_SIZE),
                                         color_mode="rgb", batch_size=plan["batch_size"], class_mode="categorical",
                                         seed=plan["seed"])
    warmup, timed = plan[f"steps_{model_name}"]
    model = new_model(plan, model_name, "original")
    return {"pipeline": "original", "model": model_name, "input": list(input_shape(plan, "original")),
            **time_fit(model, flow, warmup, timed, plan["batch_size"])}


def load_split(plan, folder, size_key):
    """er.load_folder, timed: the project decodes each image once, before training."""
    size, color = plan["sizes"][size_key]
    start = time.perf_counter()
    images, labels, _ = er.load_folder(folder, plan["class_names"], size, color, er.NORMALIZE)
    return images, labels, time.perf_counter() - start


def project_dataset(plan, images, labels):
    return er.make_dataset(images, labels, len(plan["class_names"]), plan["batch_size"], shuffle=True,
                           augment=er.make_augmentation("original"), seed=plan["seed"])


def part_project(plan, model_name, size_key):
    """This project's pipeline: decode once (timed apart), then tf.data with the fused augmentation warp."""
    folder = plan["full_train_dir"] if size_key == "auto" else plan["train_dir"]  # auto: a whole real epoch
    images, labels, decode_seconds = load_split(plan, folder, size_key)
    model = new_model(plan, model_name, size_key)
    dataset = project_dataset(plan, images, labels)
    batches = -(-len(images) // plan["batch_size"])
    if size_key == "auto":  # cheap enough to time a whole epoch, the figure the issue asks for
        warmup, steps = plan["steps_auto_bound"][0], batches
    else:
        warmup, steps = plan[f"steps_{model_name}"]
        steps = min(steps, batches)
    timing = time_fit(model, dataset, warmup, steps, plan["batch_size"], len(images))
    result = {"pipeline": "project", "model": model_name, "input": list(input_shape(plan, size_key)), **timing,
              "decode_images": len(images), "decode_seconds": decode_seconds,
              "decoded_mb": images.nbytes / 2**20}
    if size_key == "auto":
        result["epoch_images"] = len(images)
        result["epoch_seconds"] = timing["timed_seconds"]  # one whole pass over the train images
    return result


def first_batch(plan, size_key):
    """One batch of real training images, classes taken in turn, decoded and resized as the project does."""
    size, color = plan["sizes"][size_key]
    per_class = first_files(plan["train_dir"], plan["class_names"], None)
    images, labels = [], []
    for i in range(plan["batch_size"]):
        label = i % len(plan["class_names"])
        files = per_class[plan["class_names"][label]]
        path = files[i // len(plan["class_names"]) % len(files)]
        images.append(prepare_image(read_image(path), size, color, er.NORMALIZE))
        labels.append(label)
    return np.stack(images), np.array(labels)


def part_bound(plan, model_name, size_key):
    """The same model trained on one batch held in memory, no augmentation: the network alone."""
    images, labels = first_batch(plan, size_key)
    batch = (tf.constant(images, tf.float32), tf.one_hot(labels, len(plan["class_names"])))
    dataset = tf.data.Dataset.from_tensors(batch).repeat()
    warmup, timed = plan["steps_auto_bound" if size_key == "auto" else f"steps_{model_name}"]
    model = new_model(plan, model_name, size_key)
    return {"pipeline": "bound", "model": model_name, "input": list(input_shape(plan, size_key)),
            **time_fit(model, dataset, warmup, timed, plan["batch_size"])}


def part_accuracy(plan, size_key):
    """The original's CNN, this project's pipeline, same images and epochs; accuracy on val (never test)."""
    images, labels, _ = load_split(plan, plan["accuracy_train_dir"], size_key)
    val_images, val_labels, _ = load_split(plan, plan["val_dir"], size_key)
    model = new_model(plan, "cnn", size_key)
    start = time.perf_counter()
    model.fit(project_dataset(plan, images, labels), epochs=plan["accuracy_epochs"], verbose=0)
    train_seconds = time.perf_counter() - start
    metrics = er.evaluate_model(model, val_images, val_labels, plan["class_names"], plan["batch_size"])
    return {"model": "cnn", "input": list(input_shape(plan, size_key)), "train_images": len(images),
            "epochs": plan["accuracy_epochs"], "train_seconds": train_seconds, "val_images": len(val_labels),
            **{k: metrics[k] for k in ("accuracy", "macro_f1", "loss", "majority_class_accuracy")}}


def cached_head(model):
    """--cache-features' split of the frozen-VGG16 model: (features, compiled head), as the script does it."""
    features, head = split_frozen_base(model)
    head.compile(optimizer=model.optimizer, loss=model.loss, metrics=["accuracy"])
    return features, head


def part_vgg16_cached(plan):
    """--cache-features at 200 px: frozen-base feature extraction (once per image view) and head training speed."""
    images, labels, _ = load_split(plan, plan["vgg_cache_dir"], "original")
    num_classes = len(plan["class_names"])
    features, head = cached_head(new_model(plan, "vgg16", "original"))
    extract_features(features, images[:plan["batch_size"]], labels[:plan["batch_size"]], num_classes,
                        plan["batch_size"])  # traces the feature model: not timed
    start = time.perf_counter()
    stored = extract_features(features, images, labels, num_classes, plan["batch_size"],
                                 er.make_augmentation("original"), er.FEATURE_VIEWS)
    extract_seconds = time.perf_counter() - start
    dataset = make_feature_dataset(stored, labels, num_classes, plan["batch_size"], shuffle=True,
                                      seed=plan["seed"])
    timing = time_fit(head, dataset, 5, 100, plan["batch_size"])
    return {"model": "vgg16", "input": list(input_shape(plan, "original")), "views": int(stored.shape[0]),
            "extract_images": len(images), "extract_seconds": extract_seconds,
            "extract_views_per_s": stored.shape[0] * len(images) / extract_seconds,
            "head_images_per_s": timing["images_per_s"], "head_timed_steps": timing["timed_steps"],
            "feature_shape": list(stored.shape[2:])}


def part_vgg16_cache_accuracy(plan):
    """Frozen VGG16 at auto size, same images, epochs and seed, trained with and without --cache-features."""
    images, labels, _ = load_split(plan, plan["accuracy_train_dir"], "auto")
    val_images, val_labels, _ = load_split(plan, plan["val_dir"], "auto")
    num_classes, epochs, batch = len(plan["class_names"]), plan["vgg_cache_epochs"], plan["batch_size"]
    result = {"model": "vgg16", "input": list(input_shape(plan, "auto")), "train_images": len(images),
              "epochs": epochs, "val_images": len(val_labels)}
    for cached in (False, True):
        model = new_model(plan, "vgg16", "auto")
        augment = er.make_augmentation("original")
        start = time.perf_counter()
        if cached:
            features, head = cached_head(model)
            stored = extract_features(features, images, labels, num_classes, batch, augment, er.FEATURE_VIEWS)
            head.fit(make_feature_dataset(stored, labels, num_classes, batch, shuffle=True, seed=plan["seed"]),
                     epochs=epochs, steps_per_epoch=-(-len(images) // batch), verbose=0)
        else:
            model.fit(er.make_dataset(images, labels, num_classes, batch, shuffle=True, augment=augment,
                                      seed=plan["seed"]), epochs=epochs, verbose=0)
        seconds = time.perf_counter() - start
        metrics = er.evaluate_model(model, val_images, val_labels, plan["class_names"], batch)
        key = "cached" if cached else "uncached"
        result.update({f"{key}_accuracy": metrics["accuracy"], f"{key}_macro_f1": metrics["macro_f1"],
                       f"{key}_seconds": seconds})
    result["majority_class_accuracy"] = metrics["majority_class_accuracy"]
    return result


def video_frame(face, offset):
    """A 640x480 grey BGR frame with `face` (square RGB) pasted near the middle, shifted by `offset` px."""
    width, height = VIDEO_SIZE
    frame = np.full((height, width, 3), 110, np.uint8)
    x, y = (width - face.shape[1]) // 2 + offset, (height - face.shape[0]) // 2
    frame[y:y + face.shape[0], x:x + face.shape[1]] = face
    return cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)


def write_face_video(plan, detector, path):
    """A video of a FER2013 face the face detector finds (as run_video detects), drifting sideways."""
    files = [f for name in plan["class_names"] for f in list_image_files(os.path.join(plan["val_dir"], name))]
    for file in files:
        face = cv2.resize(read_image(file), (VIDEO_FACE_SIDE, VIDEO_FACE_SIDE), interpolation=cv2.INTER_LINEAR)
        rgb = cv2.cvtColor(video_frame(face, 0), cv2.COLOR_BGR2RGB)
        if len(detect_faces(detector, rgb, max_side=VIDEO_DETECT_WIDTH)) == 1:
            break
    else:
        raise RuntimeError(f"the face detector found no face in any of the {len(files)} val images")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 30, VIDEO_SIZE)
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write the test video {path}")
    for i in range(plan["video_frames"]):
        writer.write(video_frame(face, int(20 * np.sin(i / 10))))
    writer.release()
    return os.path.basename(file)


def median_seconds(function, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), times


def part_inference(plan):
    """Default model at auto size: batch crops/s, one-crop latency, video FPS (detector + classifier)."""
    size, color = plan["sizes"]["auto"]
    model = new_model(plan, er.MODEL, "auto")
    metadata = {"class_names": plan["class_names"], "image_size": size, "color": color, "normalize": er.NORMALIZE}
    files = [f for name in plan["class_names"] for f in list_image_files(os.path.join(plan["train_dir"], name))]
    crops = [read_image(files[i % len(files)]) for i in range(INFERENCE_BATCH)]  # RGB, as the files are
    prepared = np.stack([prepare_image(c, size, color, er.NORMALIZE) for c in crops])
    classify_crops(model, metadata, crops[:8])  # warm-up: traces the predict function
    classify_crops(model, metadata, crops[:1])
    batch_seconds, _ = median_seconds(lambda: classify_crops(model, metadata, crops), plan["inference_repeats"])
    model_seconds, _ = median_seconds(lambda: er.predict_probabilities(model, prepared), plan["inference_repeats"])
    _, latencies = median_seconds(lambda: classify_crops(model, metadata, crops[:1]), plan["latency_calls"])
    detector = load_face_detector()
    video = os.path.join(plan["workdir"], "one_face.avi")
    face_file = write_face_video(plan, detector, video)
    frame = cv2.cvtColor(cv2.VideoCapture(video).read()[1], cv2.COLOR_BGR2RGB)
    detect_seconds, _ = median_seconds(lambda: detect_faces(detector, frame, max_side=VIDEO_DETECT_WIDTH), 20)
    records = [record for record, _ in run_frames(
        video, lambda rgb, max_side, following, quick: detect_faces(detector, rgb, max_side, following, quick),
        lambda crops: classify_crops(model, metadata, crops), metadata["class_names"], max_frames=plan["video_frames"])]
    frames, seconds = records[-1]["summary"]["frames"], records[-1]["summary"]["seconds"]
    faces = sum(len(record.get("faces", ())) for record in records)
    return {"model": er.MODEL, "input": [size, size, 1 if color == "grayscale" else 3],
            "batch": INFERENCE_BATCH, "crop_shape": list(crops[0].shape),
            "crops_per_s": INFERENCE_BATCH / batch_seconds,
            "model_only_crops_per_s": INFERENCE_BATCH / model_seconds,
            "latency_ms_median": 1000 * float(np.median(latencies)),
            "latency_ms_p90": 1000 * float(np.percentile(latencies, 90)), "latency_calls": len(latencies),
            "video_size": list(VIDEO_SIZE), "video_face_px": VIDEO_FACE_SIDE, "video_face_file": face_file,
            "video_frames": frames, "video_faces": faces, "video_seconds": seconds, "video_fps": frames / seconds,
            "detect_ms_median": 1000 * detect_seconds}


partial = functools.partial
PARTS = {  # name -> (what the table calls it, function(plan) -> dict of figures, figure that picks the
    #                  median run with --rounds, or None: run once); run in this order
    "cnn_original": ("CNN 200px, original pipeline (ImageDataGenerator)",
                     partial(part_original, model_name="cnn"), "images_per_s"),
    "cnn_project": ("CNN 200px, this project's pipeline",
                    partial(part_project, model_name="cnn", size_key="original"), "images_per_s"),
    "cnn_bound": ("CNN 200px, compute bound (in memory, no augmentation)",
                  partial(part_bound, model_name="cnn", size_key="original"), "images_per_s"),
    "vgg16_original": ("VGG16 200px, original pipeline (ImageDataGenerator)",
                       partial(part_original, model_name="vgg16"), "images_per_s"),
    "vgg16_project": ("VGG16 200px, this project's pipeline",
                      partial(part_project, model_name="vgg16", size_key="original"), "images_per_s"),
    "vgg16_bound": ("VGG16 200px, compute bound (in memory, no augmentation)",
                    partial(part_bound, model_name="vgg16", size_key="original"), "images_per_s"),
    "auto_project": ("CNN auto size, this project's pipeline",
                     partial(part_project, model_name="cnn", size_key="auto"), "images_per_s"),
    "auto_bound": ("CNN auto size, compute bound (in memory, no augmentation)",
                   partial(part_bound, model_name="cnn", size_key="auto"), "images_per_s"),
    "accuracy_auto": ("val accuracy, CNN auto size", partial(part_accuracy, size_key="auto"), None),
    "accuracy_200": ("val accuracy, CNN 200px RGB", partial(part_accuracy, size_key="original"), None),
    "inference": ("inference, default model at auto size", part_inference, "video_fps"),
    "vgg16_cached": ("VGG16 200px, --cache-features (extract once, train the head)", part_vgg16_cached,
                     "head_images_per_s"),
    "vgg16_cache_accuracy": ("val accuracy, VGG16 auto size, with and without --cache-features",
                             part_vgg16_cache_accuracy, None),
}


def run_part(name, plan_path):
    """Child process: run one part, print its figures (plus peak memory) as one JSON line."""
    with open(plan_path) as f:
        plan = json.load(f)
    start = time.perf_counter()
    result = PARTS[name][1](plan)
    result["part_seconds"] = time.perf_counter() - start
    result["peak_memory_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    print(RESULT_PREFIX + json.dumps(result), flush=True)


# -----------------------------------------------------------------------------
# Parent: run the parts, compare, print, save


def launch_part(name, plan_path):
    """Run one part in a fresh Python process; its figures, or {"error": ...} with the end of its stderr."""
    command = [sys.executable, os.path.abspath(__file__), "--part", name, "--plan", plan_path]
    done = subprocess.run(command, capture_output=True, text=True)
    for line in done.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX):])
    tail = [line for line in done.stderr.strip().splitlines() if line.strip()][-5:]
    return {"error": f"exit code {done.returncode}: " + " | ".join(tail)}


def median_run(runs, key):
    """The run whose `key` figure is the median (the lower one of an even count), with every run's figure."""
    failed = [run for run in runs if "error" in run]
    if failed or len(runs) == 1:
        return (failed or runs)[0]
    ordered = sorted(runs, key=lambda run: run[key])
    return {**ordered[(len(runs) - 1) // 2], "rounds": [run[key] for run in runs],
            "peak_memory_mb": max(run["peak_memory_mb"] for run in runs)}


def ratio(parts, top, bottom, key="images_per_s"):
    if key in parts.get(top, {}) and key in parts.get(bottom, {}):
        return parts[top][key] / parts[bottom][key]
    return None


def compare(parts, plan):
    """Ratios and the issue's targets; a figure whose parts failed (or were not run) is None."""
    comparisons = {}
    for model in ("cnn", "vgg16"):
        comparisons[f"{model}_project_vs_bound"] = ratio(parts, f"{model}_project", f"{model}_bound")
        comparisons[f"{model}_project_vs_original"] = ratio(parts, f"{model}_project", f"{model}_original")
        comparisons[f"{model}_original_vs_bound"] = ratio(parts, f"{model}_original", f"{model}_bound")
    comparisons["auto_project_vs_bound"] = ratio(parts, "auto_project", "auto_bound")
    original = parts.get("cnn_original", {})
    auto = parts.get("auto_project", {})
    if "images_per_s" in original and "images_per_s" in auto:
        original_epoch = plan["n_train_full"] / original["images_per_s"]
        measured = auto.get("epoch_images") == plan["n_train_full"]
        auto_epoch = auto["epoch_seconds"] if measured else plan["n_train_full"] / auto["images_per_s"]
        comparisons.update(original_epoch_seconds_projected=original_epoch, auto_epoch_seconds=auto_epoch,
                           auto_epoch_measured=measured, auto_epoch_speedup=original_epoch / auto_epoch)
    cached, vgg_original = parts.get("vgg16_cached", {}), parts.get("vgg16_original", {})
    if "head_images_per_s" in cached and "images_per_s" in vgg_original:
        n, epochs = plan["n_train_full"], 30  # the issue's comparison: a whole 30-epoch run on the train split
        cached_seconds = cached["views"] * n / cached["extract_views_per_s"] + epochs * n / cached["head_images_per_s"]
        original_seconds = epochs * n / vgg_original["images_per_s"]
        comparisons.update(vgg16_30_epochs_original_seconds=original_seconds,
                           vgg16_30_epochs_cached_seconds=cached_seconds,
                           vgg16_cache_speedup_30_epochs=original_seconds / cached_seconds,
                           vgg16_cache_speedup_per_epoch=cached["head_images_per_s"] / vgg_original["images_per_s"])
    cache_accuracy = parts.get("vgg16_cache_accuracy", {})
    comparisons["vgg16_cache_accuracy_delta"] = (cache_accuracy["cached_accuracy"] - cache_accuracy["uncached_accuracy"]
                                                 if "cached_accuracy" in cache_accuracy else None)
    accuracy_auto, accuracy_200 = (parts.get(p, {}).get("accuracy") for p in ("accuracy_auto", "accuracy_200"))
    comparisons["accuracy_auto_minus_200"] = (accuracy_auto - accuracy_200
                                              if None not in (accuracy_auto, accuracy_200) else None)

    def target(value, minimum):
        return {"value": value, "target": minimum, "met": None if value is None else value >= minimum}

    inference = parts.get("inference", {})
    targets = {
        "cnn_project_vs_bound": target(comparisons["cnn_project_vs_bound"], TARGETS["project_vs_bound_min"]),
        "vgg16_project_vs_bound": target(comparisons["vgg16_project_vs_bound"], TARGETS["project_vs_bound_min"]),
        "cnn_project_vs_original": target(comparisons["cnn_project_vs_original"], 1.0),
        "vgg16_project_vs_original": target(comparisons["vgg16_project_vs_original"], 1.0),
        "auto_epoch_speedup": target(comparisons.get("auto_epoch_speedup"), TARGETS["auto_epoch_speedup_min"]),
        "accuracy_auto_minus_200": target(comparisons["accuracy_auto_minus_200"], 0.0),
        "vgg16_cache_speedup_30_epochs": target(comparisons.get("vgg16_cache_speedup_30_epochs"), 10),
        "vgg16_cache_accuracy_delta": target(comparisons["vgg16_cache_accuracy_delta"], 0.0),
        "crops_per_s": target(inference.get("crops_per_s"), TARGETS["crops_per_s_min"]),
        "video_fps": target(inference.get("video_fps"), TARGETS["video_fps_min"]),
    }
    return comparisons, targets


def shape(values):
    return "x".join(map(str, values))


def print_training(parts, plan):
    print(f"{'training':<58}{'input':>11}{'steps':>7}{'images/s':>10}{'s/epoch':>10}{'peak MB':>9}")
    for name, (label, *_) in PARTS.items():
        result = parts.get(name)
        if result is None or name.startswith(("accuracy", "inference", "vgg16_cache")):
            continue
        if "error" in result:
            print(f"{label:<58}  FAILED: {result['error']}")
            continue
        epoch = (f"{result['epoch_seconds']:.0f} meas" if result.get("epoch_images") == plan["n_train_full"]
                 else f"{plan['n_train_full'] / result['images_per_s']:.0f}")
        print(f"{label:<58}{shape(result['input']):>11}{result['timed_steps']:>7}"
              f"{result['images_per_s']:>10.1f}{epoch:>10}{result['peak_memory_mb']:>9.0f}")
        if "decode_seconds" in result:
            print(f"{'  decoding once before training (load_folder)':<58}{'':>18}"
                  f"{result['decode_images'] / result['decode_seconds']:>10.0f}   "
                  f"{result['decode_images']} images in {result['decode_seconds']:.1f} s, "
                  f"{result['decoded_mb']:.0f} MB")


def print_accuracy_and_inference(parts):
    for name in ("accuracy_auto", "accuracy_200", "inference", "vgg16_cached", "vgg16_cache_accuracy"):
        result = parts.get(name)
        if result is not None and "error" not in result and name == "vgg16_cached":
            print(f"{PARTS[name][0]} ({shape(result['input'])}): features {shape(result['feature_shape'])}, "
                  f"{result['extract_views_per_s']:.1f} image-views/s extracted ({result['views']} views of "
                  f"{result['extract_images']} images), head trains at {result['head_images_per_s']:.0f} images/s; "
                  f"peak {result['peak_memory_mb']:.0f} MB")
            continue
        if result is not None and "error" not in result and name == "vgg16_cache_accuracy":
            print(f"{PARTS[name][0]} ({shape(result['input'])}, weights none, {result['epochs']} epoch(s) on "
                  f"{result['train_images']} images): uncached {result['uncached_accuracy']:.4f} in "
                  f"{result['uncached_seconds']:.0f} s, cached {result['cached_accuracy']:.4f} in "
                  f"{result['cached_seconds']:.0f} s, on {result['val_images']} val images (majority "
                  f"{result['majority_class_accuracy']:.4f}); peak {result['peak_memory_mb']:.0f} MB")
            continue
        if result is not None and "error" in result:
            print(f"{PARTS[name][0]}: FAILED: {result['error']}")
        elif result is not None and name.startswith("accuracy"):
            print(f"{PARTS[name][0]} ({shape(result['input'])}): {result['accuracy']:.4f}, macro F1 "
                  f"{result['macro_f1']:.4f}, on {result['val_images']} val images (majority class "
                  f"{result['majority_class_accuracy']:.4f}), after {result['epochs']} epoch(s) on "
                  f"{result['train_images']} train images in {result['train_seconds']:.0f} s; "
                  f"peak {result['peak_memory_mb']:.0f} MB")
        elif result is not None:
            print(f"inference, untrained {result['model']} at {shape(result['input'])} (crops "
                  f"{shape(result['crop_shape'])}): {result['crops_per_s']:.0f} face crops/s in batches of "
                  f"{result['batch']} (model alone {result['model_only_crops_per_s']:.0f}); one crop per call "
                  f"{result['latency_ms_median']:.1f} ms median, {result['latency_ms_p90']:.1f} ms p90 "
                  f"({result['latency_calls']} calls)")
            print(f"video {shape(result['video_size'])}, one {result['video_face_px']} px face: "
                  f"{result['video_fps']:.1f} FPS over {result['video_frames']} frames through the webcam's frame loop "
                  f"({result['video_faces']} faces found; detection alone {result['detect_ms_median']:.1f} ms/frame); "
                  f"peak {result['peak_memory_mb']:.0f} MB")


def print_comparisons(comparisons, targets, quick):
    def fmt(value, spec):
        return "-" if value is None else format(value, spec)

    for model, label in (("cnn", "CNN 200px"), ("vgg16", "VGG16 200px")):
        print(f"{label}: project/bound {fmt(comparisons[f'{model}_project_vs_bound'], '.2f')}, "
              f"project/original {fmt(comparisons[f'{model}_project_vs_original'], '.2f')}, "
              f"original/bound {fmt(comparisons[f'{model}_original_vs_bound'], '.2f')}")
    line = f"CNN auto size: project/bound {fmt(comparisons['auto_project_vs_bound'], '.2f')}"
    if "auto_epoch_speedup" in comparisons:
        how = "measured" if comparisons["auto_epoch_measured"] else "projected"
        line += (f"; epoch {comparisons['auto_epoch_seconds']:.1f} s ({how}) against the original's "
                 f"{comparisons['original_epoch_seconds_projected']:.0f} s (projected): "
                 f"{comparisons['auto_epoch_speedup']:.1f}x faster")
    print(line)
    if "vgg16_cache_speedup_30_epochs" in comparisons:
        print(f"VGG16 200px, 30 epochs on the whole train split: original pipeline "
              f"{comparisons['vgg16_30_epochs_original_seconds'] / 3600:.1f} h, --cache-features "
              f"{comparisons['vgg16_30_epochs_cached_seconds'] / 3600:.2f} h (projected): "
              f"{comparisons['vgg16_cache_speedup_30_epochs']:.1f}x faster; per head epoch "
              f"{comparisons['vgg16_cache_speedup_per_epoch']:.0f}x")
    print()
    print("targets:")
    for name, t in targets.items():
        verdict = {True: "met", False: "NOT met", None: "not measured"}[t["met"]]
        print(f"  {name:<28} {fmt(t['value'], '.3f'):>10}  (>= {t['target']})  {verdict}")
    if quick:
        print("(--quick: few steps and a small subset; the accuracy comparison is a smoke check, not a verdict)")


def print_report(parts, plan, comparisons, targets, settings):
    print()
    print(f"Data {plan['data']}: {plan['n_train']} of {plan['n_train_full']} train images"
          f"{' (quick subset)' if plan['quick'] else ''}, {plan['n_val']} val; batch {plan['batch_size']}; "
          f"{settings['cpus']} CPUs, TensorFlow threads {settings['tf_threads']}; "
          f"load average {settings['load_average_start']:.1f} at start, {settings['load_average_end']:.1f} at end")
    if settings["rounds"] > 1:
        print(f"Speed figures: the median of {settings['rounds']} interleaved runs of each part (all in the JSON).")
    print(f"Steps = training steps timed after warm-up. s/epoch = {plan['n_train_full']} train images / images/s, "
          "except where marked meas(ured).")
    print()
    print_training(parts, plan)
    print()
    print_accuracy_and_inference(parts)
    print()
    print_comparisons(comparisons, targets, plan["quick"])


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data", default=DEFAULT_DATA, help="data set with train/, val/ (test/ is not read)")
    parser.add_argument("--quick", action="store_true", help="a few minutes: fewer steps on a subset")
    parser.add_argument("--output", default=OUTPUT, help="JSON file for every figure")
    parser.add_argument("--parts", default=",".join(PARTS), help="comma-separated parts to run")
    parser.add_argument("--rounds", type=positive_int, default=1, metavar="N",
                        help="run each speed part N times, interleaved, and report the median run")
    parser.add_argument("--part", choices=PARTS, help=argparse.SUPPRESS)  # internal: run one part (child process)
    parser.add_argument("--plan", help=argparse.SUPPRESS)  # internal: the plan file of the parent
    args = parser.parse_args(argv)
    unknown = [p for p in args.parts.split(",") if p not in PARTS]
    if unknown:
        parser.error(f"unknown part(s) {unknown}; choose from {', '.join(PARTS)}")
    return args


def run_parts(names, rounds, plan_path):
    """Each part in its own process, `rounds` times over (interleaved); the median run of each part."""
    runs = {name: [] for name in names}
    for round_ in range(1, rounds + 1):
        for name in names:
            if round_ > 1 and PARTS[name][2] is None:
                continue
            print(f"[round {round_}/{rounds}] {name}: {PARTS[name][0]} ...", end=" ", flush=True)
            result = launch_part(name, plan_path)
            runs[name].append(result)
            print("FAILED" if "error" in result else f"{result['part_seconds']:.0f} s", flush=True)
    return {name: median_run(results, PARTS[name][2]) for name, results in runs.items()}


def run_benchmark(args, workdir):
    """Plan, run every part, print the report and write the JSON; exit code 1 when a part failed."""
    output_dir = os.path.dirname(os.path.abspath(args.output))
    if not os.access(output_dir, os.W_OK):
        raise UserError(f"cannot write --output {args.output!r}; {output_dir} is missing or not writable")
    plan = make_plan(args.data, args.quick, workdir)
    plan_path = os.path.join(workdir, "plan.json")
    with open(plan_path, "w") as f:
        json.dump(plan, f)
    threads = (f"intra {tf.config.threading.get_intra_op_parallelism_threads() or 'default'}, "
               f"inter {tf.config.threading.get_inter_op_parallelism_threads() or 'default'}")
    settings = {"command": " ".join(sys.argv), "rounds": args.rounds, "cpus": os.cpu_count(), "tf_threads": threads,
                "versions": {"python": platform.python_version(), "tensorflow": tf.__version__,
                             "keras": keras.__version__, "opencv": cv2.__version__},
                "load_average_start": os.getloadavg()[0]}
    size, color = plan["sizes"]["auto"]
    print(f"Benchmarking {'(quick) ' if args.quick else ''}on {plan['data']}: auto size {size}x{size} {color}, "
          f"original {ORIGINAL_SIZE}x{ORIGINAL_SIZE} rgb, batch {BATCH_SIZE}, {os.cpu_count()} CPUs, "
          f"load average {settings['load_average_start']:.1f}")
    start = time.perf_counter()
    parts = run_parts(args.parts.split(","), args.rounds, plan_path)
    settings.update(load_average_end=os.getloadavg()[0], wall_seconds=time.perf_counter() - start)
    comparisons, targets = compare(parts, plan)
    print_report(parts, plan, comparisons, targets, settings)
    plan = {k: v for k, v in plan.items() if k != "workdir" and not k.endswith("_dir")}  # temporary paths
    plan["subsets"] = SUBSET_RULE
    with open(args.output, "w") as f:
        json.dump({"settings": settings, "plan": plan, "parts": parts, "comparisons": comparisons,
                   "targets": targets}, f, indent=2)
    print(f"Figures written to {args.output} ({settings['wall_seconds']:.0f} s in all)")
    return 1 if any("error" in result for result in parts.values()) else 0


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.part:
        run_part(args.part, args.plan)
        return 0
    workdir = tempfile.mkdtemp(prefix="emotion-benchmark-")
    try:
        return run_benchmark(args, workdir)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
