"""Emotion over time in a video: the per-frame records (JSON lines, CSV) and the annotated video written as frames
come, each tracked face's running summary and its probability series of bounded size, the timeline plot and the
progress line. Memory stays flat whatever the video's length: nothing here keeps a list per frame."""

import contextlib
import csv
import datetime
import json
import os

import cv2
import numpy as np

from emotion.io.errors import UserError
from emotion.io.files import atomic_write, check_not_inputs, check_writable, replace_when_done

TIMELINE_POINTS = 400  # each track's probability series keeps at most this many time bins (then halves its resolution)
TIMELINE_BIN_SECONDS = 0.1  # width of a time bin until the series fills up
MIN_TRACK_SECONDS = 0.5  # tracks seen for less (a false detection, a face crossing the edge) are left out of the
#                          timeline and the summary; the JSON and CSV records still hold them
TIMELINE_MAX_PANELS = 12  # the timeline plots at most this many tracks, the longest-seen ones
PROGRESS_BAR_WIDTH = 30  # characters of the progress bar on a terminal


def check_outputs(source, outputs, model_path=None):
    """Refuse, before anything is written, an output that is a file the command reads (the source video, the
    model) or another output, a timeline that is not a .png, and a folder that cannot be written.
    `outputs`: {option: path or None}."""
    check_not_inputs(outputs, {"the --source video": None if str(source).isdigit() else source,
                               "the model (--model-path)": model_path})
    named = {option: path for option, path in outputs.items() if path}
    folder = next((option for option, path in named.items() if os.path.isdir(path)), None)
    if folder:
        raise UserError(f"{folder} {named[folder]!r} is a folder; give a file name")
    if named.get("--timeline") and not named["--timeline"].lower().endswith(".png"):
        raise UserError(f"--timeline {named['--timeline']!r} must be a .png file")
    if named.get("--output") and os.path.splitext(named["--output"])[1].lower() not in (".mp4", ".avi"):
        raise UserError(f"--output {named['--output']!r} must be a .mp4 or .avi file")
    for option, path in named.items():
        check_writable(os.path.dirname(os.path.abspath(path)), f"{option} {path!r}", made=False)


@contextlib.contextmanager
def open_output(path, option):
    """--json or --csv, written through a hidden temporary file renamed over `path` when the video is done (or
    stopped by Ctrl-C): `path` holds whole records, or after a failed write what it held before. What exists and is
    not a regular file (/dev/stdout, a named pipe) is written directly."""
    streamed = os.path.exists(path) and not os.path.isfile(path)  # /dev/stdout, a pipe: written as records come
    try:
        with contextlib.nullcontext(path) if streamed else replace_when_done(path) as tmp_path:
            f = open(tmp_path, "w" if streamed else "x", encoding="utf-8", newline="")
            try:
                yield f
                f.flush()
                if not streamed:
                    os.fsync(f.fileno())
            finally:
                with contextlib.suppress(OSError):  # a write that failed is reported where it failed
                    f.close()
    except OSError as error:
        raise UserError(f"cannot write {option} {path!r} ({error.strerror}); nothing was written there; free some "
                        "space or choose another folder") from None


def csv_columns(class_names):
    return ["frame", "time", "track", "x", "y", "w", "h", "emotion", "confidence", *map(csv_text, class_names)]


def csv_text(text):
    """A text cell a spreadsheet shows as text: one that starts as a formula would (=, +, -, @, a tab or a carriage
    return) gets a leading apostrophe (OWASP's advice on CSV injection); class names come from the model file."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@contextlib.contextmanager
def open_records(json_path, csv_path, class_names):
    """Yields write(record): one frame's record ({"frame", "time", "faces"}) or, last, {"summary": ...} (JSON
    only), written to the --json and/or --csv file (through open_output) and flushed at once, so a stop (q,
    --max-frames, Ctrl-C) leaves whole lines for every frame done. CSV: one row per face per frame; a frame
    without faces has no row."""
    with contextlib.ExitStack() as files:
        json_file = files.enter_context(open_output(json_path, "--json")) if json_path else None
        csv_file = files.enter_context(open_output(csv_path, "--csv")) if csv_path else None
        rows = csv.writer(csv_file) if csv_file else None
        if rows:
            rows.writerow(csv_columns(class_names))

        def write(record):
            try:
                if json_file:
                    json_file.write(json.dumps(record) + "\n")
                    json_file.flush()
                if rows and "frame" in record:
                    rows.writerows([record["frame"], record["time"], face["track"], *face["box"],
                                    csv_text(face["emotion"]), face["confidence"],
                                    *(face["probabilities"][n] for n in class_names)] for face in record["faces"])
                    csv_file.flush()
            except OSError as error:
                raise UserError(f"cannot write the records ({error.strerror}) at frame {record.get('frame')}; "
                                "nothing was written to --json or --csv; free some space") from None
        yield write


def new_series(num_classes, max_points=TIMELINE_POINTS, bin_seconds=TIMELINE_BIN_SECONDS):
    """Mean probabilities per time bin in arrays of fixed size: when they fill up, neighbouring bins merge
    and the bin width doubles, so an hour of video takes the same memory as a minute."""
    return {"width": bin_seconds, "used": 0, "keys": np.zeros(max_points, np.int64),
            "counts": np.zeros(max_points), "sums": np.zeros((max_points, num_classes))}


def halve_resolution(series):
    used = series["used"]
    keys, slot = np.unique(series["keys"][:used] // 2, return_inverse=True)
    counts, sums = np.zeros_like(series["counts"]), np.zeros_like(series["sums"])
    np.add.at(counts, slot, series["counts"][:used])
    np.add.at(sums, slot, series["sums"][:used])
    series["keys"][:len(keys)], series["counts"], series["sums"] = keys, counts, sums
    series["used"], series["width"] = len(keys), series["width"] * 2


def add_point(series, seconds, probabilities):
    """Add one frame's probabilities (a sequence in class order) at `seconds` (never earlier than the last)."""
    key, used = int(seconds // series["width"]), series["used"]
    if not used or series["keys"][used - 1] != key:
        if used == len(series["keys"]):
            halve_resolution(series)
            return add_point(series, seconds, probabilities)
        series["keys"][used], series["used"] = key, used + 1
    series["counts"][series["used"] - 1] += 1
    series["sums"][series["used"] - 1] += probabilities


def series_points(series):
    """(bin centres in seconds, mean probabilities per bin: one row per bin, one column per class)."""
    used = series["used"]
    return (series["keys"][:used] + 0.5) * series["width"], series["sums"][:used] / series["counts"][:used, None]


def new_stats(class_names, seconds):
    return {"first": seconds, "last": seconds, "seconds": 0.0, "in": dict.fromkeys(class_names, 0.0),
            "longest": dict.fromkeys(class_names, 0.0), "run": (None, 0.0)}


def add_observation(stats, seconds, duration, emotion):
    """Count one frame of `duration` seconds in `emotion`: time per emotion and its longest unbroken stretch."""
    stats["last"], stats["seconds"] = seconds, stats["seconds"] + duration
    stats["in"][emotion] += duration
    run = stats["run"]
    stats["run"] = (emotion, run[1] + duration if run[0] == emotion else duration)
    stats["longest"][emotion] = max(stats["longest"][emotion], stats["run"][1])


def update_timeline(timeline, faces, seconds, duration, class_names):
    """Add one frame's faces to `timeline` ({track id: {"stats", "series"}}). A track that has left the view
    having been seen for less than MIN_TRACK_SECONDS is forgotten, so flickering detections take no memory."""
    for face in faces:
        track = timeline.get(face["track"])
        if track is None:
            track = timeline[face["track"]] = {"stats": new_stats(class_names, seconds),
                                               "series": new_series(len(class_names))}
        add_observation(track["stats"], seconds, duration, face["emotion"])
        add_point(track["series"], seconds, [face["probabilities"][n] for n in class_names])
    in_view = {face["track"] for face in faces}
    for track_id in [t for t, track in timeline.items() if t not in in_view
                     and track["stats"]["seconds"] < MIN_TRACK_SECONDS]:
        del timeline[track_id]


def summarize(timeline):
    """Per track seen for at least MIN_TRACK_SECONDS: seconds seen, share of them in each emotion, and the
    longest unbroken stretch in each emotion (seconds)."""
    summary = []
    for track_id, track in sorted(timeline.items()):
        stats = track["stats"]
        if stats["seconds"] >= MIN_TRACK_SECONDS:
            summary.append({"track": track_id, "first": round(stats["first"], 3), "last": round(stats["last"], 3),
                            "seconds": round(stats["seconds"], 3),
                            "share": {n: round(s / stats["seconds"], 4) for n, s in stats["in"].items()},
                            "longest": {n: round(s, 3) for n, s in stats["longest"].items()}})
    return summary


def describe_track(track):
    """One printed line per track: its time in view, then each emotion it showed, most frequent first."""
    shown = sorted((n for n in track["share"] if track["share"][n] > 0), key=track["share"].get, reverse=True)
    return (f"Track {track['track']}: {track['seconds']:.1f} s seen ({track['first']:.1f}-{track['last']:.1f} s): "
            + ", ".join(f"{n} {track['share'][n]:.0%} (longest {track['longest'][n]:.1f} s)" for n in shown))


def plot_timeline(timeline, class_names, path):
    """Each track's probabilities against seconds, one panel per track (the TIMELINE_MAX_PANELS longest
    seen, in track order), saved as a PNG; returns the panels (axes)."""
    import matplotlib
    from matplotlib.figure import Figure  # a bare Figure draws with Agg: no window, no pyplot state
    with matplotlib.rc_context({"text.parse_math": False}):  # class names as written: "$\\happy$" is no math text
        longest = sorted(summarize(timeline), key=lambda t: t["seconds"], reverse=True)[:TIMELINE_MAX_PANELS]
        tracks = sorted(t["track"] for t in longest)
        figure = Figure(figsize=(10, 1 + 2.2 * max(1, len(tracks))), layout="constrained")  # room for the legend
        axes = figure.subplots(max(1, len(tracks)), 1, squeeze=False)[:, 0]
        for ax, track_id in zip(axes, tracks):
            seconds, probabilities = series_points(timeline[track_id]["series"])
            for name, column in zip(class_names, probabilities.T):
                ax.plot(seconds, column, label=name)
            ax.set_ylim(-0.03, 1.03)  # a probability of 0 or 1 stays visible off the frame's edge
            ax.set_ylabel("probability")
            ax.set_title(f"track {track_id}")
        if tracks:  # beside the panels, never over a curve
            figure.legend(*axes[0].get_legend_handles_labels(), loc="outside right upper", fontsize="small")
        else:
            axes[0].set_title(f"no face seen for {MIN_TRACK_SECONDS} s or more")
        axes[-1].set_xlabel("seconds")
        try:
            with atomic_write(path, suffix=".png") as tmp_path:
                figure.savefig(tmp_path, dpi=100, format="png")
        except OSError as error:
            raise UserError(f"cannot write --timeline {path!r} ({error.strerror}); free some space") from None
        return list(axes) if tracks else []


def progress_line(done, total, seconds, terminal):
    """Frames done of `total`, frames per second and time left; a bar on a terminal, plain text for a log."""
    fps = done / max(seconds, 1e-9)
    left = datetime.timedelta(seconds=round((total - done) / fps)) if fps and total >= done else "?"
    text = f"{done}/{total} frames, {fps:.1f} FPS, {left} left"
    if not terminal:
        return text
    filled = PROGRESS_BAR_WIDTH * min(done, total) // max(total, 1)
    return f"[{'#' * filled}{'.' * (PROGRESS_BAR_WIDTH - filled)}] {text}"


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
