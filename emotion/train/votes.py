"""Annotators' votes (FER+, Barsoum et al. 2016): reading a votes file, each face's plurality class, and the vote
shares a model learns from. `prepare --votes/--ferplus` writes VOTES_FILE beside the split folders; training and
`evaluate` read it from there."""

import csv
import os
import re

import numpy as np

from emotion.io.errors import UserError
from emotion.io.files import write_file
from emotion.train.data import SPLITS, folder_files
from emotion.train.distill import teacher_targets

VOTES_FILE = "votes.csv"  # beside train/, val/, test/: one row of votes per face, keyed by its path under the data set
FERPLUS_COLUMNS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown",
                   "NF")  # fer2013new.csv's vote columns, in its order
FERPLUS_NAMES = {"happiness": "happy", "sadness": "sad", "anger": "angry"}  # FER+'s names -> this project's
VOTE_NAMES = tuple(FERPLUS_NAMES.get(c, c) for c in FERPLUS_COLUMNS)  # VOTES_FILE's vote columns
NOT_EMOTIONS = ("unknown", "NF")  # a plurality here (NF: not a face) leaves the face out
MAX_VOTE = 1_000_000  # a vote cell above this is no count of annotators
VOTE_TEXT = re.compile(r"(\d+)(?:\.0*)?")  # a vote as written: a whole count, "3" or "3.0"
MAX_VOTE_ROW_BYTES = 4096  # a votes file longer than this a row per image is refused unread (a path and ten counts)


def vote_matrix(rows, where, columns=FERPLUS_COLUMNS):
    """Votes of rows (each the vote columns' texts, in `columns` order) as an (N, 10) int array; `where` names the
    file. A vote is a plain whole count of 0 to MAX_VOTE ("3", "3.0"): not "1_0", "inf", "9.3e18" or "-0"."""
    votes = np.zeros((len(rows), len(columns)), dtype=np.int64)
    for i, row in enumerate(rows):
        values = [(text or "").strip() for text in row]
        try:
            [float(v) for v in values]
        except ValueError:
            raise UserError(f"{where}, row {i + 2}: the votes {values} are not all numbers; each vote column holds a "
                            "count") from None
        counts = [VOTE_TEXT.fullmatch(v) for v in values]
        if not all(counts) or any(int(m.group(1)) > MAX_VOTE for m in counts):
            raise UserError(f"{where}, row {i + 2}: the votes {values} are not whole counts of 0 to {MAX_VOTE:,}")
        votes[i] = [int(m.group(1)) for m in counts]
    return votes


def read_csv_rows(path, key_column, images):
    """(each row's `key_column`, its votes) of a votes CSV that has `key_column` and every vote column of FER+; a
    clear error if not. A file larger than MAX_VOTE_ROW_BYTES a row for `images` images is refused unread."""
    try:
        size = os.path.getsize(path)
        if size > MAX_VOTE_ROW_BYTES * (images + 1):
            raise UserError(f"{path} ({size:,} bytes) is larger than votes for {images:,} images can be (at most "
                            f"{MAX_VOTE_ROW_BYTES:,} bytes a row, MAX_VOTE_ROW_BYTES); give the votes of these images")
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = [h.strip() for h in next(reader, [])]
            vote_columns = FERPLUS_COLUMNS if "happiness" in header else VOTE_NAMES  # FER+'s names or this project's
            missing = [c for c in (key_column, *vote_columns) if c not in header]
            if missing:
                raise UserError(f"{path}: no column(s) {', '.join(missing)}; expected {key_column} and the vote "
                                f"columns {','.join(vote_columns)}")
            where = [header.index(c) for c in (key_column, *vote_columns)]
            # only the key and the votes of each row are kept (a dict per row took 18 times the file's size)
            rows = [[row[i] if i < len(row) else None for i in where] for row in reader
                    if any(v.strip() for v in row)]  # blank lines skipped
    except FileNotFoundError:
        raise UserError(f"votes file {path!r} not found") from None
    except (UnicodeDecodeError, csv.Error) as error:
        raise UserError(f"{path}: not a CSV text file of votes ({type(error).__name__})") from None
    return [row[0] or "" for row in rows], vote_matrix([row[1:] for row in rows], path, vote_columns)


def plurality(votes, classes):
    """Each face's class by most votes (an index into `classes`), or None with the reason: "no votes", "not a face",
    "unknown", "tie", or "other class" (its plurality is an emotion outside `classes`)."""
    top = votes.max(axis=1, keepdims=True)
    winners = votes == top
    result = []
    for row, won in zip(votes, winners):
        if row.sum() == 0 or won.sum() > 1:
            result.append((None, "tie" if row.sum() else "no votes"))
            continue
        name = VOTE_NAMES[int(np.argmax(won))]
        if name in NOT_EMOTIONS:
            result.append((None, "not a face" if name == "NF" else "unknown"))
        elif name not in classes:
            result.append((None, "other class"))
        else:
            result.append((classes.index(name), None))
    return result


def write_votes(path, entries):
    """VOTES_FILE: `entries` are (path under the data set, votes in FERPLUS_COLUMNS order)."""
    lines = [",".join(("path", *VOTE_NAMES))]
    lines += [",".join((rel.replace(os.sep, "/"), *map(str, map(int, votes)))) for rel, votes in entries]
    write_file(path, "\n".join(lines) + "\n")


def find_votes_file(folder):
    """VOTES_FILE of the data set `folder` belongs to: the folder's own, or a split folder's (test/) parent's; a
    votes file anywhere else (the working folder holding a folder 'faces') is not this data's."""
    folder = os.path.normpath(folder)
    for root in (folder, *([os.path.dirname(folder)] if os.path.basename(folder) in SPLITS else [])):
        if os.path.isfile(os.path.join(root, VOTES_FILE)):
            return os.path.join(root, VOTES_FILE)
    return None


def votes_for(files, votes_path):
    """(N, 10) votes of image files (paths under the data set holding `votes_path`) in VOTE_NAMES order."""
    root = os.path.dirname(votes_path)
    paths, votes = read_csv_rows(votes_path, "path", len(files))
    index = {os.path.normpath(path): i for i, path in enumerate(paths)}
    keys = [os.path.normpath(os.path.relpath(f, root)) for f in files]
    absent = [k for k in keys if k not in index]
    if absent:
        raise UserError(f"{votes_path} has no votes for {len(absent)} image(s) of the data set (e.g. {absent[0]}); "
                        "prepare the data set again with --votes, or remove the votes file to train on the folders")
    return votes[[index[k] for k in keys]]


def vote_shares(votes, classes):
    """Each face's share of votes among `classes` (rows sum to 1) and a mask of faces with any vote among them."""
    kept = votes[:, [VOTE_NAMES.index(c) for c in classes]].astype(np.float32)
    total = kept.sum(axis=1, keepdims=True)
    has_votes = total[:, 0] > 0
    return kept / np.maximum(total, 1), has_votes


def annotator_agreement(votes, predictions, classes):
    """Mean share of the annotators' votes among `classes` that the model's answers got: on a face that half the
    people call neutral and half sad, either answer scores 0.5."""
    shares, has_votes = vote_shares(votes, classes)
    return float(shares[np.arange(len(predictions)), predictions][has_votes].mean()) if has_votes.any() else None


def vote_targets(data_dir, splits, class_names, folder_weight=0.0):
    """{split: each face's share of the annotators' votes among class_names} for train and val, when the data set
    has a votes file (prepare --votes); else None. A face with no vote among the classes keeps its folder's class.
    folder_weight W: a training face learns W of its folder's class and 1 - W of its shares (validation: the shares
    alone), for train folders that hold another labelling than the votes' plurality (--train-folders source); a
    UserError where there are no votes to blend."""
    path = find_votes_file(data_dir)
    unvoted = sorted(set(class_names) - set(VOTE_NAMES))
    if folder_weight and (path is None or unvoted):
        raise UserError("--folder-weight blends each face's votes with its folder's class; this run learns the "
                        "folders alone (no votes file beside --data, or votes for none of its classes)")
    if path is None:
        return None
    if unvoted:
        print(f"Targets: class folders ({path} has no votes for {unvoted})")
        return None
    targets = {}
    for split in ("train", "val"):
        _, labels, skipped = splits[split]
        files = read_files(os.path.join(data_dir, split), class_names, skipped)
        shares, has_votes = vote_shares(votes_for(files, path), class_names)
        shares[~has_votes] = np.eye(len(class_names), dtype=np.float32)[labels[~has_votes]]
        if not has_votes.all():
            print(f"Warning: {(~has_votes).sum()} {split} face(s) have no votes among {','.join(class_names)} in "
                  f"{path}; each learns its folder's class")
        if split == "train" and folder_weight:
            shares = (1 - folder_weight) * shares + folder_weight * np.eye(len(class_names), dtype=np.float32)[labels]
        targets[split] = shares
    blend = f", {folder_weight:g} of the folder's class in training" if folder_weight else ""
    print(f"Targets: each face's share of the annotators' votes in {path}{blend} (--targets folders: the class "
          "folders)")
    return targets


def training_targets(args, splits, class_names, image):
    """What train's faces learn, {split: targets} for train and val, and what the model file stores of it: the class
    folders, or with --targets votes and a votes file the vote shares (--folder-weight blends in the folder's
    class); then with --teacher, the teachers' mean answer blended into the training faces' (teacher_targets)."""
    targets = {split: splits[split][1] for split in ("train", "val")}
    if args.targets == "votes":
        targets = vote_targets(args.data, splits, class_names, args.folder_weight) or targets
    stored = {"targets": "votes" if targets["train"].ndim == 2 else "folders", "folder_weight": args.folder_weight}
    if args.teacher:  # distillation: the teachers' answers blended into the training targets
        targets["train"], stored["teachers"] = teacher_targets(targets["train"], args.teacher, args.teacher_weight,
                                                               splits["train"][0], class_names, image)
    return targets, stored


def vote_agreement(folder, files, predictions, class_names):
    """annotator_agreement of the answers `predictions` for `files` (the faces read from `folder`), when the data set
    of `folder` has a votes file; else None."""
    path = find_votes_file(folder)
    if path is None or not set(class_names) <= set(VOTE_NAMES):
        return None
    return annotator_agreement(votes_for(files, path), predictions, class_names)


def folder_agreement(folder, class_names, skipped, predictions):
    """The mean share of annotators' votes the answers got, when the data set has votes (prepare --votes); else None.
    `predictions` are for the faces read from `folder`: its files but `skipped`, in load_folder's order."""
    return vote_agreement(folder, read_files(folder, class_names, skipped), predictions, class_names)


def read_files(folder, class_names, skipped):
    """The image files of `folder` that load_folder read (all but `skipped`), in its order."""
    skipped = set(skipped)
    return [f for f in folder_files(folder, class_names)[0] if f not in skipped]
