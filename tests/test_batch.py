"""Batch scoring (predict --output, emotion/jobs/batch.py, emotion/jobs/results_files.py, emotion/jobs/ray_batch.py):
records as predict --json answers, in order, resumable after a kill, bad files as error records, videos, and Ray's
answers equal to one machine's. The end-to-end tests start worker processes (and Ray) and are slow; the pieces are
tested fast."""

import concurrent.futures
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import cv2
import pytest
from test_robustness import png_declaring

from emotion.jobs.batch import make_tasks, ordered_results, report_progress, run_batch
from emotion.jobs.results_files import PARQUET_PART_RECORDS, keys_in_parts, open_results

from conftest import ROOT, SCRIPT, real_photo, run_cli, run_main, write_video


def record(path, size=1, mtime=1.5, **more):
    return {"kind": "image", "path": path, "size": size, "mtime": mtime, "faces": [], **more}


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_records_read_back_for_resume_and_never_doubled(tmp_path, suffix):
    if suffix == ".parquet":
        pytest.importorskip("pyarrow", reason="pyarrow comes with the ray extra")
    output = str(tmp_path / f"results{suffix}")
    with open_results(output, resume=False) as (done, write):
        assert done == set()
        write([record("a.jpg"), record("b,\"odd\".jpg", 2, 2.25, error="b: not a readable image")])
    with pytest.raises(Exception, match="exists: add --resume"):
        with open_results(output, resume=False):
            pass
    with open_results(output, resume=True) as (done, write):
        assert done == {("a.jpg", 1, 1.5), ("b,\"odd\".jpg", 2, 2.25)}
        write([record("c.jpg", None, None, error="c.jpg: no such file")])
    with open_results(output, resume=True) as (done, _):
        assert done == {("a.jpg", 1, 1.5), ("b,\"odd\".jpg", 2, 2.25), ("c.jpg", None, None)}


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_a_line_cut_off_by_a_kill_is_dropped_on_resume(tmp_path, suffix):
    output = str(tmp_path / f"results{suffix}")
    with open_results(output, resume=False) as (_, write):
        write([record("a.jpg"), record("b.jpg")])
    whole = os.path.getsize(output)
    with open(output, "ab") as f:
        f.write(b'{"kind": "image", "path": "c.j' if suffix == ".jsonl" else b"image,c.jpg,1")
    with open_results(output, resume=True) as (done, write):
        assert done == {("a.jpg", 1, 1.5), ("b.jpg", 1, 1.5)}
        assert os.path.getsize(output) == whole
        write([record("c.jpg")])
    with open(output, encoding="utf-8") as f:
        lines = f.read().splitlines()
    assert len(lines) == 3 + (suffix == ".csv") and lines[-1].count("c.jpg") == 1


def test_parquet_parts_are_written_whole_and_leftovers_removed(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet", reason="pyarrow comes with the ray extra")
    output = tmp_path / "results.parquet"
    with open_results(str(output), resume=False) as (_, write):
        write([record(f"{i}.jpg") for i in range(PARQUET_PART_RECORDS)])  # a whole part, written at once
        write([record("last.jpg")])  # held until the end
        assert len(list(output.glob("*.parquet"))) == 1
    (output / ".part-00002.parquet.1234abcd.tmp").write_bytes(b"PAR1 cut off")
    with open_results(str(output), resume=True) as (done, _):
        assert len(done) == PARQUET_PART_RECORDS + 1
    assert sorted(p.name for p in output.iterdir()) == ["part-00000.parquet", "part-00001.parquet"]
    assert pq.read_table(output).num_rows == PARQUET_PART_RECORDS + 1


def test_a_video_record_file_cut_off_by_a_kill_is_removed_on_resume(tmp_path):
    output = tmp_path / "r.jsonl"
    output.write_text("")
    videos = tmp_path / "r.videos"
    videos.mkdir()
    (videos / ".clip-0a1b2c3d.jsonl.1234abcd.tmp").write_text('{"frame": 0')  # atomic_write's name, never renamed
    (videos / "done-4e5f6a7b.jsonl").write_text("{}\n")
    run_batch([], str(output), (None, None, None, False, "float32"), resume=True)
    assert [p.name for p in videos.iterdir()] == ["done-4e5f6a7b.jsonl"]


def test_ray_parts_cut_off_by_a_kill_are_set_aside_and_their_files_scored_again(tmp_path):
    """--ray --resume reads the keys of the parts Ray wrote (Parquet, or JSON lines as .json); Ray writes its parts in
    place, so a killed run can leave one cut off: it is renamed .NAME.incomplete (kept, hidden from readers of the
    folder) and its files are not counted as answered."""
    pa = pytest.importorskip("pyarrow", reason="pyarrow comes with the ray extra")
    import pyarrow.parquet as pq
    for suffix in (".parquet", ".jsonl"):
        folder = tmp_path / f"ray{suffix}"
        folder.mkdir()
        for part, names in (("whole", ["a.jpg", "b.jpg"]), ("cut", ["c.jpg", "d.jpg"])):
            rows = [{"kind": "image", "path": n, "size": 1, "mtime": 1.5, "faces": "[]"} for n in names]
            path = folder / f"x_{part}_000000.{'parquet' if suffix == '.parquet' else 'json'}"
            if suffix == ".parquet":
                pq.write_table(pa.Table.from_pylist(rows), path)
            else:
                path.write_text("".join(json.dumps(r) + "\n" for r in rows))
            if part == "cut":
                path.write_bytes(path.read_bytes()[:-30])
        with pytest.warns(UserWarning, match=r"cut_000000.* set aside as .*/\.x_cut_000000\..*\.incomplete"):
            assert keys_in_parts(str(folder)) == {("a.jpg", 1, 1.5), ("b.jpg", 1, 1.5)}
        assert sorted(p.name for p in folder.iterdir()) == [
            f".x_cut_000000.{'parquet' if suffix == '.parquet' else 'json'}.incomplete",
            f"x_whole_000000.{'parquet' if suffix == '.parquet' else 'json'}"]
        if suffix == ".parquet":  # the folder reads as a table again: the part set aside is skipped
            assert pq.read_table(str(folder)).column("path").to_pylist() == ["a.jpg", "b.jpg"]


def test_tasks_keep_the_files_order_whatever_order_they_finish_in():
    files = [f"{i}.jpg" for i in range(10)] + ["clip.mp4"] + ["x.png", "y.png"]
    tasks = list(make_tasks(files, chunk=4))
    assert tasks == [files[0:4], files[4:8], files[8:10], ("video", "clip.mp4"), ["x.png", "y.png"]]
    in_flight, most = [0], [0]

    def slow(task):
        in_flight[0] += 1
        most[0] = max(most[0], in_flight[0])
        time.sleep(random.random() / 50)
        in_flight[0] -= 1
        return task

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        assert list(ordered_results(lambda t: pool.submit(slow, t), tasks, window=3)) == tasks


def test_batch_options_refused_in_one_line(capsys, tmp_path):
    """Refused before anything starts: no "Scoring" line, no output made, an existing one left as it was."""
    cv2.imwrite(str(tmp_path / "a.png"), real_photo("astronaut"))
    (tmp_path / "old.jsonl").write_text("kept\n")
    (tmp_path / "ray.jsonl").mkdir()  # a folder of parts, as --ray writes .jsonl
    for paths, args, message in (
            ([tmp_path], ["--resume"], "--resume and --ray need --output"),
            ([tmp_path], ["--output", tmp_path / "r.jsonl", "--json"], "leave them out with --output"),
            ([tmp_path], ["--output", tmp_path / "r.txt"], "name a .jsonl, .csv, .parquet file"),
            ([tmp_path], ["--output", tmp_path / "old.jsonl"], "exists: add --resume"),
            ([tmp_path], ["--output", tmp_path / "ray.jsonl", "--resume"], "is a folder of parts, as --ray writes"),
            ([tmp_path, tmp_path / "typo"], ["--output", tmp_path / "r.jsonl"], "typo: no such file or folder; nothing"),
            ([tmp_path], ["--workers", "2"], "--workers and --chunk share out the work of --output"),
            ([tmp_path], ["--chunk", "4"], "--workers and --chunk share out the work of --output")):
        code, out, error = run_main(capsys, "predict", *paths, *args)
        assert code == 1 and error.startswith("error: ") and message in error and "\n" not in error.strip(), error
        assert "Scoring" not in out and "face at" not in out
        assert not (tmp_path / "r.jsonl").exists() and (tmp_path / "old.jsonl").read_text() == "kept\n"


def test_ray_missing_is_one_line(capsys, tmp_path, monkeypatch):
    cv2.imwrite(str(tmp_path / "a.png"), real_photo("astronaut"))
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError, as where it is not installed
    code, _, error = run_main(capsys, "predict", tmp_path, "--output", tmp_path / "r.parquet", "--ray", "local")
    assert code == 1 and "--ray needs Ray: pip install .[ray]" in error


def photo_folder(folder, copies=1, bad=True, videos=0):
    """Real photos (three faces in all, and a cat), bad files among them when `bad`, and short clips."""
    folder.mkdir(parents=True, exist_ok=True)
    photos = {"astronaut": real_photo("astronaut"), "chelsea": real_photo("chelsea")}
    for i in range(copies):
        for name, image in photos.items():
            cv2.imwrite(str(folder / f"{name}_{i:04d}.jpg"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        shutil.copy(os.path.join(ROOT, "samples", "astronaut.jpg"), folder / f"sample_{i:04d}.jpg")
    if bad:
        (folder / "empty.jpg").write_bytes(b"")
        (folder / "junk.png").write_bytes(b"not an image at all")
        (folder / "bomb.png").write_bytes(png_declaring(50_000, 50_000))
        os.symlink(folder / "gone.jpg", folder / "dangling.jpg")
        (folder / "noframes.mp4").write_bytes(b"")
    for i in range(videos):
        write_video(folder / f"clip{i}.avi", frames=12 + 6 * i)
    return folder


def untimed(record):
    """A video's summary record without its wall-clock figures (seconds, fps), which differ from run to run."""
    return {k: v for k, v in record["summary"].items() if k not in ("seconds", "fps")}


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


@pytest.mark.slow
def test_a_folder_gives_predict_jsons_answers_with_error_records_and_videos(tmp_path):
    folder = photo_folder(tmp_path / "in", videos=1)
    today = run_cli("predict", folder, "--json")
    assert today.returncode == 1  # the bad files
    expected = {r["image"]: r["faces"] for r in map(json.loads, today.stdout.splitlines())}
    output = tmp_path / "out" / "results.jsonl"
    output.parent.mkdir()
    result = run_cli("predict", folder, "--output", output, "--workers", "2", "--chunk", "2")
    assert result.returncode == 1 and result.stderr.count("error: ") == 1 and "Traceback" not in result.stderr
    assert "5 files could not be scored" in result.stderr
    records = read_jsonl(output)
    assert [r["path"] for r in records] == sorted(r["path"] for r in records)  # the folder's order
    errors = {os.path.basename(r["path"]): r["error"] for r in records if "error" in r}
    assert sorted(errors) == ["bomb.png", "dangling.jpg", "empty.jpg", "junk.png", "noframes.mp4"]
    assert "above the limit" in errors["bomb.png"] and "no such file" in errors["dangling.jpg"]
    assert {r["path"]: r["faces"] for r in records if "faces" in r} == expected
    assert sum(len(faces) for faces in expected.values()) == 2  # the two astronauts; no face on the cat
    (clip,) = [r for r in records if r["kind"] == "video" and "error" not in r]
    from emotion.recognizer import EmotionRecognizer
    written, direct = read_jsonl(clip["records"]), list(EmotionRecognizer().analyze_video(clip["path"]))
    assert written[:-1] == direct[:-1] and untimed(written[-1]) == untimed(direct[-1])  # webcam --json's records
    assert clip["summary"]["frames"] == 12 and "clip0.avi: 12 frames" in result.stdout
    for suffix in (".csv", ".parquet"):  # the same records in the tabular formats
        table = run_cli("predict", folder, "--output", tmp_path / "out" / f"results{suffix}", "--workers", "1")
        assert table.returncode == 1, table.stderr
        pandas = pytest.importorskip("pandas")
        frame = (pandas.read_csv if suffix == ".csv" else pandas.read_parquet)(tmp_path / "out" / f"results{suffix}")
        assert list(frame["path"]) == [r["path"] for r in records]
        assert {p: json.loads(f) for p, f in zip(frame["path"], frame["faces"]) if isinstance(f, str)} == expected
    cv2.imwrite(str(folder / "zz_new.png"), real_photo("astronaut"))  # --resume: only the new file is scored
    again = run_cli("predict", folder, "--output", output, "--resume", "--workers", "1")
    assert "Answered 1 files (0 errors), skipped 9 answered before" in again.stdout, again.stdout + again.stderr
    assert [r["path"] for r in read_jsonl(output)] == [r["path"] for r in records] + [str(folder / "zz_new.png")]


@pytest.mark.slow
def test_a_run_killed_part_way_and_resumed_answers_every_image_exactly_once(tmp_path):
    folder = photo_folder(tmp_path / "in", copies=60, bad=False)  # 180 photos: more than 2 s of work on a fast machine
    output = tmp_path / "results.jsonl"
    command = [sys.executable, SCRIPT, "predict", str(folder), "--output", str(output), "--workers", "2",
               "--chunk", "2"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    run = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)  # its own process group, to clean up after a failure
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and (not output.exists() or output.stat().st_size == 0):
            time.sleep(0.2)
        time.sleep(random.uniform(0, 2))  # a random moment after the first records
        with open(f"/proc/{run.pid}/task/{run.pid}/children") as f:  # the workers (and multiprocessing's tracker)
            workers = [int(pid) for pid in f.read().split()]
        os.kill(run.pid, signal.SIGKILL)  # the main process alone, as the out-of-memory killer does
        run.wait()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(os.path.exists(f"/proc/{pid}") for pid in workers):
            time.sleep(0.5)
        assert len(workers) >= 2 and not any(os.path.exists(f"/proc/{pid}") for pid in workers)  # no orphan left
    finally:
        try:
            os.killpg(run.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    killed = output.read_bytes()
    assert 0 < killed.count(b"\n") < 180, "the kill came too late to test anything"
    resumed = subprocess.run([*command, "--resume"], env=env, cwd=tmp_path, capture_output=True, text=True,
                             timeout=900)
    assert resumed.returncode == 0, resumed.stderr
    records = read_jsonl(output)  # every line whole (json.loads would fail on a half line)
    paths = [r["path"] for r in records]
    assert sorted(paths) == sorted(str(folder / f) for f in os.listdir(folder))  # 0 lost, 0 doubled
    assert all("error" not in r and r["faces"] is not None for r in records)


@pytest.mark.slow
def test_ray_local_gives_the_single_machine_answers(tmp_path):
    pytest.importorskip("ray", reason="Ray is the optional extra: pip install .[ray]")
    folder = photo_folder(tmp_path / "in", copies=2, bad=False, videos=2)
    single = run_cli("predict", folder, "--output", tmp_path / "one.jsonl", "--workers", "2")
    assert single.returncode == 0, single.stderr
    ray_temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # Ray's sockets need a short path
    command = ["predict", folder, "--output", tmp_path / "ray.parquet", "--ray", "local", "--workers", "2"]
    try:
        result = run_cli(*command, env={"RAY_TMPDIR": ray_temp}, timeout=900)
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
        import pandas
        rows = pandas.read_parquet(tmp_path / "ray.parquet").to_dict("records")
        # --resume: a part cut off (as by a kill; Ray writes parts in place) is set aside and only its files scored
        parts = sorted((tmp_path / "ray.parquet").iterdir())
        cut = pandas.read_parquet(parts[0])["path"].tolist()
        parts[0].write_bytes(parts[0].read_bytes()[:100])
        resumed = run_cli(*command, "--resume", env={"RAY_TMPDIR": ray_temp}, timeout=900)
    finally:
        shutil.rmtree(ray_temp, ignore_errors=True)
    assert resumed.returncode == 0 and "Traceback" not in resumed.stderr, resumed.stderr
    assert f"Answered {len(cut)} files" in resumed.stdout and f"skipped {len(rows) - len(cut)}" in resumed.stdout
    again = pandas.read_parquet(tmp_path / "ray.parquet").to_dict("records")
    assert sorted(r["path"] for r in again) == sorted(r["path"] for r in rows)  # every file once
    assert {r["path"]: (r["faces"], r["frames"]) for r in again} == {r["path"]: (r["faces"], r["frames"]) for r in rows}
    records = read_jsonl(tmp_path / "one.jsonl")
    assert [r["path"] for r in rows] == [r["path"] for r in records]
    for row, one in zip(rows, records):
        assert (row["size"], row["mtime"]) == (one["size"], one["mtime"])
        if one["kind"] == "image":
            assert json.loads(row["faces"]) == one["faces"]
        else:  # the frames' records as the single machine's record file holds them, the summary last
            frames = read_jsonl(one["records"])
            assert json.loads(row["frames"]) == frames[:-1]
            assert untimed({"summary": json.loads(row["summary"])}) == untimed(frames[-1])


def test_progress_shows_the_time_left_on_a_terminal(capsys, monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert report_progress(5, 10, 0.1, 0.0) == 0.0  # redrawn at most every PROGRESS_BAR_SECONDS
    assert report_progress(5, 10, 2.0, 0.0) == 2.0
    assert capsys.readouterr().err.startswith("\r5/10 files, 2.5/s, 00:00:02 left")
