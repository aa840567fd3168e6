"""Face detection on real photographs (scikit-image's), alignment, the no-face rule, and label placement."""

import json
import subprocess
import sys
import threading
import time

import cv2
import numpy as np
import pytest

from emotion.core.crops import FACE_CROP_MAX_SIDE, crop_face, eye_roll
from emotion.core.detection import detect_faces, load_face_detector, onet_faces
from emotion.core.drawing import annotate, face_label, face_message, layout_labels

from conftest import (RANDOM_MODEL_CLASSES, ROOT, SHIPPED_MODEL, grace_hopper, group_with_a_tilted_head, head,
                      real_photo, run_cli, run_main)

CLASSES = RANDOM_MODEL_CLASSES
NO_FACE_PHOTOS = ("coffee", "chelsea", "rocket", "horse", "coins", "clock", "page", "moon")


@pytest.fixture(scope="module")
def detector():
    return load_face_detector()  # the default one


def write_rgb(path, image):
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return path


@pytest.mark.parametrize("name, faces", [("astronaut", 1), ("camera", 1), *[(n, 0) for n in NO_FACE_PHOTOS]])
def test_default_detector_boxes_real_photos(detector, name, faces):
    image = real_photo(name)
    found = detect_faces(detector, image)
    assert len(found) == faces, found
    for face in found:
        x, y, w, h = face["box"]
        assert 0 <= x and 0 <= y and x + w <= image.shape[1] and y + h <= image.shape[0]
    if name == "astronaut":  # her face, not the badge or the helmet
        x, y, w, h = found[0]["box"]
        assert 190 < x + w / 2 < 260 and 90 < y + h / 2 < 150 and 60 < w < 120


def test_two_people_two_boxes(detector):
    pair = np.hstack([real_photo("astronaut"), real_photo("camera")])  # 1024x512, one face in each half
    found = sorted(detect_faces(detector, pair), key=lambda f: f["box"][0])
    assert len(found) == 2 and found[0]["box"][0] < 512 <= found[1]["box"][0], found


def test_a_face_filling_the_photo_is_found(detector):
    """mtcnn alone misses a face that fills the frame; the padded second look finds it."""
    image = real_photo("astronaut")[75:165, 190:258]  # forehead to chin, cheek to cheek
    image = cv2.resize(image, (image.shape[1] * 3, image.shape[0] * 3), interpolation=cv2.INTER_CUBIC)
    (face,) = detect_faces(detector, image)
    assert face["box"][2] * face["box"][3] > 0.4 * image.shape[0] * image.shape[1]


def test_alignment_levels_the_eyes_of_a_tilted_face(detector):
    photo = real_photo("astronaut")
    tilted = cv2.warpAffine(photo, cv2.getRotationMatrix2D((223, 117), 25, 1), photo.shape[1::-1])
    (face,) = detect_faces(detector, tilted)
    assert abs(eye_roll(face["eyes"])) > 15  # tilted as given
    crop = crop_face(tilted, face)
    assert crop.shape[0] == crop.shape[1]
    (again,) = detect_faces(detector, crop)
    assert abs(eye_roll(again["eyes"])) < 5  # level after alignment
    (left, right) = again["eyes"]
    # FER2013's framing (measured on its faces): eyes about 38 % down, face filling the square
    assert 0.28 < (left[1] + right[1]) / 2 / crop.shape[0] < 0.48
    assert 0.7 < again["box"][3] / crop.shape[0] < 1.1


def test_crops_are_bounded_in_size():
    image = np.zeros((3000, 3000, 3), np.uint8)
    crop = crop_face(image, {"box": [100, 100, 2500, 2500], "eyes": [[900, 900], [1700, 1000]]})
    assert crop.shape == (FACE_CROP_MAX_SIDE, FACE_CROP_MAX_SIDE, 3)


def test_predict_labels_faces_only_and_says_how(model_path, tmp_path):
    write_rgb(tmp_path / "astronaut.png", real_photo("astronaut"))
    write_rgb(tmp_path / "coffee.png", real_photo("coffee"))
    # crop-sized (48x48, as FER2013's faces) with nothing a detector could take for a face: a drawn face may score
    # either side of the detector's cut-off, a flat one never reaches it
    cv2.imwrite(str(tmp_path / "crop.png"), np.full((48, 48), 128, np.uint8))
    cv2.imwrite(str(tmp_path / "dot.png"), np.zeros((1, 1), np.uint8))
    result = run_cli("predict", tmp_path, "--model-path", model_path, "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    records = {r["image"].rsplit("/", 1)[-1]: r for r in map(json.loads, result.stdout.strip().splitlines())}
    assert records["astronaut.png"]["detection"] == "detector"
    (face,) = records["astronaut.png"]["faces"]
    assert face["detected"] is True and face["emotion"] in CLASSES
    assert records["coffee.png"] == {"image": str(tmp_path / "coffee.png"), "detection": "detector", "faces": []}
    assert records["dot.png"]["faces"] == []  # 1x1: too small to be a face
    assert records["crop.png"]["detection"] == "whole-image"
    (face,) = records["crop.png"]["faces"]
    assert face["detected"] is False and face["box"] == [0, 0, 48, 48]

    result = run_cli("predict", tmp_path / "coffee.png", tmp_path / "astronaut.png", "--model-path", model_path,
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0] == f"{tmp_path / 'coffee.png'}: no face found, so no emotion"
    assert lines[1].startswith(f"{tmp_path / 'astronaut.png'}: face at [")


def test_no_detect_classifies_the_whole_photo(model_path, tmp_path):
    write_rgb(tmp_path / "coffee.png", real_photo("coffee"))
    result = run_cli("predict", tmp_path / "coffee.png", "--model-path", model_path, "--json", "--no-detect",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout.strip().splitlines()[-1])
    assert record["detection"] == "whole-image" and record["faces"][0]["box"] == [0, 0, 600, 400]


def test_haar_stays_available(model_path, tmp_path):
    write_rgb(tmp_path / "astronaut.png", real_photo("astronaut"))
    result = run_cli("predict", tmp_path / "astronaut.png", "--model-path", model_path, "--json", "--detector", "haar",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["faces"][0]["detected"] is True
    result = run_cli("predict", tmp_path / "astronaut.png", "--model-path", model_path, "--detector", "dlib",
                     cwd=tmp_path)
    assert result.returncode == 2 and "invalid choice: 'dlib'" in result.stderr


def test_mtcnn_is_imported_only_when_used():
    code = ("import sys; from emotion.core.detection import load_face_detector; load_face_detector('haar'); "
            "print('mtcnn' in sys.modules); load_face_detector('mtcnn'); print('mtcnn' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.stdout.split() == ["False", "True"], result.stderr


def test_bad_input_is_bounded(detector):
    for shape in [(1, 1, 3), (13, 1, 3), (5000, 3, 3), (3, 5000, 3)]:
        assert detect_faces(detector, np.zeros(shape, np.uint8)) == []
    start = time.perf_counter()
    assert len(detect_faces(detector, cv2.resize(real_photo("astronaut"), (6000, 6000)))) == 1
    assert time.perf_counter() - start < 20  # detected on a 640 px copy


@pytest.mark.parametrize("size", [(640, 480), (1280, 720)])
def test_a_small_box_on_grass_is_checked_away(detector, monkeypatch, size):
    """mtcnn's first look takes a spot of scikit-image's grass for a face of 15-21 px in its copy (ONet 0.94-0.99
    there); ONet on a copy twice as large does not (SMALL_FACE_CHECK): no box."""
    from emotion.core import detection
    grass = cv2.resize(real_photo("grass"), size, interpolation=cv2.INTER_AREA)
    assert detect_faces(detector, grass) == []
    monkeypatch.setattr(detection, "SMALL_FACE_CHECK", (0, detection.SMALL_FACE_CHECK[1]))  # no face small enough
    assert len(detect_faces(detector, grass)) == 1


def test_a_small_box_in_a_mirrored_corner_is_checked_away(detector, monkeypatch):
    """Where nothing is found, mtcnn's looks again see the photo mirrored into a border; in scikit-image's
    immunohistochemistry slide at 640x480 the fourth look takes a corner mirrored both ways for a small face (ONet
    0.91-0.92 on its 160-px copy); ONet on a copy twice as large, mirrored alike, does not (SMALL_FACE_CHECK): no
    box."""
    from emotion.core import detection
    slide = cv2.resize(real_photo("immunohistochemistry"), (640, 480), interpolation=cv2.INTER_AREA)
    assert detect_faces(detector, slide) == []
    monkeypatch.setattr(detection, "SMALL_FACE_CHECK", (0, detection.SMALL_FACE_CHECK[1]))  # no face small enough
    assert len(detect_faces(detector, slide)) == 1


def test_small_faces_pass_the_small_face_check(detector):
    """Three faces 19-20 px wide in a 640x480 photo (14-15 px in mtcnn's copy) are kept by SMALL_FACE_CHECK."""
    head = real_photo("astronaut")[40:200, 160:290]
    photo = np.full((480, 640, 3), 150, np.uint8)
    for x in (100, 300, 500):
        photo[200:236, x:x + 30] = cv2.resize(head, (30, 36), interpolation=cv2.INTER_AREA)
    assert [f["box"][0] // 100 for f in detect_faces(detector, photo)] == [1, 3, 5]


def test_a_crowd_of_50_faces(detector):
    head = real_photo("astronaut")[40:200, 160:290]
    crowd = np.full((720, 1280, 3), 200, np.uint8)
    for row in range(5):
        for col in range(10):
            crowd[row * 144:row * 144 + 129, col * 128:col * 128 + 102] = cv2.resize(head, (102, 129))
    start = time.perf_counter()
    assert len(detect_faces(detector, crowd)) == 50
    assert time.perf_counter() - start < 30
    faces = [{"box": f["box"], "emotion": "joy", "confidence": 0.5} for f in detect_faces(detector, crowd)]
    assert annotate(crowd, faces).shape == (720, 1280, 3)


def overlaps(a, b):
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


@pytest.mark.parametrize("shape, boxes", [
    ((48, 48), [[0, 0, 48, 48]]),  # a face crop classified whole: the label cannot go above or below
    ((480, 640), [[0, 0, 60, 60], [600, 440, 40, 40]]),  # faces in the corners
    ((480, 640), [[100, 100, 80, 80], [120, 110, 80, 80], [140, 120, 80, 80]]),  # overlapping faces
    ((720, 1280), [[x, 300, 60, 60] for x in range(0, 1280, 64)]),  # a row of faces side by side
], ids=["crop", "corners", "overlapping", "row"])
def test_labels_stay_inside_the_picture_and_apart(shape, boxes):
    faces = [{"box": b, "emotion": e, "confidence": 0.87} for b, e in zip(boxes, ["sad", "happy", "angry"] * 99)]
    placed = layout_labels(faces, shape)
    assert any(text.startswith("sad") for text, *_ in placed)
    for i, (*_, rect) in enumerate(placed):
        assert 0 <= rect[0] < rect[2] <= shape[1] and 0 <= rect[1] < rect[3] <= shape[0], rect
        assert not any(overlaps(rect, other) for *_, other in placed[i + 1:])
    assert annotate(np.zeros((*shape, 3), np.uint8), faces).shape == (*shape, 3)


def random_faces(rng, shape, count):
    """`count` face boxes of 30-130 px that do not overlap, at random places in a picture of `shape`."""
    boxes = []
    while len(boxes) < count:
        side = int(rng.integers(30, 130))
        box = [int(rng.integers(0, shape[1] - side)), int(rng.integers(0, shape[0] - side)), side, side]
        if not any(overlaps((box[0], box[1], box[0] + side, box[1] + side), (x, y, x + w, y + h))
                   for x, y, w, h in boxes):
            boxes.append(box)
    emotions = ["sad", "happy", "angry", "surprise", "neutral", "fear", "disgust"]
    return [{"box": b, "emotion": emotions[i % 7], "confidence": float(rng.uniform(0.2, 1))}
            for i, b in enumerate(boxes)]


@pytest.mark.parametrize("seed", range(12))
def test_each_label_and_message_sits_by_its_face_never_over_a_face_or_in_the_numbered_list(seed):
    rng = np.random.default_rng(seed)
    shape = (480, 640)
    faces = random_faces(rng, shape, int(rng.integers(2, 8)))
    texts = {**{face_message(i, face, faces, True): i for i, face in enumerate(faces)},
             **{face_label(i, face, faces, True): i for i, face in enumerate(faces)}}
    assert all(text.startswith(f"{i + 1}: ") for text, i in texts.items())  # whose label or message it is
    placed = {text: rect for text, *_, rect in layout_labels(faces, shape, numbered=True)}
    assert set(placed) <= set(texts)
    for text, rect in placed.items():
        x, y, w, h = faces[texts[text]]["box"]
        assert overlaps(rect, (x - w, y - h - 30, x + 2 * w, y + 2 * h + 30)), (text, rect)  # by its own face
        for face in faces:  # over no face, its own included
            fx, fy, fw, fh = face["box"]
            assert not overlaps(rect, (fx, fy, fx + fw, fy + fh)), (text, face)
    canvas = annotate(np.zeros((*shape, 3), np.uint8), faces, numbered=True)
    listed = sum(any(text not in placed for text, i in texts.items() if i == face) for face in range(len(faces)))
    assert canvas.shape[1:] == (640, 3) and (canvas.shape[0] > 480) == (listed > 0)
    strip = canvas[480:]
    lines = np.flatnonzero(np.diff(np.r_[0, strip.max(axis=(1, 2)) > 0, 0]) == 1)  # rows of text under the photo
    assert len(lines) == listed  # what found no place by its face is listed there, one line per face
    for i, face in enumerate(faces):  # each box carries its number in its top-left corner: a green tag on black
        x, y = face["box"][:2]
        assert canvas[y:y + 20, x:x + 20, 1].max() == 255, i  # the box is drawn at 200, labels never cover it


def test_a_single_face_message_without_room_is_listed_under_the_photo():
    """A face filling a small photo: no room for its message by the face, so predict's picture lists it."""
    faces = [{"box": [2, 2, 126, 160], "emotion": "sad", "confidence": 0.31}]
    canvas = annotate(np.zeros((167, 131, 3), np.uint8), faces, numbered=True)
    assert canvas.shape[0] > 167 and canvas[167:].max() > 0
    assert annotate(np.zeros((167, 131, 3), np.uint8), faces).shape == (167, 131, 3)  # the video keeps its size


TWO_FACES = [{"box": [100, 200, 120, 120], "emotion": "sad", "confidence": 0.87},  # side by side in a 640x480 photo
             {"box": [400, 200, 120, 120], "emotion": "happy", "confidence": 0.6}]


def test_with_two_faces_each_label_carries_its_number_beside_its_box():
    labels = [(text, rect) for text, colour, *_, rect in layout_labels(TWO_FACES, (480, 640), numbered=True)
              if colour == (0, 255, 0)]  # the green labels; the white lines are the messages
    assert [text for text, _ in labels] == ["1: sad 87%", "2: happy 60%"]
    for (_, (x0, y0, x1, y1)), face in zip(labels, TWO_FACES):
        x, y, w, h = face["box"]
        assert x <= x0 < x + w and y - 40 < y1 <= y, (x0, y0, x1, y1)  # just above its box: there is room
    assert layout_labels(TWO_FACES[:1], (480, 640), numbered=True)[0][0] == "sad 87%"  # one face: nothing to match
    assert layout_labels(TWO_FACES, (480, 640))[0][0] == "sad 87%"


@pytest.mark.parametrize("command", ["predict", "serve"])
def test_predict_save_and_the_web_page_number_the_faces(command, tmp_path, capsys, monkeypatch):
    """The annotated image numbers the faces as predict's JSON and the page's "Face 1", "Face 2" cards order them."""
    from emotion import recognizer
    from emotion.core import drawing
    drawn = []
    real = drawing.layout_labels
    monkeypatch.setattr(drawing, "layout_labels", lambda *a: drawn.append(real(*a)) or drawn[-1])
    monkeypatch.setattr(recognizer, "detect_faces", lambda detector, image, max_side=None, **_looks: [
        {"box": face["box"], "eyes": None} for face in TWO_FACES])
    photo = tmp_path / "two.png"
    cv2.imwrite(str(photo), np.full((480, 640, 3), 90, np.uint8))
    if command == "predict":
        code, out, error = run_main(capsys, "predict", photo, "--save", tmp_path / "out", "--json",
                                    "--model-path", SHIPPED_MODEL, "--detector", "haar")
        assert code == 0, error
        answered = json.loads(out.strip().splitlines()[-1])["faces"]
    else:
        from emotion.jobs.serve import make_serve_app
        client = make_serve_app(SHIPPED_MODEL, detector="haar").test_client()
        response = client.post("/api/predict", data={"image": (open(photo, "rb"), "two.png")})
        assert response.status_code == 200, response.get_json()
        answered = response.get_json()["faces"]
    texts = [text for text, colour, *_ in drawn[-1] if colour == (0, 255, 0)]
    assert texts == [f"{i}: {face['emotion']} {face['confidence']:.0%}" for i, face in enumerate(answered, 1)]


@pytest.mark.slow
def test_webcam_follows_a_real_face_between_detections(model_path, tmp_path):
    photo = cv2.cvtColor(cv2.resize(real_photo("astronaut"), (480, 480)), cv2.COLOR_RGB2BGR)
    frame = np.full((480, 640, 3), 90, np.uint8)
    writer = cv2.VideoWriter(str(tmp_path / "in.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (640, 480))
    for i in range(10):
        frame[:, 80 + i:560 + i] = photo
        writer.write(frame)
    writer.release()
    result = run_cli("webcam", "--source", tmp_path / "in.avi", "--no-display", "--model-path", model_path,
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Processed 10 frames, 10 faces" in result.stdout  # detected on frame 0, followed after


def test_prepare_crop_faces_stores_the_aligned_face(tmp_path):
    for name, folder in (("astronaut", "happy"), ("coffee", "sad")):
        (tmp_path / "src" / folder).mkdir(parents=True)
        write_rgb(tmp_path / "src" / folder / f"{name}.png", real_photo(name))
    result = run_cli("prepare", "--source", tmp_path / "src", "--out", tmp_path / "out", "--crop-faces", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Skipped 1 image(s) with no detectable face" in result.stdout and "coffee.png" in result.stdout
    (stored,) = [p for p in (tmp_path / "out").rglob("*.png")]
    assert stored.name == "astronaut.png"
    h, w = cv2.imread(str(stored)).shape[:2]
    assert h == w and 80 < h < 130  # a square about the size of her face (box 85x112), not the 512 px photo


def group_with_a_cut_tilted_face():
    """The astronaut's head, large, tilted 30 degrees and 35 % outside the left edge (as the front faces of a group
    selfie), and the cameraman at the right: two faces, of which mtcnn alone finds only the cameraman."""
    canvas = np.full((480, 640, 3), 90, np.uint8)
    head = cv2.resize(real_photo("astronaut")[40:220, 140:310], (340, 360))
    head = cv2.warpAffine(head, cv2.getRotationMatrix2D((170, 180), 30, 1), (340, 360), borderMode=cv2.BORDER_REPLICATE)
    canvas[100:460, :222] = head[:, 118:]
    canvas[50:250, 400:600] = cv2.resize(real_photo("camera"), (200, 200))
    return canvas


def test_mtcnn_plus_hog_finds_the_cut_tilted_face_and_levels_it():
    """HOG finds the tilted face mtcnn misses; ONet, shown HOG's box, gives its eyes, so its crop is levelled as the
    faces mtcnn finds are (without them it was cropped as it stands, 25 degrees off)."""
    group = group_with_a_cut_tilted_face()
    assert len(detect_faces(load_face_detector("mtcnn"), group)) == 1  # the face the second pass is for
    found = sorted(detect_faces(load_face_detector("mtcnn+hog"), group), key=lambda f: f["box"][0])
    assert len(found) == 2, found
    assert found[0]["box"][0] + found[0]["box"][2] / 2 < 222 and found[1]["box"][0] >= 400  # the cut face, the camera
    (upright,) = detect_faces(load_face_detector("mtcnn"), real_photo("astronaut"))
    assert abs(eye_roll(found[0]["eyes"]) - (eye_roll(upright["eyes"]) - 30)) < 8  # her head was turned 30 degrees


def test_onet_gives_eyes_to_faces_only():
    """ONet on every box HOG scores on the astronaut's photo, down to its false boxes (suit, flag): her face gets the
    box and eyes mtcnn gives it, the rest none."""
    name, (mtcnn, hog, _) = load_face_detector("mtcnn+hog")
    photo = real_photo("astronaut")
    boxes = [[r.left(), r.top(), r.width(), r.height()] for r in hog.run(photo, 0, -1)[0]]
    found = onet_faces(mtcnn, photo, boxes)
    assert len(found) == len(boxes) >= 3 and sum(face is not None for face in found) == 1, found
    (upright,) = detect_faces(load_face_detector("mtcnn"), photo)
    box, eyes = next(face for face in found if face)
    assert np.allclose(box, upright["box"], atol=4) and np.allclose(eyes, upright["eyes"], atol=3)


@pytest.mark.parametrize("mirror", [False, True])
def test_onet_passes_over_boxes_wholly_outside_the_photo(mirror):
    """A box with nothing of the photo in it gets None, the others their answers (mirroring an empty crop would
    loop forever in OpenCV)."""
    name, (mtcnn, hog, _) = load_face_detector("mtcnn+hog")
    photo = real_photo("astronaut")
    (face,) = detect_faces(load_face_detector("mtcnn"), photo)
    before, beyond = [-300, -300, 100, 100], [photo.shape[1] + 50, 100, 80, 80]  # above-left, right of the photo
    found = finishes(onet_faces, mtcnn, photo, [before, face["box"], beyond], mirror=mirror)
    assert found[0] is None and found[2] is None and found[1] is not None
    assert finishes(onet_faces, mtcnn, photo, [before, beyond], mirror=mirror) == [None, None]


@pytest.mark.parametrize("shape", [(0, 10, 3), (10, 0, 3), (0, 0, 3)])
def test_an_empty_picture_has_no_face(detector, shape):
    assert finishes(detect_faces, detector, np.zeros(shape, np.uint8)) == []


def finishes(function, *args, seconds=60, **kwargs):
    """function(*args, **kwargs)'s result, failing the test (not hanging it) when it runs past `seconds`."""
    outcome = {}

    def call():
        try:
            outcome["result"] = function(*args, **kwargs)
        except BaseException as error:  # raised again in the test's thread
            outcome["error"] = error

    worker = threading.Thread(target=call, daemon=True)  # a hung call is left behind, not waited for
    worker.start()
    worker.join(seconds)
    if "error" in outcome:
        raise outcome["error"]
    if "result" not in outcome:
        pytest.fail(f"{function.__name__} did not finish in {seconds} s")
    return outcome["result"]


@pytest.mark.parametrize("threads", [2, 1])
def test_mtcnn_plus_hog_runs_its_hog_pass_beside_mtcnn_when_opencv_has_cores(threads):
    """With OpenCV allowed more than one thread, HOG looks while mtcnn does (a thread of its own); a batch worker,
    given one thread, runs the two passes one after the other. The faces are the same either way."""
    name, (mtcnn, hog, _) = load_face_detector("mtcnn+hog")
    hog_threads = []

    class RecordingHOG:
        def run(self, *args):
            hog_threads.append(threading.current_thread())
            return hog.run(*args)

    saved = cv2.getNumThreads()
    cv2.setNumThreads(threads)
    try:
        found = detect_faces((name, (mtcnn, RecordingHOG(), None)), group_with_a_cut_tilted_face())
    finally:
        cv2.setNumThreads(saved)
    assert [face["box"][0] < 222 for face in found] == [True, False]  # HOG's face and mtcnn's, as in one thread
    assert (hog_threads[0] is threading.current_thread()) == (threads == 1)


@pytest.mark.parametrize("name, outside, side", [("camera", 0.4, "left"), ("camera", 0.4, "top"),
                                                 ("astronaut", 0.45, "right"), ("astronaut", 0.45, "top"),
                                                 ("camera", 0.45, "right"), ("astronaut", 0.45, "bottom"),
                                                 ("astronaut", 0.65, "right"), ("camera", 0.55, "top")])
def test_a_face_cut_by_the_frame_is_found(detector, name, outside, side):
    """A portrait cut so 40-65 % of the face's box lies outside the picture: mtcnn finds nothing on the photo nor
    with its edge pixels repeated, so it looks again with the photo mirrored into a border (the face made whole);
    the last three only with the widest border, on the smallest copy (the astronaut cut 65 %, a photo more than twice
    as tall as wide: the border is wider than the photo, mirrored again and again); the camera man cut 55 % at the
    top only with the looks' lower cut-offs for mtcnn's first two networks (LOOKS_AGAIN_CUTOFFS)."""
    image = real_photo(name)
    (face,) = detect_faces(detector, image)
    x, y, w, h = face["box"]
    x0, x1, y0, y1 = int(x + outside * w), int(x + (1 - outside) * w), int(y + outside * h), int(y + (1 - outside) * h)
    cut = {"left": image[:, x0:], "right": image[:, :x1], "top": image[y0:], "bottom": image[:y1]}[side]
    visible = {"left": (0, y, x + w - x0, h), "right": (x, y, x1 - x, h), "top": (x, 0, w, y + h - y0),
               "bottom": (x, y, w, y1 - y)}[side]
    (found,) = detect_faces(detector, np.ascontiguousarray(cut))
    fx, fy, fw, fh = found["box"]
    assert {"left": fx, "right": cut.shape[1] - fx - fw, "top": fy, "bottom": cut.shape[0] - fy - fh}[side] <= 2
    vx, vy, vw, vh = visible  # it reaches the cut edge, on the face's part still in the picture
    assert vx <= fx + fw / 2 <= vx + vw and vy <= fy + fh / 2 <= vy + vh


def corner_cut(image, box, outside, vertical, horizontal):
    """`image` cut at a corner so `outside` of the face's box is outside the picture (as much of its width as of its
    height, as benchmarks/cut_faces.py --corners cuts): (the cut picture, the part of the box still inside it)."""
    x, y, w, h = box
    along = 1 - (1 - outside) ** 0.5
    y0, y1 = (int(y + along * h), image.shape[0]) if vertical == "top" else (0, int(y + (1 - along) * h))
    x0, x1 = (int(x + along * w), image.shape[1]) if horizontal == "left" else (0, int(x + (1 - along) * w))
    inside = [max(x, x0) - x0, max(y, y0) - y0, min(x + w, x1) - max(x, x0), min(y + h, y1) - max(y, y0)]
    return np.ascontiguousarray(image[y0:y1, x0:x1]), inside


def tilted(image, degrees):
    matrix = cv2.getRotationMatrix2D((image.shape[1] / 2, image.shape[0] / 2), degrees, 1)
    return cv2.warpAffine(image, matrix, image.shape[1::-1], borderMode=cv2.BORDER_REFLECT_101)


def test_the_close_up_look_finds_a_cut_face_the_mtcnn_looks_miss(detector, monkeypatch):
    """The camera man turned 15 degrees and cut at the bottom left corner, half his face's box outside: neither
    mtcnn's four looks nor HOG find him; BlazeFace on the photo mirrored into a border does, and ONet, shown its box
    mirrored likewise, takes it for a face (its box and eyes are those of the face made whole by the mirror)."""
    from emotion.core.detection import CLOSE_UP_LOOK
    name, (mtcnn, hog, blazeface) = detector
    assert blazeface is not None  # OpenCV reads the shipped BlazeFace model
    photo = tilted(real_photo("camera"), -15)
    (face,) = detect_faces(detector, photo)
    picture, (vx, vy, vw, vh) = corner_cut(photo, face["box"], 0.5, "bottom", "left")
    assert detect_faces((name, (mtcnn, hog, None)), picture) == []  # without the close-up look
    (found,) = detect_faces(detector, picture)
    x, y, w, h = found["box"]
    assert vx <= x + w / 2 <= vx + vw and vy <= y + h / 2 <= vy + vh and x <= 2  # on his face, reaching the cut edge
    assert found["eyes"] is not None  # ONet's
    # twice as large, looked at on a copy of the picture's own size: the same face, in the large picture's pixels
    monkeypatch.setattr("emotion.core.detection.CLOSE_UP_LOOK", (CLOSE_UP_LOOK[0], max(picture.shape[:2])))
    (found_large,) = detect_faces(detector, cv2.resize(picture, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC))
    assert np.allclose(found_large["box"], np.multiply(found["box"], 2), atol=5), (found_large, found)
    assert np.allclose(found_large["eyes"], np.multiply(found["eyes"], 2), atol=5), (found_large, found)


def pair_with_a_face_cut_at_the_right():
    """Grace Hopper, 80 px, and the astronaut, 100 px, 40 % of her face past the right edge (640x480)."""
    group = np.full((480, 640, 3), 120, np.uint8)
    group[150:350, 100:300] = head(grace_hopper(), 80, 0)
    x0 = 640 - (125 + 50 - 40)  # the astronaut's face, 100 px wide in the middle of its 250-px square, 40 % outside
    group[100:350, x0:] = head(real_photo("astronaut"), 100, 0)[:, :640 - x0]
    return group


def test_a_face_cut_by_the_edge_of_a_group_photo_is_boxed_once(detector):
    """mtcnn clips its first look's box of a face cut by the frame's edge to the photo; the group look finds the face
    again, its box reaching past the edge and its centre just past the first box: the same face (SAME_FACE_OVERLAP),
    one box, in a photo and in a video frame (detected on a 320-px copy, where the two boxes were both kept)."""
    group = pair_with_a_face_cut_at_the_right()
    for max_side in (None, 320):
        faces = detect_faces(detector, group, max_side)
        assert len(faces) == 2, (max_side, faces)
        assert faces[0]["box"][0] < 300 and sum(faces[1]["box"][::2]) >= 630  # Grace Hopper; the face at the edge


def test_hog_and_the_turned_looks_add_a_face_found_again_at_the_edge_once(detector, monkeypatch):
    """HOG and the turned looks go by the group look's rule: a box of a face found, reaching past the edge so that
    its centre lies past the first box, overlaps it by more than SAME_FACE_OVERLAP once clipped: not a new face."""
    from emotion.core import detection
    group = pair_with_a_face_cut_at_the_right()
    _, (x, y, w, h) = (face["box"] for face in detect_faces(detector, group, 320))
    again = [x + 6, y, 2 * (w - 6) + 4, h]  # its centre 2 px past the box found, which ends at the photo's edge
    assert x + w >= 636 and again[0] + again[2] / 2 > x + w
    find_faces = detection.find_faces
    monkeypatch.setattr(detection, "find_faces", lambda name, *args: [(again, None)] if name == "hog" else
                        find_faces(name, *args))
    assert len(detect_faces(detector, group, 320)) == 2
    monkeypatch.setattr(detection, "find_faces", find_faces)
    monkeypatch.setattr(detection, "turned_faces", lambda *args: [(again, [[x + 20, y + 40], [x + 50, y + 40]])])
    monkeypatch.setattr(detection, "turned_scores", lambda mtcnn, image, boxes, *args: [1.0] * len(boxes))
    assert len(detect_faces(detector, group, 320)) == 2


def test_overlap_is_intersection_over_union_of_the_boxes_clipped_to_the_photo():
    from emotion.core.detection import overlap
    assert overlap([10, 10, 20, 20], [10, 10, 20, 20], 100, 100) == 1
    assert overlap([10, 10, 20, 20], [20, 10, 20, 20], 100, 100) == pytest.approx(1 / 3)
    assert overlap([90, 0, 10, 10], [90, 0, 30, 10], 100, 100) == 1  # the same once clipped to the photo
    assert overlap([0, 0, 10, 10], [20, 20, 10, 10], 100, 100) == 0
    assert overlap([120, 0, 10, 10], [120, 0, 10, 10], 100, 100) == 0  # wholly outside: nothing in common
    assert overlap([5, 5, 0, 0], [5, 5, 0, 0], 100, 100) == 0  # no size


def group_with_a_large_face_cut_at_the_corner():
    """Grace Hopper's face, large (280 px wide), turned 20 degrees and cut by the left edge (30 % of its width
    outside) and the bottom, as the nearest face of a group selfie; the astronaut and the camera man small behind."""
    photo = grace_hopper()
    (face,) = detect_faces(load_face_detector("mtcnn"), photo, max_side=max(photo.shape[:2]))
    x, y, w, h = face["box"]
    scale = 280 / w
    large = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    turn = cv2.getRotationMatrix2D(((x + w / 2) * scale, (y + h / 2) * scale), 20, 1)  # about her face's centre
    large = cv2.warpAffine(large, turn, large.shape[1::-1], borderMode=cv2.BORDER_REFLECT_101)
    canvas = np.full((480, 640, 3), 120, np.uint8)
    canvas[20:180, 300:460] = cv2.resize(real_photo("astronaut"), (160, 160), interpolation=cv2.INTER_AREA)
    canvas[20:180, 470:630] = cv2.resize(real_photo("camera"), (160, 160), interpolation=cv2.INTER_AREA)
    top, left = int(y * scale) - 200, int((x + 0.3 * w) * scale)
    part = large[max(0, top):top + 480, left:left + 260]
    canvas[480 - part.shape[0]:, :part.shape[1]] = part
    return canvas


def test_the_group_look_finds_the_large_face_cut_at_the_corner_of_a_group_photo(detector, monkeypatch):
    """Where a photo has two faces or more, mtcnn looks once more with the photo mirrored into a border (GROUP_LOOK):
    the large face in front cut by the frame, which the first look and HOG miss, is found, reaching the edge (the
    turned looks, which find her too, left out)."""
    from emotion.core import detection
    group = group_with_a_large_face_cut_at_the_corner()
    monkeypatch.setattr(detection, "turned_faces", lambda *args: [])  # they find her too: this is the group look's
    with monkeypatch.context() as without:
        without.setattr(detection, "GROUP_MIN_FACES", 3)  # two found: without the look
        assert [f["box"][0] >= 300 for f in detect_faces(detector, group)] == [True, True]
    found = detect_faces(detector, group)
    assert len(found) == 3 and [f["box"][0] >= 300 for f in found] == [False, True, True], found
    x, y, w, h = found[0]["box"]
    assert x <= 2 and x + w / 2 < 260 and 260 < y + h / 2 < 480 and w > 100, found  # on her face, at the edge


def test_the_group_looks_run_on_groups_only():
    """A portrait (one face) costs one mtcnn call as before; a photo with two faces three more: on the small mirrored
    copy of GROUP_LOOK, then on copies turned each way (TURNED_LOOK), no larger than the copy detect_faces is given
    (video's)."""
    from emotion.core.detection import GROUP_LOOK, TURNED_LOOK
    name, (mtcnn, hog, blazeface) = load_face_detector("mtcnn+hog")
    sides = []

    class Recording:
        def detect_faces(self, image, **kwargs):
            sides.append(max(image.shape[:2]))
            return mtcnn.detect_faces(image, **kwargs)

        def get_stage(self, **kwargs):  # ONet, for HOG's boxes
            return mtcnn.get_stage(**kwargs)

    assert len(detect_faces((name, (Recording(), hog, blazeface)), real_photo("astronaut"))) == 1
    assert len(sides) == 1
    sides.clear()
    assert len(detect_faces((name, (Recording(), hog, blazeface)), group_with_a_large_face_cut_at_the_corner())) == 3
    border, _, look_side = GROUP_LOOK
    degrees, turned_side = TURNED_LOOK
    width, height = turned_side, turned_side * 480 / 640  # the group photo's copy, before it is turned
    cos, sin = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    assert len(sides) == 4 and sides[1] == pytest.approx(look_side + 2 * int(border * look_side), abs=2)
    assert sides[2:] == [pytest.approx(max(width * cos + height * sin, width * sin + height * cos), abs=2)] * 2
    sides.clear()  # as video detects, on a smaller copy: the turned copies no larger
    detect_faces((name, (Recording(), hog, blazeface)), group_with_a_large_face_cut_at_the_corner(), max_side=300)
    width, height = 300, 300 * 480 / 640
    assert sides[-2:] == [pytest.approx(max(width * cos + height * sin, width * sin + height * cos), abs=2)] * 2


def test_the_turned_looks_find_a_tilted_head_in_a_group(detector, monkeypatch):
    """In a group photo mtcnn also looks at the photo turned 25 degrees each way (TURNED_LOOK): the camera man's
    face, 60 px, tilted 35 degrees in the top left corner, which the other looks and HOG miss, is found where it is,
    with his eyes turned back (so his crop is levelled)."""
    from emotion.core import detection
    group = group_with_a_tilted_head()
    monkeypatch.setattr(detection, "turned_faces", lambda *args: [])
    assert len(detect_faces(detector, group)) == 2  # without the turned looks: the two upright faces
    monkeypatch.undo()
    found = detect_faces(detector, group)
    assert len(found) == 3, found
    x, y, w, h = found[0]["box"]
    assert abs(x + w / 2 - 75) < 15 and abs(y + h / 2 - 75) < 15 and 45 < w < 80, found  # his face's centre
    (upright,) = detect_faces(load_face_detector("mtcnn"), real_photo("camera"))
    assert abs(eye_roll(found[0]["eyes"]) - (eye_roll(upright["eyes"]) + 35)) < 8, found  # turned 35 clockwise


def test_a_face_a_turned_look_adds_is_checked_by_onet_turned_alike(detector, monkeypatch):
    """A face a turned look adds is kept only where ONet, shown it on a copy twice as large turned as the look turned
    it (turned_scores), still takes it for a face (TURNED_CHECK): the camera man's tilted head scores high turned the
    look's way and low the other way, boxes on bricks low; with every score low he is not added."""
    from emotion.core import detection
    from emotion.core.detection import TURNED_CHECK, TURNED_LOOK, turned_faces, turned_scores
    group, mtcnn = group_with_a_tilted_head(), load_face_detector("mtcnn")[1]
    (box, _eyes), = [face for face in turned_faces(mtcnn, group, TURNED_LOOK[0], TURNED_LOOK[1]) if face[0][0] < 150]
    assert turned_scores(mtcnn, group, [box], *TURNED_LOOK)[0] > 0.9  # upright again, at twice the size
    assert turned_scores(mtcnn, group, [box], -TURNED_LOOK[0], TURNED_LOOK[1])[0] < TURNED_CHECK  # tilted 60 degrees
    patches = []  # on a photo twice as large, the same face at twice the size: ONet sees it on a 720-px copy
    answers = detection.onet_answers
    monkeypatch.setattr(detection, "onet_answers", lambda mtcnn, patch, *args: patches.append(patch.shape[0]) or
                        answers(mtcnn, patch, *args))
    larger = cv2.resize(group, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    assert turned_scores(mtcnn, larger, [[2 * v for v in box]], *TURNED_LOOK)[0] > 0.9
    assert len(patches) == 1 and abs(patches[0] - 2 * max(box[2:]) * 2 * TURNED_LOOK[1] * 2 / 1280) <= 4, patches
    monkeypatch.undo()
    bricks = cv2.resize(real_photo("brick"), (640, 480))
    assert max(turned_scores(mtcnn, bricks, [[x, y, 60, 70] for x in (100, 300, 500) for y in (50, 200, 350)],
                             *TURNED_LOOK)) < TURNED_CHECK
    monkeypatch.setattr(detection, "turned_scores", lambda mtcnn, image, boxes, *args: [0.0] * len(boxes))
    assert len(detect_faces(detector, group)) == 2  # the upright faces only


@pytest.mark.parametrize("degrees", [25, -25])
@pytest.mark.parametrize("corner", [np.s_[:175, :175], np.s_[:175, -175:], np.s_[-175:, :175], np.s_[-175:, -175:]])
def test_a_turned_copy_keeps_the_whole_photo(degrees, corner):
    """turned_faces turns the photo on a canvas large enough for all of it: a face in any corner is found, where
    it is."""
    from emotion.core.detection import TURNED_LOOK, turned_faces
    photo = np.full((480, 640, 3), 120, np.uint8)
    photo[corner] = head(real_photo("astronaut"), 70, 0)
    centre = [(s.start or 0) % dim + 87.5 for s, dim in zip(corner[::-1], (640, 480))]  # the head's middle
    ((x, y, w, h), eyes), = turned_faces(load_face_detector("mtcnn")[1], photo, degrees, TURNED_LOOK[1])
    assert abs(x + w / 2 - centre[0]) < 15 and abs(y + h / 2 - centre[1]) < 15, (x, y, w, h, centre)


@pytest.mark.parametrize("name", ["coffee", "moon"])
def test_onet_keeps_out_what_blazeface_takes_for_a_face(detector, name):
    """BlazeFace alone boxes the coffee cup and the moon (scores 0.5-0.6, on the photo mirrored into the close-up
    look's border); ONet takes neither for a face, so the default detector boxes nothing."""
    from emotion.core.blazeface import blazeface_faces
    from emotion.core.detection import CLOSE_UP_LOOK
    photo = real_photo(name)
    pad = int(CLOSE_UP_LOOK[0] * max(photo.shape[:2]))
    assert blazeface_faces(detector[1][2], cv2.copyMakeBorder(photo, pad, pad, pad, pad, cv2.BORDER_REFLECT_101))
    assert detect_faces(detector, photo) == []


@pytest.mark.parametrize("name, crop", [("astronaut", np.s_[:, :]), ("astronaut", np.s_[:, 120:330]),
                                        ("astronaut", np.s_[40:240, :]), ("camera", np.s_[60:260, 120:360])])
def test_blazeface_boxes_the_face_mtcnn_boxes(name, crop):
    """BlazeFace's anchors and boxes, decoded here, put its box on the face mtcnn finds, in square, tall and wide
    photos (each is fitted into the network's square input, centred on black)."""
    from emotion.core.blazeface import blazeface_faces, load_blazeface
    photo = np.ascontiguousarray(real_photo(name)[crop])
    (face,) = detect_faces(load_face_detector("mtcnn"), photo)
    (box, score), *others = blazeface_faces(load_blazeface(), photo)
    assert score > 0.7 and all(other_score < score for _, other_score in others)
    x, y, w, h = face["box"]
    bx, by, bw, bh = box
    assert abs(bx + bw / 2 - x - w / 2) < 0.15 * w and abs(by + bh / 2 - y - h / 2) < 0.2 * h, (box, face["box"])
    assert 0.7 < bw / w < 1.6, (box, face["box"])


@pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated")  # the reference here, nowhere else
def test_blazeface_answers_as_tensorflow_lite_does():
    """OpenCV's DNN module runs the shipped .tflite file as TensorFlow Lite does (its scores and box offsets)."""
    from emotion.core.blazeface import BLAZEFACE_FILE, BLAZEFACE_SIZE, load_blazeface
    tf = pytest.importorskip("tensorflow")
    interpreter_class = getattr(getattr(tf, "lite", None), "Interpreter", None)
    if interpreter_class is None:
        pytest.skip("this TensorFlow has no tf.lite.Interpreter")
    square = cv2.resize(real_photo("astronaut"), (BLAZEFACE_SIZE, BLAZEFACE_SIZE))[None].astype(np.float32) / 127.5 - 1
    interpreter = interpreter_class(model_path=BLAZEFACE_FILE)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], square)
    interpreter.invoke()
    expected = {out["name"]: interpreter.get_tensor(out["index"]) for out in interpreter.get_output_details()}
    net, outputs, _ = load_blazeface()
    net.setInput(square.transpose(0, 3, 1, 2))
    for name, answer in zip(outputs, net.forward(outputs)):
        assert np.allclose(answer, expected[name], atol=1e-3), name


def test_without_blazeface_the_detector_warns_and_goes_on(tmp_path, monkeypatch):
    """A missing or unreadable weights file, or an OpenCV without a TFLite reader: a warning, and the default
    detector runs without its close-up look."""
    from emotion.core.blazeface import load_blazeface
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"not a model")
    for path in (tmp_path / "missing.tflite", broken):
        with pytest.warns(UserWarning, match="without BlazeFace"):
            assert load_blazeface(str(path)) is None
    monkeypatch.delattr(cv2.dnn, "readNetFromTFLite")
    with pytest.warns(UserWarning, match="cannot read TFLite"):
        detector = load_face_detector("mtcnn+hog")
    assert detector[1][2] is None
    assert len(detect_faces(detector, real_photo("astronaut"))) == 1


def test_the_looks_with_a_border_run_on_a_smaller_copy():
    """A photo with no face costs four mtcnn calls; the later three (a border of repeated, then mirrored, edge
    pixels: for close-ups and faces cut by the edge, large ones) look at copies smaller than the first's."""
    from emotion.core.detection import LOOKS_AGAIN, MTCNN_MAX_SIDE
    name, mtcnn = load_face_detector("mtcnn")
    sides = []

    class Recording:
        def detect_faces(self, image, **kwargs):
            sides.append(max(image.shape[:2]))
            return mtcnn.detect_faces(image, **kwargs)

    assert detect_faces((name, Recording()), real_photo("coffee")) == []
    assert sides[0] == MTCNN_MAX_SIDE and len(sides) == 4
    inside = [round(side / (1 + 2 * border)) for side, (border, _, _) in zip(sides[1:], LOOKS_AGAIN)]
    assert inside == [pytest.approx(look_side, abs=2) for _, _, look_side in LOOKS_AGAIN]  # the photo in the border
    assert inside[0] <= 0.7 * MTCNN_MAX_SIDE and inside[2] <= 0.35 * MTCNN_MAX_SIDE


def test_mtcnn_plus_hog_keeps_out_weak_hog_boxes():
    """HOG scores a patch of the astronaut's suit 0.16 as a face once her photo is scaled into a 640x480 frame."""
    frame = np.full((480, 640, 3), 90, np.uint8)
    frame[:, 80:560] = cv2.resize(real_photo("astronaut"), (480, 480), interpolation=cv2.INTER_AREA)
    assert len(detect_faces(load_face_detector("mtcnn+hog"), frame)) == 1


@pytest.mark.parametrize("name", NO_FACE_PHOTOS)
def test_mtcnn_plus_hog_boxes_no_face_photos(name):
    assert detect_faces(load_face_detector("mtcnn+hog"), real_photo(name)) == []


def test_predict_and_serve_with_mtcnn_plus_hog(model_path, tmp_path):
    write_rgb(tmp_path / "group.png", group_with_a_cut_tilted_face())
    result = run_cli("predict", tmp_path / "group.png", "--model-path", model_path, "--json", "--detector",
                     "mtcnn+hog", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    faces = json.loads(result.stdout.strip().splitlines()[-1])["faces"]
    assert len(faces) == 2 and all(f["detected"] and f["emotion"] in CLASSES for f in faces), faces
    from emotion.jobs.serve import make_serve_app
    client = make_serve_app(str(model_path), detector="mtcnn+hog").test_client()
    response = client.post("/api/predict", data={"image": (open(tmp_path / "group.png", "rb"), "group.png")})
    assert response.status_code == 200 and len(response.get_json()["faces"]) == 2, response.get_json()


@pytest.mark.download
@pytest.mark.parametrize("name", ["mtcnn", "mtcnn+hog"])
def test_detectors_on_real_group_photos_and_portraits(name, wheel_photos):
    """Every main face of the two group photos, one box on each portrait, none on the masks."""
    detector = load_face_detector(name)
    for path, faces in wheel_photos.items():
        image = cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)
        found = detect_faces(detector, image)
        assert len(found) == faces, (path, found)
        assert found == sorted(found, key=lambda f: f["box"][0]), (path, found)  # left to right, as numbered
        short = min(image.shape[:2])
        assert all(f["box"][2] > short / 40 for f in found), (path, found)  # faces, not specks


@pytest.mark.download
def test_predict_on_the_real_group_photo(model_path, wheel_photos, tmp_path):
    (group,) = [p for p, faces in wheel_photos.items() if faces == 6]
    result = run_cli("predict", group, "--model-path", model_path, "--json", "--save", tmp_path / "out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    faces = json.loads(result.stdout.strip().splitlines()[-1])["faces"]
    assert len(faces) == 6 and all(f["detected"] for f in faces), faces
    assert len({tuple(f["box"]) for f in faces}) == 6
    table = run_cli("predict", group, "--model-path", model_path, cwd=tmp_path).stdout.splitlines()
    assert [line.split(": ", 1)[1].split(" at ")[0] for line in table] == [f"face {i}" for i in range(1, 7)], table
