"""Feature caching for --cache-features: with a frozen base, its output for an image never changes, so it is
computed once per image (and augmented view) and only the head is trained on the stored features."""

import math

import numpy as np

from emotion.core.answers import INFERENCE_BATCH_SIZE
from emotion.io.files import open_cache
from emotion.io.lazy_import import LazyModule
from emotion.train.data import MAX_IN_MEMORY_MB, make_dataset
from emotion.train.distributed import shard_by_data

tf = LazyModule("tensorflow")
keras = LazyModule("keras")

FEATURE_VIEWS = 2  # with augmentation: each training image stored plain + 1 augmented view


def split_frozen_base(model, base_name="vgg16"):
    """(features, head) of a transfer model: the input-to-frozen-base part and the trainable layers after it.

    Both share the full model's layers, so training `head` trains `model`; saving `model` saves both.
    """
    names = [layer.name for layer in model.layers]
    first_head_layer = model.layers[names.index(base_name) + 1]
    features = keras.Model(model.inputs, first_head_layer.input, name="features")
    x = inputs = keras.Input(first_head_layer.input.shape[1:])
    for layer in model.layers[names.index(base_name) + 1:]:  # the head is a plain chain of layers
        x = layer(x)
    return features, keras.Model(inputs, x, name="head")


def extract_features(features, images, labels, num_classes, batch_size, augment=None, views=1, cache_dir=None,
                     seed=None):
    """Frozen-base outputs (float16) for every image: view 0 plain, views 1.. augmented. Shape (views, N, ...)."""
    views = views if augment is not None else 1
    shape = (views, len(images), *features.output_shape[1:])
    if math.prod(shape) * 2 > MAX_IN_MEMORY_MB * 2**20 and cache_dir:
        stored = open_cache(cache_dir, "features", np.float16, shape)
    else:
        stored = np.empty(shape, dtype=np.float16)
    for view in range(views):
        print(f"Computing frozen-base features, view {view + 1} of {views} ({'augmented' if view else 'plain'})")
        ds = make_dataset(images, labels, num_classes, batch_size, augment=augment if view else None, seed=seed)
        start = 0
        for batch, _ in ds:
            out = features.predict_on_batch(batch)
            stored[view, start:start + len(out)] = out
            start += len(out)
    return stored


def make_feature_dataset(stored, labels, num_classes, batch_size, shuffle=False, seed=None):
    """Batches of (features, targets): one-hot of integer labels, or rows of vote shares as they are. Shuffled:
    endless, drawing image-views from the whole pool."""
    views, count = stored.shape[:2]
    ds = tf.data.Dataset.range(views * count)
    if shuffle:
        ds = ds.shuffle(views * count, seed=seed, reshuffle_each_iteration=True).repeat()
    ds = ds.batch(batch_size)
    feature_shape = stored.shape[2:]

    def take(index):
        batch = tf.numpy_function(lambda i: stored[i // count, i % count].astype(np.float32), [index], tf.float32)
        targets = tf.gather(labels, index % count)
        return (tf.ensure_shape(batch, (None, *feature_shape)),
                targets if labels.ndim == 2 else tf.one_hot(targets, num_classes))

    return ds.map(take, num_parallel_calls=tf.data.AUTOTUNE).with_options(shard_by_data()).prefetch(tf.data.AUTOTUNE)


def make_feature_data(model, strategy, splits, targets, num_classes, augment, *, cache_dir, batch_size, seed):
    """--cache-features: (head, train, val) where the data are the frozen base's outputs, computed once (the
    augmented training views kept in `cache_dir`); `targets`: {split: labels or vote shares}."""
    with strategy.scope():
        features, head = split_frozen_base(model)
        head.compile(optimizer=model.optimizer, loss=model.loss, metrics=["accuracy"])
    stored = extract_features(features, *splits["train"][:2], num_classes, INFERENCE_BATCH_SIZE, augment, FEATURE_VIEWS,
                              cache_dir, seed)
    train_ds = make_feature_dataset(stored, targets["train"], num_classes, batch_size, shuffle=True, seed=seed)
    val_ds = make_feature_dataset(extract_features(features, *splits["val"][:2], num_classes, INFERENCE_BATCH_SIZE),
                                  targets["val"], num_classes, batch_size)
    return head, train_ds, val_ds
