"""Preparing a data set: FER2013 (its CSV or its image release) or any folder of class folders, split into
train/val/test (by groups of alike-named files, so one person never spans splits): the `prepare` command."""

import csv
import json
import os
import re
import shutil
import subprocess
import sys

import cv2
import numpy as np

from emotion.core.detection import DETECTOR, crop_face, detect_faces, load_face_detector
from emotion.io.arguments import SEED_ARG, class_list, regex_arg
from emotion.io.errors import UserError
from emotion.io.files import write_file
from emotion.io.images import ImageRefused, open_regular_file, read_image, write_image
from emotion.jobs.options import add_detector_argument
from emotion.train.data import SPLITS, list_class_names, list_image_files
from emotion.train.votes import VOTE_NAMES, VOTES_FILE, plurality, read_csv_rows, write_votes

FER2013_CODES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")  # emotion column 0-6
FER2013_USAGE = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
SEED = 42  # seeds the stratified split
# a person's id in a file name (its first captured group): CK+'s subject "S010" of S010_006_00000013.png, or the name
# before a trailing number (LFW's "Al_Gore" of Al_Gore_0002.jpg, "Dwarakish" of Dwarakish_12.jpg); "none": off
GROUP_PATTERN = r"^([A-Za-z]*\d+)[_.-]|^(.*?[A-Za-z])[ _.-]*\d+\.\w+$"
NOT_PEOPLE = ("img", "image", "photo", "pic", "picture", "dsc", "dscn", "dscf", "pxl", "frame", "face", "screenshot",
              "training", "publictest", "privatetest", "train", "val", "test")  # ids that name no person (FER2013's)
ORIGINAL_CLASSES = ("angry", "happy", "sad")  # prepare's default for FER2013 sources
SPLIT_RATIOS = (0.8, 0.1, 0.1)  # train/val/test for an unsplit folder, as the original
SEVEN_CLASSES = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")  # prepare's default with votes
GROUP_PATTERN_SECONDS = 10  # --group-pattern: time allowed to match every file name (then it is refused)
MATCH_STARTS = ("import json, re, sys\n"  # groups_of's child: [pattern, names] in, each name's id out: the first
                "pattern, names = json.load(sys.stdin)\n"  # group that matched, else the whole match
                "first = lambda m: next((g for g in m.groups() if g is not None), m.group(0))\n"
                "json.dump([first(m) if (m := re.match(pattern, n)) else None for n in names], sys.stdout)")
RELEASE_PADDING = r"\.jpg\d+\.jpg$"  # FER2013's image release pads disgust with augmented copies (NAME.jpgK.jpg)
CLASS_SYNONYMS = {"anger": "angry", "mad": "angry", "sadness": "sad", "unhappy": "sad", "happiness": "happy",
                  "joy": "happy", "fearful": "fear", "afraid": "fear", "disgusted": "disgust",
                  "surprised": "surprise", "neutrality": "neutral", "contemptuous": "contempt"}


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


def canonical_class(name):
    """'Anger' -> 'angry', 'SADNESS' -> 'sad': case-insensitive, common synonyms (CK+, AffectNet folder names)."""
    name = name.strip().lower()
    return CLASS_SYNONYMS.get(name, name)


def read_fer2013_csv(path, classes):
    """Rows of FER2013's CSV as (split, class, 48x48 uint8 image); every problem names its line."""
    try:
        rows = read_fer2013_rows(path, classes)
    except (UnicodeDecodeError, csv.Error) as error:  # a binary file, an archive, a NUL byte
        if "field larger than field limit" in str(error):  # csv's only way of saying so
            raise UserError(f"{path}: a field is longer than {csv.field_size_limit():,} characters; a FER2013 row "
                            "is about 9,000; give fer2013.csv itself") from None
        raise UserError(f"{path}: not a FER2013 CSV text file ({type(error).__name__}); give fer2013.csv itself, "
                        "unpacked") from None
    found = {name for _, name, _ in rows}
    absent = [c for c in classes or () if c not in found]
    if absent:
        raise UserError(f"{path}: no rows of class(es) {absent}; choose others with --classes")
    usage = {split: name for name, split in FER2013_USAGE.items()}
    empty = [f"{split} ({usage[split]})" for split in SPLITS if not any(s == split for s, _, _ in rows)]
    if len(empty) == len(SPLITS) - 1:  # only Training rows: nothing to validate or test on
        raise UserError(f"{path}: only Training rows, none for {' or '.join(empty)}; FER2013's CSV has Training, "
                        "PublicTest and PrivateTest rows")
    for split in empty:
        print(f"Warning: {path} has no rows for {split}; that split stays empty")
    return rows


def read_fer2013_rows(path, classes):
    """The rows of the classes asked for, checked line by line."""
    with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: a byte-order mark (Excel's UTF-8 CSV) is dropped
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        if not {"emotion", "pixels", "Usage"} <= set(header):
            shown = ",".join(h if len(h) <= 20 else h[:20] + "..." for h in header[:5])  # a row of pixels: 9 kB
            raise UserError(f"{path}: expected FER2013's columns emotion,pixels,Usage on its first line; found "
                            f"{shown}{f',... ({len(header)} columns)' if len(header) > 5 else ''}")
        col = {name: header.index(name) for name in ("emotion", "pixels", "Usage")}
        rows = []
        for line, row in enumerate(reader, start=2):
            if not "".join(row).strip():  # a blank line (one at the end is common)
                continue
            try:
                code, pixels, usage = int(row[col["emotion"]]), row[col["pixels"]].split(), row[col["Usage"]].strip()
                image = np.array(pixels, dtype=np.float64)
            except (IndexError, ValueError):
                raise UserError(f"{path}, line {line}: unreadable row (expected an emotion code, "
                                "2304 pixel values and a Usage)") from None
            if not 0 <= code < len(FER2013_CODES) or usage not in FER2013_USAGE or image.size != 48 * 48 \
                    or not np.isfinite(image).all() or image.min() < 0 or image.max() > 255 \
                    or (image != np.round(image)).any():  # 1.5 would be cut to 1 unseen
                raise UserError(f"{path}, line {line}: emotion {code}, {image.size} pixels, Usage {usage!r}; "
                                f"expected 0-6, 2304 values in 0-255 (whole numbers), one of "
                                f"{', '.join(FER2013_USAGE)}")
            if classes is None or FER2013_CODES[code] in classes:
                rows.append((FER2013_USAGE[usage], FER2013_CODES[code], image.reshape(48, 48).astype(np.uint8)))
    return rows


def class_folders(folder):
    """{canonical class name: folder path} of a folder's sub-folders; two folders for one class is an error."""
    folders = {}
    for name in list_class_names(folder):
        same = folders.setdefault(canonical_class(name), os.path.join(folder, name))
        if same != os.path.join(folder, name):
            raise UserError(f"{same!r} and {os.path.join(folder, name)!r} both mean {canonical_class(name)!r}; "
                            "merge them into one folder")
    return folders


def split_files(files, ratios, rng):
    """Shuffle one class's files and cut them into consecutive parts by ratio (the last takes the rest)."""
    files = sorted(files)
    files = [files[i] for i in rng.permutation(len(files))]  # plain str (as rng.permutation(files)), not np.str_
    bounds = np.cumsum([round(r * len(files)) for r in ratios[:-1]])
    return np.split(np.array(files, dtype=object), bounds)


def groups_of(paths, pattern, seconds=GROUP_PATTERN_SECONDS, not_people=()):
    """The group each file belongs to: the id in its name that `pattern` matches (its first group that matched,
    else the whole match; an id in `not_people`, case aside, is none), else the file itself.

    The names are matched in a child process stopped after `seconds`: a pattern such as (a+)+b backtracks for
    exponential time on a name like aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!.jpg, and Python's re cannot be interrupted.
    """
    if pattern == "none":
        return list(paths)
    names = [os.path.basename(path) for path in paths]
    try:
        child = subprocess.run([sys.executable, "-I", "-c", MATCH_STARTS], input=json.dumps([pattern, names]),
                               capture_output=True, text=True, timeout=seconds, check=True)
    except subprocess.TimeoutExpired:
        raise UserError(f"--group-pattern {pattern!r} took more than {seconds} s (GROUP_PATTERN_SECONDS) on the "
                        f"names of {len(names):,} files: a nested repetition such as (a+)+ backtracks without end; "
                        "simplify it, or pass --group-pattern none") from None
    except (subprocess.CalledProcessError, OSError) as error:
        raise UserError(f"--group-pattern {pattern!r} could not be matched against the file names ({error})") from None
    not_people = {word.lower() for word in not_people}
    return [start if start is not None and start.strip(" _.-").lower() not in not_people else path
            for start, path in zip(json.loads(child.stdout), paths)]


def split_by_group(files, labels, groups, seed):
    """(train, val, test) parts of `files`, stratified by label, every group within one part (scikit-learn's
    StratifiedGroupKFold: a tenth of the groups' files is test, another tenth val, as SPLIT_RATIOS)."""
    from sklearn.model_selection import StratifiedGroupKFold
    folds = round(1 / SPLIT_RATIOS[2])
    try:
        parts = [test for _, test in StratifiedGroupKFold(folds, shuffle=True, random_state=seed).split(
            files, labels, groups)]
    except ValueError:
        raise UserError(f"only {len(set(groups))} groups of files by --group-pattern, too few for {folds} "
                        "parts; pass another --group-pattern, or --group-pattern none") from None
    val_folds = round(SPLIT_RATIOS[1] * folds)
    indices = (np.concatenate(parts[1 + val_folds:]), np.concatenate(parts[1:1 + val_folds]), parts[0])
    return [[files[i] for i in part] for part in indices]


def plan_folder_copies(source, classes, seed, group_pattern=GROUP_PATTERN):
    """[(split, class, source file)] for an image-folder source, split by seed and stratified by class; files
    of one group (groups_of) stay in one split. FER2013's release: its padding copies of disgust are left out."""
    rng = np.random.default_rng(seed)
    if all(os.path.isdir(os.path.join(source, split)) for split in SPLITS):  # already split: the splits stay
        parts = {split: class_folders(os.path.join(source, split)) for split in SPLITS}
        classes = classes or sorted(parts["train"])
        check_classes(source, parts, classes)
        return [(split, name, f) for split in SPLITS for name in classes for f in list_image_files(parts[split][name])
                if not re.search(RELEASE_PADDING, f)], classes
    released = os.path.isdir(os.path.join(source, "train")) and os.path.isdir(os.path.join(source, "test"))
    parts = {"train": class_folders(os.path.join(source, "train")),
             "test": class_folders(os.path.join(source, "test"))} if released else {"": class_folders(source)}
    # FER2013's release: the original's three classes by default; a folder of the user's own: all of them
    classes = classes or (list(ORIGINAL_CLASSES) if released else sorted(parts[""]))
    check_classes(source, parts, classes)
    plan = []
    if released:  # FER2013's image release: train stays, its test is halved into val and test
        for name in classes:
            plan += [("train", name, f) for f in list_image_files(parts["train"][name])
                     if not re.search(RELEASE_PADDING, f)]
            val, test = split_files(list_image_files(parts["test"][name]), (0.5, 0.5), rng)
            plan += [("val", name, f) for f in val] + [("test", name, f) for f in test]
        return plan, classes
    files = [(name, f) for name in classes for f in list_image_files(parts[""][name])]
    people = [(name, f) for name in classes for f in person_folder_files(parts[""][name])]
    # a file named for its class or a camera (happy_3.png, IMG_0001.jpg) is nobody in particular
    groups = groups_of([f for _, f in files], group_pattern, not_people=NOT_PEOPLE + tuple(parts[""]) + tuple(
        os.path.basename(folder) for folder in parts[""].values()))
    if group_pattern != "none":  # a folder per person: the folder's name is the id (Al_Gore/ and Al_Gore_0001.jpg)
        files, groups = files + people, groups + [os.path.basename(os.path.dirname(f)) for _, f in people]
    if len(set(groups)) == len(files):
        if len(files) > 1 and group_pattern != "none":
            print(f"Warning: {len(files)} files in {len(files)} groups: no two file names share a person's id by "
                  f"--group-pattern {group_pattern!r}, so photos of one person may land in train and test; name "
                  "them PERSON_1.jpg, PERSON_2.jpg, or give each person a folder in the class folder")
        for name in classes:
            mine = [f for n, f in files if n == name]
            for split, part in zip(SPLITS, split_files(mine, SPLIT_RATIOS, rng)):
                plan += [(split, name, f) for f in part]
        return plan, classes
    print(f"{len(files)} files in {len(set(groups))} groups by --group-pattern {group_pattern!r} and person folders: "
          "each group goes to one split")
    for split, part in zip(SPLITS, split_by_group(files, [name for name, _ in files], groups, seed)):
        plan += [(split, name, f) for name, f in part]
    return plan, classes


def person_folder_files(folder):
    """The images in the sub-folders of a class folder (one folder per person: happy/S010/001.png)."""
    return [f for sub in sorted(os.listdir(folder)) if not sub.startswith(".")
            and os.path.isdir(os.path.join(folder, sub)) for f in list_image_files(os.path.join(folder, sub))]


def check_classes(source, parts, classes):
    for part, folders in parts.items():
        missing = [c for c in classes if c not in folders]
        if missing:
            raise UserError(f"class(es) {missing} not found in {os.path.join(source, part)!r}; "
                            f"it has {sorted(folders)} (choose with --classes)")


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


def file_by_votes(items, votes, classes):
    """Items re-filed under their vote plurality among `classes`, their votes, and {reason: count} of those left
    out (not a face, unknown, a tie, or an emotion outside `classes`)."""
    kept, kept_votes, left_out = [], [], {}
    for (split, _, item), row, (label, why) in zip(items, votes, plurality(votes, classes)):
        if label is None:
            left_out[why] = left_out.get(why, 0) + 1
        else:
            kept.append((split, classes[label], item))
            kept_votes.append(row)
    return kept, kept_votes, left_out


def prepare_dataset(source, out, classes=None, seed=SEED, force=False, crop_faces=False, detector=DETECTOR,
                    group_pattern=GROUP_PATTERN, votes=None, ferplus=None):
    """Write out/{train,val,test}/<class>/ from a FER2013 CSV, its image release, or a folder of classes.

    crop_faces: keep only the largest face `detector` finds in each photo, cut as predict cuts faces.
    votes (a file keyed by path under a folder source) or ferplus (FER+'s fer2013new.csv beside a fer2013.csv):
    each face is filed under its vote plurality and its votes are kept in out/VOTES_FILE.

    Copies only (the source is never changed). Returns {(split, class): count}, the skipped files and
    {reason: count} of faces the votes leave out.
    """
    if ferplus and not os.path.isfile(source):
        raise UserError("--ferplus goes with --source fer2013.csv (its rows follow it); for a folder use --votes")
    if votes and os.path.isfile(source):
        raise UserError("--votes goes with a folder --source (keyed by image path); for fer2013.csv use --ferplus")
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
                                                    classes)
        if not items:
            raise UserError(f"{votes or ferplus}: the votes leave no face to write (left out: "
                            f"{', '.join(f'{n} {why}' for why, n in sorted(left_out.items()))}); check that it holds "
                            "the annotators' counts")
        picked = {name for _, name, _ in items}
        if default_classes and set(classes) - picked:  # an empty class folder: training would refuse the data set
            print(f"Left out class(es) {', '.join(c for c in classes if c not in picked)}: no face's votes pick them")
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
                                                args.ferplus)
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
