"""The architectures beyond the original's two (which emotion_recognition.py builds itself): the compact net for
48 px faces and Keras applications under a new classifier, plus the pieces every model shares: the ImageNet base
loader and VGG16's own input conversion as a layer. Preprocessing lives inside each model."""

import functools
import os

from emotion.io.errors import UserError
from emotion.io.lazy_import import LazyModule

keras = LazyModule("keras")

BASES = {"vgg16": "VGG16", "resnet": "ResNet50V2", "mobilenet": "MobileNetV2", "efficientnet": "EfficientNetB0"}


@functools.cache
def vgg16_preprocess_class():
    """The layer class VGG16Preprocess, defined and registered (for loading saved models) on first use."""

    @keras.saving.register_keras_serializable(package="emotion_recognition")
    class VGG16Preprocess(keras.layers.Layer):
        """VGG16's own input conversion (RGB 0-255 -> BGR minus the ImageNet mean), kept inside the model."""

        def call(self, inputs):
            return keras.applications.vgg16.preprocess_input(inputs)

    return VGG16Preprocess


def min_image_size(model_name):
    """Smallest input side each architecture accepts (four valid 3x3 conv + pool blocks; VGG16's own limit)."""
    return {"cnn": 46, "compact": 16}.get(model_name, 32)  # Keras applications: 32


def conv_bn_relu(x, filters):
    x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
    x = keras.layers.BatchNormalization()(x)
    return keras.layers.ReLU()(x)


def build_compact(input_shape, num_classes):
    """A VGG-style net sized for 48x48 faces on CPU: 9 conv layers, about 1.2 M parameters, 85 MFLOP per face."""
    inputs = keras.Input(input_shape)
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = conv_bn_relu(x, 32)
    for filters in (32, 64, 128, 256):
        x = keras.layers.MaxPooling2D(2)(x)
        x = conv_bn_relu(x, filters)
        x = conv_bn_relu(x, filters)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.4)(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", dtype="float32")(x)  # float32 under mixed precision
    return keras.Model(inputs, outputs, name="compact")


def load_base(name, input_shape, weights):
    """An ImageNet architecture without its top (BASES[name]). weights: "imagenet" (downloaded by Keras, or
    found in its cache), "none" (untrained), or a local notop .h5 file."""
    if weights not in ("imagenet", "none") and not os.path.isfile(weights):
        raise UserError(f"{name} weights file {weights!r} not found; pass --base-weights imagenet, none, or the "
                        "path of the architecture's notop .h5 weights file")
    try:
        return getattr(keras.applications, BASES[name])(include_top=False, input_shape=input_shape,
                                                        weights=None if weights == "none" else weights)
    except (OSError, ValueError) as error:
        raise UserError(f"could not load {name} weights from {weights!r}: {error}") from None
    except Exception as error:  # Keras' download raises a bare Exception("URL fetch failure ...")
        raise UserError(f"could not download the ImageNet {name} weights ({error}); download the notop .h5 file "
                        "elsewhere and pass --base-weights PATH, or put it in ~/.keras/models/") from None


def build_application(name, input_shape, num_classes, weights):
    """A Keras application (BASES[name]) under a new classifier, all of it trained: from scratch
    (weights "none") or fine-tuned from ImageNet weights. Grey faces are given as three equal channels."""
    inputs = keras.Input(input_shape)
    x = keras.layers.Concatenate()([inputs] * 3) if input_shape[-1] == 1 else inputs
    if name != "efficientnet":  # ResNetV2 and MobileNetV2 take pixels in [-1, 1]; EfficientNet rescales itself
        x = keras.layers.Rescaling(1 / 127.5, offset=-1)(x)
    x = load_base(name, (input_shape[0], input_shape[1], 3), weights)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.3)(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", dtype="float32")(x)  # float32 under mixed precision
    return keras.Model(inputs, outputs, name=name)
