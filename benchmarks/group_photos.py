"""Group photos tiled from real portraits (4 to 7 people side by side, tiles of 180-320 px): mtcnn's recall, extra
boxes and time at several working sizes (MTCNN_MAX_SIDE).

    python benchmarks/group_photos.py ../shared/datasets/webfaces7-dev

The portraits are photos of the folder in which mtcnn finds exactly one face; a tile counts as found when a box's
centre lies in it, and each box beyond the first in a tile is an extra box.
"""
import glob
import os
import sys
import time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import numpy as np, cv2
import emotion.core.detection as F
from emotion.io.images import read_image
rng = np.random.default_rng(0)
folder = sys.argv[1] if len(sys.argv) > 1 else os.path.join("..", "shared", "datasets", "webfaces7-dev")
files = sorted(glob.glob(os.path.join(folder, "*", "*.jpg")))
files = [files[i] for i in rng.permutation(len(files))]
det = F.load_face_detector("mtcnn")
# portraits whose largest face mtcnn finds alone (the reference box)
portraits = []
for f in files:
    im = read_image(f)
    if im is None or min(im.shape[:2]) < 250: continue
    found = F.detect_faces(det, im)
    if len(found) == 1:
        portraits.append((cv2.resize(im, (300, 300)), ))
    if len(portraits) == 28: break
def group(k, cols, tile):
    ims = [cv2.resize(p[0], (tile, tile)) for p in portraits[k:k + cols]]
    return np.hstack(ims)
layouts = [(7, 180), (7, 240), (5, 200), (4, 320)]  # 7 people at 1260x180: small faces
for max_side in (480, 640, 800, 1000):
    F.MTCNN_MAX_SIDE = max_side
    found_total = expected = false = 0; t = 0.0; n = 0
    for cols, tile in layouts:
        for k in range(0, 28 - cols + 1, cols):
            photo = group(k, cols, tile)
            s = time.perf_counter(); faces = F.detect_faces(det, photo); t += time.perf_counter() - s; n += 1
            centres = [(f["box"][0] + f["box"][2] / 2) // tile for f in faces]
            hits = {c for c in centres}
            expected += cols; found_total += len(hits & set(range(cols)))
            false += len(centres) - len(hits)  # more than one box in a tile
    print(f"MTCNN_MAX_SIDE {max_side}: found {found_total}/{expected} faces, {false} extra boxes, "
          f"{t / n * 1000:.0f} ms a photo ({n} photos)")
