"""The library's speed against the command line's, in one run: EmotionRecognizer's start-up (building it, and its
first analyze, which loads the detector and traces the model) reported apart from its steady state, a second
analyze of a 640x480 photo with one face, and predict's time per photo on the same photo (predict over 1 copy and
over N+1 copies, in this process; the difference over N, so its own start-up is left out).

    python benchmarks/api_benchmark.py                 # prints the figures; --json FILE keeps them
    python benchmarks/api_benchmark.py --photos 40 --repeats 30
"""

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import cv2  # noqa: E402
import numpy as np  # noqa: E402

import emotion_recognition as er  # noqa: E402
from emotion import EmotionRecognizer  # noqa: E402

SAMPLE = os.path.join(ROOT, "samples", "astronaut.jpg")


def photo_640x480():
    """The sample portrait (one face) at 480x480 on a grey 640x480 canvas, RGB."""
    canvas = np.full((480, 640, 3), 110, np.uint8)
    canvas[:, 80:560] = cv2.resize(cv2.cvtColor(cv2.imread(SAMPLE), cv2.COLOR_BGR2RGB), (480, 480))
    return canvas


def predict_seconds(paths):
    """Wall time of `predict PATHS --json` in this process, its printout swallowed."""
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        assert er.main(["predict", *paths, "--json"]) == 0
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=20, help="N: copies of the photo in predict's long run")
    parser.add_argument("--repeats", type=int, default=20, help="analyze calls timed (the median is reported)")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    photo = photo_640x480()

    start = time.perf_counter()
    recognizer = EmotionRecognizer()
    built = time.perf_counter() - start
    start = time.perf_counter()
    first = recognizer.analyze(photo)
    first_call = time.perf_counter() - start
    assert len(first) == 1, first
    calls = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        recognizer.analyze(photo)
        calls.append(time.perf_counter() - start)

    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for i in range(args.photos + 1):
            paths.append(os.path.join(folder, f"photo{i}.png"))
            cv2.imwrite(paths[-1], cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
        predict_seconds(paths[:1])  # warm-up: TensorFlow, the detector and the model's function traced once
        one, many = predict_seconds(paths[:1]), predict_seconds(paths)
    per_photo = (many - one) / args.photos
    analyze = statistics.median(calls)
    figures = {"build_s": built, "first_analyze_s": first_call, "analyze_s_median": analyze,
               "analyze_s_all": calls, "predict_s_per_photo": per_photo, "predict_1_photo_s": one,
               "predict_n_photos_s": many, "photos": args.photos, "ratio_analyze_to_predict": analyze / per_photo}
    print(f"start-up: EmotionRecognizer() {built:.2f} s, first analyze {first_call:.2f} s")
    print(f"steady state, 640x480 photo with one face: analyze {1000 * analyze:.1f} ms (median of {args.repeats}); "
          f"predict {1000 * per_photo:.1f} ms a photo ({args.photos} more photos: {many:.2f} s against {one:.2f} s)")
    print(f"analyze / predict per photo: {analyze / per_photo:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()
