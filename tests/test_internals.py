"""The libraries' private internals used by emotion/internals.py, checked one by one: a library update that moves
or changes one fails here, named, before it fails somewhere far from the cause."""

import argparse
import json

import numpy as np

from emotion.internals import HelpFormatter, add_request_deadlines, compile_mtcnn, model_from_h5_config


def test_keras_builds_a_model_config_without_allocating_a_weight(tmp_path):
    import h5py
    import keras
    from keras.src.backend.common import global_state
    inputs = keras.Input((8, 8, 1))
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(inputs)))
    model.save(tmp_path / "m.h5")
    with h5py.File(tmp_path / "m.h5", "r") as f:
        config = json.loads(f.attrs["model_config"])
    before = list(global_state.get_global_attribute("uninitialized_variables", [], set_to_default=True))
    built = model_from_h5_config(config)
    assert built.count_params() == 8 * 8 * 3 + 3
    assert all(v._value is None for v in built.variables)  # declared, never allocated
    assert global_state.get_global_attribute("uninitialized_variables", []) == before  # and forgotten


def test_mtcnn_stages_are_models_that_can_run_as_tf_functions():
    from mtcnn import MTCNN
    mtcnn = MTCNN()
    assert len(mtcnn.stages) == 3 and all(callable(stage._model) for stage in mtcnn.stages)
    compile_mtcnn(mtcnn)
    image = np.full((120, 120, 3), 128, np.uint8)
    assert mtcnn.detect_faces(image) == []  # the compiled networks still run end to end


def test_argparse_help_formatter_hook_shows_only_real_defaults():
    parser = argparse.ArgumentParser(formatter_class=HelpFormatter)
    parser.add_argument("--epochs", type=int, default=30, help="maximum epochs")
    parser.add_argument("--resume", action="store_true", help="continue")
    parser.add_argument("--tta", action=argparse.BooleanOptionalAction, default=False, help="flip too")
    parser.add_argument("--output", help="a file")
    text = " ".join(parser.format_help().split())
    assert "maximum epochs (default: 30)" in text and "flip too (default: False)" in text
    assert "continue (default" not in text and "a file (default" not in text


def test_waitress_channels_close_a_request_whose_headers_trickle_past_the_deadline():
    import socket
    import threading
    import time
    from waitress.server import create_server

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]
    listeners = {}
    server = create_server(app, map=listeners, host="127.0.0.1", port=0, asyncore_loop_timeout=0.2)
    add_request_deadlines(listeners, header_deadline=1, request_deadline=5)
    stop = threading.Event()

    def serve():  # server.run()'s loop, one turn at a time, so that it ends before the sockets close
        while not stop.is_set():
            server.asyncore.loop(timeout=0.2, map=listeners, count=1)
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with socket.create_connection(("127.0.0.1", server.effective_port), timeout=10) as slow:
            start = time.monotonic()
            slow.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n")
            for _ in range(20):  # a header line every 0.3 s: waitress' own timeout would never fire
                time.sleep(0.3)
                try:
                    slow.sendall(b"X-Slow: 1\r\n")
                except OSError:
                    break
            assert slow.recv(100) == b"" and time.monotonic() - start < 4  # closed after the 1 s deadline
        with socket.create_connection(("127.0.0.1", server.effective_port), timeout=10) as quick:
            quick.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            assert quick.recv(100).startswith(b"HTTP/1.1 200")
    finally:
        stop.set()
        thread.join()
        server.close()
