"""Issues 16's, 21's, 31's and 39's reproductions, rerun through the command line: counts tracebacks, segfaults, hangs,
changed inputs, false successes (exit 0 where the command must refuse, or a success that is not one) and HTTP 500s,
and gives each command's peak memory.

    python benchmarks/hostile_rerun.py          # about 35 minutes on 2 busy cores; works in a temporary folder
    python benchmarks/hostile_rerun.py issue39  # issue 39's cases only (and serve's), a few minutes

Each case prints its exit code, peak resident memory (MB), the command and its last error or warning line; the last
line sums up. A case still running after 120 s is killed and counted as a hang.
"""
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib

import cv2
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
from conftest import draw_face, make_dataset  # noqa: E402

S, M = os.path.join(ROOT, "emotion_recognition.py"), os.path.join(ROOT, "EmotionRecognitionSystem.h5")
W = tempfile.mkdtemp(prefix="hostile-")
X = make_dataset(W + "/X", per_class=(6, 2, 2))
def png(w, h):
    c = lambda k, d: struct.pack(">I", len(d)) + k + d + struct.pack(">I", zlib.crc32(k + d))
    return b"\x89PNG\r\n\x1a\n" + c(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) + c(b"IDAT", zlib.compress(b"\0" * 100)) + c(b"IEND", b"")
open(W + "/bomb.png", "wb").write(png(50000, 50000)); shutil.copy(W + "/bomb.png", X + "/test/happy/bomb.png"); shutil.copy(W + "/bomb.png", X + "/train/sad/bomb.png")
cv2.imwrite(W + "/face.png", draw_face("happy"))
os.makedirs(W + "/D"); cv2.imwrite(W + "/D/me.png", draw_face("sad")); cv2.imwrite(W + "/D/me_annotated.png", draw_face("happy"))
wr = cv2.VideoWriter(W + "/a.avi", cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
for i in range(30): wr.write(np.full((48, 64, 3), i * 8, np.uint8))
wr.release()
open(W + "/bom.csv", "w", encoding="utf-8-sig").write("emotion,pixels,Usage\n" + "".join(f"3,{' '.join(['7'] * 2304)},{u}\n" for u in ["Training", "PublicTest", "PrivateTest"]))
open(W + "/nan.csv", "w").write("emotion,pixels,Usage\n3," + " ".join(["nan"] * 2304) + ",Training\n")
open(W + "/train.csv", "w").write("emotion,pixels,Usage\n" + f"3,{' '.join(['7'] * 2304)},Training\n" * 3)
shutil.copy(M, W + "/good.h5")
bad = os.fsencode(W) + b"/bad\xff"
# issue 21: a 4 GB sparse .jpg, a FIFO among photos, 24 photos of 6324x6324, hostile model files, links into --out
with open(W + "/huge.jpg", "wb") as f:
    f.write(open(W + "/face.png", "rb").read()); f.truncate(4 << 30)
os.makedirs(W + "/F"); shutil.copy(W + "/face.png", W + "/F/face.png"); os.mkfifo(W + "/F/x.jpg")
os.makedirs(W + "/B")
for i in range(24): cv2.imwrite(W + f"/B/{i}.png", np.full((6324, 6324, 3), i * 10, np.uint8))
import h5py  # noqa: E402
def hostile_model(name, change):
    shutil.copy(M, W + "/" + name)
    with h5py.File(W + "/" + name, "a") as f: change(f)
def deep(f): f.attrs["emotion_recognition"] = "[" * 200_000 + "]" * 200_000
def wide(f):
    c = json.loads(f.attrs["model_config"]); c["config"]["layers"][-1]["config"]["units"] = 1_000_000; f.attrs["model_config"] = json.dumps(c)
def any_size(f):
    c = json.loads(f.attrs["model_config"]); c["config"]["layers"][0]["config"]["batch_shape"] = [None, None, None, 1]; f.attrs["model_config"] = json.dumps(c)
    f.attrs["emotion_recognition"] = json.dumps({**json.loads(f.attrs["emotion_recognition"]), "image_size": 4096})
hostile_model("deep.h5", deep); hostile_model("wide.h5", wide); hostile_model("any.h5", any_size)
L = make_dataset(W + "/L", per_class=(2, 1, 1)); os.makedirs(W + "/S")
for c in ("angry", "happy", "sad"): os.symlink(L + "/train/" + c, W + "/S/" + c)
os.rename(shutil.copy(W + "/face.png", W + "/D2.png"), W + "/a\nerror: forged \x1b[31mline.png")
open(W + "/blank.csv", "w").write("emotion,pixels,Usage\n" + "".join(f"3,{' '.join(['7'] * 2304)},{u}\n" for u in ["Training", "PublicTest", "PrivateTest"]) + "\n")
def fingerprint(path):  # the bytes' hash; size and time for the sparse 4 GB file; FIFOs are never opened
    info = os.stat(path)
    return (info.st_size, info.st_mtime) if info.st_size > 2**26 or not os.path.isfile(path) else hashlib.md5(open(path, "rb").read()).hexdigest()
def digest(): return {os.path.join(r, p): fingerprint(os.path.join(r, p)) for r, _, fs in os.walk(W) for p in fs if not r.startswith(W + "/out")}
cases = [
 ["predict", W + "/face.png", W + "/bomb.png", "--model-path", M, "--json"],
 ["evaluate", X + "/test", "--model-path", M, "--output-dir", W + "/out1"],
 ["--data", X, "--train-again", "--epochs", "1", "--model-path", W + "/out2.h5", "--output-dir", W + "/out2"],
 ["prepare", "--source", X, "--out", W + "/outp", "--crop-faces"],
 ["prepare", "--source", X + "/train", "--out", X, "--force"],
 ["webcam", "--source", W + "/a.avi", "--no-display", "--output", W + "/a.avi", "--model-path", M],
 ["--data", X, "--train-again", "--learning-rate", "inf", "--model-path", W + "/good.h5", "--output-dir", W + "/out3"],
 ["--data", X, "--train-again", "--label-smoothing", "nan", "--model-path", W + "/good.h5", "--output-dir", W + "/out3"],
 ["--data", X, "--train-again", "--learning-rate", "1e30", "--epochs", "2", "--model-path", W + "/good.h5", "--output-dir", W + "/out3"],
 ["predict", W + "/D", "--save", W + "/D", "--no-detect", "--model-path", M],
 [b"predict", W.encode() + b"/face.png", b"--save", bad, b"--model-path", M.encode()],
 [b"webcam", b"--source", bad + b"/v.mp4", b"--no-display", b"--model-path", M.encode()],
 [b"webcam", b"--source", (W + "/a.avi").encode(), b"--output", bad + b"/o.mp4", b"--no-display", b"--model-path", M.encode()],
 ["--seed", "-1", "--data", X], ["--seed", "1e20", "--data", X], ["serve", "--port", "70000"],
 ["--label-smoothing", "-5", "--data", X], ["--weight-decay", "-1", "--data", X],
 ["--data", X, "--train-again", "--model-path", W + "/M.H5", "--output-dir", W + "/out4"],
 ["prepare", "--source", W + "/bom.csv", "--out", W + "/outb", "--classes", "happy"],
 ["prepare", "--source", W + "/nan.csv", "--out", W + "/outn", "--classes", "happy"],
 ["prepare", "--source", W + "/train.csv", "--out", W + "/outt", "--classes", "happy"],
 ["prepare", "--source", X, "--out", W + "/face.png"],
 ["predict", W + "/huge.jpg", "--model-path", M, "--no-detect"],
 ["predict", W + "/F", "--model-path", M, "--no-detect"],
 ["predict", W + "/B", "--model-path", M, "--no-detect", "--json"],
 ["evaluate", X + "/test", "--model-path", W + "/deep.h5", "--output-dir", W + "/out5"],
 ["evaluate", X + "/test", "--model-path", W + "/wide.h5", "--output-dir", W + "/out5"],
 ["evaluate", X + "/test", "--model-path", W + "/any.h5", "--output-dir", W + "/out5"],
 ["serve", "--host", "999.1.1.1"], ["serve", "--host", ""], ["--image-size", "3000", "--data", X, "--train-again"],
 ["prepare", "--source", W + "/S", "--out", L, "--force", "--group-pattern", "none"],
 ["evaluate", X + "/test", "--model-path", M, "--output-dir", X + "/test/happy"],
 ["predict", W + "/a\nerror: forged \x1b[31mline.png", "--model-path", M, "--no-detect"],
 ["prepare", "--source", W + "/blank.csv", "--out", W + "/outbl", "--classes", "happy"],
 ["prepare", "--source", X + "/train", "--out", W + "/outc", "--classes", "happy,Happy"],
]
# issue 31: outputs over inputs, a full disk (RLIMIT_FSIZE), --resume, a backtracking pattern, odd videos, serve
import resource  # noqa: E402
shutil.copy(M, W + "/victim.h5"); os.link(W + "/victim.h5", W + "/victim-link.h5"); shutil.copy(M, W + "/m.checkpoint.h5")
shutil.copy(M, W + "/m2.h5"); os.makedirs(W + "/R"); os.symlink(W + "/m2.h5", W + "/R/confusion_matrix.png")
os.makedirs(W + "/V/out"); open(W + "/V/out/votes.csv", "w").write("path,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF\n")
wr = cv2.VideoWriter(W + "/noise.avi", cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240)); rng = np.random.default_rng(0)
for i in range(40): wr.write(rng.integers(0, 255, (240, 320, 3), np.uint8))
wr.release()
cv2.VideoWriter(W + "/empty.avi", cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48)).release()
wr = cv2.VideoWriter(W + "/huge.avi", cv2.VideoWriter_fourcc(*"MJPG"), 10, (10000, 10000)); wr.write(np.zeros((10000, 10000, 3), np.uint8)); wr.release()
for d in ("happy", "sad"):
    os.makedirs(W + f"/G/{d}")
    for i in range(10): cv2.imwrite(W + f"/G/{d}/S{i:03d}_{d}.png", draw_face(d))
cv2.imwrite(W + "/G/happy/" + "a" * 30 + "!.png", draw_face("happy"))
open(W + "/half.csv", "w").write("emotion,pixels,Usage\n" + "".join(f"3,{' '.join(['1.5'] * 2304)},{u}\n" for u in ["Training", "PublicTest", "PrivateTest"]))
open(W + "/bare.csv", "w").write(f"3,{' '.join(['7'] * 2304)},Training\n")
import io  # noqa: E402
from PIL import Image  # noqa: E402
b = io.BytesIO(); Image.fromarray(np.random.default_rng(0).integers(0, 255, (23, 31, 3), np.uint8)).save(b, "GIF"); g = bytearray(b.getvalue())
g[g.index(b"\x2c\x00\x00\x00\x00\x1f\x00\x17\x00") + 5] = 0xFF; open(W + "/broken.gif", "wb").write(bytes(g))
import keras  # noqa: E402
li = keras.Input((48, 48, 1)); lo = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(keras.layers.Lambda(lambda t: (open(W + "/PWNED", "w").close(), t)[1])(li)))
keras.Model(li, lo).save(W + "/lambda.h5"); os.remove(W + "/PWNED")
with h5py.File(W + "/lambda.h5", "a") as f: f.attrs["emotion_recognition"] = json.dumps({"class_names": ["a", "b", "c"], "image_size": 48, "color": "grayscale"})
FULL = {"--output": 60_000, "records": 1_000}  # file size limits (bytes) standing for a full disk
cases += [
 ["webcam", "--source", W + "/a.avi", "--no-display", "--csv", W + "/victim.h5", "--model-path", W + "/victim.h5"],
 ["webcam", "--source", W + "/a.avi", "--no-display", "--json", W + "/victim-link.h5", "--model-path", W + "/victim.h5"],
 ["webcam", "--source", W + "/a.avi", "--no-display", "--output", W + "/victim.h5", "--model-path", W + "/victim.h5"],
 ["--data", X, "--train-again", "--epochs", "1", "--initial-model", W + "/m.checkpoint.h5", "--model-path", W + "/m.h5", "--output-dir", W + "/out6"],
 ["--data", X, "--train-again", "--epochs", "1", "--initial-model", W + "/victim.h5", "--model-path", W + "/victim.h5", "--output-dir", W + "/out6"],
 ["evaluate", X + "/test", "--model-path", W + "/m2.h5", "--output-dir", W + "/R"],
 ["prepare", "--source", X + "/train", "--out", W + "/V/out", "--force", "--votes", W + "/V/out/votes.csv"],
 (["webcam", "--source", W + "/noise.avi", "--no-display", "--detector", "haar", "--output", W + "/full.mp4", "--precision", "float32", "--model-path", M], FULL["--output"]),
 (["webcam", "--source", W + "/a.avi", "--no-display", "--detector", "haar", "--json", W + "/full.json", "--csv", W + "/full.csv", "--timeline", W + "/full.png", "--precision", "float32", "--model-path", M], FULL["records"]),
 ["prepare", "--source", W + "/G", "--out", W + "/outg", "--group-pattern", "(a+)+b"],
 ["webcam", "--source", W + "/empty.avi", "--no-display", "--output", W + "/out7.mp4", "--csv", W + "/out7.csv", "--model-path", M],
 ["webcam", "--source", W + "/huge.avi", "--no-display", "--output", W + "/out8.mp4", "--csv", W + "/out8.csv", "--model-path", M],
 ["prepare", "--source", W + "/half.csv", "--out", W + "/outh", "--classes", "happy"],
 ["prepare", "--source", W + "/bare.csv", "--out", W + "/outc2", "--classes", "happy"],
 ["predict", W + "/broken.gif", "--no-detect", "--model-path", M],
 ["predict", W + "/face.png", "--no-detect", "--model-path", W + "/lambda.h5"],
]

# issue 39: wrong answers a user would not notice, crashes, attacks; each case with the check it must pass
import csv  # noqa: E402
sys.path.insert(0, ROOT)
from emotion.train.votes import FERPLUS_COLUMNS  # noqa: E402
for person in range(30):  # web names (Al_Gore_0002.jpg), each person in two classes
    name = "Ann" + chr(97 + person % 26) + chr(97 + person // 26) + ("_Lee" if person % 2 else "")
    for k, d in enumerate((("happy", "sad"), ("sad", "angry"), ("angry", "happy"))[person % 3]):
        os.makedirs(W + f"/N/{d}", exist_ok=True)
        for i in range(3): cv2.imwrite(W + f"/N/{d}/{name}_{k * 3 + i + 1:04d}.jpg", draw_face(d))
def people(out):
    seen = {s: {f.rsplit("_", 1)[0] for c in os.listdir(f"{out}/{s}") for f in os.listdir(f"{out}/{s}/{c}")} for s in ("train", "val", "test")}
    return not (seen["train"] & seen["test"] or seen["train"] & seen["val"] or seen["val"] & seen["test"])
def votes_file(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f); w.writerow(["path", *FERPLUS_COLUMNS]); w.writerows(rows)
keys = [os.path.relpath(os.path.join(r, f), X) for r, _, fs in os.walk(X) for f in fs]
votes_file(W + "/zero.csv", [[k, *[0] * 10] for k in keys])
one_split = lambda k: [0, 9, 0, 0, 0, 0, 0, 0, 0, 0] if k.startswith("train") and k.endswith("000.png") else [6, 0, 0, 4, 0, 0, 0, 0, 0, 0] if k.endswith("0.png") else [4, 0, 0, 6, 0, 0, 0, 0, 0, 0]
votes_file(W + "/onesplit.csv", [[k, *one_split(k)] for k in keys])
for bad_vote, name in (("inf", "inf"), ("9.3e18", "big"), ("1_0", "underscore")):
    votes_file(W + f"/{name}.csv", [[k, bad_vote if i == 0 else 1, *[0] * 9] for i, k in enumerate(keys)])
with open(W + "/huge-votes.csv", "w") as f:  # 200 MB of valid-looking rows for 30 images
    f.write("path," + ",".join(FERPLUS_COLUMNS) + "\n"); row = "train/angry/elsewhere%09d.png,1,1,1,1,1,1,1,1,1,1\n"
    for i in range(0, 4_500_000, 1000): f.write("".join(row % j for j in range(i, i + 1000)))
shutil.copytree(X + "/test", W + "/cwd/faces")
votes_file(W + "/cwd/votes.csv", [["train/angry/other.png", *[1] * 10]])  # a stray votes.csv left by prepare --votes
def relabel(name, names):
    shutil.copy(M, W + "/" + name)
    with h5py.File(W + "/" + name, "a") as f:
        f.attrs["emotion_recognition"] = json.dumps({**json.loads(f.attrs["emotion_recognition"]), "class_names": names})
MATH = ["$\\happy$", "a$b", "$x^$"]; relabel("math.h5", MATH)
FORMULA = ['=HYPERLINK("http://evil.example","x")', "+cmd", "@SUM(A1)"]; relabel("formula.h5", FORMULA)
make_dataset(W + "/MT", per_class=(0, 0, 2), classes=MATH)
Z = make_dataset(W + "/Z", per_class=(0, 0, 2), classes=("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"))
hostile_model("junk.h5", lambda f: f.attrs.__setitem__("emotion_recognition", json.dumps({**json.loads(f.attrs["emotion_recognition"]), "junk": "x" * 5_000_000})))
li = keras.Input((48, 48, 1)); lo = keras.layers.Dense(3, activation="softmax", kernel_initializer="zeros", bias_initializer=keras.initializers.Constant([0.0, 3.0, 0.0]))(keras.layers.Flatten()(li))
keras.Model(li, lo).save(W + "/onecls.h5")
with h5py.File(W + "/onecls.h5", "a") as f: f.attrs["emotion_recognition"] = json.dumps({"class_names": ["angry", "happy", "sad"], "image_size": 48, "color": "grayscale"})
refused = lambda *said: lambda code, out, err: code == 1 and all(s in err for s in said)
ISSUE39 = [
 (["prepare", "--source", W + "/N", "--out", W + "/outN"], lambda code, out, err: code == 0 and "files in 30 groups" in out and people(W + "/outN")),
 (["evaluate", X + "/test", "--model-path", W + "/onecls.h5", "--output-dir", W + "/out9"], lambda code, out, err: code == 0 and "Warning: the model answers 'happy'" in out),
 (["prepare", "--source", X, "--votes", W + "/zero.csv", "--out", W + "/outz"], refused("the votes leave no face")),
 (["prepare", "--source", X, "--votes", W + "/onesplit.csv", "--out", W + "/outo"], lambda code, out, err: "train with" not in out and "hold no images" in out),
 (["evaluate", "faces", "--model-path", M, "--output-dir", W + "/out10"], lambda code, out, err: code == 0),
 (["prepare", "--source", X, "--votes", W + "/inf.csv", "--out", W + "/outi"], refused("not whole counts")),
 (["prepare", "--source", X, "--votes", W + "/big.csv", "--out", W + "/outi"], refused("not whole counts")),
 (["prepare", "--source", X, "--votes", W + "/underscore.csv", "--out", W + "/outi"], refused("not whole counts")),
 (["evaluate", W + "/MT/test", "--model-path", W + "/math.h5", "--output-dir", W + "/out11"], lambda code, out, err: code == 0 and os.path.exists(W + "/out11/reliability_diagram.png")),
 (["webcam", "--source", "99999999999999999999", "--no-display", "--model-path", M], refused("no camera with that index")),
 (["webcam", "--source", W + "/a.avi", "--no-display", "--csv", W + "/formula.csv", "--model-path", W + "/formula.h5"], lambda code, out, err: code == 0 and not any(c[:1] and c[:1] in "=+-@" for c in next(csv.reader(open(W + "/formula.csv"))))),
 (["prepare", "--source", X, "--votes", W + "/huge-votes.csv", "--out", W + "/outhv"], refused("is larger than votes for")),
 (["evaluate", X + "/test", "--model-path", W + "/junk.h5", "--output-dir", W + "/out12"], refused("is longer than 100,000 characters")),
 (["webcam", "--source", W + "/a.avi", "--no-display", "--csv", W + "/nope/dir/x.csv", "--model-path", M], lambda code, out, err: code == 1 and not os.path.exists(W + "/nope")),
 (["evaluate", Z + "/test", "--model-path", M, "--output-dir", W + "/out13"], lambda code, out, err: code == 1 and "--classes" not in err and "never trained for" in err),
]

def run(args, limit=120, file_limit=None, cwd=W):
    """(exit code, stdout, stderr, peak resident MB, hung) of one command, killed after `limit` seconds; with
    `file_limit`, no file it writes may grow beyond that many bytes (a full disk)."""
    def preexec():
        os.setsid()
        if file_limit:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))
    with tempfile.TemporaryFile() as o, tempfile.TemporaryFile() as e:
        child = subprocess.Popen([sys.executable, S, *args], stdout=o, stderr=e, cwd=cwd, preexec_fn=preexec)
        deadline, hung = time.time() + limit, False
        while not (done := os.wait4(child.pid, os.WNOHANG))[0]:
            if time.time() > deadline and not hung:
                os.killpg(child.pid, 9); hung = True
            time.sleep(0.1)
        child.returncode = os.waitstatus_to_exitcode(done[1])  # reaped here, with its resource usage
        o.seek(0); e.seek(0)
        return child.returncode, o.read().decode(errors="replace"), e.read().decode(errors="replace"), done[2].ru_maxrss // 1024, hung
ONLY_ISSUE39 = sys.argv[1:] == ["issue39"]
cases = [(args, None, check) for args, check in ISSUE39] + ([] if ONLY_ISSUE39 else [
    (*(case if isinstance(case, tuple) else (case, None)), None) for case in cases])
before = digest()
tb = seg = hangs = noise = false_successes = 0
for args, file_limit, check in cases:
    code, out, err, peak, hung = run(args, file_limit=file_limit, cwd=W + "/cwd" if "faces" in args else W)
    if check is not None and not hung and not check(code, out, err):
        false_successes += 1; print("FALSE SUCCESS or failed check:", args[:4])
    r = subprocess.CompletedProcess(args, code)
    hangs += hung
    tb += "Traceback" in err; seg += r.returncode < 0
    # OpenCV's own log lines ("[ERROR:0@0.5] ...", "[ WARN:0@32] ...") and FFmpeg's ("[mov,mp4,... @ 0x...] ...")
    noise += any(l.startswith(("[ERROR", "[ WARN", "[ INFO")) or " @ 0x" in l or "FFmpeg" in l for l in err.splitlines())
    lines = [l for l in err.splitlines() if l.startswith(("error", "Warning")) or "error:" in l] + [l for l in out.splitlines() if l.startswith("Warning")]
    print(r.returncode, f"{peak}MB", ("[full disk] " if file_limit else "") + ascii(" ".join(a if isinstance(a, str) else os.fsdecode(a) for a in args))[1:91], "|", (lines[-1] if lines else out.strip().splitlines()[-1:])[:200])
left = sorted(f for f in os.listdir(W) if f.startswith((".full", "full", ".out7", "out7", ".out8", "out8")))  # temporary or half outputs


def weights(path):
    return keras.models.load_model(path, compile=False).get_weights()


def resume_case():
    """A training run stopped by Ctrl-C after its third epoch, then --resume with another --image-size (refused) and
    with the same options: the model must end with the best epoch of both parts (the checkpoint's, unless beaten)."""
    model, out, common = W + "/r.h5", W + "/outr", ["--data", X, "--model", "compact", "--epochs", "8", "--patience", "8", "--no-show"]
    env = {**os.environ, "MPLBACKEND": "Agg"}
    child = subprocess.Popen([sys.executable, S, *common, "--train-again", "--model-path", model, "--output-dir", out],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=W, env=env)
    deadline = time.time() + 600
    while not (os.path.exists(out + "/history.csv") and len(open(out + "/history.csv").read().splitlines()) > 3):
        if child.poll() is not None or time.time() > deadline:
            child.kill(); return "the first run ended before its third epoch", 0, 0
        time.sleep(0.2)
    child.send_signal(2); _, err = child.communicate(timeout=300)
    tracebacks = "Traceback" in err
    checkpoint_copy = W + "/r-best.h5"
    shutil.copy(model, checkpoint_copy)  # Ctrl-C put the best epoch so far in the model file
    with h5py.File(model, "r") as f:
        best = json.loads(f.attrs["emotion_recognition"])["val_loss"]
    code, _, err, _, _ = run([*common, "--resume", "--image-size", "64", "--model-path", model, "--output-dir", out], limit=600)
    tracebacks += "Traceback" in err
    refused = code == 1 and "--image-size 48, this one with 64" in err
    code, _, err, _, _ = run([*common, "--resume", "--model-path", model, "--output-dir", out], limit=900)
    tracebacks += "Traceback" in err
    columns = open(out + "/history.csv").readline().strip().split(",")
    val = [float(line.split(",")[columns.index("val_loss")]) for line in open(out + "/history.csv").read().splitlines()[1:]]
    kept = all(np.array_equal(a, b) for a, b in zip(weights(model), weights(checkpoint_copy)))
    beaten = min(val) < best - 1e-9
    ok = code == 0 and refused and (beaten or kept)
    return (f"interrupted best val_loss {best:.4f}; --image-size 64 refused: {refused}; resumed run exit {code}, "
            f"lowest val_loss over both parts {min(val):.4f}, the model {'is a later, better epoch' if beaten else 'holds the interrupted best' if kept else 'LOST the best epoch'}"), tracebacks, 0 if ok else 1


def serve_case():
    """serve on a free port: a foreign Host and a cross-origin POST refused, /api/health without a path."""
    import http.client
    import socket
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0)); port = probe.getsockname()[1]
    child = subprocess.Popen([sys.executable, S, "serve", "--port", str(port), "--detector", "haar", "--model-path", M], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, cwd=W)
    deadline = time.time() + 300
    while "Serving" not in (line := child.stdout.readline()):
        if child.poll() is not None or time.time() > deadline:
            child.kill(); return "serve did not start", 0, 1

    def ask(method, path, headers, body=None):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        c.putrequest(method, path, skip_host=True)
        for k, v in headers.items(): c.putheader(k, v)
        c.putheader("Content-Length", str(len(body or b""))); c.endheaders(body)
        r = c.getresponse(); data = r.read(); c.close()
        return r.status, data
    png, thin = open(W + "/face.png", "rb").read(), cv2.imencode(".png", np.full((1, 20000, 3), 128, np.uint8))[1].tobytes()
    form = b'--B\r\nContent-Disposition: form-data; name="image"; filename="f.png"\r\nContent-Type: image/png\r\n\r\n' + png + b"\r\n--B--\r\n"
    post = {"Content-Type": "multipart/form-data; boundary=B"}
    answers = {"foreign Host": ask("GET", "/api/health", {"Host": "evil.example"})[0],
               "foreign Host, POST": ask("POST", "/api/predict", {"Host": "evil.example", **post}, form)[0],
               "cross-origin POST": ask("POST", "/api/predict", {"Host": f"127.0.0.1:{port}", "Origin": "http://evil.example", **post}, form)[0],
               "same-origin POST": ask("POST", "/api/predict", {"Host": f"127.0.0.1:{port}", "Origin": f"http://127.0.0.1:{port}", **post}, form)[0],
               "https origin, same host and port": ask("POST", "/api/predict", {"Host": f"127.0.0.1:{port}", "Origin": f"https://127.0.0.1:{port}", **post}, form)[0],
               "1x20000 PNG": ask("POST", "/api/predict", {"Host": f"127.0.0.1:{port}", **post}, form.replace(png, thin))[0]}
    status, health = ask("GET", "/api/health", {"Host": f"localhost:{port}"})
    child.send_signal(2); _, err = child.communicate(timeout=60)
    path_shown = os.sep in json.loads(health)["model"]
    ok = answers == {"foreign Host": 400, "foreign Host, POST": 400, "cross-origin POST": 403, "same-origin POST": 200,
                     "https origin, same host and port": 403, "1x20000 PNG": 200} and not path_shown
    global http_500
    http_500 = sum(status == 500 for status in answers.values())
    return f"{answers}; /api/health {status}, model path shown: {path_shown}", "Traceback" in err, 0 if ok else 1


http_500 = 0


failed = 0
for name, check in ((("--resume", resume_case),) if not ONLY_ISSUE39 else ()) + (("serve Host/Origin", serve_case),):
    text, traceback, bad = check()
    tb += bool(traceback); failed += bad
    print("ok" if not bad else "FAILED", name, "|", text)
after = digest()
lost = [p for p in before if p not in after or before[p] != after[p]]
print(f"{len(cases) + (1 if ONLY_ISSUE39 else 2)} cases: {tb} tracebacks, {seg} segfaults or kills, {hangs} hangs, {noise} with OpenCV/FFmpeg log lines, "
      f"{false_successes} false successes or failed checks, {failed} checks failed, {http_500} HTTP 500, half or temporary outputs left: {left}, "
      f"inputs changed or lost: {lost}")
shutil.rmtree(W)
