"""mtcnn's last network (ONet) shown boxes other than its own (HOG's, BlazeFace's, a turned look's, a small face's
on a larger copy): its box, eyes and face score for each (emotion/core/detection.py)."""

import cv2
import numpy as np

from emotion.io.internals import mtcnn_onet


def onet_answers(mtcnn, image, boxes, mirror=False):
    """mtcnn's last network (ONet) on other detectors' boxes, each given as a square crop of its centre (as mtcnn's
    own RNet boxes are, but a box past the photo's edge repeats its edge pixels, or with `mirror` has the photo
    mirrored into it, where mtcnn's crop has grey): [(box, [left eye, right eye], ONet's face score), box and eyes
    as mtcnn gives them, in `image`'s pixels, or None where the box lies wholly outside the photo]."""
    patches, squares = [], []
    for x, y, w, h in boxes:
        side = max(w, h, 1)
        x0, y0 = int(round(x + w / 2 - side / 2)), int(round(y + h / 2 - side / 2))
        side = int(round(side))
        crop = image[max(0, y0):max(0, y0 + side), max(0, x0):max(0, x0 + side)]
        if crop.size == 0:  # a box wholly outside the photo (OpenCV would loop forever mirroring nothing)
            squares.append(None)
            continue
        crop = cv2.copyMakeBorder(crop, max(0, -y0), max(0, y0 + side - image.shape[0]), max(0, -x0),
                                  max(0, x0 + side - image.shape[1]),
                                  cv2.BORDER_REFLECT_101 if mirror else cv2.BORDER_REPLICATE)
        patches.append(cv2.resize(crop, (48, 48), interpolation=cv2.INTER_AREA if side > 48 else cv2.INTER_LINEAR))
        squares.append((x0, y0, side))
    if not patches:
        return [None] * len(boxes)
    answers = iter(zip(*(np.asarray(out) for out in mtcnn_onet(mtcnn)(
        (np.stack(patches).astype(np.float32) - 127.5) / 128))))  # mtcnn's own scaling of pixels
    faces = []
    for square in squares:
        if square is None:
            faces.append(None)
            continue
        (x0, y0, side), (offset, points, score) = square, next(answers)
        # mtcnn's own conventions (adjust_bboxes, adjust_landmarks): a box's last pixel is x0 + side - 1
        x1, y1, x2, y2 = (float(v + d * side) for v, d in zip((x0, y0, x0 + side - 1, y0 + side - 1), offset))
        eyes = [[float(x0 - 1 + points[i] * side), float(y0 - 1 + points[5 + i] * side)] for i in (0, 1)]
        faces.append(([x1, y1, x2 - x1, y2 - y1], eyes, float(score[1])))
    return faces
