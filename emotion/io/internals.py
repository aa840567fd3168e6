"""The libraries' private internals this program relies on, all in this one module: where no public API does the
job, the private one is used here and nowhere else, and tests/test_internals.py fails first when a library update
moves or changes one of them.

- Keras: building a model from an .h5 file's config without allocating a weight (load_model offers no way to look
  at a model file before its weights are read): keras.src's legacy saving and its record of uninitialised variables.
- Keras: the counters of EarlyStopping and ReduceLROnPlateau (`wait`, `best`, `best_epoch`, `cooldown_counter`:
  attributes their docs do not list), carried over by --resume (BackupAndRestore keeps only weights, optimizer, epoch).
- mtcnn 1.0: its three networks (`stage._model`), run by OpenCV's DNN module (or as tf.functions) instead of
  op by op; its last, ONet, also called on other detectors' boxes (its outputs' order and layout); its detect_faces'
  steps for one photo (`mtcnn.stages`' __call__ and `MTCNN.detect_faces`) followed with its own NumPy helpers
  (mtcnn.utils), the two TensorFlow image operations between them done with OpenCV and NumPy (OpenCVMTCNN).
- argparse: HelpFormatter._get_help_string, the documented way to change which defaults --help shows (the
  formatter classes' only API is their names, per the argparse docs).
- waitress: its connection class (waitress.channel.HTTPChannel: received, readable, request, requests,
  will_close) and each listener's channel_class, for request deadlines (waitress has a timeout per silence only)."""

import argparse
import time

import cv2
import numpy as np

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
    (docs/detection.md). With a GPU, or where OpenCV cannot (no onnx, a network it does not know), they run as
    tf.functions (traced once per input shape, then generalised). Returns an OpenCVMTCNN of it: mtcnn's own steps
    around its networks without TensorFlow's image operations."""
    for stage in mtcnn.stages:
        stage._model = opencv_network(stage._model) or tf.function(stage._model, reduce_retracing=True)
    return OpenCVMTCNN(mtcnn)


class NetworkOutput(np.ndarray):
    """A network's output as mtcnn's NumPy helpers read it: they call .numpy() on it, as on a TensorFlow tensor."""

    def numpy(self):
        return np.asarray(self)


class OpenCVMTCNN:
    """mtcnn 1.0's detect_faces on one RGB photo, step for step as its stages take them (the image pyramid, PNet,
    non-maximum suppression per scale and across scales, RNet and ONet on square crops of the boxes before them, the
    boxes fitted to the photo), with mtcnn's own NumPy helpers for the boxes, but its two TensorFlow image operations
    done in OpenCV and NumPy (the pyramid's area resizing, crop_and_resize's bilinear crops: the same pixels within
    1e-4) and no tensor conversions: they were about half of its CPU time outside the networks (docs/detection.md)."""

    def __init__(self, mtcnn):
        self.mtcnn = mtcnn
        self.stages = mtcnn.stages  # PNet, RNet, ONet; each stage's _model as compile_mtcnn left it

    def get_stage(self, stage_id=None, stage_name=None):
        return self.mtcnn.get_stage(stage_id=stage_id, stage_name=stage_name)

    def detect_faces(self, image, min_face_size=20, scale_factor=0.709, threshold_pnet=0.6, nms_pnet1=0.5,
                     nms_pnet2=0.7, threshold_rnet=0.7, nms_rnet=0.7, threshold_onet=0.8, nms_onet=0.7):
        """[{"box": [x, y, w, h], "confidence", "keypoints": {"left_eye": (x, y), ...}}] as mtcnn's detect_faces
        gives them for one RGB image (uint8), with its keyword arguments and defaults."""
        from mtcnn.utils import bboxes as B
        from mtcnn.utils.images import build_scale_pyramid
        from mtcnn.utils.landmarks import adjust_landmarks
        pnet, rnet, onet = (lambda batch, net=stage._model: [np.asarray(out).view(NetworkOutput) for out in net(batch)]
                            for stage in self.stages)
        height, width = image.shape[:2]
        normalized = (np.asarray(image, np.float32) - 127.5) / 128  # mtcnn's own scaling
        found = []
        for scale in build_scale_pyramid(width, height, min_face_size=min_face_size, scale_factor=scale_factor):
            level = cv2.resize(normalized, (int(width * scale), int(height * scale)), interpolation=cv2.INTER_AREA)
            boxes = B.upscale_bboxes(B.generate_bounding_box(*pnet(level[None]), threshold_pnet), np.asarray([scale]))
            found.append(B.smart_nms_from_bboxes(boxes, threshold=nms_pnet1, method="union", initial_sort=False))
        boxes = np.concatenate(found) if found else np.empty((0, 6))
        boxes = B.resize_to_square(B.smart_nms_from_bboxes(boxes, threshold=nms_pnet2, method="union",
                                                           initial_sort=True))
        if len(boxes):
            offsets, scores = rnet(crop_and_resize(normalized, boxes, 24))
            boxes = B.pick_matches(B.adjust_bboxes(B.replace_confidence(boxes, scores), offsets),
                                   score_threshold=threshold_rnet)
            boxes = B.resize_to_square(B.smart_nms_from_bboxes(boxes, threshold=nms_rnet, method="union",
                                                               initial_sort=True))
        if not len(boxes):
            return []
        offsets, landmarks, scores = onet(crop_and_resize(normalized, boxes, 48))
        landmarks = adjust_landmarks(landmarks, boxes)
        boxes = np.concatenate([B.adjust_bboxes(B.replace_confidence(boxes, scores), offsets), landmarks], axis=-1)
        boxes = B.smart_nms_from_bboxes(B.pick_matches(boxes, scores_column=5, score_threshold=threshold_onet),
                                        threshold=nms_onet, method="min", initial_sort=True)
        boxes = B.limit_bboxes(boxes, images_shapes=np.asarray([image.shape]), limit_landmarks=False)
        return B.to_json(boxes, images_count=1, output_as_width_height=True, input_as_width_height=False)[0]


def crop_and_resize(image, boxes, size):
    """tf.image.crop_and_resize as mtcnn's extract_patches calls it, in NumPy: for each box (mtcnn's rows: image,
    x1, y1, x2, y2, ...) a size x size patch of `image` (H x W x C) sampled bilinearly on a grid from its first
    corner to its second, the corners taken as mtcnn gives them (divided by H and W, then spread over H - 1 and
    W - 1 as TensorFlow does); grid rows and columns outside the image are 0."""
    height, width = image.shape[:2]
    steps = np.arange(size) / (size - 1)
    ys = (boxes[:, 2:3] + (boxes[:, 4:5] - boxes[:, 2:3]) * steps) * ((height - 1) / height)  # n x size
    xs = (boxes[:, 1:2] + (boxes[:, 3:4] - boxes[:, 1:2]) * steps) * ((width - 1) / width)
    top, left = np.floor(ys), np.floor(xs)
    dy, dx = (ys - top)[:, :, None, None], (xs - left)[:, None, :, None]
    top, left = np.clip(top, 0, height - 1).astype(int), np.clip(left, 0, width - 1).astype(int)
    bottom, right = np.minimum(top + 1, height - 1), np.minimum(left + 1, width - 1)
    rows_top, rows_bottom, cols_left, cols_right = top[:, :, None], bottom[:, :, None], left[:, None], right[:, None]
    upper = image[rows_top, cols_left] + (image[rows_top, cols_right] - image[rows_top, cols_left]) * dx
    lower = image[rows_bottom, cols_left] + (image[rows_bottom, cols_right] - image[rows_bottom, cols_left]) * dx
    patches = upper + (lower - upper) * dy
    outside = ((ys < 0) | (ys > height - 1))[:, :, None] | ((xs < 0) | (xs > width - 1))[:, None, :]
    patches[outside] = 0
    return patches.astype(np.float32)


def mtcnn_onet(mtcnn):
    """mtcnn's last network, ONet, as compile_mtcnn left it: 48x48 RGB patches scaled as mtcnn scales pixels ->
    [box offsets, 5 landmarks (x1..x5, y1..y5, 0-1 in the patch), scores (not a face, a face)]."""
    return mtcnn.get_stage(stage_id=3)._model


def opencv_network(model):
    """One of mtcnn's networks as OpenCV runs it, its outputs as NumPy arrays (None: see checked_net)."""
    from emotion.io.opencv_nets import checked_net
    return checked_net(model, *MTCNN_INPUTS[type(model).__name__], -1, 1)


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
