"""The web app behind `python emotion_recognition.py serve`: upload or snap a photo, see every face labelled.

    python emotion_recognition.py serve                                  # http://127.0.0.1:8000/
    python emotion_recognition.py serve --port 8080 --model-path my.h5
    curl -F image=@photo.jpg http://127.0.0.1:8000/api/predict           # the JSON API (as predict --json)

Flask: small, well kept, and its test client exercises the API in-process. The model and the face
detector are loaded once, in make_app; each request runs the same code as `predict`
(er.predict_images, er.annotate), so the page, the API and the command line cannot disagree.
"""

import base64
import os
import threading

import cv2
import numpy as np
from flask import Flask, jsonify, request
from werkzeug.serving import make_server

import emotion_recognition as er

ANNOTATED_MAX_SIDE = 1280  # the annotated copy sent back is scaled down to this (the boxes in the JSON are not)
STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")  # index.html, app.js, style.css


def png_data_url(bgr):
    """A BGR image as a `data:image/png;base64,...` URL the page can show directly, at most ANNOTATED_MAX_SIDE."""
    scale = ANNOTATED_MAX_SIDE / max(bgr.shape[:2])
    if scale < 1:
        bgr = cv2.resize(bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    png = cv2.imencode(".png", bgr)[1]
    return "data:image/png;base64," + base64.b64encode(png.tobytes()).decode("ascii")


def bad_request(message, status=400):
    return jsonify(error=message), status


def make_app(model_path, tta=False, max_upload_mb=er.MAX_UPLOAD_MB, detector=er.DETECTOR):
    """The Flask app: loads the model (er.UserError when the file is missing or bad) and the detector once."""
    model, metadata = er.load_trained_model(model_path)
    class_names = er.class_names_of(model, metadata)
    detector = er.load_face_detector(detector)
    # Flask serves requests on several threads; one Keras model and one face detector, so one at a time.
    predict_lock = threading.Lock()

    app = Flask(__name__, static_folder=STATIC_DIR, static_url_path="/static")
    app.config["MAX_CONTENT_LENGTH"] = int(max_upload_mb * 1024 * 1024)  # Werkzeug answers 413 beyond it
    app.json.sort_keys = False  # keep predict --json's key order

    @app.get("/")
    def index():
        return app.send_static_file("index.html")

    @app.get("/api/health")
    def health():
        return jsonify(status="ok", model=model_path, classes=class_names, max_upload_mb=max_upload_mb)

    @app.post("/api/predict")
    def predict():
        upload = request.files.get("image")
        if upload is None:
            return bad_request("no image received; send the photo in the multipart form field 'image'")
        data, name = upload.read(), upload.filename or "the upload"
        if not data:
            return bad_request(f"{name} is empty (0 bytes); choose a photo")
        image = er.decode_image(np.frombuffer(data, np.uint8))
        if image is None:
            return bad_request(f"{name} is not a readable image; upload a JPEG, PNG, BMP, TIFF or WebP photo")
        with predict_lock:
            (faces,) = er.predict_images(model, metadata, [image], detector, tta)
        for face in faces:
            face["message"] = er.MESSAGES.get(face["emotion"], er.MESSAGES["unknown"])
        return jsonify(image=upload.filename, detection=er.detection_of(faces), faces=faces,
                       annotated=png_data_url(er.annotate(image, faces)))

    @app.errorhandler(413)
    def too_large(error):
        return bad_request(f"the upload is larger than the {max_upload_mb:g} MB limit; send a smaller photo", 413)

    return app


def serve(model_path, host=er.SERVE_HOST, port=er.SERVE_PORT, tta=False, max_upload_mb=er.MAX_UPLOAD_MB,
          detector=er.DETECTOR):
    """Load the model once and serve the page and API until Ctrl-C."""
    app = make_app(model_path, tta, max_upload_mb, detector)
    # The Werkzeug server that Flask's app.run starts too, without its banner. A port that is taken ends
    # the run here with Werkzeug's own two-line advice and exit code 1.
    server = make_server(host, port, app, threaded=True)
    print(f"Serving {model_path} on http://{host}:{server.server_port}/ (Ctrl-C stops)", flush=True)
    server.serve_forever()  # Werkzeug ends it quietly on Ctrl-C and closes the socket
    print("Stopped")
