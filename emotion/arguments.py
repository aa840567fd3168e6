"""The command line's value types (argparse `type=` functions): each refuses a bad value with a sentence."""

import argparse
import ipaddress
import math
import os
import re
import socket

from emotion.errors import UserError


def int_in_range(low, high=math.inf):
    """An argparse type: a whole number from low to high (inclusive)."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if not low <= value <= high:
            limit = f"at least {low}" if high == math.inf else f"from {low} to {high}"
            raise argparse.ArgumentTypeError(f"must be {limit}, got {value}")
        return value
    return parse


def float_in_range(low, high=math.inf, low_included=True, high_included=True):
    """An argparse type: a number from low to high (NaN refused, and infinity unless high_included)."""
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not ((low <= value if low_included else low < value) and (value <= high if high_included else value < high)):
            if not low_included and high == math.inf:
                limit = f"a finite number above {low:g}"
            else:
                limit = f"from {low:g} to {high:g}" + ("" if high_included else " (excluded)")
            raise argparse.ArgumentTypeError(f"must be {limit}, got {value}")
        return value
    return parse


positive_int = int_in_range(1)
positive_float = float_in_range(0, low_included=False, high_included=False)
SEED_ARG = int_in_range(0, 2**32 - 1)  # NumPy's and Keras' seed range
MAX_IMAGE_SIZE = 256  # --image-size and a model file's image_size: at most this side in pixels (the original used
#                       200, the ImageNet bases 224; the decoded data and activations grow with its square)


def regex_arg(text):
    try:
        return text if text == "none" else re.compile(text).pattern
    except re.error as error:
        raise argparse.ArgumentTypeError(f"not a regular expression ({error})") from None


def class_list(text):
    """--classes: comma-separated class names, each once."""
    names = [name.strip() for name in text.split(",")]
    if not all(names) or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"expected distinct comma-separated class names, got {text!r}")
    return names


def model_file_arg(text):
    if not text.endswith((".h5", ".hdf5")):  # as Keras' load_model: "M.H5" would be saved, then refused on load
        raise argparse.ArgumentTypeError(f"expected a .h5 file (Keras' HDF5 format, as the original), got {text!r}")
    return text


def default_model_path(name, shipped_folder):
    """--model-path when not given: `name` in the working folder when it is there, else the shipped model of
    that name in `shipped_folder`, so that it is found from any folder."""
    beside = os.path.join(shipped_folder, name)
    return beside if not os.path.exists(name) and os.path.exists(beside) else name


def image_size_arg(text):
    return text if text == "auto" else int_in_range(1, MAX_IMAGE_SIZE)(text)


def host_arg(text):
    """--host: an IP address, or a host name this machine resolves (as the server will, when it binds)."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    try:
        if text and socket.getaddrinfo(text, None, type=socket.SOCK_STREAM):
            return text
    except (socket.gaierror, UnicodeError):
        pass
    raise argparse.ArgumentTypeError(f"expected an IP address (127.0.0.1, 0.0.0.0, ::1) or a host name this machine "
                                     f"can resolve, got {text!r}")


def host_name_arg(text):
    """--allowed-host: a host name or IP address as a Host header carries it, without a port."""
    if not re.fullmatch(r"[A-Za-z0-9.-]+|\[?[0-9A-Fa-f:.]+\]?", text):
        raise argparse.ArgumentTypeError(f"expected a host name or IP address without a port, got {text!r}")
    return text.lower().strip("[]")


def check_utf8_options(args):
    """Refuse option values that are not valid UTF-8 (undecodable bytes in a file name, kept by Python as
    surrogates): OpenCV's VideoCapture, VideoWriter and imwrite crash on them. predict's PATHs (and the
    files found in folders) are read and written by Python, so they work and are not checked."""
    for name, value in vars(args).items():
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise UserError(f"{'--' + name.replace('_', '-') if name != 'folder' else 'FOLDER'} {value!r} is "
                                "not valid UTF-8; rename the file or folder") from None
