"""Annotators' votes (FER+): prepare --votes / --ferplus, training on each face's share of the votes, and
evaluate's annotator agreement."""

import csv
import json
import os

import numpy as np
import pytest
from test_prepare import write_fer_csv

from emotion.core.model_files import read_metadata
from emotion.io.errors import UserError
from emotion.jobs.prepare import prepare_dataset
from emotion.train.votes import FERPLUS_COLUMNS, VOTES_FILE, annotator_agreement, plurality, vote_shares, vote_targets

from conftest import make_dataset, run_main

# FER+ columns: neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF
SAD = (3, 0, 0, 7, 0, 0, 0, 0, 0, 0)
NEUTRAL = (6, 0, 0, 4, 0, 0, 0, 0, 0, 0)  # FER2013 may call it sad; six of ten people say neutral
HAPPY = (1, 9, 0, 0, 0, 0, 0, 0, 0, 0)
ANGRY = (2, 0, 0, 1, 7, 0, 0, 0, 0, 0)
TIE = (4, 0, 0, 4, 0, 0, 0, 0, 2, 0)
NOT_A_FACE = (0, 0, 0, 0, 0, 0, 0, 0, 0, 10)
UNKNOWN = (1, 0, 0, 0, 0, 0, 0, 0, 9, 0)
CONTEMPT = (2, 0, 0, 0, 0, 0, 0, 8, 0, 0)


def write_ferplus(path, rows, header=("Usage", "Image name", *FERPLUS_COLUMNS)):
    lines = [",".join(header)] + [",".join((usage, f"fer{i:07d}.png", *map(str, votes)))
                                  for i, (usage, votes) in enumerate(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


def csv_and_votes(tmp_path):
    """A fer2013.csv and its FER+ votes, row for row: FER2013 calls the first three faces sad."""
    faces = [(4, "Training", SAD), (4, "Training", NEUTRAL), (4, "Training", TIE), (3, "Training", HAPPY),
             (0, "Training", ANGRY), (0, "Training", NOT_A_FACE), (3, "Training", UNKNOWN), (0, "Training", CONTEMPT),
             (4, "PublicTest", NEUTRAL), (3, "PublicTest", HAPPY), (0, "PrivateTest", ANGRY),
             (4, "PrivateTest", SAD)]
    source = write_fer_csv(tmp_path / "fer2013.csv", [(code, usage) for code, usage, _ in faces])
    votes = write_ferplus(tmp_path / "fer2013new.csv", [(usage, v) for _, usage, v in faces])
    return source, votes


def files_of(out):
    return {(split, c): len(os.listdir(os.path.join(out, split, c)))
            for split in ("train", "val", "test") for c in os.listdir(os.path.join(out, split))
            if sum(1 for _ in os.scandir(os.path.join(out, split, c)))}


def test_plurality_and_shares():
    votes = np.array([SAD, NEUTRAL, TIE, NOT_A_FACE, UNKNOWN, CONTEMPT, HAPPY])
    classes = ["happy", "neutral", "sad"]
    assert plurality(votes, classes) == [(2, None), (1, None), (None, "tie"), (None, "not a face"),
                                         (None, "unknown"), (None, "other class"), (0, None)]
    shares, has_votes = vote_shares(votes, classes)
    np.testing.assert_allclose(shares[1], [0, 0.6, 0.4])  # happy, neutral, sad
    np.testing.assert_allclose(shares[6], [0.9, 0.1, 0])
    assert has_votes.tolist() == [True, True, True, False, True, True, True]
    # an ambiguous face: half the people say neutral, half sad; either answer is half right
    half = np.array([(5, 0, 0, 5, 0, 0, 0, 0, 0, 0)] * 2)
    assert annotator_agreement(half, np.array([1, 2]), classes) == pytest.approx(0.5)
    assert annotator_agreement(half, np.array([0, 0]), classes) == pytest.approx(0.0)


def test_prepare_fer2013_csv_with_ferplus_files_faces_by_their_votes(tmp_path, capsys):
    source, votes = csv_and_votes(tmp_path)
    out = tmp_path / "out"
    code, stdout, error = run_main(capsys, "prepare", "--source", source, "--ferplus", votes, "--out", out,
                                   "--classes", "angry,happy,neutral,sad")
    assert code == 0, error
    assert files_of(out) == {("train", "sad"): 1, ("train", "neutral"): 1, ("train", "happy"): 1,
                             ("train", "angry"): 1, ("val", "neutral"): 1, ("val", "happy"): 1,
                             ("test", "angry"): 1, ("test", "sad"): 1}
    assert "Left out 4 face(s) by their votes: 1 not a face, 1 other class, 1 tie, 1 unknown" in stdout
    with open(out / VOTES_FILE) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8 and all(os.path.isfile(out / row["path"]) for row in rows)
    neutral = next(row for row in rows if row["path"].startswith("train/neutral/"))
    assert (neutral["neutral"], neutral["sad"], neutral["happy"]) == ("6", "4", "0")  # this project's names
    # contempt, FER+'s eighth emotion, when asked for
    code, _, error = run_main(capsys, "prepare", "--source", source, "--ferplus", votes, "--out", tmp_path / "o8",
                              "--classes", "angry,contempt,happy,neutral,sad")
    assert code == 0 and files_of(tmp_path / "o8")[("train", "contempt")] == 1


@pytest.mark.parametrize("change,fragment", [
    (lambda rows: rows[:-1], "11 rows of votes and"),
    (lambda rows: [("PublicTest", rows[0][1])] + rows[1:], "line 2: Usage 'PublicTest'"),
])
def test_ferplus_rows_must_follow_fer2013_row_for_row(tmp_path, capsys, change, fragment):
    source, _ = csv_and_votes(tmp_path)
    rows = [(u, v) for u, v in [("Training", SAD), ("Training", NEUTRAL), ("Training", TIE), ("Training", HAPPY),
                                ("Training", ANGRY), ("Training", NOT_A_FACE), ("Training", UNKNOWN),
                                ("Training", CONTEMPT), ("PublicTest", NEUTRAL), ("PublicTest", HAPPY),
                                ("PrivateTest", ANGRY), ("PrivateTest", SAD)]]
    votes = write_ferplus(tmp_path / "bad.csv", change(rows))
    code, _, error = run_main(capsys, "prepare", "--source", source, "--ferplus", votes, "--out", tmp_path / "out")
    assert code == 1 and fragment in error
    assert not os.path.exists(tmp_path / "out")


def folder_with_votes(tmp_path, votes_of=lambda split, name, i: SAD if i % 2 else NEUTRAL):
    """Drawn faces in train/val/test/<class>/ and a votes file keyed by path: every other face is neutral to the
    annotators, whatever its folder says."""
    source = make_dataset(tmp_path / "src", per_class=(6, 4, 4), classes=("angry", "happy", "sad"))
    lines = ["path," + ",".join(FERPLUS_COLUMNS)]
    for split in ("train", "val", "test"):
        for name in ("angry", "happy", "sad"):
            for i, f in enumerate(sorted(os.listdir(os.path.join(source, split, name)))):
                lines.append(f"{split}/{name}/{f}," + ",".join(map(str, votes_of(split, name, i))))
    path = tmp_path / "votes.csv"
    path.write_text("\n".join(lines) + "\n")
    return source, path


def test_prepare_folder_with_votes_keeps_its_splits_and_refiles_faces(tmp_path, capsys):
    source, votes = folder_with_votes(tmp_path)
    code, _, error = run_main(capsys, "prepare", "--source", source, "--votes", votes, "--out", tmp_path / "out")
    assert code == 0, error
    assert files_of(tmp_path / "out") == {("train", "neutral"): 9, ("train", "sad"): 9, ("val", "neutral"): 6,
                                          ("val", "sad"): 6, ("test", "neutral"): 6, ("test", "sad"): 6}
    # the seven classes by default, those that no face's votes pick left out (training refuses an empty folder)
    assert sorted(os.listdir(tmp_path / "out" / "train")) == ["neutral", "sad"]


def test_prepare_can_keep_training_faces_in_their_source_folders(tmp_path, capsys):
    """--train-folders source: training faces stay under the source's class (train --folder-weight learns a share of
    it), keyed so in votes.csv; val and test go by the votes; without votes it is refused."""
    source, votes = folder_with_votes(tmp_path)
    out = tmp_path / "out"
    code, _, error = run_main(capsys, "prepare", "--source", source, "--votes", votes, "--out", out,
                              "--train-folders", "source")
    assert code == 0, error
    assert {key: n for key, n in files_of(out).items() if key[0] == "train"} == \
        {("train", "angry"): 6, ("train", "happy"): 6, ("train", "sad"): 6}
    assert {key: n for key, n in files_of(out).items() if key[0] != "train"} == \
        {("val", "neutral"): 6, ("val", "sad"): 6, ("test", "neutral"): 6, ("test", "sad"): 6}
    with open(out / VOTES_FILE, newline="") as f:
        rows = {row["path"]: row for row in csv.DictReader(f)}
    assert len(rows) == 42 and all(os.path.isfile(out / path) for path in rows)
    sources = {os.path.relpath(os.path.join(root, name), source): name for root, _, names in os.walk(source)
               for name in names}
    assert all(path in sources for path in rows if path.startswith("train/"))  # the same split/class/name
    code, stdout, error = run_main(capsys, "prepare", "--source", source, "--votes", votes, "--out", tmp_path / "two",
                                   "--train-folders", "source", "--classes", "neutral,sad")
    assert code == 0, error  # the angry and happy folders' training faces have no class here: left out
    assert {key: n for key, n in files_of(tmp_path / "two").items() if key[0] == "train"} == {("train", "sad"): 6}
    assert "12 source class not among the classes" in stdout
    code, _, error = run_main(capsys, "prepare", "--source", source, "--out", tmp_path / "plain", "--train-folders",
                              "source")
    assert code == 1 and "give --votes or --ferplus" in error and not (tmp_path / "plain").exists()


@pytest.mark.parametrize("edit,fragment", [
    (lambda lines: lines[:-1], "has no votes for 1 of 42 images"),
    (lambda lines: lines + ["train/angry/elsewhere.png," + ",".join("1" * 10)], "1 row(s) for images that are not"),
    (lambda lines: lines[:1] + [lines[1].rsplit(",", 1)[0] + ",x"] + lines[2:], "are not all numbers"),
    (lambda lines: lines[:1] + [lines[1].rsplit(",", 1)[0] + ",1.5"] + lines[2:], "not whole counts"),
    (lambda lines: ["file,neutral"] + lines[1:], "no column(s) path"),
])
def test_bad_votes_file_is_one_line_and_writes_nothing(tmp_path, capsys, edit, fragment):
    source, votes = folder_with_votes(tmp_path)
    votes.write_text("\n".join(edit(votes.read_text().splitlines())) + "\n")
    out = tmp_path / "out"
    os.makedirs(out / "train" / "mine")
    (out / "train" / "mine" / "keep.png").write_bytes(b"already here")
    code, _, error = run_main(capsys, "prepare", "--source", source, "--votes", votes, "--out", out, "--force")
    assert code == 1 and fragment in error
    assert (out / "train" / "mine" / "keep.png").read_bytes() == b"already here"  # nothing written over


def test_votes_need_the_matching_source(tmp_path):
    source, votes = folder_with_votes(tmp_path)
    with pytest.raises(UserError, match="--ferplus goes with --source fer2013.csv"):
        prepare_dataset(source, str(tmp_path / "out"), ferplus=str(votes))
    with pytest.raises(UserError, match="no votes; the votes are for"):
        prepare_dataset(source, str(tmp_path / "out"), votes=str(votes), classes=["calm"])


@pytest.fixture(scope="module")
def voted_data(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("voted")
    # angry folder faces: 7 of 10 annotators angry, 3 neutral; happy: all happy
    source, votes = folder_with_votes(tmp_path, lambda split, name, i: {"angry": (3, 0, 0, 0, 7, 0, 0, 0, 0, 0),
                                                                        "happy": (0, 10, 0, 0, 0, 0, 0, 0, 0, 0),
                                                                        "sad": (3, 0, 0, 7, 0, 0, 0, 0, 0, 0)}[name])
    prepare_dataset(source, str(tmp_path / "data"), votes=str(votes), classes=["angry", "happy", "neutral", "sad"])
    for split in ("train", "val", "test"):  # no face is neutral by plurality: keep the three classes of the faces
        os.rmdir(tmp_path / "data" / split / "neutral")
    return str(tmp_path / "data")


def test_training_targets_are_the_vote_shares(voted_data):
    import emotion_recognition as er
    class_names = ["angry", "happy", "sad"]
    splits = {split: er.load_folder(os.path.join(voted_data, split), class_names, 48, "grayscale", "none")
              for split in ("train", "val")}
    targets = vote_targets(voted_data, splits, class_names)
    # neutral is not among the classes: each face's votes among angry, happy, sad, as shares
    assert targets["train"].shape == (18, 3)
    np.testing.assert_allclose(targets["train"][0], [1, 0, 0])
    np.testing.assert_allclose(targets["val"][5], [0, 1, 0])
    four = ["angry", "happy", "neutral", "sad"]
    targets = vote_targets(voted_data, {s: er.load_folder(os.path.join(voted_data, s), four, 48, "grayscale",
                                                             "none") for s in ("train", "val")}, four)
    np.testing.assert_allclose(targets["train"][0], [0.7, 0, 0.3, 0])
    # --folder-weight: a training face learns 0.4 of its folder's class (angry), validation the shares alone
    blended = vote_targets(voted_data, {s: er.load_folder(os.path.join(voted_data, s), four, 48, "grayscale",
                                                             "none") for s in ("train", "val")}, four, 0.4)
    np.testing.assert_allclose(blended["train"], 0.6 * targets["train"] + 0.4 * np.eye(4)[[0] * 6 + [1] * 6 + [3] * 6])
    np.testing.assert_allclose(blended["train"][0], [0.82, 0, 0.18, 0])
    np.testing.assert_allclose(blended["val"], targets["val"])
    _, batch = next(iter(er.make_dataset(splits["train"][0], targets["train"], 3, 4)))
    np.testing.assert_allclose(batch.numpy()[0], targets["train"][0])


def test_mixup_blends_faces_and_their_vote_shares_alike():
    """--mixup: each face is blended with another of its batch by the same weight as its vote shares, so a face whose
    grey level is its shares' mean class number times 100 stays so; it mixes some faces, anew each epoch."""
    import emotion_recognition as er
    shares = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0.5, 0.5, 0], [0, 0.3, 0.7], [1, 0, 0]], np.float32)
    levels = shares @ np.array([0, 100, 200], np.float32)
    images = np.repeat(levels.astype(np.uint8), 16).reshape(-1, 4, 4, 1)
    dataset = er.make_dataset(images, shares, 3, 3, shuffle=True, seed=3, mixup=0.4)
    epochs = [[(x.numpy(), y.numpy()) for x, y in dataset] for _ in range(2)]
    for x, y in (pair for epoch in epochs for pair in epoch):
        np.testing.assert_allclose(x[:, 0, 0, 0], y @ [0, 100, 200], atol=0.01)
        np.testing.assert_allclose(x.min(axis=(1, 2, 3)), x.max(axis=(1, 2, 3)))  # a face is mixed with one face
        np.testing.assert_allclose(y.sum(axis=1), 1, rtol=1e-6)
    first, second = (np.concatenate([x[:, 0, 0, 0] for x, _ in epoch]) for epoch in epochs)
    assert not np.isin(np.round(first, 2), np.round(levels, 2)).all() and not np.allclose(first, second)
    plain = np.concatenate([x[:, 0, 0, 0] for x, _ in er.make_dataset(images, shares, 3, 3, mixup=0.0)])
    np.testing.assert_allclose(plain, levels.astype(np.uint8))


def test_train_takes_mixup_and_the_folder_weight_to_its_training_data_only(voted_data, tmp_path, capsys,
                                                                           monkeypatch):
    import emotion_recognition as er
    asked, batches = [], er.make_dataset
    monkeypatch.setattr(er, "make_dataset", lambda *a, **k: asked.append(k.get("mixup", 0.0)) or batches(*a, **k))
    code, stdout, error = run_main(capsys, "--data", voted_data, "--train-again", "--epochs", "1", "--mixup", "0.3",
                                   "--folder-weight", "0.4", "--model-path", tmp_path / "m.h5", "--output-dir",
                                   tmp_path / "r", "--no-show", "--precision", "float32")
    assert code == 0, error
    assert asked[:2] == [0.3, 0.0]  # train, then val
    assert "0.4 of the folder's class in training" in stdout
    stored = read_metadata(str(tmp_path / "m.h5"))
    assert (stored["targets"], stored["folder_weight"]) == ("votes", 0.4)
    code, _, error = run_main(capsys, "--data", voted_data, "--train-again", "--targets", "folders", "--folder-weight",
                              "0.4", "--model-path", tmp_path / "m2.h5", "--output-dir", tmp_path / "r2", "--no-show")
    assert code != 0 and "--targets folders learns the folders alone" in error and not (tmp_path / "m2.h5").exists()
    plain = make_dataset(tmp_path / "plain", per_class=(4, 2, 2))  # no votes.csv
    code, _, error = run_main(capsys, "--data", plain, "--train-again", "--folder-weight", "0.4", "--model-path",
                              tmp_path / "m3.h5", "--output-dir", tmp_path / "r3", "--no-show")
    assert code != 0 and "no votes file beside --data" in error and not (tmp_path / "m3.h5").exists()


@pytest.mark.slow  # trains twice
def test_train_and_evaluate_with_votes(voted_data, tmp_path, capsys):
    model = tmp_path / "m.h5"
    code, stdout, error = run_main(capsys, "--data", voted_data, "--train-again", "--epochs", "1", "--model-path",
                                   model, "--output-dir", tmp_path / "r", "--no-show", "--precision", "float32")
    assert code == 0, error
    assert "Targets: each face's share of the annotators' votes" in stdout
    assert read_metadata(str(model))["targets"] == "votes"
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    predictions = np.array(metrics["confusion_matrix"])
    # every test face's votes are 7 (or 10) of 10 for its folder's class among angry, happy, sad: agreement is
    # the share of votes of each answer, computed here from the confusion matrix
    share = {("angry", "angry"): 1.0, ("happy", "happy"): 1.0, ("sad", "sad"): 1.0}
    names = metrics["class_names"]
    expected = sum(predictions[i, j] * share.get((names[i], names[j]), 0.0) for i in range(3) for j in range(3))
    assert metrics["annotator_agreement"] == pytest.approx(expected / predictions.sum())
    code, stdout, error = run_main(capsys, "evaluate", os.path.join(voted_data, "test"), "--model-path", model,
                                   "--output-dir", tmp_path / "e", "--no-show", "--classes", "angry,happy,sad")
    assert code == 0, error
    assert f"Annotator agreement (mean share of the votes the answers got): {expected / predictions.sum():.4f}" \
        in stdout
    code, stdout, error = run_main(capsys, "--data", voted_data, "--train-again", "--epochs", "1", "--model-path",
                                   model, "--output-dir", tmp_path / "r", "--no-show", "--targets", "folders")
    assert code == 0 and "Targets: each face's share" not in stdout
    assert read_metadata(str(model))["targets"] == "folders"


@pytest.mark.slow  # builds VGG16
def test_votes_with_cached_features_class_weights_and_a_time_budget(voted_data, tmp_path, capsys):
    model = tmp_path / "v.h5"
    code, stdout, error = run_main(capsys, "--data", voted_data, "--train-again", "--epochs", "1", "--model", "vgg16",
                                   "--base-weights", "none", "--cache-features", "--class-weight", "balanced",
                                   "--time-budget", "5", "--model-path", model, "--output-dir", tmp_path / "r",
                                   "--no-show", "--precision", "float32")
    assert code == 0, error
    assert "Targets: each face's share of the annotators' votes" in stdout
    assert read_metadata(str(model))["targets"] == "votes"


def test_cached_features_take_vote_shares():
    from emotion.train.features import make_feature_dataset
    stored = np.zeros((1, 4, 2), np.float16)
    shares = np.array([[0.7, 0.3], [0, 1], [1, 0], [0.5, 0.5]], np.float32)
    _, targets = next(iter(make_feature_dataset(stored, shares, 2, 4)))
    np.testing.assert_allclose(targets.numpy(), shares)


def test_a_face_with_no_vote_among_the_classes_learns_its_folder(tmp_path, capsys):
    import emotion_recognition as er
    data = make_dataset(tmp_path / "d", per_class=(2, 1, 1), classes=("happy", "sad"))
    lines = ["path," + ",".join(FERPLUS_COLUMNS)]
    for split in ("train", "val", "test"):
        for name in ("happy", "sad"):
            for f in sorted(os.listdir(os.path.join(data, split, name))):
                votes = NEUTRAL if name == "sad" else (0, 10, 0, 0, 0, 0, 0, 0, 0, 0)
                if split == "train" and name == "sad" and f.endswith("001.png"):
                    votes = (10, 0, 0, 0, 0, 0, 0, 0, 0, 0)  # only neutral: no vote for happy or sad
                lines.append(f"{split}/{name}/{f}," + ",".join(map(str, votes)))
    (tmp_path / "d" / VOTES_FILE).write_text("\n".join(lines) + "\n")
    splits = {s: er.load_folder(os.path.join(data, s), ["happy", "sad"], 48, "grayscale", "none")
              for s in ("train", "val")}
    targets = vote_targets(data, splits, ["happy", "sad"])
    np.testing.assert_allclose(targets["train"], [[1, 0], [1, 0], [0, 1], [0, 1]])
    assert "Warning: 1 train face(s) have no votes among happy,sad" in capsys.readouterr().out


def test_votes_that_leave_nothing_are_refused_and_write_nothing(tmp_path, capsys):
    source, _ = csv_and_votes(tmp_path)
    rows = [(usage, (0,) * 10) for usage in ["Training"] * 8 + ["PublicTest"] * 2 + ["PrivateTest"] * 2]
    votes = write_ferplus(tmp_path / "zero.csv", rows)
    code, stdout, error = run_main(capsys, "prepare", "--source", source, "--ferplus", votes, "--out", tmp_path / "out")
    assert code == 1 and "train with" not in stdout
    assert error.splitlines()[-1] == (f"error: {votes}: the votes leave no face to write (left out: 12 no votes); "
                                      "check that it holds the annotators' counts")
    assert not os.path.exists(tmp_path / "out")
    assert plurality(np.zeros((1, 10), int), ["sad"]) == [(None, "no votes")]


def test_votes_that_empty_a_class_in_a_split_do_not_suggest_training(tmp_path, capsys):
    # happy only in train (val and test faces are neutral or sad); the default seven: those without faces left out
    source, votes = folder_with_votes(tmp_path, lambda split, name, i: HAPPY if split == "train" and i == 0
                                      else SAD if i % 2 else NEUTRAL)
    code, stdout, error = run_main(capsys, "prepare", "--source", source, "--votes", votes, "--out", tmp_path / "out")
    assert code == 0, error
    assert "Left out class(es) angry, disgust, fear, surprise: no face is filed under them" in stdout
    assert sorted(os.listdir(tmp_path / "out" / "train")) == ["happy", "neutral", "sad"]
    assert "train with" not in stdout
    assert stdout.splitlines()[-1] == (
        f"Warning: class folder(s) val/happy, test/happy hold no images; training refuses an empty class folder: "
        f"add images of them, or prepare again with --classes neutral,sad")


def test_only_the_data_sets_own_votes_file_counts(tmp_path, monkeypatch):
    """A votes.csv left in the working folder (prepare --votes votes.csv) is not the votes of a folder 'faces'."""
    from emotion.train.votes import find_votes_file
    for folder in ("faces/happy", "data/test/happy"):
        os.makedirs(tmp_path / folder)
    (tmp_path / VOTES_FILE).write_text("stray")
    (tmp_path / "data" / VOTES_FILE).write_text("the data set's")
    monkeypatch.chdir(tmp_path)
    assert find_votes_file("faces") is None
    assert find_votes_file(str(tmp_path / "faces")) is None
    assert find_votes_file("data") == os.path.join("data", VOTES_FILE)
    assert find_votes_file(os.path.join("data", "test")) == os.path.join("data", VOTES_FILE)  # a split's data set
    assert find_votes_file(os.path.join("data", "test", "happy")) is None


@pytest.mark.parametrize("vote,fragment", [
    ("inf", "not whole counts of 0 to 1,000,000"), ("9.3e18", "not whole counts of 0 to 1,000,000"),
    ("1e400", "not whole counts"), ("nan", "not whole counts"), ("1_0", "not whole counts"),
    ("-0", "not whole counts"), ("1000001", "not whole counts")])
def test_votes_that_are_not_plain_counts_are_one_line(tmp_path, capsys, vote, fragment):
    """inf or 9.3e18 raised OverflowError (a traceback); 1_0 was read as 10."""
    source, votes = folder_with_votes(tmp_path)
    lines = votes.read_text().splitlines()
    votes.write_text("\n".join(lines[:1] + [lines[1].rsplit(",", 1)[0] + "," + vote] + lines[2:]) + "\n")
    code, _, error = run_main(capsys, "prepare", "--source", source, "--votes", votes, "--out", tmp_path / "out")
    assert code == 1 and fragment in error and "Traceback" not in error, error
    # the data set's own votes.csv, read by evaluate and training, goes through the same reader
    from emotion.train.votes import vote_matrix
    with pytest.raises(UserError, match="not whole counts"):
        vote_matrix([[vote] * 10], "votes.csv")


def test_a_votes_file_far_larger_than_its_images_is_refused_unread(tmp_path, capsys):
    """A 200 MB votes file of valid-looking rows for 42 images took 187 s and 3.6 GB before its error."""
    from emotion.train.votes import MAX_VOTE_ROW_BYTES
    source, votes = folder_with_votes(tmp_path)
    with open(votes, "a") as f:
        f.write(f"train/angry/elsewhere.png,{','.join('1' * 10)}\n" * (MAX_VOTE_ROW_BYTES * 45 // 40))
    code, _, error = run_main(capsys, "prepare", "--source", source, "--votes", votes, "--out", tmp_path / "out")
    assert code == 1 and "is larger than votes for 42 images can be" in error, error
    assert not os.path.exists(tmp_path / "out")


def test_the_read_files_of_a_split_are_found_in_linear_time(monkeypatch):
    """The files but those skipped, in order, with the skipped set built once (it was rebuilt per file: 20,000
    files and 10,000 skipped took minutes)."""
    import time

    import emotion.train.votes as votes_module
    files = [f"train/a/{i:05d}.png" for i in range(20000)]
    monkeypatch.setattr(votes_module, "folder_files", lambda folder, class_names: (files, None))
    start = time.perf_counter()
    assert votes_module.read_files("train", ["a"], files[::2]) == files[1::2]
    assert time.perf_counter() - start < 1
