"""The web app behind `python emotion_recognition.py serve`: upload or snap a photo, see every face labelled.

    python emotion_recognition.py serve                                  # http://127.0.0.1:8000/
    python emotion_recognition.py serve --port 8080 --model-path my.h5
    curl -F image=@photo.jpg http://127.0.0.1:8000/api/predict           # the JSON API (as predict --json)

This module is only the HTTP layer and imports nothing from the script: the script's `serve` command loads
the model once and hands create_app a `predict_upload(data, name)` function built on the same code as
`predict`, so the page, the API and the command line cannot disagree. serve_app runs the app on waitress
(a production WSGI server) with idle, request-time and request-size limits; see docs/serve.md for running it
behind a reverse proxy. Every answer of the app, errors included (400, 404, 405, 413, 500), is JSON; only
waitress' own 413 (a body above its limit) and 431 (headers too large) come before the app, in plain text.
"""

import base64
import functools
import ipaddress
import os
import re
import sys
import urllib.parse

import cv2
from flask import Flask, Request, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.formparser import FormDataParser

from emotion.io.internals import add_request_deadlines

ANNOTATED_MAX_SIDE = 1280  # the annotated copy sent back is scaled down to this (the boxes in the JSON are not)
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")  # Host names every server answers to (besides its own address)
HOST_HEADER = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?")  # host[:port], [IPv6][:port]
DEFAULT_PORTS = {"http": 80, "https": 443}  # an origin's or a Host's port when none is written
STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")  # index.html, app.js, style.css


class BadUpload(Exception):
    """Raised by predict_upload for a photo it cannot use; answered as {"error": message} with `status`."""

    def __init__(self, message, status=400):
        super().__init__(message)
        self.status = status


class StrictFormParser(FormDataParser):
    """Werkzeug's form parser, except that a form it cannot read (a part's headers not UTF-8, a broken boundary)
    raises ValueError instead of looking like an empty form, so the answer can say so."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs, silent=False)


class UploadRequest(Request):
    form_data_parser_class = StrictFormParser


def png_data_url(bgr):
    """A BGR image as a `data:image/png;base64,...` URL the page can show directly, at most ANNOTATED_MAX_SIDE."""
    scale = ANNOTATED_MAX_SIDE / max(bgr.shape[:2])
    if scale < 1:  # each side at least 1 pixel: a 1x20000 strip's short side would round to 0 (HTTP 500)
        size = tuple(max(1, round(side * scale)) for side in bgr.shape[1::-1])
        bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
    png = cv2.imencode(".png", bgr)[1]
    return "data:image/png;base64," + base64.b64encode(png.tobytes()).decode("ascii")


def error_answer(message, status=400):
    return jsonify(error=message), status


def split_host(authority):
    """(host in lower case without brackets, port or None) of a Host header or an Origin's authority; None when it
    is not a plain host[:port]."""
    if not HOST_HEADER.fullmatch(authority or ""):
        return None
    parts = urllib.parse.urlsplit("//" + authority)
    try:
        return parts.hostname, parts.port
    except ValueError:  # a port above 65535
        return None


def is_ip_address(host):
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def check_host_and_origin(allowed_hosts, any_address):
    """Refuse (400) a Host header naming a host not in `allowed_hosts` (an IP address too when `any_address`: a
    server bound to all interfaces is reached by any of its addresses), so a page whose own name was made to point
    here (DNS rebinding) gets no answer; and refuse (403) a request that changes something (not GET or HEAD) from
    a page of another origin: its Origin header names another scheme, host or port than the request.

    Not Flask 3.1's TRUSTED_HOSTS: Werkzeug 3.1's host_is_trusted cuts each trusted name at its first ':', so
    [::1] can never be trusted, and a list of names cannot say "any address of this machine" (bound to 0.0.0.0)."""
    host = split_host(request.host)
    if host is None or not (host[0] in allowed_hosts or (any_address and is_ip_address(host[0]))):
        return error_answer(f"this server does not answer to the host {request.host!r}; start serve with "
                            "--allowed-host NAME to add a name it is reached by", 400)
    origin = request.headers.get("Origin")
    if origin is not None and request.method not in ("GET", "HEAD"):
        url = urllib.parse.urlsplit(origin)
        seen = split_host(url.netloc) if url.scheme in DEFAULT_PORTS else None
        # an origin is scheme, host and port (RFC 6454): https://localhost:8000 is not this http server's page
        if seen is None or (url.scheme, seen[0], seen[1] or DEFAULT_PORTS[url.scheme]) != \
                (request.scheme, host[0], host[1] or DEFAULT_PORTS.get(request.scheme)):
            return error_answer(f"a page of another origin ({origin[:100]!r}) may not use this API", 403)
    return None


def create_app(predict_upload, health, max_upload_mb, allowed_hosts=LOCAL_HOSTS, any_address=False):
    """The Flask app. predict_upload(data: bytes, name: str) -> (faces, detection, annotated BGR image), raising
    BadUpload; detection: "detector" or "whole-image"; health: the JSON of /api/health; uploads above
    max_upload_mb are answered 413 before they are read; allowed_hosts, any_address: see check_host_and_origin."""
    app = Flask(__name__, static_folder=STATIC_DIR, static_url_path="/static")
    app.request_class = UploadRequest
    app.config["MAX_CONTENT_LENGTH"] = int(max_upload_mb * 1024 * 1024)  # Werkzeug answers 413 beyond it
    app.json.sort_keys = False  # keep predict --json's key order
    allowed_hosts = {host.lower().strip("[]") for host in allowed_hosts}
    app.before_request(functools.partial(check_host_and_origin, allowed_hosts, any_address))

    @app.get("/")
    def index():
        return app.send_static_file("index.html")

    @app.get("/api/health")
    def health_check():
        return jsonify(health)

    @app.post("/api/predict")
    def predict():
        try:
            upload = request.files.get("image")
        except ValueError as error:  # StrictFormParser: e.g. a file name that is not UTF-8
            return error_answer(f"the multipart form cannot be read ({error}); send the photo in the field 'image', "
                                "with a UTF-8 file name")
        if upload is None:
            return error_answer("no image received; send the photo in the multipart form field 'image'")
        data, name = upload.read(), upload.filename or "the upload"
        if not data:
            return error_answer(f"{name} is empty (0 bytes); choose a photo")
        try:
            faces, detection, annotated = predict_upload(data, name)
        except BadUpload as error:
            return error_answer(str(error), error.status)
        return jsonify(image=upload.filename, detection=detection, faces=faces, annotated=png_data_url(annotated))

    @app.errorhandler(413)
    def too_large(error):
        if request.content_length is not None and request.content_length <= app.config["MAX_CONTENT_LENGTH"]:
            return error_answer(f"the form has more than {request.max_form_parts:,} parts, or a text field above "
                                f"{request.max_form_memory_size:,} bytes; send one photo in the field 'image'",
                                413)  # Werkzeug's limits, within the size limit
        return error_answer(f"the upload is larger than the {max_upload_mb:g} MB limit; send a smaller photo", 413)

    @app.errorhandler(HTTPException)
    def http_error(error):  # 404, 405 and the rest: JSON like every other answer
        return error_answer(f"{error.name}: {error.description}", error.code)

    @app.errorhandler(Exception)
    def internal_error(error):  # a bug, not the client's fault: one line in the server's log, JSON to the client
        print(f"error: {request.method} {request.path}: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
        return error_answer("internal error while handling the request; the server log says more", 500)

    return app


def fit_open_file_limit(connection_limit, reserve=200):
    """The connection limit the open-file limit allows, raising the soft limit (Linux' default: 1,024) up to the
    hard one; `reserve`: descriptors for everything else (model, libraries, the listening socket)."""
    try:
        import resource
    except ImportError:  # Windows: sockets are not counted against a descriptor limit
        return connection_limit
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connection_limit + reserve if hard == resource.RLIM_INFINITY else min(hard, connection_limit + reserve)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        soft = wanted
    if soft != resource.RLIM_INFINITY and soft - reserve < connection_limit:
        print(f"Warning: the open-file limit (ulimit -n) is {soft:,}; serving at most {soft - reserve:,} connections "
              f"instead of {connection_limit:,}", flush=True)
        return max(1, soft - reserve)
    return connection_limit


def serve_app(app, host, port, threads, idle_timeout, max_body_bytes, connection_limit, name, header_deadline,
              request_deadline):
    """Run `app` on waitress until Ctrl-C. OSError when the port cannot be bound (e.g. already in use)."""
    from waitress.server import create_server

    connection_limit = fit_open_file_limit(connection_limit)
    listeners = {}  # waitress' socket map: the listening socket(s) now, every connection once running
    server = create_server(app, map=listeners, host=host, port=port, threads=threads, ident="emotion_recognition",
                           channel_timeout=idle_timeout,  # a connection silent this long is closed (idle or slow)
                           cleanup_interval=max(1, idle_timeout // 3),  # how often silent connections are looked for
                           connection_limit=connection_limit, asyncore_use_poll=True,  # poll: no 1024-socket limit
                           max_request_body_size=max_body_bytes, max_request_header_size=64 * 1024,
                           clear_untrusted_proxy_headers=True,
                           # a TLS proxy on this machine says the page's scheme (the Origin check compares it)
                           trusted_proxy="127.0.0.1", trusted_proxy_headers={"x-forwarded-proto"})
    add_request_deadlines(listeners, header_deadline, request_deadline)  # waitress' own timeout restarts per byte
    print(f"Serving {name} on http://{host}:{server.effective_port}/ (Ctrl-C stops)", flush=True)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    print("Stopped")
