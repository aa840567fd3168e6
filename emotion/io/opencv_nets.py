"""Small Keras networks run by OpenCV's DNN module: the same layers and weights written out as an ONNX graph (with the
onnx package's helpers) and read by cv2.dnn, which runs these small convolutions about three times faster than
TensorFlow on a CPU (mtcnn's networks: docs/detection.md). Only the layers mtcnn's three networks use are known:
Conv2D, PReLU, MaxPooling2D, Permute, Flatten and Dense, with linear or softmax activations."""

import numpy as np

OPSET = 13  # the ONNX operator set written (OpenCV 4.8+ reads it)


class OpenCVNet:
    """A Keras network of one trunk and a few heads (the layers after its last PReLU, each given the trunk's output, in
    the order the network returns them), called as the Keras model is: channels-last float batches in, its outputs
    (NumPy arrays, channels last) out. `input_shape` is the network's (height, width, channels), with None for a
    size that varies (a fully convolutional network)."""

    def __init__(self, model, input_shape):
        import cv2
        graph = onnx_graph(model.layers, input_shape)
        self.net = cv2.dnn.readNetFromONNX(np.frombuffer(graph.SerializeToString(), np.uint8))
        self.net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        self.outputs = [output.name for output in graph.graph.output]
        self.input_shape = tuple(side or 12 for side in input_shape)  # a size that runs, for an empty batch's shapes

    def __call__(self, images):
        if len(images) == 0:  # OpenCV refuses an empty batch; Keras answers it with empty outputs
            return [out[:0] for out in self(np.zeros((1, *self.input_shape), np.float32))]
        self.net.setInput(np.ascontiguousarray(np.transpose(np.asarray(images, np.float32), (0, 3, 1, 2))))
        return [np.transpose(out, (0, 2, 3, 1)) if out.ndim == 4 else out for out in self.net.forward(self.outputs)]


def onnx_graph(layers, input_shape):
    """The ONNX model of Keras `layers` (a trunk, then heads that each read the trunk's output), channels first."""
    from onnx import TensorProto, helper, numpy_helper
    nodes, weights = [], []

    def weight(name, array):
        weights.append(numpy_helper.from_array(np.ascontiguousarray(array, np.float32), name))
        return name

    def add(op, inputs, name, **attributes):
        nodes.append(helper.make_node(op, inputs, [name], name=name, **attributes))
        return name

    def layer_node(layer, x, name):
        kind, config = type(layer).__name__, layer.get_config()
        values = [np.asarray(v) for v in layer.get_weights()]
        if kind == "Conv2D" and config["padding"] == "valid" and config["dilation_rate"] in ((1, 1), 1):
            x = add("Conv", [x, weight(name + ".w", values[0].transpose(3, 2, 0, 1)), weight(name + ".b", values[1])],
                    name + ".conv", strides=list(config["strides"]))
        elif kind == "Dense":
            x = add("Gemm", [x, weight(name + ".w", values[0]), weight(name + ".b", values[1])], name + ".dense")
        elif kind == "PReLU":  # alphas shared over height and width: one per channel, channels first here
            alpha = values[0].reshape(-1)
            x = add("PRelu", [x, weight(name + ".a", alpha.reshape(-1, 1, 1) if values[0].ndim == 3 else alpha)], name)
        elif kind == "MaxPooling2D":  # Keras' "same" pads at the end, as SAME_UPPER
            x = add("MaxPool", [x], name, kernel_shape=list(config["pool_size"]), strides=list(config["strides"]),
                    auto_pad="SAME_UPPER" if config["padding"] == "same" else "VALID")
        elif kind == "Permute" and tuple(config["dims"]) == (2, 1, 3):  # height and width swapped, channels last:
            x = add("Transpose", [x], name, perm=[0, 3, 2, 1])  # from channels first to (width, height, channels)
        elif kind == "Flatten":
            x = add("Flatten", [x], name, axis=1)
        else:
            raise ValueError(f"OpenCVNet: layer {layer.name} ({kind}, {config}) is not one it knows")
        activation = config.get("activation", "linear")
        if activation == "softmax":
            return add("Softmax", [x], name, axis=1)
        if activation != "linear":
            raise ValueError(f"OpenCVNet: activation {activation} of layer {layer.name} is not one it knows")
        return x

    last_prelu = max(i for i, layer in enumerate(layers) if type(layer).__name__ == "PReLU")
    x = "input"
    for i, layer in enumerate(layers[:last_prelu + 1]):
        x = layer_node(layer, x, f"trunk{i}")
    heads = [layer_node(layer, x, f"out{i}") for i, layer in enumerate(layers[last_prelu + 1:])]
    height, width, channels = input_shape
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, channels, height, width])]
    outputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [None, layer.get_config()["units"]]
                                             if type(layer).__name__ == "Dense" else [None] * 4)
               for name, layer in zip(heads, layers[last_prelu + 1:])]
    return helper.make_model(helper.make_graph(nodes, "keras", inputs, outputs, weights),
                             opset_imports=[helper.make_opsetid("", OPSET)])
