"""The record files of batch scoring (predict --output): JSON lines, CSV, or a folder of Parquet parts, appended to
as records come and read back by --resume. A killed run leaves whole records only: each write is one append of whole
lines, a line cut short by a kill is dropped on resume (its file is scored again), and a Parquet part is renamed into
place only once it is complete."""

import contextlib
import csv
import glob
import io
import json
import os
import warnings

from emotion.io.errors import UserError
from emotion.io.files import atomic_write
from emotion.io.images import printable

OUTPUT_SUFFIXES = (".jsonl", ".csv", ".parquet")  # predict --output: the formats, by the name's ending
PARQUET_PART_RECORDS = 1000  # .parquet: records gathered before a part file is written (a kill loses at most these)
COLUMNS = ("kind", "path", "size", "mtime", "error", "detection", "records", "faces", "summary", "frames")
JSON_COLUMNS = ("faces", "summary", "frames")  # in the tabular formats (CSV, Parquet, Ray's), these hold JSON text


def to_row(record):
    """A record as one row of the tabular outputs: the fixed COLUMNS, lists and dicts as JSON text."""
    row = {name: record.get(name) for name in COLUMNS}
    for name in JSON_COLUMNS:
        row[name] = json.dumps(record[name]) if name in record else None
    return row


def record_key(record):
    """What --resume compares: (path, size, mtime)."""
    return record["path"], record["size"], record["mtime"]


def refuse_existing(path, resume):
    """An existing --output is continued with --resume, never overwritten (one machine and Ray alike)."""
    if os.path.exists(path) and not resume:
        raise UserError(f"--output {printable(path)!r} exists: add --resume to continue it (files already answered "
                        "are skipped), or give another name")


def check_output(path, resume):
    """Refuse an --output that open_results cannot open: its suffix, an existing one without --resume, a missing
    folder, or a folder of parts (as --ray writes .jsonl) where a file is expected."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise UserError(f"--output {printable(path)!r}: name a {', '.join(OUTPUT_SUFFIXES)} file")
    refuse_existing(path, resume)
    if suffix != ".parquet" and os.path.isdir(path):
        raise UserError(f"--output {printable(path)!r} is a folder of parts, as --ray writes them: continue it with "
                        "the same --ray and --resume, or give a file name")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UserError(f"--output {printable(path)!r}: folder {printable(folder)!r} does not exist")


@contextlib.contextmanager
def open_results(path, resume):
    """Yields (done, write): the keys (path, size, mtime) of the records `path` already holds (with --resume), and
    write(records), which appends them whole. Without --resume an existing output is refused, not overwritten."""
    check_output(path, resume)
    suffix = os.path.splitext(path)[1].lower()
    opener = open_parquet if suffix == ".parquet" else open_lines
    try:
        with opener(path, suffix == ".csv") as opened:
            yield opened
    except OSError as error:
        raise UserError(f"cannot write {printable(path)!r} ({error.strerror}); the records written so far are "
                        "whole: free some space, then run the same command with --resume") from None


def parse_line(line, is_csv):
    if is_csv:
        row = next(csv.reader([line]))
        size, mtime = row[2], row[3]
        return row[1], int(size) if size else None, float(mtime) if mtime else None
    return record_key(json.loads(line))


@contextlib.contextmanager
def open_lines(path, is_csv):
    """JSON lines or CSV: the keys already there (a cut-off last line removed), then appends of whole lines."""
    done, good = set(), 0
    if os.path.exists(path):
        with open(path, "rb") as f:
            for number, line in enumerate(f, 1):
                if not line.endswith(b"\n"):
                    break  # cut off by a kill: dropped, its file is scored again
                good += len(line)
                if is_csv and number == 1:
                    continue
                try:
                    done.add(parse_line(line.decode("utf-8"), is_csv))
                except (ValueError, KeyError, IndexError, StopIteration, csv.Error):
                    raise UserError(f"{printable(path)!r} line {number} is not a record of predict --output; give "
                                    "another --output") from None
        os.truncate(path, good)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        if is_csv and good == 0:
            write_all(fd, (",".join(COLUMNS) + "\n").encode())

        def write(records):
            if is_csv:
                text = io.StringIO()
                csv.writer(text, lineterminator="\n").writerows([to_row(r)[c] for c in COLUMNS] for r in records)
                data = text.getvalue()
            else:
                data = "".join(json.dumps(r) + "\n" for r in records)
            write_all(fd, data.encode("utf-8"))

        yield done, write
    finally:
        os.close(fd)


def keys_in_parts(folder):
    """The keys (path, size, mtime) of the records in a folder of parts: Parquet files, or JSON-lines files as Ray
    Data writes them (.json). A part that cannot be read whole (cut off by a kill: Ray writes its parts in place) is
    renamed .NAME.incomplete (a hidden name, which pyarrow, pandas and Ray skip in a folder) and its files are
    scored again."""
    done = set()
    for part in sorted(glob.glob(os.path.join(folder, "*.parquet")) + glob.glob(os.path.join(folder, "*.json"))):
        try:
            if part.endswith(".parquet"):
                import pyarrow.parquet as pq
                table = pq.read_table(part, columns=["path", "size", "mtime"]).to_pydict()
                keys = set(zip(table["path"], table["size"], table["mtime"]))
            else:
                with open(part, "rb") as f:
                    keys = {record_key(json.loads(line)) for line in f.read().decode("utf-8").splitlines()}
        except (OSError, ValueError, KeyError, TypeError):  # pyarrow's ArrowInvalid is a ValueError
            aside = os.path.join(folder, f".{os.path.basename(part)}.incomplete")
            os.replace(part, aside)
            warnings.warn(f"{printable(part)!r} is not a whole part (cut off?): set aside as {printable(aside)!r}, "
                          "its files are scored again")
            continue
        done |= keys
    return done


def write_all(fd, data):
    """One append of `data` (os.write again for what a short write left)."""
    while data:
        data = data[os.write(fd, data):]


@contextlib.contextmanager
def open_parquet(path, _):
    """A folder of Parquet parts (as Ray Data writes): the keys in its parts, then parts of PARQUET_PART_RECORDS
    records, each written whole under a temporary name and renamed into place; the rest at the end (or on Ctrl-C)."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise UserError("--output .parquet needs pyarrow: pip install .[ray] (Ray Data brings it), or pick "
                        ".jsonl or .csv") from None
    os.makedirs(path, exist_ok=True)
    for leftover in glob.glob(os.path.join(path, ".*.tmp")):  # a part a kill interrupted: never renamed into place
        os.remove(leftover)
    done = keys_in_parts(path)
    parts = glob.glob(os.path.join(path, "*.parquet"))
    schema = pa.schema([("kind", pa.string()), ("path", pa.string()), ("size", pa.int64()), ("mtime", pa.float64()),
                        *((name, pa.string()) for name in COLUMNS[4:])])
    rows, number = [], len(parts)

    def flush():
        nonlocal rows, number
        if rows:
            while os.path.exists(os.path.join(path, f"part-{number:05d}.parquet")):
                number += 1
            with atomic_write(os.path.join(path, f"part-{number:05d}.parquet")) as tmp_path:
                pq.write_table(pa.Table.from_pylist(rows, schema=schema), tmp_path)
            rows = []

    def write(records):
        rows.extend(to_row(r) for r in records)
        if len(rows) >= PARQUET_PART_RECORDS:
            flush()

    try:
        yield done, write
    finally:
        flush()
