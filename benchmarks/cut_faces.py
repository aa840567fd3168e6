"""Faces cut by the frame: portraits cropped so a fraction of the face lies outside the picture, and how often the
detector still finds the face (issue 37).

    python benchmarks/cut_faces.py                                   # webfaces-dev, 60 portraits, 4 sides
    python benchmarks/cut_faces.py FOLDER --portraits 100 --detector mtcnn
    python benchmarks/cut_faces.py --corners                         # cut at the four corners instead

Portraits are photos of the folder (at least 250 px) in which mtcnn, on the full-size photo, finds exactly one face
(benchmarks/detectors.py's load_portraits). Each is cut four ways: the left, right, top or bottom `fraction` of that
face's box is outside the picture. The face is found when a box's centre lies in the part of its box still inside;
every other box is false. With --corners each is cut four ways at a corner instead: the same share of the box's
area outside, two sides cut alike (40 %: 22.5 % of its width and of its height). Photos are read and cut at run
time, none committed.
"""
import argparse
import math
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np  # noqa: E402

import emotion.core.detection as F  # noqa: E402
from detectors import load_portraits  # noqa: E402

FRACTIONS = (0.25, 0.3, 0.35, 0.4)  # fractions of the face's box outside the picture
SIDES = ("left", "right", "top", "bottom")  # the side of the face cut off
CORNERS = ("top left", "top right", "bottom left", "bottom right")  # --corners: the corner cut off


def cut(image, box, fraction, side):
    """(the cut picture, the part of the face's box still inside it, in its pixels). `side`: one of SIDES, or of
    CORNERS (`fraction` of the box's area outside, as much of its width as of its height)."""
    if side in CORNERS:
        along = 1 - math.sqrt(1 - fraction)  # (1 - along)**2 of the box is left inside
        vertical, horizontal = side.split()
        picture, (x, y, w, h) = cut(image, box, along, vertical)
        picture, (vx, vy, vw, vh) = cut(picture, (x, y, w, h), along, horizontal)
        return picture, [vx, vy, vw, vh]
    x, y, w, h = box
    if side == "left":
        x0 = int(x + fraction * w)
        return image[:, x0:], [0, y, x + w - x0, h]
    if side == "right":
        x1 = int(x + (1 - fraction) * w)
        return image[:, :x1], [x, y, x1 - x, h]
    if side == "top":
        y0 = int(y + fraction * h)
        return image[y0:], [x, 0, w, y + h - y0]
    y1 = int(y + (1 - fraction) * h)
    return image[:y1], [x, y, w, y1 - y]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", default=os.path.join("..", "shared", "datasets", "webfaces-dev"))
    parser.add_argument("--portraits", type=int, default=60, help="portraits taken from the folder")
    parser.add_argument("--detector", default=F.DETECTOR, choices=F.DETECTORS)
    parser.add_argument("--fractions", type=float, nargs="+", default=FRACTIONS, metavar="F",
                        help="fractions of the face's box outside the picture")
    parser.add_argument("--corners", action="store_true", help="cut at the corners, not the sides")
    args = parser.parse_args()
    if not all(0 < f < 1 for f in args.fractions):
        parser.error("--fractions are shares of the face's box, above 0 and below 1")
    sides = CORNERS if args.corners else SIDES
    portraits = load_portraits(args.folder, args.portraits)
    detector = F.load_face_detector(args.detector)
    for fraction in args.fractions:
        found = false = total = 0
        by_side = dict.fromkeys(sides, 0)
        for image, box, _roll, _points in portraits:
            for side in sides:
                picture, (vx, vy, vw, vh) = cut(image, box, fraction, side)
                boxes = [f["box"] for f in F.detect_faces(detector, np.ascontiguousarray(picture))]
                hits = [b for b in boxes if vx <= b[0] + b[2] / 2 <= vx + vw and vy <= b[1] + b[3] / 2 <= vy + vh]
                found, false, total = found + bool(hits), false + len(boxes) - min(len(hits), 1), total + 1
                by_side[side] += bool(hits)
        counts = ", ".join(f"{side} {count}" for side, count in by_side.items())
        print(f"{args.detector}, {fraction:.0%} of the face outside: {found}/{total} found ({found / total:.0%}; "
              f"{counts} of {len(portraits)}), {false} false boxes", flush=True)


if __name__ == "__main__":
    main()
