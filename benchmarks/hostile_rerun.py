"""Issues 16's and 21's reproductions, rerun through the command line: counts tracebacks, segfaults, hangs and
changed inputs, and gives each command's peak memory.

    python benchmarks/hostile_rerun.py          # about 13 minutes on 2 busy cores; works in a temporary folder

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
def run(args, limit=120):
    """(exit code, stdout, stderr, peak resident MB, hung) of one command, killed after `limit` seconds."""
    with tempfile.TemporaryFile() as o, tempfile.TemporaryFile() as e:
        child = subprocess.Popen([sys.executable, S, *args], stdout=o, stderr=e, cwd=W, start_new_session=True)
        deadline, hung = time.time() + limit, False
        while not (done := os.wait4(child.pid, os.WNOHANG))[0]:
            if time.time() > deadline and not hung:
                os.killpg(child.pid, 9); hung = True
            time.sleep(0.1)
        child.returncode = os.waitstatus_to_exitcode(done[1])  # reaped here, with its resource usage
        o.seek(0); e.seek(0)
        return child.returncode, o.read().decode(errors="replace"), e.read().decode(errors="replace"), done[2].ru_maxrss // 1024, hung
before = digest()
tb = seg = hangs = 0
for args in cases:
    code, out, err, peak, hung = run(args)
    r = subprocess.CompletedProcess(args, code)
    hangs += hung
    tb += "Traceback" in err; seg += r.returncode < 0
    lines = [l for l in err.splitlines() if l.startswith(("error", "Warning")) or "error:" in l] + [l for l in out.splitlines() if l.startswith("Warning")]
    print(r.returncode, f"{peak}MB", ascii(" ".join(a if isinstance(a, str) else os.fsdecode(a) for a in args))[1:91], "|", (lines[-1] if lines else out.strip().splitlines()[-1:])[:160])
after = digest()
lost = [p for p in before if p not in after or before[p] != after[p]]
print(f"{len(cases)} cases: {tb} tracebacks, {seg} segfaults or kills, {hangs} hangs, inputs changed or lost: {lost}")
shutil.rmtree(W)
