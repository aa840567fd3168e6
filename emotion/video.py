"""The `webcam` command: faces in live video or a video file labelled (emotion/frames.py, through
EmotionRecognizer.analyze_video's path), shown in a window, with a progress bar for files, and the annotated video,
records and timeline written as asked."""

import sys
import time

import cv2

from emotion.arguments import positive_int
from emotion.detection import add_detector_argument
from emotion.model_files import add_classes_argument, add_model_arguments
from emotion.recognizer import EmotionRecognizer
from emotion.recovery import hold_ctrl_c
from emotion.timeline import check_outputs, describe_track, progress_line

PROGRESS_BAR_SECONDS = 0.5  # a file's progress bar on a terminal is redrawn this often
PROGRESS_LOG_SECONDS = 30  # when stderr is not a terminal (a log file), one plain progress line this often
ERASE_LINE_END = "\x1b[K"  # terminals only: clears what a longer previous bar left after the cursor


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


def show_frame(canvas):
    """Show the frame in a window; False when q was pressed. Raises cv2.error where there is no screen."""
    cv2.imshow("Emotion recognition (q to quit)", canvas)
    return cv2.waitKey(1) & 0xFF != ord("q")


def report_progress(done, total, elapsed, last):
    """A bar on a terminal (redrawn every PROGRESS_BAR_SECONDS), else a plain line every PROGRESS_LOG_SECONDS,
    on stderr; only for files, whose length is known. Returns when it last wrote."""
    terminal = sys.stderr.isatty()
    if not total or elapsed - last < (PROGRESS_BAR_SECONDS if terminal else PROGRESS_LOG_SECONDS):
        return last
    print(("\r" if terminal else "") + progress_line(done, total, elapsed, terminal), file=sys.stderr,
          end=ERASE_LINE_END if terminal else "\n", flush=True)
    return elapsed


def run_video(recognizer, source, display=True, output=None, max_frames=None, json_path=None, csv_path=None,
              timeline_path=None):
    """Label every face of every frame from a camera index or video file (frames.run_frames, the path of
    EmotionRecognizer.analyze_video), shown in a window when `display`; returns (frames, faces, summary).
    Ctrl-C or q stops after the frame in hand; every output is then complete up to it and summary["stopped"] says
    which."""
    reason, faces, shown = None, 0, [0.0, 0, 0]  # when the progress line was last written, frames, of how many

    def progress(done, total, elapsed):
        shown[0], shown[1:] = report_progress(done, total, elapsed, shown[0]), [done, total]

    start = time.perf_counter()
    try:
        with hold_ctrl_c() as pressed:
            for record, canvas in recognizer.video_frames(source, draw=display, output=output, json_path=json_path,
                                                          csv_path=csv_path, timeline_path=timeline_path,
                                                          max_frames=max_frames,
                                                          stop=lambda: "Ctrl-C" if pressed() else reason,
                                                          progress=progress):
                faces += len(record.get("faces", ()))
                if display and canvas is not None:
                    try:
                        if not show_frame(canvas):
                            reason = "q pressed"
                    except cv2.error:  # headless OpenCV build or no screen: keep going without a window
                        print("Warning: cannot open a window here; continuing without display")
                        display = False
    finally:
        if shown[0] and sys.stderr.isatty():  # the bar's last state, and the end of its line
            print("\r" + progress_line(shown[1], shown[2], time.perf_counter() - start, True) + ERASE_LINE_END,
                  file=sys.stderr)
        if display:
            cv2.destroyAllWindows()
    return record["summary"]["frames"], faces, record["summary"]


def run_webcam(args):
    outputs = {"--output": args.output, "--json": args.json, "--csv": args.csv, "--timeline": args.timeline}
    check_outputs(args.source, outputs, args.model_path)
    recognizer = EmotionRecognizer(args.model_path, args.classes, args.detector, args.tta, args.precision)
    frames, faces, summary = run_video(recognizer, args.source, args.display, args.output, args.max_frames, args.json,
                                       args.csv, args.timeline)
    for track in summary["tracks"]:
        print(describe_track(track))
    written = [f"{name[2:]} {path}" for name, path in outputs.items() if path]
    print(f"Processed {frames} frames, {faces} faces, {summary['fps']:.1f} FPS on average"
          + (f"; wrote {', '.join(written)}" if written else ""))
    if summary["stopped"] == "Ctrl-C":
        raise KeyboardInterrupt  # main() prints the one-line message and exits with 130
