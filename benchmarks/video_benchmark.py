"""webcam over video files of several lengths: frames/s, real-time factor and peak memory, to see that memory
stays flat however long the video (the per-frame records are streamed, the timeline kept at a fixed size).

    python benchmarks/video_benchmark.py                         # 30 s and 300 s clips
    python benchmarks/video_benchmark.py --seconds 30 120
    python benchmarks/video_benchmark.py --video clip.mp4        # your own video instead
    python benchmarks/video_benchmark.py --seconds 60 --people 2 # two people side by side (the group looks run)

Each clip is 640x480 at 30 FPS: scikit-image's astronaut drifting across the frame, mirrored every
CHANGE_SECONDS and gone for a second after every third change (so tracks end and new ones start). With --people 2
the astronaut (260 px) and matplotlib's Grace Hopper (260 px) drift side by side, always in view: where two faces
or more are found, mtcnn+hog's group looks run (docs/detection.md).
Each run is `webcam --no-display --output --json --csv --timeline` (every record it can write; `--detector` as
given) in a child process of its own, so its peak RSS
(ru_maxrss from wait4) is its own. FPS is the command's own figure (frames per wall-clock second of
its whole loop, from the JSON summary); real-time factor = video seconds / loop seconds.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import cv2
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from emotion.core.detection import DETECTOR, DETECTORS  # noqa: E402

SECONDS = (30, 300)  # clip lengths compared, seconds
FPS = 30  # frames per second of the made clips
SIZE = (640, 480)  # width, height of the made clips
CHANGE_SECONDS = 5  # the face turns (is mirrored) this often; every third time it is gone for a second


def make_clip(path, seconds, people=1):
    """A 640x480 30 FPS MJPG clip of the astronaut's face moving and changing, or two people side by side (see the
    module docstring)."""
    photo = cv2.imread(os.path.join(ROOT, "samples", "astronaut.jpg"))
    face = cv2.resize(photo, (360, 360))
    if people == 2:
        import matplotlib.cbook
        hopper = cv2.imread(str(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
        photos = cv2.resize(photo, (260, 260)), cv2.resize(hopper[40:440, 50:450], (260, 260))
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), FPS, SIZE)
    for i in range(seconds * FPS):
        t, change = i / FPS, int(i / FPS // CHANGE_SECONDS)
        frame = np.full((SIZE[1], SIZE[0], 3), 90, np.uint8)
        if people == 2:
            x, y = int(30 + 20 * np.sin(t / 3)), int(100 + 40 * np.cos(t / 4))
            frame[y:y + 260, x:x + 260] = photos[0]
            x, y = int(340 + 20 * np.cos(t / 2)), int(110 + 30 * np.sin(t / 5))
            frame[y:y + 260, x:x + 260] = photos[1]
        elif not (change % 3 == 2 and t % CHANGE_SECONDS < 1):
            x, y = int(140 + 100 * np.sin(t / 3)), int(60 + 40 * np.cos(t / 4))
            frame[y:y + 360, x:x + 360] = face[:, ::-1] if change % 2 else face
        writer.write(frame)
    writer.release()
    return path


def run_webcam(video, folder, detector):
    """Run webcam over `video` in a child process; its summary, wall seconds and peak RSS (MiB)."""
    records = os.path.join(folder, "records.jsonl")
    command = [sys.executable, os.path.join(ROOT, "emotion_recognition.py"), "webcam", "--source", video,
               "--no-display", "--output", os.path.join(folder, "out.mp4"), "--json", records,
               "--csv", os.path.join(folder, "records.csv"), "--timeline", os.path.join(folder, "timeline.png"),
               "--detector", detector]
    start = time.perf_counter()
    child = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL,
                             env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"webcam failed on {video} (exit {os.waitstatus_to_exitcode(status)})")
    with open(records) as f:
        for line in f:
            last = line
    return json.loads(last)["summary"], wall, usage.ru_maxrss / 1024  # Linux: ru_maxrss is in KiB


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--seconds", type=int, nargs="+", default=list(SECONDS), help="clip lengths to make")
    parser.add_argument("--video", help="benchmark this video file instead of making clips")
    parser.add_argument("--detector", default=DETECTOR, choices=DETECTORS, help="webcam's --detector")
    parser.add_argument("--people", type=int, default=1, choices=(1, 2), help="people in the made clips")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="video-bench-") as folder:
        rows = []
        for seconds in [None] if args.video else args.seconds:
            video = args.video or make_clip(os.path.join(folder, f"clip-{seconds}s.avi"), seconds, args.people)
            capture = cv2.VideoCapture(video)
            length = capture.get(cv2.CAP_PROP_FRAME_COUNT) / (capture.get(cv2.CAP_PROP_FPS) or FPS)
            capture.release()
            summary, wall, rss = run_webcam(video, folder, args.detector)
            rows.append((length, summary, wall, rss))
            print(f"{args.detector}, {length:.0f} s clip: {summary['frames']} frames, {summary['fps']:.1f} FPS, "
                  f"real-time factor {length / summary['seconds']:.2f}, {len(summary['tracks'])} tracks, peak RSS {rss:.0f} MiB, "
                  f"{wall:.0f} s wall with start-up", flush=True)
            if not args.video:
                os.remove(video)
    if len(rows) > 1:
        print(f"peak RSS, longest vs shortest clip: {rows[-1][3] - rows[0][3]:+.0f} MiB")


if __name__ == "__main__":
    main()
