"""Transfer learning beyond the original's VGG16: Keras applications under a new classifier (--model resnet,
mobilenet, efficientnet) and fine-tuning from a trained model's weights (--initial-model)."""

from emotion.files import UserError
from emotion_recognition import BASE_WEIGHTS, keras, load_base, load_trained_model


def build_application(name, input_shape, num_classes, weights=BASE_WEIGHTS):
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
