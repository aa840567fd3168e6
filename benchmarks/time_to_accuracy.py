"""Validation accuracy against wall time: this project's default recipe and the original's, trained on the same
data for the same time budget in one run, one after the other.

    python benchmarks/time_to_accuracy.py --minutes 20                   # fer2013-has, both recipes
    python benchmarks/time_to_accuracy.py --minutes 5 --recipes default,original,cosine --data DIR

Each recipe is the real command line (`emotion_recognition.py train --time-budget MINUTES ...`) in its own
process; the benchmark stamps each row of its history.csv with the wall time since that process started, so
the time counts what a user waits for: start-up, decoding the data, training and validation. The accuracy on
`test` is the one the run reports when it ends (its best epoch by val_loss). Prints a table, writes the curves
to --plot, and ends with the line
    time_to_accuracy: <recipe> reached val <acc> and test <acc> in <seconds> s
for the recipe with the best final val accuracy (the time: when it first reached that accuracy).
Timings are only comparable within one run on a quiet machine: the load average is printed.
"""

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "emotion_recognition.py")
DEFAULT_DATA = os.environ.get("FER_DATA", os.path.join(ROOT, "..", "shared", "datasets", "fer2013-has"))
RECIPES = {  # the train options of each recipe; --epochs is high so that the time budget ends the run
    "default": [],  # this project's defaults: compact at the data's size (48 px grey for FER2013), equalised
    # the original script: its CNN, 200x200 RGB, no contrast step, its augmentation and callbacks, batch 32
    "original": ["--model", "cnn", "--image-size", "200", "--color", "rgb", "--normalize", "none",
                 "--augment", "original", "--lr-schedule", "plateau", "--batch-size", "32"],
    # the seven-class model's recipe, its cosine rate fitted to the budget
    "cosine": ["--lr-schedule", "cosine", "--batch-size", "64", "--label-smoothing", "0.1", "--weight-decay", "0.05",
               "--patience", "1000"],
}
POLL_SECONDS = 0.5


def read_history(path):
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def run_recipe(name, data, minutes, folder):
    """Train one recipe; returns {"curve": [(seconds, val accuracy)], "test": accuracy, "seconds": total}."""
    out = os.path.join(folder, name)
    command = [sys.executable, SCRIPT, "train", "--data", data, "--train-again", "--no-show", "--epochs", "1000",
               "--time-budget", str(minutes), "--model-path", os.path.join(folder, f"{name}.h5"),
               "--output-dir", out, *RECIPES[name]]
    history, curve = os.path.join(out, "history.csv"), []
    start = time.perf_counter()
    with open(os.path.join(folder, f"{name}.log"), "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ,
                                                                                     "MPLBACKEND": "Agg"})
        while process.poll() is None:
            time.sleep(POLL_SECONDS)
            rows = read_history(history)
            curve += [(time.perf_counter() - start, float(row["val_accuracy"])) for row in rows[len(curve):]]
    if process.returncode != 0:
        with open(os.path.join(folder, f"{name}.log")) as log:
            raise SystemExit(f"recipe {name} failed:\n{log.read()[-2000:]}")
    curve += [(time.perf_counter() - start, float(row["val_accuracy"])) for row in read_history(history)[len(curve):]]
    with open(os.path.join(out, "metrics.json")) as f:
        test = json.load(f)["accuracy"]
    return {"curve": curve, "test": test, "seconds": time.perf_counter() - start}


def plot_curves(results, minutes, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, result in results.items():
        seconds, accuracy = zip(*result["curve"]) if result["curve"] else ((), ())
        ax.plot([s / 60 for s in seconds], accuracy, marker="o", label=f"{name} (test {result['test']:.4f})")
    ax.set_xlabel("wall time (minutes, start-up included)")
    ax.set_ylabel("val accuracy")
    ax.set_title(f"Validation accuracy against time, {minutes:g}-minute budget each")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return fig


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=DEFAULT_DATA, help="data set with train/, val/, test/")
    parser.add_argument("--minutes", type=float, default=20, help="time budget of each recipe")
    parser.add_argument("--recipes", default="default,original", help=f"comma-separated, of {', '.join(RECIPES)}")
    parser.add_argument("--plot", default="time_to_accuracy.png", help="PNG of the curves")
    parser.add_argument("--output", default="time_to_accuracy.json", help="the curves and figures, as JSON")
    args = parser.parse_args(argv)
    names = args.recipes.split(",")
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        parser.error(f"unknown recipe {unknown[0]!r}; choose from {', '.join(RECIPES)}")
    print(f"Load average at the start: {os.getloadavg()[0]:.1f} ({os.cpu_count()} CPUs); data: {args.data}")
    results = {}
    with tempfile.TemporaryDirectory(prefix="time-to-accuracy-") as folder:
        for name in names:
            results[name] = run_recipe(name, args.data, args.minutes, folder)
            curve = results[name]["curve"]
            print(f"{name}: " + ", ".join(f"{s:.0f} s: {a:.4f}" for s, a in curve)
                  + f"; test {results[name]['test']:.4f}, {results[name]['seconds']:.0f} s in all", flush=True)
    plot_curves(results, args.minutes, args.plot)
    with open(args.output, "w") as f:
        json.dump({"minutes": args.minutes, "data": args.data, "results": results}, f, indent=2)
    best = max(results, key=lambda n: max((a for _, a in results[n]["curve"]), default=0))
    best_val = max(a for _, a in results[best]["curve"])
    reached = next(s for s, a in results[best]["curve"] if a == best_val)
    print(f"Curves: {args.plot}; figures: {args.output}")
    print(f"time_to_accuracy: {best} reached val {best_val:.4f} and test {results[best]['test']:.4f} in "
          f"{reached:.0f} s")


if __name__ == "__main__":
    main()
