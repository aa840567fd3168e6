"""Failing safely on disk: the one atomic writer, the writable-folder check and the memory-mapped cache."""

import contextlib
import math
import os
import shutil
import tempfile
import uuid

import numpy as np

from emotion.io.errors import UserError


def open_cache(cache_dir, name, dtype, shape):
    """A memory-mapped array in a new file under `cache_dir`, deleted at once: the mapping keeps the data
    until the array is freed, and the disk space comes back then, even when the run is killed."""
    size = math.prod(shape) * np.dtype(dtype).itemsize
    try:
        os.makedirs(cache_dir, exist_ok=True)
        free = shutil.disk_usage(cache_dir).free
        if size > free:
            raise UserError(f"the file cache needs {size / 2**30:.1f} GB in {cache_dir!r} but {free / 2**30:.1f} GB "
                            "are free; free some space or use another --output-dir")
        fd, path = tempfile.mkstemp(prefix=f"{name}-", suffix=".npy", dir=cache_dir)
        os.close(fd)
        array = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    except OSError as error:
        raise UserError(f"cannot create the file cache in {cache_dir!r} ({error.strerror})") from None
    try:
        os.remove(path)
    except OSError:  # Windows keeps a mapped file; it stays until the next cleanup by hand
        pass
    return array


@contextlib.contextmanager
def atomic_write(path, suffix=".tmp", as_written=False):
    """A hidden temporary path beside `path` to write to; when the block succeeds the file is flushed to disk
    (fsync) and renamed over `path`, so a reader, or a power cut, finds the old file or the new one, never half
    of one. On any failure the temporary file is removed and `path` stays as it was.

    as_written: for outputs written as a run goes (a video's records and frames), whose writer flushes them itself:
    renamed over `path` also when Ctrl-C (KeyboardInterrupt) ends the block, what was written up to the stop being
    whole, and not at all when nothing was written."""
    folder, name = os.path.split(os.path.abspath(path))
    tmp_path = os.path.join(folder, f".{name}.{uuid.uuid4().hex[:8]}{suffix}")
    try:
        try:
            yield tmp_path
        except KeyboardInterrupt:
            if as_written and os.path.exists(tmp_path):
                os.replace(tmp_path, path)
            raise
        if not as_written:
            with open(tmp_path, "rb+") as f:
                os.fsync(f.fileno())
        if os.path.exists(tmp_path):
            os.replace(tmp_path, path)
    finally:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)


def replace_when_done(path, suffix=".tmp"):
    """atomic_write for outputs written as a run goes (as_written)."""
    return atomic_write(path, suffix, as_written=True)


def write_file(path, data):
    """Write bytes (or text, as UTF-8) atomically; a failed write (disk full, read-only) is a UserError."""
    try:
        with atomic_write(path) as tmp_path, open(tmp_path, "xb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
    except OSError as error:
        raise UserError(f"cannot write {path!r} ({error.strerror}); free some space or choose another "
                        "folder") from None


def check_writable(folder, option, made=True):
    """Fail now, not after an hour of training, when results cannot be written to `folder` (given with `option`):
    an output folder (`made`: created when missing, if its parent exists) or the folder of an output file (it must
    exist). A missing parent is never created: a mistyped path makes no folders (as root, anywhere)."""
    must_exist = os.path.dirname(os.path.abspath(folder)) if made else folder
    if not os.path.exists(must_exist):  # a file in its place: mkdir's "Not a directory" below
        raise UserError(f"{option}: the folder {must_exist!r} does not exist; create it first or choose another")
    try:
        if not os.path.isdir(folder):
            os.mkdir(folder)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise UserError(f"cannot write to {folder!r} ({error.strerror}); choose another folder") from None


def check_output_dir(output_dir, data_dir, inputs=None):
    """check_writable, once --output-dir is known to lie outside the data folder (plots and a file cache written
    inside it would be read as faces, or as a class, on the next run) and none of its files is one of `inputs`
    ({"the model (--model-path)": path, ...}: files the command reads, which a result of the same name would replace)."""
    if (os.path.realpath(output_dir) + os.sep).startswith(os.path.realpath(data_dir).rstrip(os.sep) + os.sep):
        raise UserError(f"--output-dir {output_dir!r} lies inside the data folder {data_dir!r}; its plots would be "
                        "read as images next time: choose a folder outside it")
    if inputs and os.path.isdir(output_dir):
        for name in os.listdir(output_dir):  # only a file already there can be an input
            check_not_inputs({"--output-dir": os.path.join(output_dir, name)}, inputs)
    check_writable(output_dir, "--output-dir")


def same_file(a, b):
    """True when paths `a` and `b` name one file: equal once symbolic links are resolved, or (both existing) one
    file under two names (a hard link)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return False


def check_not_inputs(outputs, inputs):
    """Refuse, before anything is written, an output that is a file the command reads, or two outputs that are one
    file. outputs: {option: path or None}; inputs: {"the model (--model-path)" and the like: path or None}."""
    named = [(option, path) for option, path in outputs.items() if path]
    for i, (option, path) in enumerate(named):
        read = next((what for what, source in inputs.items() if source and same_file(path, source)), None)
        if read:
            raise UserError(f"{option} {path!r} is {read}, which this command reads; writing it would destroy it: "
                            "choose another name")
        other = next((o for o, p in named[:i] if same_file(path, p)), None)
        if other:
            raise UserError(f"{option} and {other} are both {path!r}; give each output its own file")
