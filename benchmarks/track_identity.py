"""How well a face crop's small appearance signature tells one person from another, and a frame's tells a scene cut
from ordinary frame-to-frame change: the measurements behind SAME_FACE_FROM and SCENE_CUT_BELOW
in emotion/frames.py.

    python benchmarks/track_identity.py ../shared/datasets/webfaces7-dev

Faces: every photo of the folder (names PERSON_NNNN.jpg) through mtcnn and crop_face; pairs of photos of the same
person (other photos: other light, pose and expression, a harder case than two frames a tenth of a second apart)
against pairs of different people; and each crop against itself shifted, scaled and relit. Frames: consecutive
frames of skimage's photos drifting, zooming and brightening against hard cuts between two of them.
"""

import itertools
import os
import sys

import cv2
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from emotion.detection import crop_face, detect_faces, load_face_detector  # noqa: E402
from emotion.images import read_image  # noqa: E402
from emotion.frames import face_signature, frame_signature, similarity  # noqa: E402


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


def relit(image, face, dx, scale, gain):
    x, y, w, h = face["box"]
    moved = {"box": [int(x + dx * w), y, int(w * scale), int(h * scale)],
             "eyes": None if face["eyes"] is None else [[ex + dx * w, ey] for ex, ey in face["eyes"]]}
    return crop_face(np.clip(image.astype(np.float32) * gain, 0, 255).astype(np.uint8), moved)


def quantiles(values):
    return " ".join(f"{q:.0%}:{np.quantile(values, q):.3f}" for q in (0.0, 0.01, 0.05, 0.5, 0.95, 0.99, 1.0))


def main(folder):
    crops = face_crops(folder)
    signatures = {name: face_signature(crop_face(image, face)) for name, (image, face) in crops.items()}
    person = {name: name.rsplit("_", 1)[0] for name in crops}
    same, other = [], []
    for a, b in itertools.combinations(sorted(signatures), 2):
        (same if person[a] == person[b] else other).append(similarity(signatures[a], signatures[b]))
    moved = [similarity(signatures[name], face_signature(relit(image, face, dx, s, g)))
             for name, (image, face) in crops.items() for dx, s, g in ((0.05, 1.0, 1.0), (0, 1.1, 0.8),
                                                                        (-0.05, 0.9, 1.2))]
    print(f"{len(crops)} faces of {len(set(person.values()))} people")
    print(f"same crop moved 5 %, scaled 10 %, relit 20 % ({len(moved)}): {quantiles(moved)}")
    print(f"same person, another photo ({len(same)} pairs): {quantiles(same)}")
    print(f"different people ({len(other)} pairs): {quantiles(other)}")
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
