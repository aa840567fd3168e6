"""The libraries' private internals used by emotion/io/internals.py, checked one by one: a library update that moves
or changes one fails here, named, before it fails somewhere far from the cause. And none used anywhere else: the
script and every other module of emotion/ are read for private names of libraries."""

import argparse
import ast
import json
import os
import sys

import numpy as np
import pytest

from emotion.io import opencv_nets
from emotion.io.internals import (HelpFormatter, add_request_deadlines, callback_counters, compile_mtcnn,
                                  model_from_h5_config, mtcnn_onet, set_callback_counters)
from emotion.io.opencv_nets import OpenCVNet

from conftest import ROOT

IMPORTERS = ("LazyModule", "import_module", "import_quietly", "__import__")  # calls that import a module named as text
INTERNAL_MODULES = ("waitress.channel",)
DOCUMENTED_INHERITED = ("model", "params")  # what a subclass of a library's class may read of it (keras.callbacks.
#                                             Callback's documented attributes); anything else it sets itself  # modules a library documents as none of its API, though not underscored
DOCUMENTED_UNDERSCORED = ("_exit",)  # os._exit: underscored, yet documented public API (a forked worker's exit)
KNOWN_PRIVATE_USES = {}  # known exceptions, each to be dropped when its file is cleaned up


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


def test_mtcnn_networks_run_by_opencv_answer_as_its_keras_networks(monkeypatch):
    from mtcnn import MTCNN
    from skimage import data
    monkeypatch.setattr(opencv_nets.tf.config, "list_physical_devices", lambda kind=None: [])  # as on a CPU machine
    mtcnn, keras_mtcnn = MTCNN(), MTCNN()
    assert len(mtcnn.stages) == 3 and all(callable(stage._model) for stage in mtcnn.stages)
    compile_mtcnn(mtcnn)
    assert not any(hasattr(stage._model, "python_function") for stage in mtcnn.stages)  # OpenCV's, not tf.functions
    rng = np.random.default_rng(0)
    for stage, keras_stage, batch in zip(mtcnn.stages, keras_mtcnn.stages, [(2, 27, 37), (5, 24, 24), (3, 48, 48)]):
        images = rng.uniform(-1, 1, (*batch, 3)).astype(np.float32)  # PNet: odd sizes, so pooling pads at the end
        want, got = keras_stage._model(images), stage._model(images)
        assert len(got) == len(want)
        for ours, keras in zip(got, want):
            np.testing.assert_allclose(ours.numpy(), keras.numpy(), atol=1e-4)
        if batch[1] == 24 or batch[1] == 48:  # RNet, ONet: no candidate left is an empty batch, as in Keras
            assert [out.shape for out in stage._model(images[:0])] == [(0, *out.shape[1:]) for out in want]
    onet = mtcnn_onet(mtcnn)  # onet_faces reads its outputs as box offsets, 5 landmarks (x1..x5, y1..y5), scores
    assert onet is mtcnn.stages[2]._model and [out.shape for out in onet(images)] == [(3, 4), (3, 10), (3, 2)]
    np.testing.assert_allclose(onet(images)[2].numpy().sum(axis=1), 1, atol=1e-5)  # (not a face, a face): softmax
    for image in (data.astronaut(), np.full((120, 120, 3), 128, np.uint8)):  # the same faces, end to end
        ours, keras = mtcnn.detect_faces(image), keras_mtcnn.detect_faces(image)
        assert len(ours) == len(keras) and len(ours) == (image.shape[0] == 512)
        for face, keras_face in zip(ours, keras):
            np.testing.assert_allclose(face["box"], keras_face["box"], atol=1)
            assert abs(face["confidence"] - keras_face["confidence"]) < 1e-4


def test_mtcnn_networks_run_as_tf_functions_where_opencv_cannot(monkeypatch):
    from mtcnn import MTCNN
    monkeypatch.setitem(sys.modules, "onnx", None)  # onnx not installed (an old install, updated by git pull)
    mtcnn = compile_mtcnn(MTCNN())
    assert all(hasattr(stage._model, "python_function") for stage in mtcnn.stages)  # tf.functions
    assert mtcnn.detect_faces(np.full((120, 120, 3), 128, np.uint8)) == []


def test_opencv_nets_refuse_a_layer_they_do_not_know():
    import keras
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3), keras.layers.LayerNormalization(),
                              keras.layers.Flatten(), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="LayerNormalization"):
        OpenCVNet(model.layers, (8, 8, 3))


def test_argparse_help_formatter_hook_shows_only_real_defaults():
    parser = argparse.ArgumentParser(formatter_class=HelpFormatter)
    parser.add_argument("--epochs", type=int, default=30, help="maximum epochs")
    parser.add_argument("--resume", action="store_true", help="continue")
    parser.add_argument("--tta", action=argparse.BooleanOptionalAction, default=False, help="flip too")
    parser.add_argument("--output", help="a file")
    text = " ".join(parser.format_help().split())
    assert "maximum epochs (default: 30)" in text and "flip too (default: False)" in text
    assert "continue (default" not in text and "a file (default" not in text


def test_keras_callbacks_keep_the_counters_resume_carries_over():
    import keras
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    stopping = keras.callbacks.EarlyStopping(monitor="val_loss", patience=3)
    reducing = keras.callbacks.ReduceLROnPlateau(monitor="val_loss", patience=3, factor=0.5)
    for callback in (stopping, reducing):
        callback.set_model(model)
        callback.on_train_begin()  # resets the counters: resumable_state sets them back after it
    assert set(callback_counters(stopping)) == {"wait", "best", "best_epoch"}
    assert set(callback_counters(reducing)) == {"wait", "best", "cooldown_counter"}
    for callback in (stopping, reducing):  # two epochs without improvement already, before the interruption
        set_callback_counters(callback, {"wait": 2, "best": 0.5})
        callback.on_epoch_end(7, {"val_loss": 0.6})  # the third: patience runs out now, not two epochs later
    assert model.stop_training
    assert float(model.optimizer.learning_rate) == np.float32(5e-4)


def private_uses(path, own_classes):
    """[(line, what)] of a library's private parts used in the Python file `path`: an underscored attribute of
    anything but the file's own objects (self, cls), an underscored method or attribute in a class that subclasses a
    library's or an attribute it inherits but the documented ones (DOCUMENTED_INHERITED), an underscored name imported, a module path through a private package (keras.src, tensorflow.python,
    _name) or an INTERNAL_MODULES one, in an import or in text given to an importer (IMPORTERS)."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())

    def private(name):
        return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))

    def private_module(module):
        parts = module.split(".")
        return (any(private(part) for part in parts) or module.startswith(("keras.src", "tensorflow.python"))
                or module.startswith(INTERNAL_MODULES))

    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and any(not (isinstance(b, ast.Name) and b.id in own_classes)
                                                  for b in node.bases):  # a library's subclass
            own = {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Store)}
            own |= {n.name for n in node.body if isinstance(n, ast.FunctionDef)}
            own |= {t.id for n in node.body if isinstance(n, (ast.Assign, ast.AnnAssign))
                    for t in (n.targets if isinstance(n, ast.Assign) else [n.target]) if isinstance(t, ast.Name)}
            found += [(n.lineno, f"{node.name}.{n.name}") for n in ast.walk(node)
                      if isinstance(n, ast.FunctionDef) and private(n.name)]  # a private hook overridden
            found += [(n.lineno, f"{node.name}.{n.attr}") for n in ast.walk(node) if isinstance(n, ast.Attribute)
                      and isinstance(n.value, ast.Name) and n.value.id == "self" and (private(n.attr) or (
                          n.attr not in own and n.attr not in DOCUMENTED_INHERITED))]  # the library's, undocumented
        elif (isinstance(node, ast.Attribute) and private(node.attr) and node.attr not in DOCUMENTED_UNDERSCORED
              and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))):
            found.append((node.lineno, f".{node.attr}"))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if private_module(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if private_module(node.module):
                found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names if private(a.name)]
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("getattr", "setattr", "hasattr") \
                and len(node.args) > 1 and isinstance(node.args[1], ast.Constant) and private(str(node.args[1].value)):
            found.append((node.lineno, f"{node.func.id}(..., {node.args[1].value!r})"))
        elif isinstance(node, ast.Call) and (getattr(node.func, "id", None) or getattr(node.func, "attr", None)) in \
                IMPORTERS and node.args and isinstance(node.args[0], ast.Constant) and private_module(node.args[0].value):
            found.append((node.lineno, repr(node.args[0].value)))
    return sorted(set(found))


def program_files(root=ROOT):
    """{path under root: file} of the script and every module of emotion/ but internals.py."""
    files = {"emotion_recognition.py": os.path.join(root, "emotion_recognition.py")}
    for folder, _, names in os.walk(os.path.join(root, "emotion")):
        for name in names:
            path = os.path.join(folder, name)
            if name.endswith(".py"):
                files[os.path.relpath(path, root).replace(os.sep, "/")] = path
    files.pop("emotion/io/internals.py", None)
    return files


def private_uses_outside_internals(root=ROOT):
    """{file: [(line, what)]} of every private use of a library outside emotion/io/internals.py."""
    files = program_files(root)
    own_classes = set()
    for path in files.values():
        with open(path, encoding="utf-8") as f:
            own_classes |= {n.name for n in ast.walk(ast.parse(f.read())) if isinstance(n, ast.ClassDef) and not n.bases}
    return {name: uses for name, path in files.items() if (uses := private_uses(path, own_classes))}


def test_no_private_part_of_a_library_is_used_outside_internals():
    found = private_uses_outside_internals()
    assert {name: uses for name, uses in found.items() if name not in KNOWN_PRIVATE_USES} == {}


def test_the_private_names_check_sees_each_kind_of_use(tmp_path):
    (tmp_path / "emotion").mkdir()
    (tmp_path / "emotion_recognition.py").write_text("import keras\nx = keras.layers._private\n")
    (tmp_path / "emotion" / "internals.py").write_text("from keras.src import ops\n")  # there, and only there: fine
    (tmp_path / "emotion" / "a.py").write_text(
        "import argparse\nimport keras\nfrom keras.src.saving import serialization_lib\nfrom waitress.channel import C\n"
        "from tensorflow import _api\nm = LazyModule('tensorflow.python.ops')\n"
        "class Own:\n    def _mine(self):\n        return self._value\n"
        "class Bar(keras.callbacks.ProgbarLogger):\n    steps = None\n    def _update(self):\n"
        "        return self._seen, self.target, self.model, self.steps, self.on_epoch_end\n"
        "    def on_epoch_end(self, epoch, logs=None):\n        self.mine = 1\n        return self.mine\n"
        "class Formatter(argparse.HelpFormatter):\n    pass\n"
        "y = getattr(Own(), '_secret')\n")
    found = private_uses_outside_internals(str(tmp_path))
    assert found["emotion_recognition.py"] == [(2, "._private")]
    assert [what for _, what in found["emotion/a.py"]] == [
        "keras.src.saving", "waitress.channel", "tensorflow._api", "'tensorflow.python.ops'", "Bar._update",
        "Bar._seen", "Bar.target", "getattr(..., '_secret')"]
    assert "emotion/io/internals.py" not in found


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
