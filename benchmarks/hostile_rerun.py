"""Issue 16's reproductions, rerun through the command line: counts tracebacks, segfaults and changed inputs.

    python benchmarks/hostile_rerun.py          # about 3 minutes on 2 cores; works in a temporary folder

Each case prints its exit code, the command and its last error or warning line; the last line sums up.
"""
import hashlib
import os
import shutil
import struct
import subprocess
import sys
import tempfile
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
def digest(): return {p: hashlib.md5(open(os.path.join(r, p), "rb").read()).hexdigest() for r, _, fs in os.walk(W) for p in fs if not r.startswith(W + "/out")}
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
]
before = digest()
tb = seg = 0
for args in cases:
    r = subprocess.run([sys.executable, S, *args], capture_output=True, cwd=W, timeout=600)
    err = r.stderr.decode(errors="replace"); out = r.stdout.decode(errors="replace")
    tb += "Traceback" in err; seg += r.returncode < 0
    lines = [l for l in err.splitlines() if l.startswith(("error", "Warning")) or "error:" in l] + [l for l in out.splitlines() if l.startswith("Warning")]
    print(r.returncode, " ".join(a if isinstance(a, str) else os.fsdecode(a) for a in args)[:90].encode("ascii", "backslashreplace").decode(), "|", (lines[-1] if lines else out.strip().splitlines()[-1:])[:160])
after = digest()
lost = [p for p in before if p not in after or before[p] != after[p]]
print(f"{len(cases)} cases: {tb} tracebacks, {seg} segfaults, inputs changed or lost: {lost}")
shutil.rmtree(W)
