"""prepare: FER2013 CSV, FER2013 image release and unsplit folders -> train/val/test folders."""

import os

import cv2
import numpy as np
import pytest

from emotion.io.errors import UserError
from emotion.io.lazy_import import HIDDEN_LINES
from emotion.jobs.prepare import prepare_dataset
from emotion.train.fer2013 import FER2013_CODES

from conftest import SHARED_DATA, draw_face, requires_shared_data, run_cli, run_here


def write_fer_csv(path, rows):
    """rows: (emotion code, usage); pixels are random 48x48 values."""
    rng = np.random.default_rng(0)
    lines = ["emotion,pixels,Usage"]
    for code, usage in rows:
        lines.append(f"{code},{' '.join(map(str, rng.integers(0, 256, 2304)))},{usage}")
    path.write_text("\n".join(lines) + "\n")
    return path


def count(out):
    return {(split, c): len(os.listdir(os.path.join(out, split, c)))
            for split in ("train", "val", "test") for c in sorted(os.listdir(os.path.join(out, split)))}


def test_fer2013_csv(tmp_path, capsys):
    rows = [(0, "Training")] * 5 + [(3, "Training")] * 4 + [(4, "PublicTest")] * 3 + [(3, "PrivateTest")] * 2 \
        + [(6, "Training")] * 7 + [(2, "PrivateTest")]  # neutral and fear are left out by default
    source = write_fer_csv(tmp_path / "fer2013.csv", rows)
    result = run_here(capsys, "prepare", "--source", source, "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert count(tmp_path / "out") == {
        ("train", "angry"): 5, ("train", "happy"): 4, ("train", "sad"): 0,
        ("val", "angry"): 0, ("val", "happy"): 0, ("val", "sad"): 3,
        ("test", "angry"): 0, ("test", "happy"): 2, ("test", "sad"): 0}
    image = cv2.imread(os.path.join(tmp_path, "out", "train", "angry", sorted(os.listdir(tmp_path / "out/train/angry"))[0]),
                       cv2.IMREAD_UNCHANGED)
    assert image.shape == (48, 48) and image.dtype == np.uint8
    assert "train" in result.stdout and "total" in result.stdout  # the counts table


def test_fer2013_csv_other_classes_and_errors(tmp_path, capsys):
    source = write_fer_csv(tmp_path / "fer.csv", [(2, "Training"), (5, "PublicTest"), (0, "Training")])
    result = run_here(capsys, "prepare", "--source", source, "--out", tmp_path / "out", "--classes", "fear,Surprised")
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(tmp_path / "out" / "train")) == ["fear", "surprise"]
    result = run_here(capsys, "prepare", "--source", source, "--out", tmp_path / "o2", "--classes", "contempt")
    assert result.returncode == 1 and "not in FER2013" in result.stderr


@pytest.mark.parametrize("bad_line,fragment", [
    ("3,1 2 3,Training", "line 3"), ("9," + " ".join(["1"] * 2304) + ",Training", "line 3"),
    ("x,1 2,Training", "line 3"), ("3," + " ".join(["1"] * 2304) + ",Elsewhere", "line 3"),
])
def test_malformed_csv_row_reported_with_its_line_number(tmp_path, bad_line, fragment, capsys):
    source = write_fer_csv(tmp_path / "fer.csv", [(3, "Training")])
    source.write_text(source.read_text() + bad_line + "\n")
    result = run_here(capsys, "prepare", "--source", source, "--out", tmp_path / "out")
    assert result.returncode == 1 and fragment in result.stderr and "Traceback" not in result.stderr


def test_unknown_csv_layout(tmp_path, capsys):
    (tmp_path / "x.csv").write_text("label,image\n1,2\n")
    result = run_here(capsys, "prepare", "--source", tmp_path / "x.csv", "--out", tmp_path / "out")
    assert result.returncode == 1 and "emotion,pixels,Usage" in result.stderr


@pytest.mark.parametrize("content, fragment", [
    (b"\x1f\x8b\x08\x00" + bytes(range(256)) * 4, "not a FER2013 CSV"),  # fer2013.tar.gz, not unpacked
    (b"emotion,pixels,Usage\n0,1\x002,Training\n", "line 2"),  # a NUL byte
    (None, "no rows of class(es) ['sad']"),  # a class asked for that the file does not hold
])
def test_csv_that_cannot_be_used_is_one_line(tmp_path, content, fragment, capsys):
    source = tmp_path / "fer2013.csv"
    if content is None:
        write_fer_csv(source, [(0, "Training"), (3, "PublicTest")])
    else:
        source.write_bytes(content)
    result = run_here(capsys, "prepare", "--source", source, "--out", tmp_path / "out")
    assert result.returncode == 1 and fragment in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_two_folders_for_one_class_are_refused(tmp_path):
    make_class_folders(tmp_path / "src", {"Anger": 2, "angry": 2, "sad": 2}, np.random.default_rng(0))
    with pytest.raises(UserError, match="both mean 'angry'"):
        prepare_dataset(str(tmp_path / "src"), str(tmp_path / "out"))


def make_class_folders(root, counts, rng):
    for name, n in counts.items():
        os.makedirs(root / name, exist_ok=True)
        for i in range(n):
            cv2.imwrite(str(root / name / f"{name}_{i:03d}.png"), draw_face("happy", 48, rng))


def test_fer2013_image_release(tmp_path):
    rng = np.random.default_rng(0)
    make_class_folders(tmp_path / "src" / "train", {"angry": 6, "happy": 8, "sad": 4, "neutral": 3}, rng)
    make_class_folders(tmp_path / "src" / "test", {"angry": 4, "happy": 6, "sad": 3, "neutral": 2}, rng)
    before = sorted(os.walk(tmp_path / "src"))
    counts, _, _ = prepare_dataset(str(tmp_path / "src"), str(tmp_path / "out"))  # default: the original's three
    assert counts == {("train", "angry"): 6, ("train", "happy"): 8, ("train", "sad"): 4,
                      ("val", "angry"): 2, ("val", "happy"): 3, ("val", "sad"): 2,
                      ("test", "angry"): 2, ("test", "happy"): 3, ("test", "sad"): 1}
    assert count(tmp_path / "out") == counts
    assert sorted(os.walk(tmp_path / "src")) == before  # copied, never moved


def test_unsplit_folder_with_synonyms_is_split_by_seed(tmp_path, capsys):
    rng = np.random.default_rng(0)
    make_class_folders(tmp_path / "ck", {"Anger": 20, "Happiness": 10, "SADNESS": 30}, rng)
    result = run_here(capsys, "prepare", "--source", tmp_path / "ck", "--out", tmp_path / "a", "--seed", 7)
    assert result.returncode == 0, result.stderr
    assert count(tmp_path / "a") == {
        ("train", "angry"): 16, ("train", "happy"): 8, ("train", "sad"): 24,
        ("val", "angry"): 2, ("val", "happy"): 1, ("val", "sad"): 3,
        ("test", "angry"): 2, ("test", "happy"): 1, ("test", "sad"): 3}
    run_here(capsys, "prepare", "--source", tmp_path / "ck", "--out", tmp_path / "b", "--seed", 7)
    run_here(capsys, "prepare", "--source", tmp_path / "ck", "--out", tmp_path / "c", "--seed", 8)
    listing = lambda out: sorted(os.path.relpath(os.path.join(r, f), out) for r, _, fs in os.walk(out) for f in fs)
    assert listing(tmp_path / "a") == listing(tmp_path / "b")  # same seed, same split
    assert listing(tmp_path / "a") != listing(tmp_path / "c")
    result = run_here(capsys, "prepare", "--source", tmp_path / "ck", "--out", tmp_path / "d",
                      "--classes", "happy,fear")
    assert result.returncode == 1 and "fear" in result.stderr


def test_no_overwrite_without_force(tmp_path, capsys):
    source = write_fer_csv(tmp_path / "fer.csv", [(0, "Training"), (3, "Training"), (4, "PublicTest")])
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    result = run_here(capsys, "prepare", "--source", source, "--out", tmp_path / "out")
    assert result.returncode == 1 and "--force" in result.stderr
    assert os.listdir(tmp_path / "out") == ["keep.txt"]
    result = run_here(capsys, "prepare", "--source", source, "--out", tmp_path / "out", "--force")
    assert result.returncode == 0 and (tmp_path / "out" / "keep.txt").exists()
    assert count(tmp_path / "out")[("train", "happy")] == 1


def test_the_shipped_hassplittedds_folder_takes_prepare_without_force(tmp_path, capsys):
    """HASsplittedDS/ ships with only its README.md: the README's prepare command needs no --force."""
    source = write_fer_csv(tmp_path / "fer.csv", [(0, "Training"), (3, "PublicTest"), (4, "PrivateTest")])
    (tmp_path / "HASsplittedDS").mkdir()
    (tmp_path / "HASsplittedDS" / "README.md").write_text("where the data set goes")
    result = run_here(capsys, "prepare", "--source", source, "--out", tmp_path / "HASsplittedDS")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "HASsplittedDS" / "README.md").read_text() == "where the data set goes"
    assert count(tmp_path / "HASsplittedDS")[("train", "angry")] == 1


def test_crop_faces_skips_photos_without_a_face(tmp_path):
    rng = np.random.default_rng(0)
    os.makedirs(tmp_path / "src" / "happy")
    cv2.imwrite(str(tmp_path / "src" / "happy" / "blank.png"), np.full((100, 100), 128, np.uint8))
    os.makedirs(tmp_path / "src" / "sad")
    cv2.imwrite(str(tmp_path / "src" / "sad" / "blank.png"), rng.integers(0, 255, (100, 100), dtype=np.uint8))
    counts, skipped, _ = prepare_dataset(str(tmp_path / "src"), str(tmp_path / "out"), crop_faces=True)
    assert sum(counts.values()) == 0 and len(skipped) == 2


def test_prepare_prints_no_tensorflow_start_up_lines(tmp_path):
    """--crop-faces loads mtcnn, and with it TensorFlow, whose start-up lines other commands keep off stderr. A
    user's TF_CPP_MIN_LOG_LEVEL=0 (the script keeps it) lets them through even where level 2 holds them back."""
    rng = np.random.default_rng(0)
    make_class_folders(tmp_path / "src", {"happy": 1, "sad": 1}, rng)
    result = run_cli("prepare", "--source", tmp_path / "src", "--out", tmp_path / "out", "--crop-faces",
                     env={"TF_CPP_MIN_LOG_LEVEL": "0"})
    assert result.returncode == 0, result.stderr
    assert not [line for line in result.stderr.splitlines() if line.startswith(HIDDEN_LINES)], result.stderr


@pytest.mark.real_data
@requires_shared_data
def test_crop_faces_stores_the_face_of_each_photo(tmp_path):
    """Real FER2013 faces enlarged onto a larger grey photo: prepare --crop-faces keeps just the face."""
    for emotion in ("happy", "sad"):
        os.makedirs(tmp_path / "src" / emotion)
        folder = os.path.join(SHARED_DATA, "val", emotion)
        for name in sorted(os.listdir(folder))[:5]:
            photo = np.full((360, 480), 128, np.uint8)
            photo[84:276, 144:336] = cv2.resize(cv2.imread(os.path.join(folder, name), cv2.IMREAD_GRAYSCALE),
                                                (192, 192), interpolation=cv2.INTER_CUBIC)
            cv2.imwrite(str(tmp_path / "src" / emotion / name), photo)
    counts, skipped, _ = prepare_dataset(str(tmp_path / "src"), str(tmp_path / "out"), crop_faces=True)
    assert sum(counts.values()) + len(skipped) == 10 and sum(counts.values()) >= 6, skipped
    for root, _, files in os.walk(tmp_path / "out"):
        for name in files:
            h, w = cv2.imread(os.path.join(root, name), cv2.IMREAD_GRAYSCALE).shape
            assert 100 <= h <= 300 and 100 <= w <= 300  # the face with a margin, not the 360x480 photo


def test_all_seven_fer2013_classes_from_the_csv(tmp_path, capsys):
    rows = [(code, usage) for code in range(7) for usage in ("Training", "PublicTest", "PrivateTest")]
    source = write_fer_csv(tmp_path / "fer2013.csv", rows)
    result = run_here(capsys, "prepare", "--source", source, "--out", tmp_path / "out",
                     "--classes", ",".join(FER2013_CODES))
    assert result.returncode == 0, result.stderr
    assert count(tmp_path / "out") == {(split, c): 1 for split in ("train", "val", "test") for c in FER2013_CODES}


def test_the_image_release_leaves_out_its_padding_copies(tmp_path):
    rng = np.random.default_rng(0)
    make_class_folders(tmp_path / "src" / "train", {"disgust": 3, "happy": 2}, rng)
    make_class_folders(tmp_path / "src" / "test", {"disgust": 2, "happy": 2}, rng)
    for k in (1, 2):  # the release's augmented copies of a disgust face
        cv2.imwrite(str(tmp_path / "src" / "train" / "disgust" / f"disgust_000.jpg{k}.jpg"), draw_face("sad", 48, rng))
    counts, _, _ = prepare_dataset(str(tmp_path / "src"), str(tmp_path / "out"), ["disgust", "happy"])
    assert counts["train", "disgust"] == 3 and counts["train", "happy"] == 2


def make_sequences(root, subjects=30, frames=4):
    """CK+-style names: each subject posed two emotions, each a sequence of frames (S001_002_00000003.png)."""
    rng = np.random.default_rng(1)
    classes = ("happy", "sad", "surprise")
    for s in range(1, subjects + 1):
        for sequence, emotion in enumerate((classes[s % 3], classes[(s + 1) % 3]), start=1):
            os.makedirs(root / emotion, exist_ok=True)
            for frame in range(1, frames + 1):
                cv2.imwrite(str(root / emotion / f"S{s:03d}_{sequence:03d}_{frame:08d}.png"),
                            draw_face("happy", 48, rng))


def subjects_per_split(out):
    return {split: {name[:4] for c in os.listdir(out / split) for name in os.listdir(out / split / c)}
            for split in ("train", "val", "test")}


def test_an_unsplit_folder_keeps_each_person_in_one_split(tmp_path, capsys):
    make_sequences(tmp_path / "ck")
    result = run_here(capsys, "prepare", "--source", tmp_path / "ck", "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert "240 files in 30 groups" in result.stdout
    seen = subjects_per_split(tmp_path / "out")
    assert not (seen["train"] & seen["val"] or seen["train"] & seen["test"] or seen["val"] & seen["test"])
    assert len(seen["train"]) >= 20 and seen["val"] and seen["test"]
    assert sum(count(tmp_path / "out").values()) == 240
    result = run_here(capsys, "prepare", "--source", tmp_path / "ck", "--out", tmp_path / "mixed",
                      "--group-pattern", "none")
    assert result.returncode == 0, result.stderr
    seen = subjects_per_split(tmp_path / "mixed")
    assert seen["train"] & seen["test"]  # frame by frame, the same people land in train and test


def test_too_few_groups_and_a_bad_pattern_are_one_line_errors(tmp_path, capsys):
    make_sequences(tmp_path / "ck", subjects=5, frames=2)
    result = run_here(capsys, "prepare", "--source", tmp_path / "ck", "--out", tmp_path / "out")
    assert result.returncode == 1 and "only 5 groups" in result.stderr and len(result.stderr.splitlines()) == 1
    result = run_here(capsys, "prepare", "--source", tmp_path / "ck", "--out", tmp_path / "out", "--group-pattern", "(")
    assert result.returncode == 2 and "not a regular expression" in result.stderr


def make_web_photos(root):
    """LFW-style names (Firstname_Lastname_0007.jpg, Name_12.jpg) of 40 people, each in two classes, files named
    after their class (happy_3.png, which is no person), and a folder per person inside a class folder."""
    rng = np.random.default_rng(2)
    classes = ("happy", "sad", "surprise")
    for p in range(40):
        letters = chr(65 + p // 26) + chr(97 + p % 26)
        name = f"An{letters}_Lee" if p % 2 else f"Bo{letters}"
        for k, emotion in enumerate((classes[p % 3], classes[(p + 1) % 3])):
            os.makedirs(root / emotion, exist_ok=True)
            for i in range(3):
                cv2.imwrite(str(root / emotion / f"{name}_{k * 3 + i + 1:04d}.png"), draw_face("happy", 48, rng))
    for emotion in classes:
        for i in range(4):
            cv2.imwrite(str(root / emotion / f"{emotion}_{i}.png"), draw_face("happy", 48, rng))
        for person in ("alice", "bob"):
            os.makedirs(root / emotion / person, exist_ok=True)
            for extension in ("png", "jpg"):  # no number: only their folder groups them
                cv2.imwrite(str(root / emotion / person / f"{person}.{extension}"), draw_face("happy", 48, rng))


def people_per_split(out):
    import re
    return {split: {re.sub(r"[_ .-]*\d*\.(png|jpg)$", "", name) for c in os.listdir(out / split)
                    for name in os.listdir(out / split / c) if not name.startswith(c)}
            for split in ("train", "val", "test")}


def test_the_default_groups_web_names_and_person_folders_and_says_so(tmp_path, capsys):
    make_web_photos(tmp_path / "web")
    result = run_here(capsys, "prepare", "--source", tmp_path / "web", "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    # 40 people, 12 class-named files (each its own group), alice and bob (their folders)
    assert "264 files in 54 groups" in result.stdout
    seen = people_per_split(tmp_path / "out")
    assert not (seen["train"] & seen["val"] or seen["train"] & seen["test"] or seen["val"] & seen["test"])
    assert len(seen["train"]) >= 20 and seen["val"] and seen["test"]
    assert sum(count(tmp_path / "out").values()) == 264


def test_every_file_its_own_group_is_a_warning(tmp_path, capsys):
    rng = np.random.default_rng(3)
    for emotion in ("happy", "sad"):
        os.makedirs(tmp_path / "web" / emotion)
        for i in range(10):
            name = f"{emotion}{'abcdefghij'[i]}.png"
            cv2.imwrite(str(tmp_path / "web" / emotion / name), draw_face("happy", 48, rng))
    result = run_here(capsys, "prepare", "--source", tmp_path / "web", "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert "Warning: 20 files in 20 groups: no two file names share a person's id by --group-pattern" in result.stdout


@pytest.mark.real_data
@pytest.mark.skipif(not os.path.isdir(os.path.join(SHARED_DATA, "..", "webfaces7-dev")), reason="webfaces7-dev absent")
def test_webfaces7_dev_puts_no_person_in_two_splits(tmp_path, capsys):
    import re
    result = run_here(capsys, "prepare", "--source", os.path.join(SHARED_DATA, "..", "webfaces7-dev"),
                      "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert re.search(r"1154 files in \d+ groups", result.stdout)
    seen = people_per_split(tmp_path / "out")
    assert not (seen["train"] & seen["val"] or seen["train"] & seen["test"] or seen["val"] & seen["test"])
