"""Batch scoring of big folders (predict --output): one record per image or video, written as it goes in a stable
order, resumable (--resume skips what the output already answers, by path, size and mtime), with worker processes
that each hold one recognizer (concurrent.futures), so reading, detection and classification run on every core.

    python emotion_recognition.py predict photos/ --output results.jsonl            # .csv and .parquet too
    python emotion_recognition.py predict photos/ --output results.jsonl --resume   # after a crash or Ctrl-C

The same scoring runs on a Ray cluster through emotion/jobs/ray_batch.py (predict --ray ADDRESS; docs/scale.md).
"""

import collections
import concurrent.futures
import functools
import glob
import hashlib
import multiprocessing
import os
import signal
import sys
import threading
import time

from emotion.core.faces import detection_of
from emotion.io.errors import EmotionError, UserError
from emotion.io.images import printable
from emotion.jobs.results_files import open_results
from emotion.jobs.video import ERASE_LINE_END, PROGRESS_BAR_SECONDS, PROGRESS_LOG_SECONDS
from emotion.recognizer import as_rgb

WORKERS = 0  # worker processes, each with its own recognizer; 0: one per CPU core (1.7x one process on two idle
#              cores; docs/scale.md)
WORKER_THREADS = 0  # TensorFlow and OpenCV threads in each worker; 0: the cores shared out (cores // workers, at
#                     least 1), so the workers together use each core once
PARENT_CHECK_SECONDS = 1  # a worker looks this often whether its main process is still there (else it ends)
CHUNK_IMAGES = 16  # images a worker reads, detects and classifies per task (their face crops in one model call)
VIDEO_RECORDS_FOLDER = "{stem}.videos"  # results.jsonl -> results.videos/<video>-<hash>.jsonl, one per video
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".wmv", ".mpg", ".mpeg")  # videos, by name: a
#                                          video in a folder is scored with --output; predict refuses one without


def file_key(path):
    """(path, size in bytes, mtime in seconds): what --resume compares; size and mtime None when stat fails."""
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return path, None, None
    return path, info.st_size, info.st_mtime


def is_video(path):
    return os.path.splitext(path)[1].lower() in VIDEO_SUFFIXES


def score_images(recognizer, paths, no_detect=False):
    """One record per image path: {"kind": "image", "path", "size", "mtime", "detection", "faces"} as predict --json
    answers, or with "error" (one line) for a file that cannot be used; the readable images' face crops go to the
    model in one call."""
    records, arrays = [], []
    for path in paths:
        _, size, mtime = file_key(path)
        record, array = {"kind": "image", "path": path, "size": size, "mtime": mtime}, None
        try:
            array = as_rgb(path)
        except EmotionError as error:  # unreadable, empty, a decompression bomb: this file's record says so
            record["error"] = str(error)
        records.append(record)
        arrays.append(array)
    readable = [i for i, array in enumerate(arrays) if array is not None]
    images = [arrays[i] for i in readable]
    answers = [[face] for face in recognizer.classify(images)] if no_detect else recognizer.analyze_many(images)
    for i, faces in zip(readable, answers):
        faces = [face.to_dict() for face in faces]
        records[i].update(detection=detection_of(faces), faces=faces)
    return records


def score_video(recognizer, path, records_path=None):
    """One record for a video: {"kind": "video", "path", "size", "mtime", "summary"} (analyze_video's summary), its
    frames' records written to `records_path` (complete or not at all), or kept in "frames" when it is None (the
    Ray path, whose workers share no disk); with "error" for a video that cannot be read."""
    _, size, mtime = file_key(path)
    record = {"kind": "video", "path": path, "size": size, "mtime": mtime}
    try:
        frames = list(recognizer.analyze_video(path, json_path=records_path))
    except EmotionError as error:
        return {**record, "error": str(error)}
    record["summary"] = frames[-1]["summary"]
    if records_path is None:
        record["frames"] = frames[:-1]
    else:
        record["records"] = records_path
    return record


def threads_per_worker(workers, threads=WORKER_THREADS):
    """TensorFlow's and OpenCV's threads in each of `workers` processes: `threads`, or with 0 the cores shared out
    (several workers with several threads each fight over the cores: 2 workers of 2 threads ran 0.87x as fast as 2
    of 1 thread on two idle cores)."""
    return threads or max(1, (os.cpu_count() or 1) // workers)


def limit_threads(threads):
    """`threads` for TensorFlow and OpenCV in this process; before TensorFlow runs anything."""
    import cv2
    import tensorflow as tf
    cv2.setNumThreads(threads)
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


def start_worker(threads, parent):
    """A worker's start: its threads limited; Ctrl-C ignored (it reaches the whole process group, and the main
    process alone handles it: it stops handing out tasks and keeps every record written, with no worker traceback);
    and a watch that ends the worker when its main process `parent` is gone (killed, out of memory), where it would
    otherwise wait for tasks forever."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    limit_threads(threads)
    threading.Thread(target=exit_with_parent, args=(parent,), daemon=True).start()


def exit_with_parent(parent):
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_SECONDS)
    os._exit(1)


@functools.lru_cache(maxsize=1)
def worker_recognizer(settings):
    """The recognizer of this worker process, built on its first task and kept (one model load per worker)."""
    from emotion.recognizer import EmotionRecognizer
    return EmotionRecognizer(*settings)


def score_task(settings, task, no_detect, records_folder):
    """A worker's task: a list of image paths, or ("video", path)."""
    recognizer = worker_recognizer(settings)
    if task[0] == "video":
        return [score_video(recognizer, task[1], video_records_path(records_folder, task[1]))]
    return score_images(recognizer, task, no_detect)


def video_records_path(folder, path):
    """A video's record file: its name and a hash of its full path (two clip.mp4 in two folders differ)."""
    stem = os.path.splitext(os.path.basename(path))[0]
    return os.path.join(folder, f"{stem}-{hashlib.sha1(os.fsencode(path)).hexdigest()[:8]}.jsonl")


def make_tasks(files, chunk=CHUNK_IMAGES):
    """The files in their order as tasks: runs of up to `chunk` images, and each video alone."""
    images = []
    for path in files:
        if is_video(path):
            if images:
                yield images
                images = []
            yield ("video", path)
            continue
        images.append(path)
        if len(images) == chunk:
            yield images
            images = []
    if images:
        yield images


def ordered_results(run, tasks, window):
    """run(task) -> a future, for each task, at most `window` in flight; their results in the tasks' order (a
    finished task waits for those before it, so the memory held is bounded by the window, not the folder)."""
    pending = collections.deque()
    for task in tasks:
        pending.append(run(task))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def report_progress(done, total, elapsed, last):
    """Files done of `total`, files/s and time left on stderr: a line redrawn on a terminal, else a plain line every
    PROGRESS_LOG_SECONDS (a log file). Returns when it last wrote."""
    terminal = sys.stderr.isatty()
    if elapsed - last < (PROGRESS_BAR_SECONDS if terminal else PROGRESS_LOG_SECONDS) and done < total:
        return last
    rate = done / max(elapsed, 1e-9)
    left = time.strftime("%H:%M:%S", time.gmtime((total - done) / rate)) if rate else "?"
    print(("\r" if terminal else "") + f"{done}/{total} files, {rate:.1f}/s, {left} left", file=sys.stderr,
          end=ERASE_LINE_END if terminal else "\n", flush=True)
    return elapsed


def run_batch(files, output, settings, *, resume=False, no_detect=False, workers=WORKERS, chunk=CHUNK_IMAGES,
              threads=WORKER_THREADS):
    """Score `files` into `output` (.jsonl, .csv or .parquet), records in the files' order; returns the counts
    {"answered", "skipped", "errors"} and the videos' records (for the summary table). settings: EmotionRecognizer's
    arguments (model_path, classes, detector, tta, precision). workers 0: one process per CPU core."""
    workers = workers or os.cpu_count() or 1
    threads = threads_per_worker(workers, threads)
    records_folder = VIDEO_RECORDS_FOLDER.format(stem=os.path.splitext(output)[0])
    counts, videos = {"answered": 0, "skipped": 0, "errors": 0}, []
    with open_results(output, resume) as (done, write):
        # a video's record file that a kill interrupted (hidden, never renamed into place): that video is scored again
        for leftover in glob.glob(os.path.join(glob.escape(records_folder), ".*.tmp")):
            os.remove(leftover)
        todo = [path for path in files if file_key(path) not in done]
        counts["skipped"] = len(files) - len(todo)
        if any(is_video(path) for path in todo):
            os.makedirs(records_folder, exist_ok=True)
        spawn = multiprocessing.get_context("spawn")  # a fresh interpreter: no TensorFlow state copied by fork
        start, shown = time.perf_counter(), 0.0
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=spawn, initializer=start_worker,
                                                    initargs=(threads, os.getpid())) as pool:
            run = functools.partial(pool.submit, score_task, settings, no_detect=no_detect,
                                    records_folder=records_folder)
            try:
                for records in ordered_results(run, make_tasks(todo, chunk), 2 * workers):
                    write(records)
                    counts["answered"] += len(records)
                    counts["errors"] += sum("error" in r for r in records)
                    videos += [r for r in records if r["kind"] == "video"]
                    shown = report_progress(counts["answered"], len(todo), time.perf_counter() - start, shown)
            except concurrent.futures.process.BrokenProcessPool:
                raise UserError(f"a worker process died (out of memory?); what was answered is in {output!r}: "
                                "run the same command with --resume") from None
            except BaseException:  # Ctrl-C, a failed write: the tasks not started are dropped, not run
                pool.shutdown(wait=False, cancel_futures=True)
                raise
    if shown and sys.stderr.isatty():
        print(file=sys.stderr)
    return counts, videos


def describe_video(record):
    """The summary table's line for a video: its frames, seconds and each track's most frequent emotion."""
    if record.get("error"):
        return f"{printable(record['path'])}: error: {record['error']}"
    summary = record["summary"]
    tracks = ", ".join(f"track {t['track']} {printable(max(t['share'], key=t['share'].get))}"
                       for t in summary["tracks"])
    return f"{printable(record['path'])}: {summary['frames']} frames, {summary['seconds']:.1f} s, " \
           f"{len(summary['tracks'])} tracks{': ' + tracks if tracks else ''}"

