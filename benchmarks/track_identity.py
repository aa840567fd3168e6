"""How well a face crop's small appearance signature tells one person from another, and a frame's tells a scene cut
from ordinary frame-to-frame change: the measurements behind SAME_FACE_FROM (face_similarity, the box allowed to
move FACE_SHIFT) and SCENE_CUT_BELOW in emotion/core/frames.py; the plain correlation (similarity, and the cut-off
0.5 it was used with before) beside it.

    python benchmarks/track_identity.py ../shared/datasets/webfaces7-dev

Faces: every photo of the folder (names PERSON_NNNN.jpg) through mtcnn and crop_face; pairs of photos of the same
person (other photos: other light, pose and expression, a harder case than two frames a tenth of a second apart)
against pairs of different people; and each crop against itself moved, scaled and relit, as a detector's box
moves between two detections of one face (10 % down and 7 % larger: a two-person clip, docs/detection.md).
Frames: consecutive frames of skimage's photos drifting, zooming and brightening against hard cuts between two of
them.
"""

import itertools
import os
import sys

import cv2
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from emotion.core.crops import crop_face  # noqa: E402
from emotion.core.detection import detect_faces, load_face_detector  # noqa: E402
from emotion.io.images import read_image  # noqa: E402
from emotion.core.frames import (SAME_FACE_FROM, face_signature, face_similarity, frame_signature,  # noqa: E402
                                 similarity)


def face_crops(folder, limit=400):
    detector = load_face_detector("mtcnn")
    crops = {}
    for root, _, names in os.walk(folder):
        for name in sorted(names)[:limit]:
            image = read_image(os.path.join(root, name))
            faces = detect_faces(detector, image) if image is not None else []
            if faces:
                face = max(faces, key=lambda f: f["box"][2] * f["box"][3])
                crops[name] = (image, face)
    return crops


def relit(image, face, dx, scale, gain, dy=0.0):
    x, y, w, h = face["box"]
    moved = {"box": [int(x + dx * w), int(y + dy * h), int(w * scale), int(h * scale)],
             "eyes": None if face["eyes"] is None else [[ex + dx * w, ey + dy * h] for ex, ey in face["eyes"]]}
    return crop_face(np.clip(image.astype(np.float32) * gain, 0, 255).astype(np.uint8), moved)


MOVES = {"moved 2 %": (0.02, 1.0, 1.0, 0.0), "scaled 4 %": (0.0, 1.04, 1.0, 0.0),
         "moved 5 %, scaled 10 %, relit 20 %": (0.05, 1.1, 0.8, 0.0),
         "moved 10 % down, scaled 7 %": (0.0, 1.07, 1.0, 0.1), "moved 10 % up, scaled 93 %": (0.0, 0.93, 1.0, -0.1)}


def quantiles(values):
    return " ".join(f"{q:.0%}:{np.quantile(values, q):.3f}" for q in (0.0, 0.01, 0.05, 0.5, 0.95, 0.99, 1.0))


def main(folder):
    crops = face_crops(folder)
    signatures = {name: face_signature(crop_face(image, face)) for name, (image, face) in crops.items()}
    person = {name: name.rsplit("_", 1)[0] for name in crops}
    measures = (("similarity, below 0.5", similarity, 0.5), (f"face_similarity, below {SAME_FACE_FROM}",
                                                             face_similarity, SAME_FACE_FROM))
    pairs = list(itertools.combinations(sorted(signatures), 2))
    print(f"{len(crops)} faces of {len(set(person.values()))} people")
    for label, measure, cut_off in measures:
        same, other = [], []
        for a, b in pairs:
            (same if person[a] == person[b] else other).append(measure(signatures[a], signatures[b]))
        print(f"{label}: different people ({len(other)} pairs) kept apart {np.mean(np.array(other) < cut_off):.1%}: "
              f"{quantiles(other)}")
        print(f"  same person, another photo ({len(same)} pairs): {quantiles(same)}")
        for move, (dx, scale, gain, dy) in MOVES.items():
            moved = [measure(signatures[name], face_signature(relit(image, face, dx, scale, gain, dy)))
                     for name, (image, face) in crops.items()]
            print(f"  one face {move} ({len(moved)}): split {np.mean(np.array(moved) < cut_off):.1%}; "
                  f"{quantiles(moved)}")
    from skimage import data
    photos = [np.asarray(getattr(data, n)()) for n in ("astronaut", "camera", "coffee", "chelsea", "rocket")]
    photos = [cv2.resize(np.stack([p] * 3, -1) if p.ndim == 2 else p[..., :3], (640, 480)) for p in photos]
    steps = []
    for photo in photos:
        previous = frame_signature(photo)
        for i in range(1, 30):  # drifting 2 px, zooming 0.5 % and brightening 1 % a frame
            matrix = cv2.getRotationMatrix2D((320, 240), 0, 1 + 0.005 * i)
            matrix[0, 2] += 2 * i
            frame = np.clip(cv2.warpAffine(photo, matrix, (640, 480)) * (1 + 0.01 * i), 0, 255).astype(np.uint8)
            current = frame_signature(frame)
            steps.append(similarity(previous, current))
            previous = current
    cuts = [similarity(frame_signature(a), frame_signature(b)) for a, b in itertools.permutations(photos, 2)]
    print(f"consecutive frames ({len(steps)}): {quantiles(steps)}")
    print(f"hard cuts ({len(cuts)}): {quantiles(cuts)}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join("..", "shared", "datasets", "webfaces7-dev"))
