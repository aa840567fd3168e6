"""Preparing a data set: FER2013 (its CSV or its image release) or any folder of class folders, split into
train/val/test (emotion/train/splits.py: by groups, so one person never spans splits), faces cropped, votes filed:
the `prepare` command."""

import os
import shutil

import cv2
import numpy as np

from emotion.core.crops import crop_face
from emotion.core.detection import DETECTOR, detect_faces, load_face_detector
from emotion.io.arguments import SEED_ARG, class_list, regex_arg
from emotion.io.errors import UserError
from emotion.io.files import write_file
from emotion.io.images import ImageRefused, open_regular_file, read_image, write_image
from emotion.jobs.options import add_detector_argument
from emotion.train.data import SPLITS
from emotion.train.fer2013 import FER2013_CODES, FER2013_USAGE, read_fer2013_csv
from emotion.train.splits import GROUP_PATTERN, ORIGINAL_CLASSES, canonical_class, plan_folder_copies
from emotion.train.votes import VOTE_NAMES, VOTES_FILE, plurality, read_csv_rows, write_votes

SEED = 42  # seeds the stratified split
TRAIN_FOLDERS = "votes"  # with votes, training faces are filed under their plurality ("source": the source's class)
SEVEN_CLASSES = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")  # prepare's default with votes


def add_arguments(parser):
    add_detector_argument(parser)
    parser.add_argument("--source", required=True,
                        help="fer2013.csv, FER2013's image release (train/, test/), or a folder of class folders")
    parser.add_argument("--out", required=True, help="folder to write train/, val/, test/ into")
    parser.add_argument("--classes", type=class_list, metavar="A,B,...",
                        help="comma-separated (default: angry,happy,sad for FER2013, each sub-folder of a folder)")
    parser.add_argument("--seed", type=SEED_ARG, default=SEED, help="seed of the stratified split")
    parser.add_argument("--force", action="store_true", help="write into a non-empty --out")
    parser.add_argument("--group-pattern", type=regex_arg, default=GROUP_PATTERN,
                        help="files whose names begin with the same match (a person's id) share a split; 'none': off")
    parser.add_argument("--crop-faces", action="store_true",
                        help="store the largest detected face of each photo; photos with none are skipped")
    parser.add_argument("--votes", metavar="VOTES.csv",
                        help="annotators' votes keyed by image path under --source (FER+ columns): file each face "
                             "under its vote plurality and keep the votes for training (default classes: seven)")
    parser.add_argument("--ferplus", metavar="fer2013new.csv",
                        help="FER+'s votes for --source fer2013.csv, row for row: as --votes")
    parser.add_argument("--train-folders", choices=("votes", "source"), default=TRAIN_FOLDERS,
                        help="with votes: file training faces under their vote plurality, or under the source's own "
                             "class (for train --folder-weight); val and test go by the votes either way")


def read_votes_for_items(items, source, votes_path=None, ferplus_path=None):
    """The votes (N, 10) of each planned item: from a votes file keyed by path under the source folder
    (--votes), or FER+'s fer2013new.csv, whose rows follow fer2013.csv row for row (--ferplus)."""
    if ferplus_path:
        rows, votes = read_csv_rows(ferplus_path, "Usage", len(items))
        if len(rows) != len(items):
            raise UserError(f"{ferplus_path} has {len(rows)} rows of votes and {source} {len(items)} faces; "
                            "FER+'s fer2013new.csv follows fer2013.csv row for row: give the pair that belong together")
        usage = {split: name for name, split in FER2013_USAGE.items()}
        for line, (row, (split, _, _)) in enumerate(zip(rows, items), start=2):
            if row.strip() != usage[split]:
                raise UserError(f"{ferplus_path}, line {line}: Usage {row!r} but {source}'s row {line} is "
                                f"{usage[split]}; the two files do not follow each other row for row")
        return votes
    rows, votes = read_csv_rows(votes_path, "path", len(items))
    index = {os.path.normpath(path): i for i, path in enumerate(rows)}
    if len(index) < len(rows):
        raise UserError(f"{votes_path}: some paths appear more than once; give each image one row of votes")
    keys = [os.path.normpath(os.path.relpath(f, source)) for _, _, f in items]
    absent = [k for k in keys if k not in index]
    if absent:
        raise UserError(f"{votes_path} has no votes for {len(absent)} of {len(keys)} images in {source} (e.g. "
                        f"{absent[0]}); its paths must be the images' paths under {source}")
    extra = len(index) - len(set(keys))
    if extra:
        example = next(k for k in index if k not in set(keys))
        raise UserError(f"{votes_path} has {extra} row(s) for images that are not in {source} (e.g. {example}); "
                        "its paths must be the images' paths under the source folder")
    return votes[[index[k] for k in keys]]


def file_by_votes(items, votes, classes, train_folders=TRAIN_FOLDERS):
    """Items re-filed under their vote plurality among `classes`, their votes, and {reason: count} of those left
    out (not a face, unknown, a tie, or an emotion outside `classes`). train_folders "source": a training face kept
    stays in its source class, and is left out when that is not one of `classes`."""
    kept, kept_votes, left_out = [], [], {}
    for (split, source_class, item), row, (label, why) in zip(items, votes, plurality(votes, classes)):
        in_source = train_folders == "source" and split == "train"
        if label is not None and in_source and source_class not in classes:
            label, why = None, "source class not among the classes"
        if label is None:
            left_out[why] = left_out.get(why, 0) + 1
        else:
            kept.append((split, source_class if in_source else classes[label], item))
            kept_votes.append(row)
    return kept, kept_votes, left_out


def prepare_dataset(source, out, classes=None, seed=SEED, force=False, crop_faces=False, detector=DETECTOR,
                    group_pattern=GROUP_PATTERN, votes=None, ferplus=None, train_folders=TRAIN_FOLDERS):
    """Write out/{train,val,test}/<class>/ from a FER2013 CSV, its image release, or a folder of classes.

    crop_faces: keep only the largest face `detector` finds in each photo, cut as predict cuts faces.
    votes (a file keyed by path under a folder source) or ferplus (FER+'s fer2013new.csv beside a fer2013.csv):
    each face is filed under its vote plurality and its votes are kept in out/VOTES_FILE; train_folders "source":
    training faces stay under their source's class (train --folder-weight learns a share of it).

    Copies only (the source is never changed). Returns {(split, class): count}, the skipped files and
    {reason: count} of faces the votes leave out.
    """
    if ferplus and not os.path.isfile(source):
        raise UserError("--ferplus goes with --source fer2013.csv (its rows follow it); for a folder use --votes")
    if votes and os.path.isfile(source):
        raise UserError("--votes goes with a folder --source (keyed by image path); for fer2013.csv use --ferplus")
    if train_folders == "source" and not (votes or ferplus):
        raise UserError("--train-folders source files training faces by their source's class beside their votes; "
                        "give --votes or --ferplus")
    for path in (votes, ferplus):
        if path and not os.path.isfile(path):
            raise UserError(f"votes file {path!r} not found")
    if not os.path.exists(source):
        raise UserError(f"source {source!r} does not exist; give fer2013.csv or a folder of class folders")
    real_out, real_source = os.path.realpath(out), os.path.realpath(source)
    if real_out == real_source or real_out.startswith(real_source.rstrip(os.sep) + os.sep):
        raise UserError(f"--out {out!r} lies inside the source; choose a folder outside it")
    if real_source.startswith(real_out.rstrip(os.sep) + os.sep):  # --force would delete the source with out's splits
        raise UserError(f"the source {source!r} lies inside --out {out!r}; choose an --out folder outside it")
    if os.path.exists(out) and not os.path.isdir(out):
        raise UserError(f"--out {out!r} is a file; give a folder")
    if not os.path.isdir(os.path.dirname(os.path.abspath(out))):  # a mistyped path makes no folders
        raise UserError(f"--out: the folder {os.path.dirname(os.path.abspath(out))!r} does not exist; create it "
                        "first or choose another")
    for option, path in (("--votes", votes), ("--ferplus", ferplus)):  # out/votes.csv is written, --force clears out
        if path and os.path.realpath(path).startswith(real_out.rstrip(os.sep) + os.sep):
            raise UserError(f"{option} {path!r} lies inside --out {out!r}, which prepare writes; move it out or choose "
                            "another --out")
    # the layout notes shipped in HASsplittedDS/ (README.md) and hidden files do not count as contents
    if os.path.isdir(out) and [n for n in os.listdir(out) if n != "README.md" and not n.startswith(".")] \
            and not force:
        raise UserError(f"{out!r} is not empty; pass --force to write into it (its split folders are replaced)")
    classes = [canonical_class(c) for c in classes] if classes else None
    twice = sorted({c for c in classes or [] if classes.count(c) > 1})
    if twice:
        raise UserError(f"--classes names {', '.join(twice)} more than once (names are matched case-insensitively, "
                        "with synonyms: anger = angry); give each class once")
    by_votes = bool(votes or ferplus)
    default_classes = classes is None
    if by_votes:
        classes = classes or list(SEVEN_CLASSES)
        unknown = [c for c in classes if c not in VOTE_NAMES[:-2]]
        if unknown:
            raise UserError(f"class(es) {unknown} have no votes; the votes are for {', '.join(VOTE_NAMES[:-2])}")
    if os.path.isfile(source):
        classes = classes or list(ORIGINAL_CLASSES)
        unknown = [c for c in classes if c not in FER2013_CODES and not by_votes]
        if unknown:
            raise UserError(f"class(es) {unknown} are not in FER2013; it has {', '.join(FER2013_CODES)}")
        items = read_fer2013_csv(source, None if by_votes else classes)
    else:
        # with votes every folder is read: a face's folder is not its class, its votes are
        items, folder_classes = plan_folder_copies(source, None if by_votes else classes, seed, group_pattern)
        classes = classes if by_votes else folder_classes
        check_outside(out, [os.path.dirname(f) for _, _, f in items] + [f for _, _, f in items])
    left_out = {}
    if by_votes:
        items, item_votes, left_out = file_by_votes(items, read_votes_for_items(items, source, votes, ferplus),
                                                    classes, train_folders)
        if not items:
            raise UserError(f"{votes or ferplus}: the votes leave no face to write (left out: "
                            f"{', '.join(f'{n} {why}' for why, n in sorted(left_out.items()))}); check that it holds "
                            "the annotators' counts")
        picked = {name for _, name, _ in items}
        if default_classes and set(classes) - picked:  # an empty class folder: training would refuse the data set
            print(f"Left out class(es) {', '.join(c for c in classes if c not in picked)}: no face is filed under them")
            classes = [c for c in classes if c in picked]
    try:
        for split in SPLITS:
            if os.path.isdir(os.path.join(out, split)):
                shutil.rmtree(os.path.join(out, split))
            for name in classes:
                os.makedirs(os.path.join(out, split, name))
    except OSError as error:
        raise UserError(f"cannot write into --out {out!r} ({error.strerror}); choose a writable folder") from None
    detector = load_face_detector(detector) if crop_faces else None
    counts, skipped, written = {(s, c): 0 for s in SPLITS for c in classes}, [], []
    print(f"Writing {len(items)} images to {out}/")  # no Keras progress bar: prepare runs without TensorFlow
    for i, (split, name, item) in enumerate(items):
        target = os.path.join(out, split, name)
        if isinstance(item, np.ndarray):  # a decoded CSV row
            path = os.path.join(target, f"{split}_{i:05d}.png")
            write_image(path, item)
        elif detector is None:
            path = unique_path(os.path.join(target, os.path.basename(item)), item)
            try:
                copy_file(item, path)
            except ImageRefused as error:
                print(f"Warning: skipped {error}")
                continue
        else:
            try:
                image = read_image(item)
            except ImageRefused as error:
                print(f"Warning: skipped {error}")
                image = None
            found = detect_faces(detector, image) if image is not None else []
            if not found:
                skipped.append(item)
                continue
            face = crop_face(image, max(found, key=lambda f: f["box"][2] * f["box"][3]))
            path = unique_path(os.path.join(target, os.path.splitext(os.path.basename(item))[0] + ".png"), item)
            write_image(path, cv2.cvtColor(face, cv2.COLOR_RGB2BGR))
        counts[split, name] += 1
        if by_votes:
            written.append((os.path.relpath(path, out), item_votes[i]))
    if by_votes:
        write_votes(os.path.join(out, VOTES_FILE), written)
    return counts, skipped, left_out


def unique_path(path, source):
    """`path`, or (taken by a file of the same name from another folder) the name prefixed with that folder's."""
    if not os.path.exists(path):
        return path
    return os.path.join(os.path.dirname(path), f"{os.path.basename(os.path.dirname(source))}_{os.path.basename(path)}")


def check_outside(out, paths):
    """Refuse source files or folders that really (symlinks resolved) lie inside --out: --force would delete them."""
    real_out = os.path.realpath(out).rstrip(os.sep) + os.sep
    inside = next((p for p in paths if os.path.realpath(p).startswith(real_out)), None)
    if inside is not None:
        raise UserError(f"the source's {inside!r} lies inside --out {out!r} (through a symbolic link); choose an "
                        "--out folder outside the source's files")


def copy_file(source, target):
    """Copy through write_file: a full disk leaves no half image that looks whole. ImageRefused for what is not a
    regular file, or is above the image byte limit."""
    try:
        with open_regular_file(source) as f:
            data = f.read()
    except OSError as error:
        raise UserError(f"cannot read {source!r} ({error.strerror})") from None
    write_file(target, data)


def print_counts(counts):
    """The per-split, per-class table the original printed after splitting."""
    classes = sorted({c for _, c in counts})
    print(f"{'split':<8}" + "".join(f"{c:>10}" for c in classes) + f"{'total':>10}")
    for split in SPLITS:
        row = [counts[split, c] for c in classes]
        print(f"{split:<8}" + "".join(f"{n:>10}" for n in row) + f"{sum(row):>10}")


def run_prepare(args):
    counts, skipped, left_out = prepare_dataset(args.source, args.out, args.classes, args.seed, args.force,
                                                args.crop_faces, args.detector, args.group_pattern, args.votes,
                                                args.ferplus, args.train_folders)
    if left_out:
        print(f"Left out {sum(left_out.values())} face(s) by their votes: "
              + ", ".join(f"{n} {why}" for why, n in sorted(left_out.items())))
    if skipped:
        print(f"Skipped {len(skipped)} image(s) with no detectable face: " + ", ".join(skipped[:10])
              + (" ..." if len(skipped) > 10 else ""))
    print_counts(counts)
    classes = sorted({c for _, c in counts})
    empty = [f"{split}/{c}" for split in SPLITS for c in classes if not counts[split, c]]
    if not empty:
        print(f"Data set written to {args.out}/ (train with: python emotion_recognition.py --data {args.out} "
              "--train-again)")
        return
    full = ",".join(c for c in classes if not any(e.endswith("/" + c) for e in empty))
    print(f"Data set written to {args.out}/")
    print(f"Warning: class folder(s) {', '.join(empty)} hold no images; training refuses an empty class folder: add "
          f"images of them" + (f", or prepare again with --classes {full}" if "," in full else ""))
