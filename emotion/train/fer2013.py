"""FER2013's own CSV (fer2013.csv: emotion code, 2304 pixel values, usage), read row by row into 48x48 faces with
their class and split, every bad row refused in one line."""

import csv

import numpy as np

from emotion.io.errors import UserError
from emotion.train.data import SPLITS

FER2013_CODES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")  # emotion column 0-6
FER2013_USAGE = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}


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
