"""Data: the class folders of a data set, every image decoded once through the one preprocessing path of every
command (prepare_image), and the cached tf.data pipeline that feeds training."""

import concurrent.futures
import math
import os

import numpy as np

from emotion.io.errors import UserError
from emotion.io.files import open_cache
from emotion.io.images import ImageRefused, prepare_image, read_image
from emotion.io.lazy_import import LazyModule
from emotion.train.distributed import shard_by_data

tf = LazyModule("tensorflow")
keras = LazyModule("keras")

SPLITS = ("train", "val", "test")
ORIGINAL_IMAGE_SIZE = 200  # the original resized every image to 200x200 RGB; "auto" never goes above it
AUTO_SIZE_SAMPLE = 200  # training images inspected to choose the size and colour for "auto"
MAX_IN_MEMORY_MB = 4096  # decoded splits larger than this are kept in a file cache (memory-mapped)


def list_class_names(folder):
    """Sorted sub-folder names of `folder`, i.e. its classes."""
    if not os.path.isdir(folder):
        raise UserError(f"data folder {folder!r} does not exist; expected one sub-folder per class")
    names = sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d)) and not d.startswith("."))
    if not all(name.isprintable() for name in names):  # a newline or an escape in a class name forges output lines
        raise UserError(f"{folder!r}: the class folder {[n for n in names if not n.isprintable()][0]!r} has control "
                        "characters in its name; rename it")
    if not names:
        raise UserError(f"{folder!r} has no class sub-folders; expected e.g. {folder}/happy/, {folder}/sad/")
    return names


def check_dataset_layout(data_dir, splits=SPLITS):
    """Validate DATA/<split>/<class>/ for `splits` and return the class names (sorted, from the first split)."""
    missing = [split for split in splits if not os.path.isdir(os.path.join(data_dir, split))]
    if missing:
        what = f"missing: {'/, '.join(missing)}/" if os.path.isdir(data_dir) else "the folder does not exist"
        raise UserError(f"no data set in {data_dir!r} ({what}); {'training' if 'train' in splits else 'evaluating'} "
                        f"needs {', '.join(f'{data_dir}/{s}/' for s in splits)} with one sub-folder per class. Point "
                        f"--data DIR at one, or make one: python emotion_recognition.py prepare --source fer2013.csv "
                        f"--out {data_dir}")
    class_names = list_class_names(os.path.join(data_dir, splits[0]))
    if len(class_names) < 2:
        raise UserError(f"{os.path.join(data_dir, splits[0])!r} has only the class {class_names}; need at least two")
    for split in splits[1:]:
        names = list_class_names(os.path.join(data_dir, split))
        if names != class_names:
            raise UserError(f"classes in {os.path.join(data_dir, split)!r} {names} differ from {splits[0]}'s "
                            f"{class_names}; every split needs the same class folders")
    for split in splits:
        for name in class_names:
            if not list_image_files(os.path.join(data_dir, split, name)):
                raise UserError(f"class folder {os.path.join(data_dir, split, name)!r} holds no images")
    return class_names


def list_image_files(folder):
    """Entries of `folder` that are not hidden or folders (non-images, FIFOs and such are refused when read)."""
    return sorted(os.path.join(folder, f) for f in os.listdir(folder)
                  if not f.startswith(".") and not os.path.isdir(os.path.join(folder, f)))


def choose_image_settings(data_dir, class_names, image_size, color, min_size):
    """Resolve "auto" size/colour from a sample of training images (48x48 grey FER2013 -> 48, grayscale)."""
    if image_size != "auto" and color != "auto":
        return int(image_size), color
    files = [f for name in class_names for f in list_image_files(os.path.join(data_dir, "train", name))]
    rng = np.random.default_rng(0)

    def read_sample(path):
        try:
            return read_image(path)
        except ImageRefused:  # load_folder reports it, once
            return None
    sample = [read_sample(f) for f in rng.permutation(files)[:AUTO_SIZE_SAMPLE]]
    sample = [im for im in sample if im is not None]
    if not sample:
        raise UserError(f"none of the sampled images under {os.path.join(data_dir, 'train')!r} could be read")
    if image_size == "auto":
        sides = [max(im.shape[:2]) for im in sample]
        image_size = int(min(max(int(np.median(sides)), min_size), ORIGINAL_IMAGE_SIZE))
    if color == "auto":
        is_grey = all(np.array_equal(im[..., 0], im[..., 1]) and np.array_equal(im[..., 1], im[..., 2])
                      for im in sample)
        color = "grayscale" if is_grey else "rgb"
    return int(image_size), color


def folder_files(folder, class_names):
    """The image files under folder/<class>/ in load_folder's order, and their labels (indices of class_names)."""
    files, labels = [], []
    for label, name in enumerate(class_names):
        class_dir = os.path.join(folder, name)
        if os.path.isdir(class_dir):
            paths = list_image_files(class_dir)
            files += paths
            labels += [label] * len(paths)
    return files, labels


def load_folder(folder, class_names, image_size, color, normalize, cache_dir=None):
    """Decode every image under folder/<class>/ once, resized: (images uint8, labels, skipped paths). Labels index
    `class_names` (a folder may hold a subset); splits above MAX_IN_MEMORY_MB go to a memory-mapped file cache."""
    files, labels = folder_files(folder, class_names)
    channels = 1 if color == "grayscale" else 3
    shape = (len(files), image_size, image_size, channels)
    if math.prod(shape) > MAX_IN_MEMORY_MB * 2**20 and cache_dir:
        images = open_cache(cache_dir, os.path.basename(os.path.normpath(folder)), np.uint8, shape)
    else:
        images = np.empty(shape, dtype=np.uint8)
    ok = np.zeros(len(files), dtype=bool)
    refused = {}

    def decode(i):
        try:
            image = read_image(files[i])
        except ImageRefused as error:
            refused[i] = str(error)
            return
        if image is not None:
            images[i] = prepare_image(image, image_size, color, normalize)
            ok[i] = True

    with concurrent.futures.ThreadPoolExecutor(os.cpu_count()) as pool:  # OpenCV releases the GIL
        list(pool.map(decode, range(len(files))))
    for i in sorted(refused):
        print(f"Warning: skipped {refused[i]}")
    skipped = [f for f, good in zip(files, ok) if not good]
    unreadable = [f for i, f in enumerate(files) if not ok[i] and i not in refused]
    if unreadable:
        examples = ", ".join(os.path.basename(f) for f in unreadable[:3])
        print(f"Warning: skipped {len(unreadable)} unreadable or non-image file(s) in {folder} (e.g. {examples})")
    keep = np.flatnonzero(ok)
    if len(keep) < len(files):  # close the gaps in place (no second copy, also when memory-mapped)
        for new, old in enumerate(keep):
            images[new] = images[old]
        images = images[:len(keep)]
    return images, np.asarray(labels, dtype=np.int64)[keep], skipped


def load_splits(data_dir, class_names, image, splits, cache_dir):
    """Decode the splits once, through the one preprocessing path; every class must keep a readable image."""
    loaded = {split: load_folder(os.path.join(data_dir, split), class_names, image["image_size"], image["color"],
                                 image["normalize"], cache_dir) for split in splits}
    for split, (_, labels, _) in loaded.items():
        per_class = np.bincount(labels, minlength=len(class_names))
        print(f"Found {len(labels)} {split} images ({', '.join(f'{n} {c}' for c, n in zip(class_names, per_class))})")
        empty = [name for name, n in zip(class_names, per_class) if n == 0]
        if empty:
            raise UserError(f"class folder {os.path.join(data_dir, split, empty[0])!r} holds no readable images")
    return loaded


def make_dataset(images, labels, num_classes, batch_size, shuffle=False, augment=None, seed=None, drop_remainder=False,
                 mixup=0.0):
    """Batches of (float32 pixels 0-255, targets) read from the decoded array; order kept unless shuffle. Targets:
    one-hot of integer `labels`, or `labels` themselves when they are rows of class shares (annotators' votes).
    `mixup` > 0: after augmentation each face and its targets are blended with another face of its batch and its
    targets, with a weight drawn from Beta(mixup, mixup) (keras.layers.MixUp; Zhang et al. 2018)."""
    ds = tf.data.Dataset.range(len(images))
    if shuffle:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    image_shape = images.shape[1:]

    def take(index):
        batch = tf.numpy_function(lambda i: images[i], [index], tf.uint8)
        batch = tf.ensure_shape(batch, (None, *image_shape))
        targets = tf.gather(labels, index)
        return tf.cast(batch, tf.float32), targets if labels.ndim == 2 else tf.one_hot(targets, num_classes)

    ds = ds.map(take, num_parallel_calls=tf.data.AUTOTUNE)
    if augment is not None:
        # A fresh seed pair per batch, from a seeded stream that differs each epoch: reproducible and parallel.
        batch_seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip(ds, batch_seeds).map(lambda batch, s: (augment(batch[0], s), batch[1]),
                                                      num_parallel_calls=tf.data.AUTOTUNE)
    if mixup:
        mix = keras.layers.MixUp(alpha=mixup, seed=seed)

        def blend(batch, targets):
            mixed = mix({"images": batch, "labels": targets})
            return mixed["images"], mixed["labels"]

        ds = ds.map(blend, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.with_options(shard_by_data()).prefetch(tf.data.AUTOTUNE)
