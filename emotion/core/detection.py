"""Faces in photos: detection (mtcnn, mtcnn with a second dlib HOG pass, or OpenCV's Haar cascade as the original),
each face's box and eyes, and the --detector option; emotion/core/crops.py frames each face for the model."""

import math
import os
from concurrent.futures import ThreadPoolExecutor

import cv2

from emotion.core.blazeface import blazeface_faces, load_blazeface
from emotion.core.onet import onet_answers
from emotion.io.errors import UserError
from emotion.io.internals import compile_mtcnn
from emotion.io.lazy_import import import_quietly

DETECTOR = "mtcnn+hog"  # face detector: mtcnn (a CNN with eye landmarks, weights in its pip package), plus the faces
# dlib's HOG detector finds and mtcnn misses (measured on group photos and portraits, docs/detection.md)
DETECTORS = ("mtcnn", "mtcnn+hog", "haar")  # --detector's choices; "mtcnn+hog" adds the faces dlib's HOG detector
# finds and mtcnn does not (tilted, large, cut by the edge in group photos; docs/detection.md); "haar" as the original
MTCNN_MIN_CONFIDENCE = 0.9  # mtcnn: faces scored below this are dropped (chosen by measurement, docs/detection.md);
# a face HOG finds and mtcnn misses (often tilted) takes the box and eyes of mtcnn's ONet for its box where ONet scores
# it this much, so it is levelled as mtcnn's faces are (onet_faces)
HOG_MIN_SCORE = 0.3  # mtcnn+hog: HOG boxes scored below this are dropped (a false box at 0.16, docs/detection.md)
LOOKS_AGAIN = ((0.25, False, 320), (0.35, True, 240), (0.5, True, 160))  # mtcnn misses faces that fill the photo
# or are cut by its edge: when it finds none, it looks again, in turn until one finds a face, with a border (this
# fraction of the copy's long side) of edge pixels repeated, or (True) of the photo mirrored into it (a face cut by
# the edge is made whole; mirrored first, 2 close-ups of 153 were lost), on a copy at most this large: these faces are
# large, so small copies find them for less CPU on a photo with no face; the widest border last, so mtcnn's smallest
# scale fits a face cut by the edge that fills the photo's short side (docs/detection.md)
SMALL_FACE_CHECK = (40, 0.5)  # mtcnn's first look and its looks again: a face smaller than this (px, its box's longer
# side in the look's copy) is kept only where ONet scores it at least this on a copy twice as large (at most the
# photo): small false boxes on texture fall to 0.01-0.14 there, small faces stay 0.89 and above (docs/detection.md)
LOOKS_AGAIN_CUTOFFS = {"threshold_pnet": 0.5, "threshold_rnet": 0.5}  # the looks again let more candidates through
# mtcnn's first two networks (its defaults: 0.6 and 0.7) to ONet, whose cut-off stays MTCNN_MIN_CONFIDENCE: faces cut by
# the frame, made whole by the mirror, are often scored low by them (docs/detection.md)
CLOSE_UP_LOOK = (0.35, 320)  # mtcnn+hog: when mtcnn's looks and HOG find nothing, BlazeFace (trained on phone
# close-ups) looks at a copy at most this large (second), the photo mirrored into a border (this fraction of its long
# side) so a face cut by the frame is made whole; ONet, shown each box mirrored the same way, keeps those it scores
# MTCNN_MIN_CONFIDENCE, with its box and eyes (faces cut 40 % by the frame: 90 -> 96 %, docs/detection.md)
GROUP_LOOK = (0.35, True, 200)  # mtcnn+hog: where the other looks found GROUP_MIN_FACES or more (a group photo),
# mtcnn looks once more as a look again does (a border of this fraction, mirrored, on a copy at most this large), for
# faces the first look misses in groups: large ones in front cut by the frame, turned or half-hidden ones; its faces
# are added where they are new (their centre in no box found, SAME_FACE_OVERLAP; built group photos: 116 -> 119 of
# 120 faces, docs/detection.md)
GROUP_MIN_FACES = 2  # not on one face: a portrait costs what it did (the group looks: about 100 ms of CPU for a
# 640x480 photo, three times what the photo cost before)
TURNED_LOOK = (25, 360)  # mtcnn+hog: in a group photo (GROUP_MIN_FACES), mtcnn also looks at a copy at most this
# large (second; at most detect_faces' max_side: video's 320) turned this many degrees (first) each way, for faces
# rolled 20-40 degrees (heads tilted), which mtcnn's and HOG's windows miss; new faces (as GROUP_LOOK's) are added,
# turned back (built group photos: faces showing both eyes and the mouth 878 -> 891 of 898, no false box
# added, docs/detection.md)
TURNED_CHECK = 0.3  # ... and adds those ONet still scores at least this on a copy twice as large, turned alike
# (turned_scores; a false box on an astronaut's suit in a two-person video frame: 0.18; the 98 tilted heads the looks
# add in the built group photos: 0.51 and above; docs/detection.md)
SAME_FACE_OVERLAP = 0.5  # mtcnn+hog: a face a later pass finds is added where its centre lies in no face found and
# it overlaps none this much (intersection over union, boxes clipped to the photo): mtcnn clips its boxes to the
# picture it looks at, so a face cut by the frame's edge can have its centre just past the first look's box of it,
# and the group look found it again (two boxes on one face, 0.76-0.79 alike; docs/detection.md)
FACE_CASCADE = "haarcascade_frontalface_default.xml"  # OpenCV's own frontal-face Haar cascade
SCALE_FACTOR = 1.1  # Haar pyramid step, as the original
MIN_NEIGHBORS = 5  # Haar detections needed to accept a face, as the original
DETECT_MAX_SIDE = 640  # photos are detected on a copy at most this large (boxes mapped back)
MTCNN_MAX_SIDE = 480  # the same for mtcnn: finds faces from 20 px there (27 px in a 640x480 photo), for less CPU


def load_face_detector(name=DETECTOR):
    """("mtcnn", MTCNN), ("mtcnn+hog", (MTCNN, dlib's HOG detector, BlazeFace or None where OpenCV cannot run it))
    or ("haar", OpenCV's cascade); mtcnn and dlib are imported here, so other commands never load them."""
    if name == "mtcnn+hog":
        try:
            import dlib
        except ImportError:
            raise UserError("dlib is not installed; run 'pip install -r requirements.txt' (dlib-bin) "
                            "or use --detector mtcnn") from None
        return name, (load_face_detector("mtcnn")[1], dlib.get_frontal_face_detector(), load_blazeface())
    if name == "mtcnn":
        try:  # quietly: in prepare, mtcnn is the first to import TensorFlow, whose start-up lines would show
            MTCNN = import_quietly("mtcnn").MTCNN
        except ImportError:
            raise UserError("the mtcnn face detector is not installed; run 'pip install -r requirements.txt' "
                            "or use --detector haar") from None
        return name, compile_mtcnn(MTCNN())
    if not hasattr(cv2, "CascadeClassifier") or not hasattr(cv2, "data"):
        raise UserError(f"this OpenCV ({cv2.__version__}) has no Haar face detector; install "
                        "'opencv-python>=4.8,<5' (see requirements.txt)")
    detector = cv2.CascadeClassifier(os.path.join(cv2.data.haarcascades, FACE_CASCADE))
    if detector.empty():
        raise UserError(f"could not load {FACE_CASCADE} from {cv2.data.haarcascades}")
    return name, detector


def run_mtcnn(mtcnn, image, pad=0, mirror=False, **cutoffs):
    """mtcnn's faces in an RGB image surrounded by a `pad`-pixel border, its edge pixels repeated or (`mirror`) the
    image mirrored into it: [(box, [left eye, right eye])], each box centred inside the image (not on a mirror
    copy). cutoffs: mtcnn's threshold_pnet and threshold_rnet, where not its own."""
    height, width = image.shape[:2]
    if min(height, width) < 12:  # below PNet's 12 px window there is nothing to find
        return []
    if pad:  # a border wider than the photo mirrors it again and again (a face cut from a tall photo made whole)
        image = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REFLECT_101 if mirror else
                                   cv2.BORDER_REPLICATE)
    faces = []
    for face in mtcnn.detect_faces(image, threshold_onet=MTCNN_MIN_CONFIDENCE, **cutoffs):
        x, y, w, h = face["box"][0] - pad, face["box"][1] - pad, *face["box"][2:]
        if centred_in([x, y, w, h], width, height):
            eyes = [[v - pad for v in face["keypoints"][eye]] for eye in ("left_eye", "right_eye")]
            faces.append(([x, y, w, h], eyes))
    return faces


def centred_in(box, width, height):
    """Whether an [x, y, w, h] box's centre lies in a width x height photo (not on a border around it)."""
    x, y, w, h = box
    return 0 <= x + w / 2 < width and 0 <= y + h / 2 < height


def iou(a, b):
    """Intersection over union of two [x, y, w, h] boxes (0 where neither has an area)."""
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    union = a[2] * a[3] + b[2] * b[3] - ix * iy
    return ix * iy / union if union > 0 else 0.0


def overlap(a, b, width, height):
    """iou of two [x, y, w, h] boxes, each clipped to a width x height photo."""
    def clipped(x, y, w, h):
        x0, y0 = max(0, x), max(0, y)
        return [x0, y0, max(0, min(width, x + w) - x0), max(0, min(height, y + h) - y0)]
    return iou(clipped(*a), clipped(*b))


def onet_faces(mtcnn, image, boxes, mirror=False):
    """mtcnn's last network (ONet) on other detectors' boxes (onet_answers): [(box, [left eye, right eye]), or None
    where ONet scores the crop below MTCNN_MIN_CONFIDENCE or the box lies wholly outside the photo]."""
    return [answer[:2] if answer and answer[2] >= MTCNN_MIN_CONFIDENCE else None
            for answer in onet_answers(mtcnn, image, boxes, mirror)]


def close_up_faces(mtcnn, blazeface, image):
    """The faces CLOSE_UP_LOOK finds: BlazeFace's boxes on a copy of `image` mirrored into a border, centred inside
    the photo, that ONet takes for faces (onet_faces, mirrored likewise): [(box, eyes)] in `image`'s pixels."""
    border, max_side = CLOSE_UP_LOOK
    small, scale = scale_down(image, max_side)
    height, width = small.shape[:2]
    if not height or not width:  # nothing to look at (and OpenCV would loop forever mirroring it)
        return []
    pad = int(border * max(height, width))
    boxes = [[x - pad, y - pad, w, h] for (x, y, w, h), _ in blazeface_faces(blazeface, cv2.copyMakeBorder(
        small, pad, pad, pad, pad, cv2.BORDER_REFLECT_101)) if centred_in([x - pad, y - pad, w, h], width, height)]
    return scaled_back([face for face in onet_faces(mtcnn, small, boxes, mirror=True)
                        if face and centred_in(face[0], width, height)], scale)


def scaled_back(faces, scale):
    """[(box, eyes or None)] found on a copy scaled by `scale`, in the pixels of the photo it was made from."""
    return [([v / scale for v in box], None if eyes is None else [[float(v) / scale for v in eye] for eye in eyes])
            for box, eyes in faces]


def scale_down(image, max_side):
    """A copy of `image` at most `max_side` pixels (the image itself when smaller), and the scale applied."""
    scale = min(1.0, max_side / max(image.shape[:2]))
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))  # a 5000x3 strip too
    return (cv2.resize(image, size, interpolation=cv2.INTER_AREA) if scale < 1 else image), scale


def look_again(mtcnn, image, look, check=False):
    """mtcnn's [(box, eyes)] in `image`'s pixels as one of LOOKS_AGAIN (or GROUP_LOOK) finds them: (border, mirrored,
    the copy's largest side), with LOOKS_AGAIN_CUTOFFS; with `check`, small faces checked (small_faces_checked)."""
    border, mirror, max_side = look
    small, scale = scale_down(image, max_side)
    faces = run_mtcnn(mtcnn, small, int(border * max(small.shape[:2])), mirror, **LOOKS_AGAIN_CUTOFFS)
    return scaled_back(small_faces_checked(mtcnn, image, faces, scale, max_side, mirror) if check else faces, scale)


def turned_faces(mtcnn, image, degrees, max_side):
    """mtcnn's faces on a copy of `image` at most `max_side` large turned `degrees` about its centre (on a canvas
    holding all of it, edge pixels repeated into its corners): [(box, eyes)] in `image`'s pixels, each box as large
    as mtcnn's, centred on the face's centre turned back, the eyes turned back (crop_face levels them)."""
    small, scale = scale_down(image, max_side)
    height, width = small.shape[:2]
    turn = cv2.getRotationMatrix2D((width / 2, height / 2), degrees, 1)
    cos, sin = abs(turn[0, 0]), abs(turn[0, 1])
    size = (int(round(height * sin + width * cos)), int(round(height * cos + width * sin)))
    turn[:, 2] += ((size[0] - width) / 2, (size[1] - height) / 2)
    back = cv2.invertAffineTransform(turn)
    faces = []
    for (x, y, w, h), eyes in run_mtcnn(mtcnn, cv2.warpAffine(small, turn, size, borderMode=cv2.BORDER_REPLICATE)):
        cx, cy = back @ (x + w / 2, y + h / 2, 1)
        box = [cx - w / 2, cy - h / 2, w, h]
        if centred_in(box, width, height):  # a face in the photo, not in a corner of the canvas
            faces.append((box, [list(back @ (*eye, 1)) for eye in eyes]))
    return scaled_back(faces, scale)


def turned_scores(mtcnn, image, boxes, degrees, max_side):
    """ONet's scores of faces a turned look found (their boxes in `image`'s pixels) on a copy of `image` twice as
    large as the look's (at most `image` itself), each turned `degrees` about its centre as the look turned it: a
    second opinion, with more of the face's pixels (TURNED_CHECK)."""
    large, scale = scale_down(image, 2 * max_side) if boxes else (image, 1.0)
    scores = []
    for box in boxes:
        x, y, w, h = (v * scale for v in box)
        reach = int(math.ceil(max(w, h))) * 2 + 2  # holds the face's square turned any way (its diagonal is 1.42x)
        patch = cv2.getRectSubPix(large, (reach, reach), (x + w / 2, y + h / 2))  # edge pixels repeated past the photo
        patch = cv2.warpAffine(patch, cv2.getRotationMatrix2D((reach / 2, reach / 2), degrees, 1), (reach, reach),
                               borderMode=cv2.BORDER_REPLICATE)
        answer, = onet_answers(mtcnn, patch, [[reach / 2 - w / 2, reach / 2 - h / 2, w, h]])
        scores.append(answer[2] if answer else 0.0)
    return scores


def small_faces_checked(mtcnn, image, faces, scale, max_side, mirror=False):
    """mtcnn's `faces` (in the pixels of a copy of `image` scaled by `scale`, at most `max_side`), less those smaller
    than SMALL_FACE_CHECK's side that ONet scores below its cut-off on a copy twice as large (at most `image`; with
    `mirror`, the photo mirrored past its edges, as the look saw it)."""
    small = [i for i, ((_x, _y, w, h), _eyes) in enumerate(faces) if max(w, h) < SMALL_FACE_CHECK[0]]
    if not small:
        return faces
    large, large_scale = scale_down(image, 2 * max_side)
    answers = onet_answers(mtcnn, large, [[v * large_scale / scale for v in faces[i][0]] for i in small], mirror)
    dropped = {i for i, answer in zip(small, answers) if not answer or answer[2] < SMALL_FACE_CHECK[1]}
    return [face for i, face in enumerate(faces) if i not in dropped]


def find_faces(name, model, image, max_side):
    """The detector's [(box, eyes or None)] in `image`'s pixels, found on a copy at most `max_side` large."""
    small, scale = scale_down(image, max_side)
    if name == "mtcnn":
        # Not mtcnn 1.0's min_face_size: above 20 it loses faces (a pyramid level under 12 px makes it
        # return none); the photo is scaled down instead.
        found = small_faces_checked(model, image, run_mtcnn(model, small), scale, max_side)
        for look in LOOKS_AGAIN:
            if found:
                break
            found = look_again(model, small, look, check=True)
    elif name == "hog":
        found = [([r.left(), r.top(), r.width(), r.height()], None) for r in model.run(small, 0, HOG_MIN_SCORE)[0]]
    else:
        grey = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
        found = [(box, None) for box in model.detectMultiScale(grey, scaleFactor=SCALE_FACTOR,
                                                                minNeighbors=MIN_NEIGHBORS)]
    return scaled_back(found, scale)


def detect_faces(detector, image, max_side=None, following=(), quick=False):
    """Faces in `image` (RGB), found on a copy scaled down to at most `max_side` (default: the detector's
    *MAX_SIDE): [{"box": [x, y, w, h], "eyes": [[x, y], [x, y]] or None (Haar; HOG where ONet does not take its box
    for a face)}], in the image's pixels, from left to right. A video passes the boxes of the faces it follows in
    this frame (`following`: they count towards a group, so mtcnn+hog's looks in groups look for one the first looks
    miss) and, between its full looks, `quick`: those looks are then left out where every face followed has its box's
    centre in a face found."""
    name, model = detector
    if not image.size:  # an empty picture: no face
        return []
    if name == "mtcnn+hog":  # HOG's boxes that are new: centre in none of mtcnn's, overlapping none by half
        hog_args = ("hog", model[1], image, max_side or DETECT_MAX_SIDE)
        # Both passes at once when OpenCV may use more than one core (a batch worker is given one): dlib, OpenCV and
        # TensorFlow let go of Python's lock while they compute (docs/detection.md). A thread per call: none is left
        # idle between photos, nor copied half-alive into a forked process.
        with ThreadPoolExecutor(1, thread_name_prefix="hog") as hog_thread:
            hog_found = hog_thread.submit(find_faces, *hog_args) if cv2.getNumThreads() > 1 else None
            found = find_faces("mtcnn", model[0], image, max_side or MTCNN_MAX_SIDE)
            hog_found = hog_found.result() if hog_found else find_faces(*hog_args)
        inside = lambda cx, cy: any(x <= cx <= x + w and y <= cy <= y + h for (x, y, w, h), _ in found)
        centre = lambda box: (box[0] + box[2] / 2, box[1] + box[3] / 2)
        new = lambda box: not inside(*centre(box)) and all(
            overlap(box, seen, image.shape[1], image.shape[0]) < SAME_FACE_OVERLAP for seen, _ in found)
        hog_only = [box for box, _ in hog_found if new(box)]
        found += [onet or (box, None) for box, onet in zip(hog_only, onet_faces(model[0], image, hog_only))]
        if not found and model[2] is not None:  # a close-up or a face cut by the frame that neither found
            found = close_up_faces(model[0], model[2], image)
        missed = [box for box in following if not inside(*centre(box))]
        if max(len(found), len(following)) >= GROUP_MIN_FACES and not (quick and following and not missed):
            # a group photo: the faces its first look missed, cut by the frame, turned
            degrees, side = TURNED_LOOK[0], min(TURNED_LOOK[1], max_side or MTCNN_MAX_SIDE)  # video: its own size
            found += [face for face in look_again(model[0], image, GROUP_LOOK) if new(face[0])]
            for turn in (degrees, -degrees):  # the faces a turned look adds, if ONet still takes them for faces
                more = [face for face in turned_faces(model[0], image, turn, side) if new(face[0])]
                scores = turned_scores(model[0], image, [box for box, _ in more], turn, side)
                found += [face for face, score in zip(more, scores) if score >= TURNED_CHECK]
    else:
        found = find_faces(name, model, image, max_side or (MTCNN_MAX_SIDE if name == "mtcnn" else DETECT_MAX_SIDE))
    faces = []
    for box, eyes in found:  # boxes that reach past the edge (mtcnn's) are clipped to the image
        x0, y0 = (max(0, int(round(v))) for v in box[:2])
        x1 = min(image.shape[1], int(round(box[0] + box[2])))
        y1 = min(image.shape[0], int(round(box[1] + box[3])))
        if x1 > x0 and y1 > y0:
            eyes = None if eyes is None else [[round(v, 1) for v in eye] for eye in eyes]
            faces.append({"box": [x0, y0, x1 - x0, y1 - y0], "eyes": eyes})
    return sorted(faces, key=lambda face: (face["box"][0], face["box"][1]))  # left to right, as they are numbered
