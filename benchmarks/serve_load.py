"""How `serve` holds up against hostile clients: decompression bombs, idle connections and slowloris.

    python benchmarks/serve_load.py                         # all three parts, the shipped model
    python benchmarks/serve_load.py --parts bombs --seconds 20
    python benchmarks/serve_load.py --parts slowloris --slowloris 1000

Starts `emotion_recognition.py serve` on a free localhost port, as a user would, then
- bombs: 4 threads upload decompression bombs without pause for --seconds (a 128-byte PNG declaring
  50,000 x 50,000 pixels, a real 32,000 x 32,000 PNG of 1 MB, and a real 6,000 x 6,000 PNG just under
  MAX_IMAGE_PIXELS, which is decoded), while a 5th uploads a normal 640x480 photo once a second and
  times each answer. Reports the status codes, the photo's latencies and the server's peak memory
  (VmHWM from /proc, the whole process: TensorFlow and the model included).
- idle: opens 500 connections that send nothing, checks that a normal photo is still answered, then
  times how long the server takes to close them all (SERVE_IDLE_TIMEOUT).
- slowloris: keeps --slowloris connections (1,000) open, each sending one more header line of a request
  it never finishes every --slow-interval seconds (8) and reconnecting as soon as the server closes it,
  while /api/health is asked every 2 s for --slow-seconds with a 1 s timeout; each answer's latency is
  printed as it comes.
Prints one JSON object. Linux only (/proc).
"""

import argparse
import json
import os
import resource
import selectors
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
import zlib

import cv2
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def png_declaring(width, height, body=b"\0" * 1000):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(body)) + chunk(b"IEND", b""))


def real_bomb(side):
    """A valid grey PNG of side x side zero pixels: rows of a filter byte and zeros, compressed ~1000:1."""
    compressor, parts = zlib.compressobj(9), []
    row = b"\0" * (side + 1)
    for _ in range(side):
        parts.append(compressor.compress(row))
    parts.append(compressor.flush())
    return png_declaring(side, side, b"")[:33] + _idat(b"".join(parts)) + png_declaring(1, 1)[-12:]


def _idat(data):
    return struct.pack(">I", len(data)) + b"IDAT" + data + struct.pack(">I", zlib.crc32(b"IDAT" + data))


def multipart(data, name):
    boundary = "----bench"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{name}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def post(url, data, name, timeout=120):
    body, content_type = multipart(data, name)
    request = urllib.request.Request(url + "/api/predict", data=body, headers={"Content-Type": content_type})
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    return status, time.perf_counter() - start


def peak_memory_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM"))


def start_server(model_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, os.path.join(ROOT, "emotion_recognition.py"), "serve",
                                "--model-path", model_path, "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert "Serving" in process.stdout.readline()
    return process, f"http://127.0.0.1:{port}", port


def photo():
    image = np.full((480, 640), 128, np.uint8)
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from conftest import draw_face
    image[144:336, 224:416] = draw_face("happy", 192, np.random.default_rng(0))
    return cv2.imencode(".jpg", image)[1].tobytes()


def bombs(url, pid, seconds):
    payloads = [("declared.png", png_declaring(50_000, 50_000)), ("real32k.png", real_bomb(32_000)),
                ("real6k.png", real_bomb(6_000))]
    statuses, latencies, stop = {}, [], time.monotonic() + seconds
    memory_before = peak_memory_mb(pid)

    def attacker(i):
        n = i
        while time.monotonic() < stop:
            name, data = payloads[n % len(payloads)]
            status, _ = post(url, data, name)
            statuses[name, status] = statuses.get((name, status), 0) + 1
            n += 1

    threads = [threading.Thread(target=attacker, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    normal = photo()
    while time.monotonic() < stop:
        status, seconds_taken = post(url, normal, "photo.jpg")
        latencies.append((status, seconds_taken))
        time.sleep(1)
    for thread in threads:
        thread.join()
    times = sorted(t for _, t in latencies)
    return {"bomb_sizes_bytes": {name: len(data) for name, data in payloads},
            "bomb_answers": {f"{name} -> {status}": n for (name, status), n in sorted(statuses.items())},
            "photo_statuses": sorted({s for s, _ in latencies}), "photo_requests": len(latencies),
            "photo_latency_median_s": round(times[len(times) // 2], 3), "photo_latency_max_s": round(times[-1], 3),
            "server_peak_memory_mb_before": round(memory_before), "server_peak_memory_mb": round(peak_memory_mb(pid))}


def idle(url, port, connections):
    sockets = [socket.create_connection(("127.0.0.1", port)) for _ in range(connections)]
    opened = time.monotonic()
    status, latency = post(url, photo(), "photo.jpg")
    closed_at = []
    for s in sockets:
        s.settimeout(300)
        try:
            closed = s.recv(1) == b""
        except (ConnectionResetError, TimeoutError):
            closed = True
        closed_at.append(time.monotonic() - opened if closed else None)
        s.close()
    done = [t for t in closed_at if t is not None]
    return {"idle_connections": connections, "photo_status_while_idle": status,
            "photo_latency_while_idle_s": round(latency, 3), "idle_closed_by_server": len(done),
            "last_idle_closed_after_s": round(max(done), 1) if done else None}


def slow_client(port):
    client = socket.create_connection(("127.0.0.1", port))
    client.setblocking(False)
    client.send(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    return client


def slowloris(url, port, clients, seconds, interval):
    """`clients` connections trickling header lines from one thread while another times /api/health."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, clients + 100)), hard))
    selector, closed_by_server = selectors.DefaultSelector(), [0]
    for _ in range(clients):
        selector.register(slow_client(port), selectors.EVENT_READ)
    stop = threading.Event()

    def trickle():
        next_line = time.monotonic()
        while not stop.is_set():
            for key, _ in selector.select(timeout=max(0.0, next_line - time.monotonic())):
                try:  # readable: the server answered or closed it; either way it no longer waits on us
                    key.fileobj.recv(65536)
                except OSError:
                    pass
                selector.unregister(key.fileobj)
                key.fileobj.close()
                closed_by_server[0] += 1
                selector.register(slow_client(port), selectors.EVENT_READ)
            if time.monotonic() >= next_line:
                for key in list(selector.get_map().values()):
                    try:
                        key.fileobj.send(b"X-Slow: 1\r\n")
                    except OSError:  # closed under us: the select above replaces it
                        pass
                next_line += interval

    thread = threading.Thread(target=trickle)
    thread.start()
    time.sleep(2)  # every client connected and one line into its headers
    latencies, stop_at = [], time.monotonic() + seconds
    while time.monotonic() < stop_at:
        start = time.perf_counter()
        try:
            with urllib.request.urlopen(url + "/api/health", timeout=1) as response:
                response.read()
            latencies.append(round(time.perf_counter() - start, 3))
        except OSError:  # URLError, TimeoutError: no answer within 1 s
            latencies.append(None)
        print(f"health: {'timed out' if latencies[-1] is None else f'{latencies[-1]:.3f} s'}", file=sys.stderr,
              flush=True)
        time.sleep(max(0.0, 2 - (time.perf_counter() - start)))
    stop.set()
    thread.join()
    open_at_end = len(selector.get_map())
    for key in list(selector.get_map().values()):
        key.fileobj.close()
    answered = [t for t in latencies if t is not None]
    return {"slow_clients": clients, "slow_line_interval_s": interval, "slow_open_at_end": open_at_end,
            "slow_closed_by_server": closed_by_server[0], "health_requests": len(latencies),
            "health_timed_out_1s": len(latencies) - len(answered),
            "health_latency_max_s": max(answered) if answered else None, "health_latencies_s": latencies}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-path", default=os.path.join(ROOT, "EmotionRecognitionSystem.h5"))
    parser.add_argument("--parts", default="bombs,idle,slowloris")
    parser.add_argument("--seconds", type=float, default=30, help="length of the bomb attack")
    parser.add_argument("--connections", type=int, default=500)
    parser.add_argument("--slowloris", type=int, default=1000, help="slow clients kept connected")
    parser.add_argument("--slow-interval", type=float, default=8, help="seconds between a slow client's lines")
    parser.add_argument("--slow-seconds", type=float, default=60, help="how long /api/health is polled")
    args = parser.parse_args()
    process, url, port = start_server(args.model_path)
    try:
        result = {}
        if "bombs" in args.parts:
            result.update(bombs(url, process.pid, args.seconds))
        if "idle" in args.parts:
            result.update(idle(url, port, args.connections))
        if "slowloris" in args.parts:
            result.update(slowloris(url, port, args.slowloris, args.slow_seconds, args.slow_interval))
    finally:
        process.terminate()
        process.wait(timeout=30)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
