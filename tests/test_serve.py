"""serve: the JSON API through Flask's test client, and the page end to end in headless Chromium."""

import io
import os
import sys
import threading

import cv2
import numpy as np
import pytest

pytest.importorskip("flask", reason="flask is not installed (pip install -r requirements.txt)")

from conftest import ROOT, real_photo

sys.path.insert(0, ROOT)  # emotion/ is a package at the repository root
import emotion_recognition as er  # noqa: E402
from emotion.core.drawing import MESSAGES, UNSURE_BELOW  # noqa: E402
from emotion.io.errors import UserError  # noqa: E402
from emotion.jobs.serve import make_serve_app  # noqa: E402

CLASSES = ["calm", "joy", "rage"]  # not the default names: labels must come from the model file
CHROMIUM = "/usr/bin/chromium"  # Debian's chromium package


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    """An untrained (random) compact model saved with its metadata: enough to test the plumbing."""
    path = tmp_path_factory.mktemp("model") / "m.h5"
    er.save_model(er.build_model("compact", (48, 48, 1), 3, 1e-3), str(path),
                  {"class_names": CLASSES, "image_size": 48, "color": "grayscale"})
    return str(path)


@pytest.fixture(scope="module")
def client(model_path):
    return make_serve_app(model_path).test_client()


def face_photo(tmp_path, name="face.png", photo="astronaut"):
    """A real photograph (scikit-image's astronaut: one face) written to a file; returns the file path."""
    path = tmp_path / name
    cv2.imwrite(str(path), cv2.cvtColor(real_photo(photo), cv2.COLOR_RGB2BGR))
    return path


def upload(client, data, name="face.png"):
    return client.post("/api/predict", data={"image": (io.BytesIO(data), name)}, content_type="multipart/form-data")


def test_predict_returns_the_predict_json_structure(client, tmp_path):
    response = upload(client, face_photo(tmp_path).read_bytes())
    assert response.status_code == 200, response.get_json()
    result = response.get_json()
    assert result["image"] == "face.png" and result["detection"] == "detector"
    (face,) = result["faces"]
    assert face["detected"] is True
    x, y, w, h = face["box"]
    assert 190 < x + w / 2 < 260 and 90 < y + h / 2 < 150  # the astronaut's face
    assert set(face["probabilities"]) == set(CLASSES) and face["emotion"] in CLASSES
    assert sum(face["probabilities"].values()) == pytest.approx(1, abs=1e-3)
    assert face["confidence"] == max(face["probabilities"].values())
    assert face["probabilities"][face["emotion"]] == face["confidence"]  # the most probable class
    # these class names have no message of their own; a guess below UNSURE_BELOW gets the neutral one
    assert face["message"] == MESSAGES["unknown" if face["confidence"] >= UNSURE_BELOW else "unsure"]
    assert result["annotated"].startswith("data:image/png;base64,")


def test_health(client, model_path):
    response = client.get("/api/health")
    assert response.status_code == 200
    # the file's name, never where it lies on the server
    assert response.get_json() == {"status": "ok", "model": os.path.basename(model_path), "classes": CLASSES,
                                   "max_upload_mb": 10}


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "localhost.evil.example", "10.0.0.5",
                                  "127.0.0.1.nip.io", "localhost@evil.example", ""])
def test_requests_for_a_host_not_served_are_refused(client, host, tmp_path):
    """DNS rebinding: a page of evil.example whose name was made to point at 127.0.0.1 sends Host: evil.example."""
    for response in (client.get("/api/health", headers={"Host": host}),
                     client.post("/api/predict", headers={"Host": host}, content_type="multipart/form-data",
                                 data={"image": (io.BytesIO(face_photo(tmp_path).read_bytes()), "face.png")})):
        assert response.status_code == 400
        assert "does not answer to the host" in response.get_json()["error"]


def test_localhost_the_bound_address_and_allowed_hosts_are_answered(model_path):
    client = make_serve_app(model_path, host="192.168.1.20", allowed_hosts=["emotions.example.org"]).test_client()
    for host in ("localhost", "localhost:8000", "127.0.0.1:8000", "[::1]:8000", "192.168.1.20:8000",
                 "emotions.example.org", "Emotions.Example.org:443"):
        assert client.get("/api/health", headers={"Host": host}).status_code == 200, host
    assert client.get("/api/health", headers={"Host": "10.0.0.5"}).status_code == 400
    anywhere = make_serve_app(model_path, host="0.0.0.0").test_client()  # reached by any address of the machine
    assert anywhere.get("/api/health", headers={"Host": "10.0.0.5:8000"}).status_code == 200
    assert anywhere.get("/api/health", headers={"Host": "evil.example"}).status_code == 400


@pytest.mark.parametrize("origin", ["http://evil.example", "http://localhost:3000", "null",
                                    "file://", "http://127.0.0.1:8000", "https://localhost:8000",
                                    "https://localhost"])  # another scheme is another origin (it was let through)
def test_a_post_from_a_page_of_another_origin_is_refused(client, origin, tmp_path):
    photo = face_photo(tmp_path).read_bytes()
    response = client.post("/api/predict", headers={"Host": "localhost:8000", "Origin": origin},
                           data={"image": (io.BytesIO(photo), "face.png")}, content_type="multipart/form-data")
    assert response.status_code == 403 and "another origin" in response.get_json()["error"]
    same = client.post("/api/predict", headers={"Host": "localhost:8000", "Origin": "http://localhost:8000"},
                       data={"image": (io.BytesIO(photo), "face.png")}, content_type="multipart/form-data")
    assert same.status_code == 200  # the page itself, and clients that send no Origin (curl), are answered


def test_the_same_origin_on_the_default_port_is_answered(client, tmp_path):
    photo = face_photo(tmp_path).read_bytes()
    # behind a TLS proxy waitress takes the scheme from its X-Forwarded-Proto: the page's https origin is the same
    response = client.post("/api/predict", headers={"Host": "localhost", "Origin": "https://localhost"},
                           base_url="https://localhost", data={"image": (io.BytesIO(photo), "face.png")},
                           content_type="multipart/form-data")
    assert response.status_code == 200
    for host, origin in (("localhost", "http://localhost"), ("localhost:80", "http://localhost"),
                         ("localhost", "http://localhost:80")):
        response = client.post("/api/predict", headers={"Host": host, "Origin": origin},
                               data={"image": (io.BytesIO(photo), "face.png")}, content_type="multipart/form-data")
        assert response.status_code == 200, (host, origin)


def test_page_is_served(client):
    response = client.get("/")
    assert response.status_code == 200 and b'id="file"' in response.data
    assert client.get("/static/app.js").status_code == 200


@pytest.mark.parametrize("data, name, expected", [
    (b"", "empty.png", "empty.png is empty"),
    (b"these are not pixels", "notes.jpg", "notes.jpg is not a readable image"),
    (np.random.default_rng(0).integers(0, 256, 2000, dtype=np.uint8).tobytes(), "noise.png", "not a readable image"),
])
def test_bad_uploads_get_400_and_a_sentence(client, data, name, expected):
    response = upload(client, data, name)
    assert response.status_code == 400
    assert expected in response.get_json()["error"]


def test_missing_field_gets_400(client):
    response = client.post("/api/predict", data={"photo": (io.BytesIO(b"x"), "a.png")},
                           content_type="multipart/form-data")
    assert response.status_code == 400
    assert "multipart form field 'image'" in response.get_json()["error"]


def test_too_large_upload_gets_413(model_path, tmp_path):
    client = make_serve_app(model_path, max_upload_mb=0.01).test_client()  # about 10 kB
    response = upload(client, bytes(20_000))
    assert response.status_code == 413
    assert "larger than the 0.01 MB limit" in response.get_json()["error"]


@pytest.mark.slow
def test_model_is_loaded_once(model_path, tmp_path, monkeypatch):
    calls = []
    load = er.load_trained_model
    monkeypatch.setattr("emotion.recognizer.load_trained_model", lambda path: calls.append(path) or load(path))
    client = make_serve_app(model_path).test_client()
    photo = face_photo(tmp_path).read_bytes()
    assert [upload(client, photo).status_code for _ in range(2)] == [200, 200]
    assert calls == [model_path]


@pytest.mark.parametrize("pixels", [
    np.full((40, 50), 90, np.uint8),  # grey
    np.full((40, 50, 4), (10, 20, 30, 128), np.uint8),  # BGRA with alpha
    np.full((40, 50, 3), 40000, np.uint16),  # 16-bit
], ids=["grey", "alpha", "16-bit"])
def test_odd_but_valid_uploads_are_classified(client, pixels, tmp_path):
    path = tmp_path / "image.png"
    cv2.imwrite(str(path), pixels)
    response = upload(client, path.read_bytes(), "image.png")
    assert response.status_code == 200, response.get_json()
    (face,) = response.get_json()["faces"]  # no face in a small flat image: taken for a face crop, classified whole
    assert face["detected"] is False and face["box"] == [0, 0, 50, 40]
    assert response.get_json()["detection"] == "whole-image"


def test_a_photo_without_a_face_gets_no_emotion(client, tmp_path):
    response = upload(client, face_photo(tmp_path, "coffee.png", "coffee").read_bytes(), "coffee.png")
    assert response.status_code == 200, response.get_json()
    result = response.get_json()
    assert result["faces"] == [] and result["detection"] == "detector"
    assert result["annotated"].startswith("data:image/png;base64,")


def test_missing_model_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not found"):
        make_serve_app(str(tmp_path / "nope.h5"))


@pytest.fixture(scope="module")
def live_server(model_path):
    """The app on a free localhost port in a background thread; yields its URL."""
    from werkzeug.serving import make_server
    httpd = make_server("127.0.0.1", 0, make_serve_app(model_path), threaded=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser():
    """Debian's headless Chromium driven by Playwright, with a fake camera that needs no permission prompt.

    Playwright rather than Selenium: it drives the installed Chromium directly (no chromedriver to keep in
    step with the browser), fills a real <input type=file>, and waits for elements by itself.
    """
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"Chromium not found at {CHROMIUM} (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser, live_server):
    page = browser.new_page()
    page.set_default_timeout(30_000)
    page.goto(live_server)
    yield page
    page.close()


def test_page_labels_an_uploaded_photo(page, tmp_path):
    page.set_input_files("#file", str(face_photo(tmp_path, "holiday.png")))
    label = page.wait_for_selector("#faces .emotion")
    assert label.text_content() in CLASSES
    assert page.text_content("#status") == "holiday.png: 1 face found."
    assert page.get_attribute("#annotated", "src").startswith("data:image/png;base64,")
    assert len(page.query_selector_all("#faces .bar-row")) == len(CLASSES)
    assert page.text_content("#faces .message") in (MESSAGES["unknown"], MESSAGES["unsure"])


def test_page_shows_the_error_for_a_non_image(page, tmp_path):
    (tmp_path / "notes.txt").write_text("not a photo")
    page.set_input_files("#file", str(tmp_path / "notes.txt"))
    error = page.wait_for_selector("#status.error")
    assert "notes.txt is not a readable image" in error.text_content()
    assert page.is_hidden("#result")


def test_page_labels_a_camera_snapshot(page):
    page.click("#camera-open")
    page.wait_for_function("document.getElementById('camera-video').videoWidth > 0")
    page.click("#camera-snap")
    page.wait_for_selector("#result:not([hidden])")
    # Chromium's fake camera shows no face, and a 640x480 snapshot is no face crop: no emotion
    assert page.text_content("#status") == "camera.png: no face found, so no emotion."
    assert page.query_selector_all("#faces .emotion") == []


def test_serve_command_answers_and_reports_a_bad_model_in_one_line(model_path, tmp_path):
    import json
    import socket
    import subprocess
    import urllib.request

    from conftest import SCRIPT, run_cli

    with socket.socket() as probe:  # a free port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, SCRIPT, "serve", "--model-path", model_path, "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert "Serving" in process.stdout.readline()  # printed once the model is loaded and the port bound
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=30) as response:
            assert json.load(response)["classes"] == CLASSES
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as route:  # this machine's address on its network
            route.connect(("192.0.2.123", 9))  # UDP: picks the outgoing interface, sends nothing
            own_address = route.getsockname()[0]
        if not own_address.startswith("127."):  # listening on 127.0.0.1 only: not reachable from the network
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection((own_address, port), timeout=5).close()
    finally:
        process.terminate()
        process.wait(timeout=30)
    result = run_cli("serve", "--model-path", tmp_path / "missing.h5")
    assert result.returncode == 1 and "error:" in result.stderr and "Traceback" not in result.stderr
    with socket.socket() as taken:  # the port is in use by someone else
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = run_cli("serve", "--model-path", model_path, "--port", taken.getsockname()[1], timeout=120)
    assert result.returncode == 1 and "Address already in use" in result.stderr and "Traceback" not in result.stderr


def start_bare_server(connection_limit, header_deadline, request_deadline):
    """serve_app on a free port with a health-only app (no model: starts in about a second); returns process, port."""
    import re
    import subprocess
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from emotion.jobs.web.server import create_app, serve_app\n"
            "serve_app(create_app(None, {'status': 'ok'}, 1), '127.0.0.1', 0, 2, 30, 2**20, int(sys.argv[2]), 'test',"
            " float(sys.argv[3]), float(sys.argv[4]))")
    process = subprocess.Popen([sys.executable, "-c", code, ROOT, str(connection_limit), str(header_deadline),
                                str(request_deadline)], stdout=subprocess.PIPE, text=True)
    return process, int(re.search(r":(\d+)/", process.stdout.readline()).group(1))


def test_trickling_clients_are_closed_at_the_header_deadline_and_health_answers():
    import json
    import socket
    import time
    import urllib.request

    # 25 clients over a limit of 20, each sending a header line every 0.5 s: the 30 s idle timeout never fires
    process, port = start_bare_server(connection_limit=20, header_deadline=1, request_deadline=60)
    slow = [socket.create_connection(("127.0.0.1", port)) for _ in range(25)]
    stop = threading.Event()

    def trickle():
        while not stop.wait(0.5):
            for client in slow:
                try:
                    client.send(b"X-Slow: 1\r\n")
                except OSError:  # closed by the server, as it should be
                    pass

    for client in slow:
        client.send(b"GET /api/health HTTP/1.1\r\n")
    thread = threading.Thread(target=trickle)
    thread.start()
    try:
        start = time.monotonic()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=20) as response:
            assert json.load(response) == {"status": "ok"}
        assert time.monotonic() - start < 12  # about 2 s: the 1 s deadline frees the limit; before: never
        for client in slow:
            client.settimeout(20)
            try:
                assert client.recv(1) == b""  # closed without an answer
            except ConnectionResetError:
                pass
    finally:
        stop.set()
        thread.join()
        for client in slow:
            client.close()
        process.terminate()
        process.wait(timeout=30)


def test_connection_limit_fits_the_open_file_limit():
    import subprocess
    code = ("import resource, sys; sys.path.insert(0, sys.argv[1])\n"
            "from emotion.jobs.web.server import fit_open_file_limit\n"
            "resource.setrlimit(resource.RLIMIT_NOFILE, (300, 300))\n"
            "print(fit_open_file_limit(50), fit_open_file_limit(4000))")
    result = subprocess.run([sys.executable, "-c", code, ROOT], capture_output=True, text=True, timeout=60)
    assert result.stdout.splitlines() == [
        "Warning: the open-file limit (ulimit -n) is 300; serving at most 100 connections instead of 4,000",
        "50 100"]


@pytest.mark.parametrize("shape", [(1, 20000), (20000, 1), (3, 9000)])
def test_an_extreme_aspect_ratio_is_answered_not_a_500(client, shape):
    """A 1x20000 PNG: scaled to the work size, a side rounded to 0 made OpenCV raise (HTTP 500)."""
    ok, data = cv2.imencode(".png", np.full((*shape, 3), 128, np.uint8))
    response = upload(client, data.tobytes(), "thin.png")
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["image"] == "thin.png"


def test_the_preview_of_a_thin_image_keeps_each_side_at_least_one_pixel():
    """png_data_url scales the annotated copy to ANNOTATED_MAX_SIDE: a 1x20000 strip's short side rounded to 0."""
    import base64

    from emotion.jobs.web.server import ANNOTATED_MAX_SIDE, png_data_url
    url = png_data_url(np.full((1, 20000, 3), 128, np.uint8))
    preview = cv2.imdecode(np.frombuffer(base64.b64decode(url.split(",", 1)[1]), np.uint8), cv2.IMREAD_COLOR)
    assert preview.shape[:2] == (1, ANNOTATED_MAX_SIDE)
