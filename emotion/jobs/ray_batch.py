"""Batch scoring on a Ray cluster (predict --output DIR --ray ADDRESS) through Ray Data: the file list as a dataset,
an actor pool that holds one recognizer per worker (loaded once per actor), the same scoring as on one machine
(emotion/jobs/batch.py), and the records written as Parquet or JSON partitions. Ray is an optional extra: pip install
.[ray] on every machine of the cluster (the shipped model is package data, so it comes with it). docs/scale.md.

    python emotion_recognition.py predict /shared/photos --output /shared/results.parquet --ray auto --workers 0
"""

import json
import logging
import os
import warnings

from emotion.io.errors import UserError
from emotion.io.images import printable
from emotion.jobs.batch import WORKER_THREADS, file_key, is_video, limit_threads, score_images, score_video
from emotion.jobs.results_files import COLUMNS, keys_in_parts, refuse_existing, to_row

RAY_SUFFIXES = (".parquet", ".jsonl")  # --ray --output: a folder of Parquet parts, or of JSON-lines partitions
LOCAL_OBJECT_STORE_BYTES = 256 * 2**20  # --ray local: Ray's shared-memory store (paths and records only pass it)


class Scorer:
    """A Ray Data actor: one recognizer, built once, scoring batches of paths (images together, each video alone)."""

    def __init__(self, settings, no_detect):
        from emotion.recognizer import EmotionRecognizer
        limit_threads(WORKER_THREADS or 1)  # each actor holds one CPU of Ray's
        self.recognizer, self.no_detect = EmotionRecognizer(*settings), no_detect

    def __call__(self, batch):
        paths = list(batch["path"])
        images = [p for p in paths if not is_video(p)]
        scored = {r["path"]: r for r in score_images(self.recognizer, images, self.no_detect)} if images else {}
        records = [scored[p] if p in scored else score_video(self.recognizer, p) for p in paths]
        rows = [to_row(r) for r in records]
        return {name: [row[name] for row in rows] for name in COLUMNS}


def start_ray(address, workers):
    """Connect to the cluster at `address` ('auto', host:port, ray://host:port), or start one here ('local')."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise UserError("--ray needs Ray: pip install .[ray] (or pip install 'ray[data]'), on every machine of the "
                        "cluster") from None
    try:
        if address == "local":
            ray.init(num_cpus=workers, object_store_memory=LOCAL_OBJECT_STORE_BYTES, include_dashboard=False,
                     log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    except (ConnectionError, ValueError, RuntimeError) as error:
        raise UserError(f"cannot reach a Ray cluster at {printable(address)!r} ({str(error).splitlines()[0]}); "
                        "start one with ray start --head, or use --ray local") from None
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # its per-step INFO lines; errors still show
    with warnings.catch_warnings():  # Ray's own deprecation notes about settings this program never touches
        warnings.simplefilter("ignore")
        context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.execution_options.preserve_order = True  # rows in the file list's order, as on one machine
    return ray


def check_ray_output(output, resume):
    """Refuse an --output that --ray cannot write: not .parquet or .jsonl, existing without --resume, or a file."""
    if os.path.splitext(output)[1].lower() not in RAY_SUFFIXES:
        raise UserError(f"--ray --output {printable(output)!r}: name a folder ending in {' or '.join(RAY_SUFFIXES)}")
    refuse_existing(output, resume)
    if os.path.exists(output) and not os.path.isdir(output):
        raise UserError(f"--ray --output {printable(output)!r} is a file; --ray writes a folder of parts")


def run_ray(address, files, output, settings, *, resume=False, no_detect=False, workers=0, chunk=16):
    """Score `files` on Ray into the folder `output`: one row per file, the columns of results_files.COLUMNS (faces,
    a video's summary and frames as JSON text). resume: skip the files whose records the folder's parts hold (same
    path, size and mtime) and add parts for the rest. workers: actors (0: one per CPU of the cluster). Returns the
    counts {"answered", "skipped", "errors"} and the videos' records scored in this run."""
    check_ray_output(output, resume)
    items = [dict(zip(("path", "size", "mtime"), file_key(os.path.abspath(p)))) for p in files]
    done = keys_in_parts(output) if resume and os.path.isdir(output) else set()
    todo = [item for item in items if tuple(item.values()) not in done]
    counts = {"answered": 0, "skipped": len(items) - len(todo), "errors": 0}
    if not todo:
        return counts, []
    ray = start_ray(address, workers or os.cpu_count())
    try:
        workers = workers or int(ray.cluster_resources().get("CPU", 1))
        items = todo
        dataset = ray.data.from_items(items, override_num_blocks=max(1, min(len(items), 4 * workers)))
        scored = dataset.map_batches(Scorer, fn_constructor_args=(settings, no_detect), batch_size=chunk,
                                     batch_format="numpy", num_cpus=1,
                                     compute=ray.data.ActorPoolStrategy(size=workers))
        if output.lower().endswith(".parquet"):
            scored.write_parquet(os.path.abspath(output))
            written = ray.data.read_parquet(os.path.abspath(output))
        else:
            scored.write_json(os.path.abspath(output))
            written = ray.data.read_json(os.path.abspath(output))
        scored_now = {item["path"] for item in todo}
        rows = [row for row in written.select_columns(["kind", "path", "error", "summary"]).take_all()
                if row["path"] in scored_now]
    finally:
        ray.shutdown()
    videos = [{**row, "summary": json.loads(row["summary"]) if row["summary"] else None} for row in rows
              if row["kind"] == "video"]
    return {**counts, "answered": len(rows), "errors": sum(row["error"] is not None for row in rows)}, videos
