"""Numeric precision of training and inference (--precision): float32, or Keras' mixed bfloat16 / float16
policies (float32 weights, lower-precision arithmetic), and what `auto` picks on this machine.

Saved models always hold a float32 network: a model trained in bfloat16 loads and runs anywhere, and
`with_precision` turns a loaded one into a bfloat16 or float16 twin for inference.
"""

import contextlib
import functools
import json
import time

from emotion.io.lazy_import import LazyModule

tf = LazyModule("tensorflow")  # --help and the option checks need PRECISIONS, never TensorFlow
keras = LazyModule("keras")

PRECISION = "auto"  # float32, bfloat16 or float16 (Keras' mixed policies); auto: see choose_precision
PRECISIONS = ("auto", "float32", "bfloat16", "float16")  # --precision's choices
POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
BFLOAT16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of CPUs with bfloat16 arithmetic units
PROBE_SHAPE = (8, 48, 48, 32)  # auto on a bfloat16 CPU: a few steps of a 48 px conv stack, timed both ways


def cpu_flags():
    """The CPU's instruction-set flags (Linux /proc/cpuinfo); empty elsewhere, so auto stays float32."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((set(line.split(":", 1)[1].split()) for line in f if line.startswith("flags")), set())
    except OSError:
        return set()


def conv_seconds(dtype, steps=3):
    """Seconds for `steps` forward+backward passes of three 3x3 convolutions of PROBE_SHAPE in `dtype`."""
    x = tf.random.uniform(PROBE_SHAPE, dtype=dtype)
    kernel = tf.Variable(tf.random.uniform((3, 3, PROBE_SHAPE[-1], PROBE_SHAPE[-1]), dtype=dtype))

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            y = x
            for _ in range(3):
                y = tf.nn.relu(tf.nn.conv2d(y, kernel, 1, "SAME"))
            loss = tf.reduce_sum(tf.cast(y, tf.float32))
        return tape.gradient(loss, kernel)

    step()  # trace and warm up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return time.perf_counter() - start


@functools.cache
def choose_precision(requested, multiworker=False):
    """`requested`, or for "auto": float16 when a GPU is visible, bfloat16 on a CPU with bfloat16 units where it
    measures faster than float32 (elsewhere it can be many times slower), float32 otherwise. Returns
    (precision, why). Under MultiWorkerMirroredStrategy Keras' float16 loss scaling fails (docs/design.md)."""
    if requested != "auto":
        return requested, "as asked"
    if tf.config.list_physical_devices("GPU"):
        return ("float32", "float16 fails across machines") if multiworker else ("float16", "a GPU is visible")
    if not set(BFLOAT16_CPU_FLAGS) & cpu_flags():
        return "float32", "this CPU has no bfloat16 units"
    seconds = {dtype: conv_seconds(dtype) for dtype in (tf.float32, tf.bfloat16)}
    if seconds[tf.bfloat16] < seconds[tf.float32]:
        return "bfloat16", f"bfloat16 convolutions measured {seconds[tf.float32] / seconds[tf.bfloat16]:.1f}x faster"
    return "float32", "bfloat16 measured no faster here"


@contextlib.contextmanager
def global_precision(precision):
    """Keras' global policy set to `precision` for the models built inside the block, and the caller's own
    policy back after it (a training run in a longer process leaves the process's later models as they were)."""
    before = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(POLICIES[precision])
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(before)


def with_precision(model, precision):
    """The same network and weights computing in `precision` (weights stay float32); the output softmax stays
    float32, as Keras' mixed-precision guide advises. Returns `model` itself when nothing changes."""
    policy = POLICIES[precision]
    config = json.loads(model.to_json())
    output_layer = model.layers[-1].name
    changed = []

    def retype(node, wanted):
        if isinstance(node, list):
            for item in node:
                retype(item, wanted)
        elif isinstance(node, dict):
            if node.get("class_name") == "DTypePolicy":
                changed.append(node["config"].get("name") != wanted)
                node["config"]["name"] = wanted
                return
            is_output = isinstance(node.get("config"), dict) and node["config"].get("name") == output_layer
            for key, value in node.items():
                retype(value, "float32" if is_output else wanted)

    retype(config["config"]["layers"], policy)
    if not any(changed):
        return model
    twin = keras.models.model_from_json(json.dumps(config))
    twin.set_weights(model.get_weights())
    return twin


def float32_twin(model):
    """What save_model writes: the network in float32, so the file loads and runs the same anywhere."""
    return with_precision(model, "float32")
