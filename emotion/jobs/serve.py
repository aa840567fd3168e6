"""The `serve` command: the web page and JSON API of emotion/jobs/web/server.py, handed this project's prediction code
(web/ imports nothing from here), with its upload limits."""

import os
import threading

import numpy as np

from emotion.core.answers import TTA
from emotion.core.detection import DETECTOR
from emotion.core.drawing import annotate, message_for
from emotion.core.faces import detection_of
from emotion.core.precision import PRECISION
from emotion.io.arguments import host_arg, host_name_arg, int_in_range
from emotion.io.errors import UserError
from emotion.io.images import MAX_IMAGE_PIXELS, ImageRefused, ImageTooLarge, decode_image, image_dimensions
from emotion.jobs.options import add_classes_argument, add_detector_argument, add_model_arguments
from emotion.recognizer import EmotionRecognizer

SERVE_HOST = "127.0.0.1"  # loopback only, unless --host says otherwise
SERVE_PORT = 8000  # TCP port of the page and the JSON API
MAX_UPLOAD_MB = 10  # serve: larger uploads are refused with HTTP 413
SERVE_THREADS = 8  # serve: requests handled at once (they take turns with the one model)
SERVE_IDLE_TIMEOUT = 30  # serve: seconds a connection may stay silent (idle, or a stalled upload) before it is closed
SERVE_HEADER_DEADLINE = 10  # serve: seconds from a request's first byte to the end of its headers (slowloris)
SERVE_REQUEST_DEADLINE = 120  # serve: seconds for a whole request, headers and body (10 MB: about 85 kB/s at least)
SERVE_CONNECTION_LIMIT = 4000  # serve: open connections; more wait unanswered in the listen queue
SERVE_LARGE_PIXELS = 4_000_000  # serve: uploads declaring more pixels are handled one at a time (memory)
SERVE_LARGE_WAIT = 5  # serve: seconds a large upload waits for its turn before a 503 (keeps threads for the others)


def add_arguments(parser):
    add_model_arguments(parser)
    add_classes_argument(parser)
    add_detector_argument(parser)
    parser.add_argument("--host", type=host_arg, default=SERVE_HOST, help="address to listen on (0.0.0.0: any network)")
    parser.add_argument("--port", type=int_in_range(1, 65535), default=SERVE_PORT, help="TCP port to listen on")
    parser.add_argument("--allowed-host", action="append", default=[], type=host_name_arg, metavar="NAME",
                        help="also answer requests whose Host is NAME (a reverse proxy's public name); localhost and "
                             "the --host address always are, no other (DNS rebinding). May be repeated")


def make_serve_app(model_path, tta=TTA, max_upload_mb=MAX_UPLOAD_MB, detector=DETECTOR, classes=None,
                   precision=PRECISION, host=SERVE_HOST, allowed_hosts=()):
    """The web app of web/server.py, handed this project's prediction code (web/ imports nothing from here). It
    answers requests for localhost, for `host` (the address it listens on; bound to every interface, any address
    of the machine) and for `allowed_hosts` (--allowed-host), no other Host header (DNS rebinding)."""
    from emotion.jobs.web.server import LOCAL_HOSTS, BadUpload, create_app  # Flask: only this command needs it
    recognizer = EmotionRecognizer(model_path, classes, detector, tta, precision)
    recognizer.detect(np.zeros((1, 1, 3), np.uint8))  # the detector loaded now, not on the first upload
    # the server runs SERVE_THREADS threads and the recognizer answers one at a time; a large photo (decoded: 3
    # bytes a pixel, plus copies) is handled whole before the next large one
    large_lock = threading.Lock()

    def predict_upload(data, name):
        array = np.frombuffer(data, np.uint8)
        size = image_dimensions(array)
        large = size is not None and SERVE_LARGE_PIXELS < size[0] * size[1] <= MAX_IMAGE_PIXELS
        if large and not large_lock.acquire(timeout=SERVE_LARGE_WAIT):
            raise BadUpload(f"{name}: the server is busy with another large photo; try again shortly", 503)
        try:
            try:
                image = decode_image(array, name)
            except ImageTooLarge as error:
                raise BadUpload(str(error), 413) from None
            except ImageRefused as error:  # a format this installation cannot read (HEIC without pillow-heif)
                raise BadUpload(str(error), 415) from None
            if image is None:
                raise BadUpload(f"{name} is not a readable image; upload a JPEG, PNG, BMP, TIFF, WebP or AVIF photo")
            try:  # the whole photo, as predict and EmotionRecognizer.analyze see it: one path, one answer
                faces = [face.to_dict() for face in recognizer.analyze(image)]
            except UserError as error:  # the model answered NaN (finite_probabilities): never sent as JSON NaN
                raise BadUpload(str(error), 500) from None
            annotated = annotate(image, faces, numbered=True)  # 1, 2, ... as the page's "Face 1", "Face 2" cards
            for face in faces:
                face["message"] = message_for(face["emotion"], face["confidence"], face["probabilities"])
            return faces, detection_of(faces), annotated
        finally:
            if large:
                large_lock.release()

    # the file's name only: an answer never shows where files lie on the server
    health = {"status": "ok", "model": os.path.basename(recognizer.model_path), "classes": recognizer.class_names,
              "max_upload_mb": max_upload_mb}
    return create_app(predict_upload, health, max_upload_mb, {*LOCAL_HOSTS, host, *allowed_hosts},
                      any_address=host in ("0.0.0.0", "::"))  # --host values as host_arg writes them


def run_serve(args):
    """The upload/camera web page and JSON API (web/server.py) on waitress, on the same code as `predict`."""
    from emotion.jobs.web.server import serve_app
    app = make_serve_app(args.model_path, args.tta, detector=args.detector, classes=args.classes,
                         precision=args.precision, host=args.host, allowed_hosts=args.allowed_host)
    try:  # the request body limit sits above MAX_UPLOAD_MB so that Flask answers it, in JSON
        serve_app(app, args.host, args.port, SERVE_THREADS, SERVE_IDLE_TIMEOUT, (MAX_UPLOAD_MB + 1) * 2**20,
                  SERVE_CONNECTION_LIMIT, args.model_path, SERVE_HEADER_DEADLINE, SERVE_REQUEST_DEADLINE)
    except OSError as error:
        raise UserError(f"cannot listen on {args.host}:{args.port} ({error.strerror}); choose another --port "
                        "or stop the program using it") from None
