"""Batch scoring of a big folder, side by side in one run: photos/s and peak memory of today's predict (one process,
--json to a file) against predict --output (worker processes), and of the Ray path with 1 and 2 local workers.

    python benchmarks/batch_benchmark.py --images 2000
    python benchmarks/batch_benchmark.py --images 10000 --parts today,batch --memory-check 2000
    python benchmarks/batch_benchmark.py --images 1000 --parts batch,ray1,ray2

The folder is made of real photos repeated (scikit-image's astronaut, chelsea and coffee, and samples/astronaut.jpg:
two with a face, two without) as hard links, each a path of its own, in a temporary folder removed afterwards. Each
part runs the real command line in its own process; peak memory is the largest resident set of that command or any
of its worker processes (ru_maxrss of the children). --memory-check N runs predict --output on the first N images
too, so the two peaks show whether memory grows with the folder. The load average is printed: other work on the
cores makes every figure slower, so compare parts of the same run only.
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import cv2
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "emotion_recognition.py")
PARTS = {
    "today": ["--json"],  # predict as it was: one process, JSON lines to standard output (to a file here)
    "batch": ["--output", "{out}/batch.jsonl"],  # the default: a worker per core, records as they come
    "batch2": ["--output", "{out}/batch2.jsonl", "--workers", "2"],  # two worker processes
    "ray1": ["--output", "{out}/ray1.parquet", "--ray", "local", "--workers", "1"],
    "ray2": ["--output", "{out}/ray2.parquet", "--ray", "local", "--workers", "2"],
}


def make_folder(folder, images):
    """`images` hard links to four real photos, named in the order predict reads them."""
    from skimage import data
    sources = []
    for name in ("astronaut", "chelsea", "coffee"):
        path = os.path.join(folder, f"source_{name}.jpg")
        cv2.imwrite(path, cv2.cvtColor(np.asarray(getattr(data, name)())[..., :3], cv2.COLOR_RGB2BGR))
        sources.append(path)
    sources.append(os.path.join(ROOT, "samples", "astronaut.jpg"))
    photos = os.path.join(folder, "photos")
    os.makedirs(photos)
    for i in range(images):
        os.link(sources[i % len(sources)], os.path.join(photos, f"{i:06d}.jpg"))
    return photos


def run_part(photos, extra, out):
    """One predict command, timed; its peak memory (the largest process, workers included) from a fresh runner."""
    command = [sys.executable, SCRIPT, "predict", photos, *(a.format(out=out) for a in extra)]
    runner = ("import resource, subprocess, sys, json; "
              "r = subprocess.run(sys.argv[2:], stdout=open(sys.argv[1], 'w'), stderr=subprocess.PIPE, text=True); "
              "print(json.dumps({'rc': r.returncode, 'stderr': r.stderr[-500:], "
              "'maxrss_mb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, "
              "'cpu_s': resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime "
              "+ resource.getrusage(resource.RUSAGE_CHILDREN).ru_stime}))")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "RAY_TMPDIR": out}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", runner, os.path.join(out, "stdout.txt"), *command],
                          capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result["rc"] != 0:
        raise SystemExit(f"{' '.join(command)} failed: {result['stderr']}")
    return {"seconds": round(seconds, 1), "cpu_seconds": round(result["cpu_s"], 1), "peak_mb": round(result["maxrss_mb"])}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000, help="photos in the folder")
    parser.add_argument("--parts", default="today,batch,ray1,ray2", help=f"some of {','.join(PARTS)}")
    parser.add_argument("--memory-check", type=int, default=0, metavar="N",
                        help="also run predict --output on the first N images, for its peak memory")
    parser.add_argument("--output", default="batch_benchmark.json", help="the figures as JSON")
    args = parser.parse_args()
    figures = {"images": args.images, "cpus": os.cpu_count(), "load_average_before": os.getloadavg()}
    folder = tempfile.mkdtemp(prefix="batch-benchmark-")
    try:
        photos = make_folder(folder, args.images)
        if args.memory_check:
            small = os.path.join(folder, "small")
            os.makedirs(small)
            for name in sorted(os.listdir(photos))[:args.memory_check]:
                os.link(os.path.join(photos, name), os.path.join(small, name))
            out = tempfile.mkdtemp(dir=folder)
            figures[f"batch_{args.memory_check}"] = run_part(small, PARTS["batch"], out)
            print(f"batch on {args.memory_check} images: {figures[f'batch_{args.memory_check}']}", flush=True)
        for part in args.parts.split(","):
            out = tempfile.mkdtemp(dir=folder)
            figures[part] = run_part(photos, PARTS[part], out)
            figures[part]["photos_per_s"] = round(args.images / figures[part]["seconds"], 2)
            figures[part]["photos_per_cpu_s"] = round(args.images / figures[part]["cpu_seconds"], 2)
            print(f"{part}: {figures[part]}", flush=True)
    finally:
        shutil.rmtree(folder)
    figures["load_average_after"] = os.getloadavg()
    for part in ("batch", "batch2", "ray1", "ray2"):
        if "today" in figures and part in figures:
            figures[f"{part}_vs_today"] = round(figures[part]["photos_per_s"] / figures["today"]["photos_per_s"], 2)
    if "batch" in figures and "ray2" in figures:
        figures["ray2_vs_batch"] = round(figures["ray2"]["photos_per_s"] / figures["batch"]["photos_per_s"], 2)
    with open(args.output, "w") as f:
        json.dump(figures, f, indent=1)
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
