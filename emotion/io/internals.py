"""The libraries' private internals this program relies on, all in this one module: where no public API does the
job, the private one is used here and nowhere else, and tests/test_internals.py fails first when a library update
moves or changes one of them.

- Keras: building a model from an .h5 file's config without allocating a weight (load_model offers no way to look
  at a model file before its weights are read): keras.src's legacy saving and its record of uninitialised variables.
- Keras: the counters of EarlyStopping and ReduceLROnPlateau (`wait`, `best`, `best_epoch`, `cooldown_counter`:
  attributes their docs do not list), carried over by --resume (BackupAndRestore keeps only weights, optimizer, epoch).
- mtcnn 1.0: its three networks (`stage._model`), run by OpenCV's DNN module (or as tf.functions) instead of
  op by op; its last, ONet, also called on other detectors' boxes (its outputs' order and layout).
- argparse: HelpFormatter._get_help_string, the documented way to change which defaults --help shows (the
  formatter classes' only API is their names, per the argparse docs).
- waitress: its connection class (waitress.channel.HTTPChannel: received, readable, request, requests,
  will_close) and each listener's channel_class, for request deadlines (waitress has a timeout per silence only)."""

import argparse
import time

from emotion.io.lazy_import import LazyModule

keras = LazyModule("keras")
tf = LazyModule("tensorflow")

CALLBACK_COUNTERS = ("wait", "best", "best_epoch", "cooldown_counter")  # EarlyStopping's, ReduceLROnPlateau's


def model_from_h5_config(config):
    """The model an .h5 file's model_config describes, built as load_model builds it but with no weight allocated
    (variables left uninitialised, and forgotten afterwards: this model is only looked at), in safe mode: no code stored
    in the file is run."""
    from keras.src.backend.common import global_state  # where Keras keeps variables it has not initialised
    from keras.src.legacy.saving import saving_options, saving_utils  # what load_model does with an .h5 file
    from keras.src.saving import serialization_lib
    pending = global_state.get_global_attribute("uninitialized_variables", [], set_to_default=True)
    known = len(pending)
    try:
        with keras.StatelessScope(initialize_variables=False), saving_options.keras_option_scope(
                use_legacy_config=True), serialization_lib.SafeModeScope(True):  # as load_model(safe_mode=True)
            return saving_utils.model_from_config(config)
    finally:
        del pending[known:]  # never initialised later, by another scope


def callback_counters(callback):
    """{name: value} of the CALLBACK_COUNTERS an EarlyStopping or ReduceLROnPlateau has (each has its own few)."""
    return {name: getattr(callback, name) for name in CALLBACK_COUNTERS if hasattr(callback, name)}


def set_callback_counters(callback, counters):
    """Set back what callback_counters returned; call it after the callback's on_train_begin, which resets them."""
    for name, value in counters.items():
        setattr(callback, name, value)


MTCNN_INPUTS = {"PNet": ((None, None, 3), 2), "RNet": ((24, 24, 3), 2), "ONet": ((48, 48, 3), 3)}  # each network's
# input shape and number of outputs (heads: its last layers, each given the layer before them)


def compile_mtcnn(mtcnn):
    """mtcnn 1.0 runs its three networks in TensorFlow, op by op. On a CPU, OpenCV's DNN module runs them (the same
    layers and weights, checked against Keras on a random batch): the same boxes for a third of the CPU
    (docs/detection.md); mtcnn's own steps around them (the pyramid, the crops, non-maximum suppression) are left as
    they are and read the outputs as tensors. With a GPU, or where OpenCV cannot (no onnx, a network it does not
    know), they run as tf.functions (traced once per input shape, then generalised)."""
    for stage in mtcnn.stages:
        stage._model = opencv_network(stage._model) or tf.function(stage._model, reduce_retracing=True)
    return mtcnn


def mtcnn_onet(mtcnn):
    """mtcnn's last network, ONet, as compile_mtcnn left it: 48x48 RGB patches scaled as mtcnn scales pixels ->
    [box offsets, 5 landmarks (x1..x5, y1..y5, 0-1 in the patch), scores (not a face, a face)]."""
    return mtcnn.get_stage(stage_id=3)._model


def opencv_network(model):
    """One of mtcnn's networks as OpenCV runs it, returning tensors as the Keras model does (None: see checked_net)."""
    from emotion.io.opencv_nets import checked_net
    net = checked_net(model, *MTCNN_INPUTS[type(model).__name__], -1, 1)
    return net and (lambda images: [tf.convert_to_tensor(out) for out in net(images)])


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """--help with each option's default, but none for flags and for options whose default is "not given"."""

    def _get_help_string(self, action):
        if action.default is None or (action.nargs == 0 and not isinstance(action, argparse.BooleanOptionalAction)):
            return action.help
        return super()._get_help_string(action)


def add_request_deadlines(listeners, header_deadline, request_deadline):
    """Make waitress' listeners (the socket map create_server was given) close a connection whose request's headers
    are not all in `header_deadline` seconds after its first byte, or the whole request (headers and body) in
    `request_deadline`. waitress' channel_timeout restarts with every byte, so without this a client trickling a
    header line every few seconds (slowloris) keeps its connection for ever, and a thousand such clients fill the
    connection limit. create_server takes no channel class; each listener accepts with its own."""
    from waitress.channel import HTTPChannel
    from waitress.server import BaseWSGIServer

    class DeadlineChannel(HTTPChannel):
        request_started = 0.0  # time.monotonic() of the first byte of the request being received

        def received(self, data):
            if self.request is None:
                self.request_started = time.monotonic()
            return super().received(data)

        def readable(self):  # asked by waitress' loop on every turn, at least once a second (asyncore_loop_timeout)
            request = self.request
            if request is not None and not self.requests and not self.will_close:  # arriving, none being answered
                waited = time.monotonic() - self.request_started
                if waited > request_deadline or (waited > header_deadline and not request.headers_finished):
                    self.will_close = True  # waitress closes it as it does an idle one: writable() turns true
            return super().readable()

    for listener in listeners.values():
        if isinstance(listener, BaseWSGIServer):
            listener.channel_class = DeadlineChannel
