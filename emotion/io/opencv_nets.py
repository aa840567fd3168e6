"""Small Keras networks run by OpenCV's DNN module: the same layers and weights written out as an ONNX graph (with the
onnx package's helpers) and read by cv2.dnn, which runs these small convolutions in a third of TensorFlow's CPU time
(mtcnn's networks and the compact emotion network: docs/detection.md). The layers known are those of mtcnn's three
networks and of this program's compact and original networks (KNOWN); a network with any other raises ValueError."""

import numpy as np

from emotion.io.lazy_import import LazyModule

tf = LazyModule("tensorflow")

OPSET = 13  # the ONNX operator set written (OpenCV 4.8+ reads it)
KNOWN = ("Conv2D", "Dense", "PReLU", "ReLU", "Activation", "BatchNormalization", "MaxPooling2D", "AveragePooling2D",
         "GlobalAveragePooling2D", "Permute", "Flatten", "Rescaling", "Dropout", "SpatialDropout2D", "GaussianNoise")
SKIPPED = ("InputLayer", "Dropout", "SpatialDropout2D", "GaussianNoise")  # nothing to do at inference


class OpenCVNet:
    """Keras `layers` run one after the other, the last `heads` of them each given the output of the layer before
    them all (mtcnn's networks end in 2 or 3 such heads, returned in that order; a plain network has one), called as
    a Keras model is: channels-last float batches in, its outputs (NumPy arrays, channels last) out.
    `input_shape` is the network's (height, width, channels), with None for a size that varies (a fully
    convolutional network). Raises ValueError for a layer it does not know."""

    def __init__(self, layers, input_shape, heads=1):
        import cv2
        graph = onnx_graph([layer for layer in layers if type(layer).__name__ != "InputLayer"], input_shape, heads)
        self.net = cv2.dnn.readNetFromONNX(np.frombuffer(graph.SerializeToString(), np.uint8))
        self.net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        self.outputs = [output.name for output in graph.graph.output]
        self.input_shape = tuple(input_shape)

    def check(self, model, low, high):
        """Raise ValueError unless this net answers a random batch (values from `low` to `high`) as the Keras `model`
        does, within 1e-4: a translation that is wrong, or a network that is not one layer after another."""
        shape = tuple(side or 24 for side in self.input_shape)
        probe = np.random.default_rng(0).uniform(low, high, (2, *shape)).astype(np.float32)
        want = model(probe)
        want = want if isinstance(want, (list, tuple)) else [want]
        got = self(probe)
        if len(got) != len(want) or not all(np.allclose(g, np.asarray(w), atol=1e-4) for g, w in zip(got, want)):
            raise ValueError(f"OpenCV's answers differ from Keras' for {getattr(model, 'name', 'the network')}")
        return self

    def __call__(self, images):
        if len(images) == 0:  # OpenCV refuses an empty batch; Keras answers it with empty outputs
            shape = tuple(side or 12 for side in self.input_shape)  # a size that runs, for the outputs' shapes
            return [out[:0] for out in self(np.zeros((1, *shape), np.float32))]
        self.net.setInput(np.ascontiguousarray(np.transpose(np.asarray(images, np.float32), (0, 3, 1, 2))))
        return [np.transpose(out, (0, 2, 3, 1)) if out.ndim == 4 else out for out in self.net.forward(self.outputs)]


def checked_net(model, input_shape, heads, low, high):
    """An OpenCVNet of the Keras `model` (see OpenCVNet), checked against it on a random batch (values from `low` to
    `high`); None where TensorFlow sees a GPU (Keras runs there), or where OpenCV cannot run it as Keras does (no onnx
    installed, OpenCV without dnn, a layer it does not know, answers that differ)."""
    if tf.config.list_physical_devices("GPU"):
        return None
    try:
        return OpenCVNet(model.layers, input_shape, heads).check(model, low, high)
    except Exception:  # TensorFlow runs it, as before
        return None


def onnx_graph(layers, input_shape, heads):
    """The ONNX model of Keras `layers` (see OpenCVNet), images channels first."""
    from onnx import TensorProto, helper, numpy_helper
    nodes, weights = [], []
    channels_last = [False]  # whether the tensor at hand has been turned to channels last (by a Permute)

    def weight(name, array):
        weights.append(numpy_helper.from_array(np.ascontiguousarray(array, np.float32), name))
        return name

    def add(op, inputs, name, **attributes):
        nodes.append(helper.make_node(op, inputs, [name], name=name, **attributes))
        return name

    def activation(x, kind, name):
        if kind == "relu":
            return add("Relu", [x], name + ".relu")
        if kind == "softmax":
            return add("Softmax", [x], name + ".softmax", axis=1)
        if kind != "linear":
            raise ValueError(f"OpenCVNet: activation {kind!r} is not one it knows")
        return x

    def layer_node(layer, x, name):
        kind, config = type(layer).__name__, layer.get_config()
        if kind not in KNOWN or config.get("data_format", "channels_last") != "channels_last" or (
                channels_last[0] and kind != "Flatten"):
            raise ValueError(f"OpenCVNet: layer {layer.name} ({kind}) is not one it knows")
        if kind in SKIPPED:
            return x
        values = [np.asarray(v) for v in layer.get_weights()]
        if kind == "Conv2D" and config["dilation_rate"] in ((1, 1), 1) and config["groups"] == 1:
            biases = [weight(name + ".b", values[1])] if config["use_bias"] else []
            x = add("Conv", [x, weight(name + ".w", values[0].transpose(3, 2, 0, 1))] + biases, name,
                    kernel_shape=list(values[0].shape[:2]), strides=list(config["strides"]),
                    auto_pad="SAME_UPPER" if config["padding"] == "same" else "VALID")
            return activation(x, config["activation"], name)
        if kind == "Dense":
            x = add("Gemm", [x, weight(name + ".w", values[0]), weight(name + ".b", values[1])] if config["use_bias"]
                    else [x, weight(name + ".w", values[0])], name)
            return activation(x, config["activation"], name)
        if kind == "Activation":
            return activation(x, config["activation"], name)
        if kind == "PReLU" and (values[0].ndim == 1 or values[0].shape[:-1] == (1, 1)):  # one alpha per channel
            alpha = values[0].reshape(-1)
            return add("PRelu", [x, weight(name + ".a", alpha.reshape(-1, 1, 1) if values[0].ndim == 3 else alpha)],
                       name)
        if kind == "ReLU" and config["max_value"] is None and not config["negative_slope"] and not config["threshold"]:
            return add("Relu", [x], name)
        if kind == "BatchNormalization" and config["axis"] in (-1, [-1], 3, [3]):
            size = values[-1].shape[0]
            gamma = values.pop(0) if config["scale"] else np.ones(size)
            beta = values.pop(0) if config["center"] else np.zeros(size)
            return add("BatchNormalization", [x, weight(name + ".g", gamma), weight(name + ".b", beta),
                                              weight(name + ".m", values[0]), weight(name + ".v", values[1])], name,
                       epsilon=config["epsilon"])
        if kind in ("MaxPooling2D", "AveragePooling2D"):  # Keras' "same" pads at the end, as SAME_UPPER
            return add({"MaxPooling2D": "MaxPool", "AveragePooling2D": "AveragePool"}[kind], [x], name,
                       kernel_shape=list(config["pool_size"]), strides=list(config["strides"]),
                       auto_pad="SAME_UPPER" if config["padding"] == "same" else "VALID")
        if kind == "GlobalAveragePooling2D" and not config["keepdims"]:
            return add("Flatten", [add("GlobalAveragePool", [x], name + ".pool")], name, axis=1)
        if kind == "Permute" and tuple(config["dims"]) == (2, 1, 3):  # height and width swapped, channels last:
            channels_last[0] = True
            return add("Transpose", [x], name, perm=[0, 3, 2, 1])  # from channels first to (width, height, channels)
        if kind == "Flatten":  # Keras flattens channels last
            if not channels_last[0]:
                x = add("Transpose", [x], name + ".last", perm=[0, 2, 3, 1])
            channels_last[0] = False  # flat now
            return add("Flatten", [x], name, axis=1)
        if kind == "Rescaling" and np.ndim(config["scale"]) == 0 and np.ndim(config["offset"]) == 0:
            x = add("Mul", [x, weight(name + ".s", np.array([config["scale"]]))], name + ".scale")
            return add("Add", [x, weight(name + ".o", np.array([config["offset"]]))], name)
        raise ValueError(f"OpenCVNet: layer {layer.name} ({kind}) with {config} is not one it knows")

    trunk = len(layers) - heads
    x = "input"
    for i, layer in enumerate(layers[:trunk]):
        x = layer_node(layer, x, f"trunk{i}")
    outputs = [layer_node(layer, x, f"out{i}") for i, layer in enumerate(layers[trunk:])]
    height, width, channels = input_shape
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, channels, height, width])]
    outputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [None, layer.get_config()["units"]]
                                             if type(layer).__name__ == "Dense" else [None] * 4)
               for name, layer in zip(outputs, layers[trunk:])]
    return helper.make_model(helper.make_graph(nodes, "keras", inputs, outputs, weights),
                             opset_imports=[helper.make_opsetid("", OPSET)])
