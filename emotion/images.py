"""Reading images safely: decoded to RGB by OpenCV only after the header's size is checked (a small file
can declare a huge image), with the pixel limit and the PNG-chunk check; and the atomic image writer."""

import io
import os
import struct

import cv2
import numpy as np
from PIL import Image

from emotion.files import UserError, write_file

Image.MAX_IMAGE_PIXELS = None  # Pillow only reads headers here; MAX_IMAGE_PIXELS below is the (lower) limit

MAX_IMAGE_PIXELS = 40_000_000  # images whose header declares more pixels (width x height) are refused undecoded
HEADER_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP", "PPM")  # Pillow readers of faces.IMAGE_EXTENSIONS
#                                         (JPEG opens MPO, PPM opens PGM; MPO itself cannot be asked for)


class ImageTooLarge(UserError):
    """An image whose header declares more than MAX_IMAGE_PIXELS pixels: refused before it is decoded."""


def read_image(path):
    """Decode an image file to uint8 RGB (H, W, 3); None when it is not a readable image.

    Raises ImageTooLarge, before decoding, when the file declares more than MAX_IMAGE_PIXELS pixels.
    """
    try:
        data = np.fromfile(path, dtype=np.uint8)  # np.fromfile + imdecode copes with non-ASCII names
    except (OSError, ValueError):  # ValueError: a folder or a special file
        return None
    return decode_image(data, path)


def image_dimensions(data):
    """(width, height) as the header of encoded image bytes declares them, read without decoding any
    pixel (Pillow's lazy open); None when no supported format recognises the bytes. For a tiled TIFF, each
    side is at least its tile's, as that is what the decoder allocates."""
    try:
        with Image.open(io.BytesIO(data), formats=HEADER_FORMATS) as image:
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
    size = image_dimensions(data)
    if size is None or not png_chunks_fit(data):
        return None
    if size[0] * size[1] > MAX_IMAGE_PIXELS:
        raise ImageTooLarge(f"{name}: declares {size[0]}x{size[1]} pixels, above the limit of "
                            f"{MAX_IMAGE_PIXELS:,} pixels (MAX_IMAGE_PIXELS); scale it down")
    try:  # IMREAD_COLOR gives 8-bit BGR for 16-bit, palette, alpha, grey and CMYK files alike.
        image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    except cv2.error:  # OpenCV's own checks on corrupt data
        return None
    if image is None or image.shape[0] * image.shape[1] > MAX_IMAGE_PIXELS:  # a header Pillow read otherwise
        return None
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def write_image(path, bgr):
    """Encode a BGR image by the extension of `path` and write it with write_file (never half a file)."""
    try:
        ok, encoded = cv2.imencode(os.path.splitext(path)[1] or ".png", bgr)
    except cv2.error:
        ok = False
    if not ok:
        raise UserError(f"cannot encode {path!r} as an image; use a .png or .jpg name")
    write_file(path, encoded.tobytes())
