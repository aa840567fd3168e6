"""Reading images safely: only regular files within a byte limit are opened, their header's size is checked
before the rest is read (a small file can declare a huge image), then OpenCV decodes them to RGB, with the pixel
limit and the PNG-chunk check; the atomic image writer; and prepare_image, the one preprocessing path from a face
to the model's input, in training and every command alike."""

import importlib.util
import io
import os
import stat
import struct
import warnings

import cv2
import numpy as np
from PIL import Image

from emotion.io.errors import ImageError, UserError
from emotion.io.files import write_file

Image.MAX_IMAGE_PIXELS = None  # Pillow only reads headers here; MAX_IMAGE_PIXELS below is the (lower) limit
# OpenCV's own log lines ("[ERROR:0@0.6] ... grfmt_gif.cpp", "[ WARN:0@32] ... Failed to write frame") are off: every
# failure they describe is seen in what OpenCV returns and reported once, as one line of ours
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)

MAX_IMAGE_PIXELS = 40_000_000  # images whose header declares more pixels (width x height) are refused undecoded
MAX_IMAGE_BYTES = 256 * 2**20  # image files larger than this are refused unread (40 MP as uncompressed RGB: 120 MB)
HEADER_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP", "PPM")  # Pillow readers of faces.IMAGE_EXTENSIONS
#                                         (JPEG opens MPO, PPM opens PGM; MPO itself cannot be asked for)


HEIF_BRANDS = {b"avif": "AVIF", b"avis": "AVIF", **{brand: "HEIC" for brand in (
    b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1")}}  # ISO BMFF 'ftyp'


class ImageRefused(ImageError):
    """An image file refused before it is decoded, or even read: one line naming the file and why."""


class ImageTooLarge(ImageRefused):
    """An image whose header declares more than MAX_IMAGE_PIXELS pixels, or a file above MAX_IMAGE_BYTES."""


def printable(text):
    """`text` with its control characters escaped (a newline as \\n, an ANSI escape as \\x1b): a file or class
    name then prints as one line of its own and cannot forge another."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def open_regular_file(path):
    """`path` opened for reading, once os.stat shows a regular file of at most MAX_IMAGE_BYTES: a FIFO, device or
    socket (which would block or never end) and an oversized file are refused (ImageRefused) before opening.
    OSError when it cannot be read."""
    info = os.stat(path)
    if not stat.S_ISREG(info.st_mode):
        raise ImageRefused(f"{printable(path)}: not a regular file (a FIFO, device, socket or folder); skipped")
    if info.st_size > MAX_IMAGE_BYTES:
        raise ImageTooLarge(f"{printable(path)}: {info.st_size:,} bytes, above the limit of {MAX_IMAGE_BYTES:,} "
                            "bytes (MAX_IMAGE_BYTES); scale it down or save it compressed")
    return open(path, "rb")


def read_image(path):
    """Decode an image file to uint8 RGB (H, W, 3); None when it is not a readable image.

    The one way every command reads an image file: open_regular_file, then the header alone (ImageTooLarge above
    MAX_IMAGE_PIXELS), and only then the bytes, for decode_image.
    """
    try:
        with open_regular_file(path) as f:
            check_pixels(image_dimensions(f), path)
            f.seek(0)
            data = np.frombuffer(f.read(), np.uint8)
    except (OSError, ValueError):  # ValueError: a NUL byte in the name
        return None
    return decode_image(data, path)


def check_pixels(size, name):
    """ImageTooLarge (naming `name`) when a header's (width, height) exceeds MAX_IMAGE_PIXELS; None passes."""
    if size is not None and size[0] * size[1] > MAX_IMAGE_PIXELS:
        raise ImageTooLarge(f"{printable(name)}: declares {size[0]}x{size[1]} pixels, above the limit of "
                            f"{MAX_IMAGE_PIXELS:,} pixels (MAX_IMAGE_PIXELS); scale it down")


def image_dimensions(data):
    """(width, height) as the header of encoded image bytes (or of an open file) declares them, read without
    decoding any pixel (Pillow's lazy open); None when no supported format recognises them. For a tiled TIFF,
    each side is at least its tile's, as that is what the decoder allocates."""
    try:
        with Image.open(data if hasattr(data, "read") else io.BytesIO(data), formats=HEADER_FORMATS) as image:
            if image.format == "TIFF" and 322 in image.tag_v2:  # OpenCV allocates a whole tile, whatever the size
                tile = int(image.tag_v2.get(322, 0)), int(image.tag_v2.get(323, 0))  # TileWidth, TileLength
                return max(image.width, tile[0]), max(image.height, tile[1])
            return image.size
    except (OSError, ValueError, SyntaxError, EOFError, struct.error, IndexError, KeyError, TypeError,
            ZeroDivisionError):  # what Pillow's header parsers raise on malformed bytes (seen in the fuzz test)
        return None


def png_chunks_fit(data):
    """False for a PNG with a chunk longer than the file: OpenCV 4.14 allocates the declared length
    (up to 2 GB from a 2 kB file) before finding the data missing. True for any other format."""
    data = data.tobytes() if data[:8].tobytes() == b"\x89PNG\r\n\x1a\n" else b""
    position = 8
    while position + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        position += 12 + length
        if position > len(data):
            return False
        if kind == b"IEND":
            break
    return True


def decode_image(data, name="the image"):
    """Decode encoded image bytes (a uint8 array) to uint8 RGB (H, W, 3); None when not a readable image.

    The header's size is checked first: ImageTooLarge (naming `name`) above MAX_IMAGE_PIXELS, nothing decoded.
    """
    if data.size == 0:
        return None
    container = HEIF_BRANDS.get(data[8:12].tobytes()) if data[4:8].tobytes() == b"ftyp" else None
    if container:
        return decode_heif(data, container, name)
    size = image_dimensions(data)
    if size is None or not png_chunks_fit(data):
        return None
    check_pixels(size, name)
    try:  # IMREAD_COLOR gives 8-bit BGR for 16-bit, palette, alpha, grey and CMYK files alike.
        image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    except cv2.error:  # OpenCV's own checks on corrupt data
        return None
    if image is None or image.shape[0] * image.shape[1] > MAX_IMAGE_PIXELS:  # a header Pillow read otherwise
        return None
    if data[:4].tobytes() in (b"II*\0", b"MM\0*"):
        warn_tiff_pages(data, name)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def decode_heif(data, container, name):
    """An AVIF (Pillow reads it) or HEIC photo (only with pillow-heif installed) as uint8 RGB; ImageRefused, naming
    the format and what to do, when no reader is there; None when it is not a readable image."""
    from PIL import features
    readable = features.check("avif") if container == "AVIF" else importlib.util.find_spec("pillow_heif") is not None
    if not readable:
        what = "a HEIC photo (Apple's HEIF format)" if container == "HEIC" else "an AVIF photo"
        raise ImageRefused(f"{printable(name)}: {what}, which this installation cannot read; convert it to JPEG or "
                           f"PNG{' (or pip install pillow-heif)' if container == 'HEIC' else ''}")
    if container == "HEIC":
        import pillow_heif
        pillow_heif.register_heif_opener()
    try:
        with Image.open(io.BytesIO(data.tobytes()), formats=(container.replace("HEIC", "HEIF"),)) as image:
            check_pixels(image.size, name)
            return np.asarray(image.convert("RGB"))
    except (OSError, ValueError, SyntaxError, EOFError, struct.error, KeyError):
        return None


def warn_tiff_pages(data, name):
    """A one-line warning for a TIFF of several pages: OpenCV decodes (and the model judges) the first alone."""
    try:
        with Image.open(io.BytesIO(data.tobytes()), formats=("TIFF",)) as image:
            pages = image.n_frames
    except (OSError, ValueError, SyntaxError, EOFError, struct.error, IndexError, KeyError, TypeError):
        return
    if pages > 1:
        warnings.warn(f"{printable(name)}: a TIFF of {pages} pages; only its first page is judged (save each page "
                      "as its own file to judge the others)", stacklevel=2)


def write_image(path, bgr):
    """Encode a BGR image by the extension of `path` and write it with write_file (never half a file)."""
    try:
        ok, encoded = cv2.imencode(os.path.splitext(path)[1] or ".png", bgr)
    except cv2.error:
        ok = False
    if not ok:
        raise UserError(f"cannot encode {path!r} as an image; use a .png or .jpg name")
    write_file(path, encoded.tobytes())


def prepare_image(image, image_size, color, normalize):
    """Resize an RGB uint8 image to the model's square input, colour and contrast: (S, S, 1 or 3) uint8. The one
    preprocessing path of every command: "equalize" makes a flat webcam face look like the equalised training faces."""
    h, w = image.shape[:2]
    interpolation = cv2.INTER_AREA if h > image_size or w > image_size else cv2.INTER_LINEAR
    image = cv2.resize(image, (image_size, image_size), interpolation=interpolation)
    if color == "grayscale":
        image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[..., np.newaxis]
    return normalize_contrast(image, normalize)


def normalize_contrast(image, normalize):
    """The contrast step of prepare_image on a (S, S, 1 or 3) uint8 face; also what --augment photo re-applies after
    its photometric changes, so training faces meet the contrast that every face at inference gets."""
    if normalize != "equalize":
        return image
    if image.shape[-1] == 1:
        return cv2.equalizeHist(image[..., 0])[..., np.newaxis]
    ycrcb = cv2.cvtColor(image, cv2.COLOR_RGB2YCrCb)  # equalise the brightness, keep the colours
    ycrcb[..., 0] = cv2.equalizeHist(ycrcb[..., 0])
    return cv2.cvtColor(ycrcb, cv2.COLOR_YCrCb2RGB)
