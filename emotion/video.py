"""Faces in live video or a video file: boxes tracked from frame to frame, probabilities smoothed over frames,
and the `webcam` command."""

import os
import time

import cv2
import numpy as np

from emotion.faces import annotate, classify_crops, crop_face, detect_faces, load_face_detector
from emotion.files import UserError, check_writable
from emotion_recognition import DETECTOR, TTA, answering_model, load_trained_model

VIDEO_DETECT_WIDTH = 320  # video frames are detected at this width: 4x fewer pixels for 640x480
VIDEO_DETECT_EVERY = 3  # video: detect on every 3rd frame (detection costs the most CPU); faces keep boxes between
SMOOTH_FRAMES = 5  # video: average each face's probabilities over this many frames


def match_tracks(tracks, boxes):
    """Pair each box with the previous frame's track it overlaps most (IoU > 0.3), else a new track."""
    def iou(a, b):
        ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
        iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
        inter = ix * iy
        return inter / (a[2] * a[3] + b[2] * b[3] - inter)
    matched, free = [], list(tracks)
    for box in boxes:
        best = max(free, key=lambda t: iou(t["box"], box), default=None)
        if best is not None and iou(best["box"], box) > 0.3:
            free.remove(best)
            best["box"] = box
            matched.append(best)
        else:
            matched.append({"box": box, "history": []})
    return matched


def smooth_faces(tracks, faces, class_names):
    """Average each face's probabilities over its track's last SMOOTH_FRAMES frames, so labels do not flicker."""
    for track, face in zip(tracks, faces):
        track["history"] = (track["history"] + [[face["probabilities"][n] for n in class_names]])[-SMOOTH_FRAMES:]
        mean = np.mean(track["history"], axis=0)
        face.update(emotion=class_names[mean.argmax()], confidence=round(float(mean.max()), 4),
                    probabilities={n: round(float(v), 4) for n, v in zip(class_names, mean)})
    return faces


def run_video(model, metadata, source, display=True, output=None, max_frames=None, tta=TTA, detector=DETECTOR):
    """Label every face of every frame from a camera index or video file; returns (frames, faces, seconds).

    The detector runs on every VIDEO_DETECT_EVERY-th frame; in between, each face keeps its box and is
    classified again, so the labels follow the face's expression at the camera's pace.
    """
    capture = cv2.VideoCapture(int(source) if str(source).isdigit() else source)
    if not capture.isOpened():
        raise UserError(f"cannot open video source {source!r}: no camera with that index, or not a readable "
                        "video file")
    detector, writer, tracks = load_face_detector(detector), None, []
    frames = faces_seen = 0
    expected = 0 if str(source).isdigit() else int(capture.get(cv2.CAP_PROP_FRAME_COUNT))  # the file's own count
    fps, start = 0.0, time.perf_counter()
    try:
        while max_frames is None or frames < max_frames:
            ok, frame = capture.read()
            if not ok:
                if frames < expected:  # the file promised more: damaged or cut short
                    print(f"Warning: {source} ended after {frames} of its {expected} frames; the file may be damaged")
                break
            tick = time.perf_counter()
            rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            if frames % VIDEO_DETECT_EVERY == 0:
                found = detect_faces(detector, rgb, max_side=VIDEO_DETECT_WIDTH * max(rgb.shape[:2]) // rgb.shape[1])
                tracks = match_tracks(tracks, [f["box"] for f in found])
                for track, face in zip(tracks, found):
                    track["eyes"] = face["eyes"]
            faces = [{"box": t["box"], "detected": True, **f} for t, f in
                     zip(tracks, classify_crops(model, metadata, [crop_face(rgb, t) for t in tracks], tta))]
            faces = smooth_faces(tracks, faces, metadata["class_names"])
            canvas = annotate(rgb, faces)
            rate = 1 / max(time.perf_counter() - tick, 1e-6)
            fps = 0.9 * fps + 0.1 * rate if frames else rate
            cv2.putText(canvas, f"{fps:.0f} FPS", (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 255, 255), 2)
            if output and writer is None:
                writer = cv2.VideoWriter(output, cv2.VideoWriter_fourcc(*"mp4v"),
                                         capture.get(cv2.CAP_PROP_FPS) or 30, canvas.shape[1::-1])
                if not writer.isOpened():
                    raise UserError(f"cannot write video {output!r}; use a .mp4 or .avi name in a writable folder")
            if writer is not None:
                writer.write(canvas)
            frames, faces_seen = frames + 1, faces_seen + len(faces)
            if display:
                try:
                    cv2.imshow("Emotion recognition (q to quit)", canvas)
                    if cv2.waitKey(1) & 0xFF == ord("q"):
                        break
                except cv2.error:  # headless OpenCV build or no screen: keep going without a window
                    print("Warning: cannot open a window here; continuing without display")
                    display = False
    finally:
        capture.release()
        if writer is not None:
            writer.release()
        if display:
            cv2.destroyAllWindows()
    return frames, faces_seen, time.perf_counter() - start


def run_webcam(args):
    model, metadata = answering_model(*load_trained_model(args.model_path), args.classes)
    if args.output:
        if os.path.exists(args.output) and os.path.exists(args.source) and os.path.samefile(args.output, args.source):
            raise UserError(f"--output {args.output!r} is the --source video; choose another name")
        check_writable(os.path.dirname(os.path.abspath(args.output)))
    frames, faces, seconds = run_video(model, metadata, args.source, args.display, args.output, args.max_frames,
                                       args.tta, args.detector)
    print(f"Processed {frames} frames, {faces} faces, {frames / max(seconds, 1e-9):.1f} FPS on average"
          + (f"; annotated video written to {args.output}" if args.output else ""))
