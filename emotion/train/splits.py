"""Splitting a folder of class folders into train/val/test: a split folder kept as it is, FER2013's image release
(its test halved into val and test, its padding copies of disgust left out), or a user's folder split by groups, so
that the photos of one person (alike-named files, or a folder per person) never span two splits."""

import json
import os
import re
import subprocess
import sys

import numpy as np

from emotion.io.errors import UserError
from emotion.train.data import SPLITS, list_class_names, list_image_files

# a person's id in a file name (its first captured group): CK+'s subject "S010" of S010_006_00000013.png, or the name
# before a trailing number (LFW's "Al_Gore" of Al_Gore_0002.jpg, "Dwarakish" of Dwarakish_12.jpg); "none": off
GROUP_PATTERN = r"^([A-Za-z]*\d+)[_.-]|^(.*?[A-Za-z])[ _.-]*\d+\.\w+$"
NOT_PEOPLE = ("img", "image", "photo", "pic", "picture", "dsc", "dscn", "dscf", "pxl", "frame", "face", "screenshot",
              "training", "publictest", "privatetest", "train", "val", "test")  # ids that name no person (FER2013's)
ORIGINAL_CLASSES = ("angry", "happy", "sad")  # prepare's default for FER2013 sources
SPLIT_RATIOS = (0.8, 0.1, 0.1)  # train/val/test for an unsplit folder, as the original
GROUP_PATTERN_SECONDS = 10  # --group-pattern: time allowed to match every file name (then it is refused)
MATCH_STARTS = ("import json, re, sys\n"  # groups_of's child: [pattern, names] in, each name's id out: the first
                "pattern, names = json.load(sys.stdin)\n"  # group that matched, else the whole match
                "first = lambda m: next((g for g in m.groups() if g is not None), m.group(0))\n"
                "json.dump([first(m) if (m := re.match(pattern, n)) else None for n in names], sys.stdout)")
RELEASE_PADDING = r"\.jpg\d+\.jpg$"  # FER2013's image release pads disgust with augmented copies (NAME.jpgK.jpg)
CLASS_SYNONYMS = {"anger": "angry", "mad": "angry", "sadness": "sad", "unhappy": "sad", "happiness": "happy",
                  "joy": "happy", "fearful": "fear", "afraid": "fear", "disgusted": "disgust",
                  "surprised": "surprise", "neutrality": "neutral", "contemptuous": "contempt"}


def canonical_class(name):
    """'Anger' -> 'angry', 'SADNESS' -> 'sad': case-insensitive, common synonyms (CK+, AffectNet folder names)."""
    name = name.strip().lower()
    return CLASS_SYNONYMS.get(name, name)


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
