"""Distributed training: the tf.distribute strategy for --distribute, which worker keeps the results, and
model.fit's replacement for MultiWorkerMirroredStrategy."""

import atexit
import functools
import os
import shutil
import tempfile

import numpy as np

from emotion.io.errors import UserError
from emotion.io.lazy_import import LazyModule

tf = LazyModule("tensorflow")
keras = LazyModule("keras")


def fit_method(model):
    """model.fit, or where Keras 3's own fit fails (MultiWorkerMirroredStrategy: keras-team/keras#20585)
    fit_multiworker, called as model.fit is."""
    if isinstance(model.distribute_strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return functools.partial(fit_multiworker, model)
    return model.fit


def fit_multiworker(model, train_ds, validation_data, epochs, callbacks, class_weight=None, steps_per_epoch=None,
                    verbose=1, shuffle=False):
    """model.fit for MultiWorkerMirroredStrategy, under which Keras 3's own fit fails (keras-team/keras#20585), with
    fit's arguments: tf.data sets, which shuffle themselves (`shuffle` is ignored, as fit ignores it for them), each
    epoch a whole pass (`steps_per_epoch` None).

    TensorFlow's custom-loop recipe: each worker runs every step through strategy.run on its share of the
    batch, the loss is averaged over the global batch and the optimizer all-reduces the gradients. Loss and
    accuracy are summed over all workers, so every worker's callbacks see the same logs and decide alike.
    """
    if steps_per_epoch is not None:
        raise ValueError("fit_multiworker runs whole passes over train_ds: steps_per_epoch must be None")
    strategy = model.distribute_strategy
    per_example_loss = type(model.loss).from_config({**model.loss.get_config(), "reduction": None})
    class_weights = tf.constant([class_weight[i] for i in sorted(class_weight)]) if class_weight else None

    def replica_sums(images, labels, training):
        probabilities = model(images, training=training)
        losses = per_example_loss(labels, probabilities)
        if class_weights is not None and training:  # as in fit: validation losses are not weighted
            losses *= tf.gather(class_weights, tf.argmax(labels, axis=1))
        correct = tf.cast(tf.argmax(probabilities, axis=1) == tf.argmax(labels, axis=1), tf.float32)
        return losses, tf.stack([tf.reduce_sum(losses), tf.reduce_sum(correct), tf.cast(tf.size(correct), tf.float32)])

    def train_replica(images, labels):
        with tf.GradientTape() as tape:
            losses, sums = replica_sums(images, labels, training=True)
            loss = tf.nn.compute_average_loss(losses)
            if model.losses:  # the L2 penalties of the dense layers
                loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
        variables = model.trainable_variables
        gradients = tape.gradient(model.optimizer.scale_loss(loss), variables)
        model.optimizer.apply_gradients(zip(gradients, variables))
        return sums

    @tf.function
    def train_step(images, labels):
        return strategy.reduce("SUM", strategy.run(train_replica, args=(images, labels)), axis=None)

    @tf.function
    def val_step(images, labels):
        return strategy.reduce("SUM", strategy.run(lambda x, y: replica_sums(x, y, False)[1], args=(images, labels)),
                               axis=None)

    def mean_logs(sums, prefix=""):
        penalty = float(sum(model.losses)) if model.losses else 0.0  # as fit logs it: loss + L2 penalties
        return {f"{prefix}loss": sums[0] / sums[2] + penalty, f"{prefix}accuracy": sums[1] / sums[2]}

    train_batches = strategy.experimental_distribute_dataset(train_ds)
    val_batches = strategy.experimental_distribute_dataset(validation_data)
    callbacks = keras.callbacks.CallbackList(callbacks, add_history=True, add_progbar=True, model=model,
                                             verbose=verbose, epochs=epochs, steps=int(train_ds.cardinality()))
    model.stop_training = False
    callbacks.on_train_begin()
    for epoch in range(epochs):
        callbacks.on_epoch_begin(epoch)
        sums = np.zeros(3)
        for step, (images, labels) in enumerate(train_batches):
            callbacks.on_train_batch_begin(step)
            sums += train_step(images, labels).numpy()
            callbacks.on_train_batch_end(step, mean_logs(sums))
        val_sums = sum(val_step(images, labels).numpy() for images, labels in val_batches)
        logs = {**mean_logs(sums), **mean_logs(val_sums, "val_")}
        callbacks.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    callbacks.on_train_end(logs)
    return model.history


def make_strategy(kind):
    """TensorFlow's MirroredStrategy over every local GPU ("auto" when any is visible), its
    MultiWorkerMirroredStrategy over the machines TF_CONFIG lists, else the default device."""
    if kind == "multiworker":
        if not os.environ.get("TF_CONFIG"):
            raise UserError("--distribute multiworker needs the TF_CONFIG environment variable (the cluster's "
                            "workers and this one's index); see docs/design.md")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if kind == "mirrored" or (kind == "auto" and tf.config.list_physical_devices("GPU")):
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def is_chief(strategy):
    """TensorFlow's convention: the "chief" task, or worker 0 when there is none, writes the results."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or resolver.task_type in (None, "chief"):
        return True
    return (resolver.task_type == "worker" and resolver.task_id == 0
            and "chief" not in resolver.cluster_spec().as_dict())


def send_worker_outputs_to_scratch(args, strategy):
    """Every worker trains; only the chief's model file and results are kept, the others go to a temp folder."""
    scratch = tempfile.mkdtemp(prefix="emotion-worker-")
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)  # nothing of it is wanted afterwards
    args.model_path = os.path.join(scratch, os.path.basename(args.model_path))
    args.output_dir, args.show = scratch, False
    print(f"Worker {strategy.cluster_resolver.task_id}: the chief keeps the results; this worker's go to {scratch}")


def shard_by_data():
    """tf.data options for multi-worker training: each worker keeps its share of every batch."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return options
