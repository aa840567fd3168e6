"""Framing a detected face as the training faces are framed: a square around its box with the detector's margin,
turned so its eyes are level (the crop the model sees, through prepare_image)."""

import math

import cv2

FACE_MARGIN = 0.1  # Haar: crop this fraction of the box size beyond each side of a detected face
MTCNN_FACE_MARGIN = 0.03  # mtcnn: the same, measured so crops frame faces as FER2013 does (its boxes are tighter)
FACE_CROP_MAX_SIDE = 256  # face crops are cut at most this large (the model sees 48 px), bounding memory


def eye_roll(eyes):
    """The angle of the line from the left eye to the right one, in degrees (0: level)."""
    (lx, ly), (rx, ry) = eyes
    return math.degrees(math.atan2(ry - ly, rx - lx))


def crop_face(image, face):
    """The face framed as the training faces are: a square around its box, with the detector's margin,
    rotated so the eyes are level when the detector gives them. At most FACE_CROP_MAX_SIDE pixels."""
    x, y, w, h = face["box"]
    eyes = face.get("eyes")
    side = (w + h) / 2 * (1 + 2 * (FACE_MARGIN if eyes is None else MTCNN_FACE_MARGIN))
    angle = eye_roll(eyes) if eyes else 0.0
    size = max(1, min(FACE_CROP_MAX_SIDE, int(round(side))))
    matrix = cv2.getRotationMatrix2D((x + w / 2, y + h / 2), angle, size / side)
    matrix[:, 2] += (size / 2 - x - w / 2, size / 2 - y - h / 2)  # the box centre becomes the crop's centre
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
