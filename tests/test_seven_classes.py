"""Seven classes: --classes on every command that answers, the original flow with a larger model, new
architectures, a new head on a trained model, calibration (temperature, ECE, reliability diagram), messages."""

import io
import json
import os
import sys

import cv2
import numpy as np
import pytest

import emotion_recognition as er
from emotion.core.drawing import MESSAGES, UNSURE_BELOW, layout_labels, message_for
from emotion.io.errors import UserError
from emotion.jobs.serve import make_serve_app
from emotion.train.calibration import calibration_bins, fit_temperature
from emotion.train.recovery import keras
from emotion.train.training import start_from

from conftest import ROOT, draw_face, make_dataset, run_cli

SEVEN = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
THREE = ["angry", "happy", "sad"]


@pytest.fixture(scope="module")
def seven_model(tmp_path_factory):
    """An untrained seven-class compact model, with a calibration temperature stored."""
    path = tmp_path_factory.mktemp("seven") / "m7.h5"
    keras.utils.set_random_seed(3)
    er.save_model(er.build_model("compact", (48, 48, 1), 7, 1e-3), str(path),
                  {"class_names": SEVEN, "image_size": 48, "color": "grayscale", "normalize": "equalize",
                   "temperature": 1.7})
    return str(path)


@pytest.fixture(scope="module")
def three_class_data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("three"), per_class=(4, 4, 6))


def face_file(tmp_path, emotion="happy", seed=0):
    path = tmp_path / f"{emotion}.png"
    cv2.imwrite(str(path), draw_face(emotion, 48, np.random.default_rng(seed)))
    return path


def predict_json(*args):
    result = run_cli("predict", "--no-detect", "--json", *args)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_answering_model_restricts_renormalises_and_applies_the_temperature(seven_model):
    model, metadata = er.load_trained_model(seven_model)
    images = np.random.default_rng(0).integers(0, 256, (6, 48, 48, 1)).astype(np.uint8)
    raw = er.predict_probabilities(model, images)
    answer, answer_metadata = er.answering_model(model, metadata, ["sad", "angry"])
    expected = raw[:, [SEVEN.index("sad"), SEVEN.index("angry")]] ** (1 / 1.7)
    np.testing.assert_allclose(er.predict_probabilities(answer, images), expected / expected.sum(1, keepdims=True),
                               atol=1e-5)
    assert answer_metadata["class_names"] == ["sad", "angry"] and metadata["class_names"] == SEVEN
    with pytest.raises(UserError, match="no class 'contempt'"):
        er.answering_model(model, metadata, ["happy", "contempt"])


@pytest.fixture
def no_gpu(monkeypatch):
    """As on a machine whose TensorFlow sees no GPU (where OpenCV answers)."""
    from emotion.io import opencv_nets
    monkeypatch.setattr(opencv_nets.tf.config, "list_physical_devices", lambda kind=None: [])


@pytest.mark.parametrize("name, size", [("compact", 48), ("cnn", 64)])  # cnn at 64 px: 2x2 maps to flatten
def test_opencv_answers_as_keras_does(name, size, no_gpu):
    """In float32 on a CPU the compact and the original network are answered by OpenCV's DNN module: the same
    probabilities as Keras', restricted and calibrated the same way."""
    rng = np.random.default_rng(5)
    keras.utils.set_random_seed(5)
    model = er.build_model(name, (size, size, 1), 7, 1e-3)
    for layer in model.layers:  # statistics of their own, so that a weight taken for another shows
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape) for w in layer.get_weights()])
    images = rng.integers(0, 256, (6, size, size, 1)).astype(np.uint8)
    raw = er.predict_probabilities(model, images)
    answer, _ = er.answering_model(model, {"class_names": SEVEN, "temperature": 1.7}, ["sad", "angry"])
    assert answer.network != model.predict_on_batch  # OpenCV's
    expected = raw[:, [SEVEN.index("sad"), SEVEN.index("angry")]] ** (1 / 1.7)
    np.testing.assert_allclose(er.predict_probabilities(answer, images), expected / expected.sum(1, keepdims=True),
                               atol=1e-5)
    whole, _ = er.answering_model(model, {"class_names": SEVEN})
    np.testing.assert_allclose(er.predict_probabilities(whole, images, tta=True), er.predict_probabilities(
        model, images, tta=True), atol=1e-5)


def test_keras_answers_a_network_opencv_is_not_given_or_answers_otherwise(monkeypatch, no_gpu):
    from emotion.io import opencv_nets
    inputs = keras.Input((48, 48, 1))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    x = keras.layers.Add()([x, keras.layers.Conv2D(4, 3, padding="same")(x)])  # a layer OpenCVNet does not know
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x)))
    answer, _ = er.answering_model(model, {"class_names": THREE})
    assert answer is model  # Keras', as it is
    plain = keras.Sequential([inputs, keras.layers.Conv2D(4, 3), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(3, activation="softmax")])
    assert er.answering_model(plain, {"class_names": THREE})[0] is not plain  # OpenCV's
    with monkeypatch.context() as patch:
        patch.setattr(opencv_nets.OpenCVNet, "__call__", lambda self, images: [np.full((len(images), 3), 1 / 3)])
        assert er.answering_model(plain, {"class_names": THREE})[0] is plain  # answers that differ: Keras'
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "onnx", None)  # onnx not installed (an old install, updated by git pull)
        assert er.answering_model(plain, {"class_names": THREE})[0] is plain


def test_predict_classes_restricts_the_answer(seven_model, tmp_path):
    face = face_file(tmp_path)
    (full,) = predict_json(face, "--model-path", seven_model)
    (restricted,) = predict_json(face, "--model-path", seven_model, "--classes", "angry,happy,sad")
    assert list(full["faces"][0]["probabilities"]) == SEVEN
    probabilities = restricted["faces"][0]["probabilities"]
    assert list(probabilities) == THREE and restricted["faces"][0]["emotion"] in THREE
    assert abs(sum(probabilities.values()) - 1) < 1e-3
    kept = np.array([full["faces"][0]["probabilities"][c] for c in THREE])
    np.testing.assert_allclose(list(probabilities.values()), kept / kept.sum(), atol=2e-3)


@pytest.mark.parametrize("command", ["predict", "webcam", "serve", "evaluate"])
def test_an_unknown_class_is_a_one_line_error(seven_model, three_class_data, tmp_path, command):
    target = {"predict": [face_file(tmp_path)], "webcam": ["--source", face_file(tmp_path), "--no-display"],
              "serve": ["--port", "1"], "evaluate": [os.path.join(three_class_data, "test")]}[command]
    result = run_cli(command, *target, "--model-path", seven_model, "--classes", "happy,contempt")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: the model has no class 'contempt'; its classes are " + ",".join(SEVEN)]


def test_classes_must_be_distinct_names():
    result = run_cli("predict", "x.png", "--classes", "happy,happy")
    assert result.returncode == 2 and "distinct comma-separated class names" in result.stderr
    result = run_cli("prepare", "--source", "x", "--out", "y", "--classes", "happy,,sad")
    assert result.returncode == 2 and "distinct comma-separated class names" in result.stderr


def test_serve_classes_restricts_health_and_answers(seven_model):
    from skimage import data
    client = make_serve_app(seven_model, classes=THREE).test_client()
    assert client.get("/api/health").get_json()["classes"] == THREE
    encoded = cv2.imencode(".png", cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))[1].tobytes()
    answer = client.post("/api/predict", data={"image": (io.BytesIO(encoded), "a.png")},
                         content_type="multipart/form-data").get_json()
    assert answer["faces"] and all(list(face["probabilities"]) == THREE for face in answer["faces"])
    assert make_serve_app(seven_model).test_client().get("/api/health").get_json()["classes"] == SEVEN


@pytest.mark.slow
def test_evaluate_over_all_classes_or_the_chosen_ones(seven_model, three_class_data, tmp_path):
    folder = os.path.join(three_class_data, "test")
    for classes, expected in ((",".join(SEVEN), SEVEN), ("angry,happy,sad", THREE)):
        out = tmp_path / (classes or "all")
        result = run_cli("evaluate", folder, "--model-path", seven_model, "--output-dir", out,
                         *(["--classes", classes] if classes else []))
        assert result.returncode == 0, result.stderr
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["class_names"] == expected
    result = run_cli("evaluate", folder, "--model-path", seven_model, "--classes", "happy,sad",
                     "--output-dir", tmp_path / "two")
    assert result.returncode == 1 and "['angry'] that the model's answers (happy,sad) lack" in result.stderr


def test_evaluate_restricts_to_the_folders_classes_as_the_plain_run(seven_model, three_class_data, tmp_path,
                                                                    capsys):
    """A folder with fewer classes than the model: evaluate answers over the folder's classes, as a plain run
    on the same faces does, and gives the same figures."""
    from conftest import run_main
    code, plain_out, error = run_main(capsys, "--data", three_class_data, "--model-path", seven_model,
                                      "--output-dir", tmp_path / "plain", "--no-show")
    assert code == 0, error
    code, out, error = run_main(capsys, "evaluate", os.path.join(three_class_data, "test"), "--model-path",
                                seven_model, "--output-dir", tmp_path / "evaluate", "--no-show")
    assert code == 0, error
    assert [line for line in out.splitlines() if "restricted" in line] == [
        f"The model knows {','.join(SEVEN)}: its answers are restricted to the folder's classes angry,happy,sad "
        "(--classes chooses others)"]
    plain, evaluated = (json.loads((tmp_path / run / "metrics.json").read_text()) for run in ("plain", "evaluate"))
    assert evaluated["class_names"] == plain["class_names"] == THREE
    for key in ("loss", "accuracy", "macro_f1", "weighted_f1", "confusion_matrix", "per_class",
                "expected_calibration_error", "n_samples", "data"):
        assert evaluated[key] == pytest.approx(plain[key]) if isinstance(plain[key], float) \
            else evaluated[key] == plain[key], key
    for name in ("Test Accuracy", "Test Macro F1-Score"):
        assert [l for l in out.splitlines() if l.startswith(name)] == \
            [l for l in plain_out.splitlines() if l.startswith(name)]


def test_the_original_flow_evaluates_a_seven_class_model_on_three_class_data(seven_model, three_class_data,
                                                                             tmp_path):
    result = run_cli("--data", three_class_data, "--model-path", seven_model, "--output-dir", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "restricted to the data's classes angry,happy,sad" in result.stdout
    assert json.loads((tmp_path / "metrics.json").read_text())["class_names"] == THREE
    assert "Test Accuracy" in result.stdout


def test_initial_model_with_other_classes_gets_a_new_last_layer(tmp_path):
    three = er.build_model("compact", (48, 48, 1), 3, 1e-3)
    er.save_model(three, str(tmp_path / "m3.h5"), {"class_names": THREE, "image_size": 48, "color": "grayscale"})
    seven = er.build_model("compact", (48, 48, 1), 7, 1e-3)
    fresh_head = [w.copy() for w in seven.layers[-1].get_weights()]
    start_from(seven, str(tmp_path / "m3.h5"))
    copied = [layer for layer in seven.layers if layer.weights][:-1]
    source = [layer for layer in three.layers if layer.weights][:-1]
    for mine, theirs in zip(copied, source):
        for a, b in zip(mine.get_weights(), theirs.get_weights()):
            np.testing.assert_array_equal(a, b)
    for a, b in zip(seven.layers[-1].get_weights(), fresh_head):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(UserError, match="another architecture"):
        start_from(er.build_model("cnn", (48, 48, 1), 7, 1e-3), str(tmp_path / "m3.h5"))


@pytest.mark.parametrize("name", ["resnet", "mobilenet", "efficientnet"])
def test_keras_applications_build_from_scratch_save_and_load(name, tmp_path):
    model = er.build_model(name, (32, 32, 1), 7, 1e-3, base_weights="none")
    assert model.output_shape == (None, 7)
    assert all(layer.trainable for layer in model.layers)  # the base is trained, unlike vgg16's
    images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 1)).astype(np.uint8)
    er.save_model(model, str(tmp_path / "m.h5"), {"class_names": SEVEN, "image_size": 32, "color": "grayscale"})
    loaded, _ = er.load_trained_model(str(tmp_path / "m.h5"))
    np.testing.assert_allclose(er.predict_probabilities(loaded, images), er.predict_probabilities(model, images),
                               atol=1e-5)


@pytest.mark.slow
def test_train_a_keras_application_from_a_local_weights_file(three_class_data, tmp_path):
    base = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(32, 32, 3))
    base.save_weights(str(tmp_path / "mobilenet.weights.h5"))
    result = run_cli("--data", three_class_data, "--train-again", "--model", "mobilenet", "--epochs", 1,
                     "--base-weights", tmp_path / "mobilenet.weights.h5", "--image-size", 32,
                     "--model-path", tmp_path / "m.h5", "--output-dir", tmp_path / "out", "--no-show")
    assert result.returncode == 0, result.stderr
    model, metadata = er.load_trained_model(str(tmp_path / "m.h5"))
    assert metadata["model"] == "mobilenet" and model.output_shape == (None, 3)
    result = run_cli("--data", three_class_data, "--train-again", "--model", "resnet", "--base-weights",
                     tmp_path / "missing.h5", "--model-path", tmp_path / "r.h5", "--output-dir", tmp_path / "out")
    assert result.returncode == 1 and "resnet weights file" in result.stderr


def test_fit_temperature_recovers_a_known_temperature():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (4000, 5))
    true = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = np.array([rng.choice(5, p=p) for p in true])
    overconfident = np.exp(logits * 2) / np.exp(logits * 2).sum(1, keepdims=True)  # as a model at T = 0.5
    assert fit_temperature(overconfident, labels) == pytest.approx(2.0, rel=0.1)
    assert fit_temperature(true, labels) == pytest.approx(1.0, rel=0.1)


def test_expected_calibration_error():
    probabilities = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    labels = np.array([0, 1, 0, 0])
    bins, ece = calibration_bins(probabilities, labels, bins=10)
    # the 0.9 bin: accuracy 0.5 (gap 0.4); the 0.6 bin: accuracy 1.0 (gap 0.4)
    assert ece == pytest.approx(0.4)
    assert [b["count"] for b in bins if b["count"]] == [2, 2] and sum(b["count"] for b in bins) == 4


def test_evaluate_reports_calibration_and_draws_the_reliability_diagram(seven_model, three_class_data, tmp_path):
    result = run_cli("evaluate", os.path.join(three_class_data, "test"), "--model-path", seven_model,
                     "--output-dir", tmp_path)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert f"Expected calibration error: {metrics['expected_calibration_error']:.4f}" in result.stdout
    assert sum(b["count"] for b in metrics["calibration_bins"]) == metrics["n_samples"]
    image = cv2.imread(str(tmp_path / "reliability_diagram.png"))
    assert image is not None and image.shape[0] > 300


@pytest.mark.slow
def test_training_stores_a_temperature_fitted_on_val(tmp_path):
    data = make_dataset(tmp_path / "three", per_class=(4, 100, 2))  # 300 val faces: enough to calibrate
    result = run_cli("--data", data, "--train-again", "--epochs", 2, "--model-path", tmp_path / "m.h5",
                     "--output-dir", tmp_path / "out", "--no-show")
    assert result.returncode == 0, result.stderr
    _, metadata = er.load_trained_model(str(tmp_path / "m.h5"))
    if metadata["temperature"] == 1.0:  # kept only where it lowers val's calibration error
        assert "none stored" in result.stdout
    else:
        assert f"Calibrated on val: temperature {metadata['temperature']} " in result.stdout
    assert metadata["trained_on"] == "three"  # a name, not a path from this disk


@pytest.mark.parametrize("temperature", [0, -1, 1e6, "2", None])
def test_a_bad_stored_temperature_is_refused(tmp_path, temperature):
    path = str(tmp_path / "m.h5")
    er.save_model(er.build_model("compact", (48, 48, 1), 3, 1e-3), path,
                  {"class_names": THREE, "image_size": 48, "color": "grayscale", "temperature": temperature})
    with pytest.raises(UserError, match="stored temperature"):
        er.load_trained_model(path)


def test_every_fer2013_emotion_has_its_own_message():
    messages = [message_for(emotion, 0.9) for emotion in SEVEN]
    assert len(set(messages)) == 7 and MESSAGES["unknown"] not in messages and MESSAGES["unsure"] not in messages


@pytest.mark.parametrize("emotion", [*SEVEN, "calm"])
def test_a_guess_gets_a_neutral_message_not_consolation(emotion):
    """"sad" at 30 % is a guess: the message says the model is unsure instead of consoling (or celebrating)."""
    assert message_for(emotion, UNSURE_BELOW - 0.1) == MESSAGES["unsure"]
    assert message_for(emotion, UNSURE_BELOW) == MESSAGES.get(emotion, MESSAGES["unknown"])
    sure, unsure = ({"box": [40, 60, 120, 120], "emotion": emotion, "confidence": c} for c in (0.9, 0.3))
    assert [text for text, *_ in layout_labels([sure], (300, 320, 3))][1] == message_for(emotion, 0.9)
    assert [text for text, *_ in layout_labels([unsure], (300, 320, 3))][1] == MESSAGES["unsure"]


def test_labels_and_messages_never_cover_another_face():
    faces = [{"box": [40, 60, 120, 120], "emotion": "neutral", "confidence": 0.9},
             {"box": [180, 60, 120, 120], "emotion": "surprise", "confidence": 0.8}]
    placed = layout_labels(faces, (300, 320, 3))
    assert sum(colour == (0, 255, 0) for _, colour, *_ in placed) == 2  # both labels found a place
    for text, *_, (x0, y0, x1, y1) in placed:
        owner = next(i for i, f in enumerate(faces) if text in (f"{f['emotion']} {f['confidence']:.0%}",
                                                                message_for(f["emotion"], f["confidence"])))
        for i, face in enumerate(faces):
            x, y, w, h = face["box"]
            if i != owner:
                assert not (x0 < x + w and x < x1 and y0 < y + h and y < y1), (text, face)


def test_calibration_needs_enough_validation_faces(tmp_path, capsys):
    """A temperature fitted on a few faces is noise: below MIN_CALIBRATION_FACES none is stored, with the reason."""
    from emotion.train.calibration import MIN_CALIBRATION_FACES, calibrate_model
    keras.utils.set_random_seed(5)
    model = er.build_model("compact", (48, 48, 1), 3, 1e-3)
    model.layers[-1].set_weights([w * 30 for w in model.layers[-1].get_weights()])  # overconfident: T > 1 helps
    metadata = {"class_names": THREE, "image_size": 48, "color": "grayscale", "normalize": "equalize"}
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (MIN_CALIBRATION_FACES, 48, 48, 1)).astype(np.uint8)
    labels = rng.integers(0, 3, MIN_CALIBRATION_FACES)
    path = tmp_path / "m.h5"
    few = 30
    assert calibrate_model(model, metadata, images[:few], labels[:few], str(path)) == 1.0
    assert capsys.readouterr().out.splitlines() == [
        f"Calibration on val: {few} faces are too few to fit a temperature (at least {MIN_CALIBRATION_FACES}); "
        "none stored"]
    assert not path.exists()  # the file is left as it was
    temperature = calibrate_model(model, metadata, images, labels, str(path))
    assert temperature == fit_temperature(er.predict_probabilities(model, images), labels) > 1
    assert er.load_trained_model(str(path))[1]["temperature"] == temperature


def test_a_model_that_answers_one_class_is_named_so_in_calibration_and_evaluation(tmp_path, capsys):
    """A short run that learned nothing answers one class for every face: calibration and the report say so."""
    from emotion.train.calibration import MIN_CALIBRATION_FACES, calibrate_model
    keras.utils.set_random_seed(5)
    model = er.build_model("compact", (48, 48, 1), 3, 1e-3)
    weights, bias = model.layers[-1].get_weights()
    model.layers[-1].set_weights([weights * 0, np.array([0.0, 3.0, 0.0], bias.dtype)])  # always 'happy'
    metadata = {"class_names": THREE, "image_size": 48, "color": "grayscale", "normalize": "equalize"}
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (MIN_CALIBRATION_FACES, 48, 48, 1)).astype(np.uint8)
    labels = rng.integers(0, 3, MIN_CALIBRATION_FACES)
    calibrate_model(model, metadata, images, labels, str(tmp_path / "m.h5"))
    out = capsys.readouterr().out
    assert "Warning: on val the model answers 'happy' for 100% of 300 faces" in out
    metrics = er.evaluate_model(model, images, labels, THREE)
    er.print_metrics(metrics)
    out = capsys.readouterr().out
    assert "Warning: the model answers 'happy' for 100% of 300 faces" in out
    assert "no better than always answering the most common class" in out
    assert metrics["warnings"] and all(line.startswith("Warning: ") for line in metrics["warnings"])


def test_a_model_that_learned_is_not_warned_about(capsys):
    from emotion.train.reporting import learning_warnings
    labels = np.array([0] * 50 + [1] * 30 + [2] * 20)
    assert learning_warnings(labels, labels, THREE) == []
    assert learning_warnings(np.zeros(100, int), labels, THREE)[0].startswith("Warning: the model answers 'angry'")


def test_a_coin_toss_between_two_emotions_gets_the_unsure_message():
    """sad 46 % against neutral 40 %: above UNSURE_BELOW, but no consolation on a margin of six points."""
    from emotion.core.drawing import UNSURE_MARGIN
    toss = {"sad": 0.46, "neutral": 0.40, "happy": 0.14}
    assert message_for("sad", 0.46, toss) == MESSAGES["unsure"]
    clear = {"sad": 0.46, "neutral": 0.45 - UNSURE_MARGIN, "happy": 0.15, "fear": 0.15}
    assert message_for("sad", 0.46, clear) == MESSAGES["sad"]
    face = {"box": [40, 60, 120, 120], "emotion": "sad", "confidence": 0.46, "probabilities": toss}
    assert [text for text, *_ in layout_labels([face], (300, 320, 3))][1] == MESSAGES["unsure"]


def test_class_names_with_math_text_are_plotted_as_written(tmp_path):
    """'$\\happy$' in a model's class names: matplotlib's math text raised after 'model saved'; no plot came."""
    from emotion.core.timeline import plot_timeline, update_timeline
    names = ["$\\happy$", "a$b", "$x^$"]
    keras.utils.set_random_seed(5)
    model = er.build_model("compact", (48, 48, 1), 3, 1e-3)
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (30, 48, 48, 1)).astype(np.uint8), np.arange(30) % 3
    metrics = er.evaluate_model(model, images, labels, names)
    er.report(metrics, labels, str(tmp_path / "test"), str(tmp_path), show=False,
              history={"loss": [1.0, 0.9], "val_loss": [1.1, 1.0], "accuracy": [0.3, 0.4], "val_accuracy": [0.3, 0.3]})
    assert {"confusion_matrix.png", "reliability_diagram.png", "training_curves.png"} <= set(os.listdir(tmp_path))
    timeline = {}
    for i in range(60):
        face = {"track": 1, "emotion": names[0], "probabilities": dict(zip(names, (0.5, 0.3, 0.2)))}
        update_timeline(timeline, [face], i / 10, 6.0, names)
    plot_timeline(timeline, names, str(tmp_path / "timeline.png"))
    assert os.path.getsize(tmp_path / "timeline.png") > 0


def test_evaluate_on_classes_the_model_never_learned_gives_advice_that_works(tmp_path, capsys):
    """A three-class model on a seven-class folder advised --classes, which cannot add classes."""
    from conftest import SHIPPED_MODEL, run_main
    folder = make_dataset(tmp_path / "seven", per_class=(0, 0, 2), classes=SEVEN) + "/test"
    code, _, error = run_main(capsys, "evaluate", folder, "--model-path", SHIPPED_MODEL, "--output-dir", tmp_path / "o")
    assert code == 1 and "--classes" not in error, error
    assert (f"has classes ['disgust', 'fear', 'neutral', 'surprise'] that the model {SHIPPED_MODEL!r} was never "
            "trained for (it knows angry,happy,sad); evaluate a folder of only those classes, or a model trained for "
            "these (another --model-path)") in error
    # a class the model knows, left out by --classes: --classes can bring it back, and says how
    folder = make_dataset(tmp_path / "three", per_class=(0, 0, 2)) + "/test"
    code, _, error = run_main(capsys, "evaluate", folder, "--model-path", SHIPPED_MODEL, "--classes", "happy,sad",
                              "--output-dir", tmp_path / "o")
    assert code == 1 and "pass --classes angry,happy,sad to match the folder" in error, error


def test_the_reliability_diagram_keeps_its_legend_off_the_bars_and_shows_each_bins_faces(tmp_path):
    """The legend covered the first bar; a bin of 3 faces was drawn as strongly as one of 500."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.patches import Rectangle

    from emotion.train.calibration import plot_reliability
    rng = np.random.default_rng(0)
    confidence = np.concatenate([np.full(3, 0.55), rng.uniform(0.7, 1.0, 500)])  # 3 faces in the bin of 0.53-0.6
    probabilities = np.stack([confidence, 1 - confidence], axis=1)
    labels = np.concatenate([np.zeros(3, int), (rng.uniform(size=500) > confidence[3:]).astype(int)])
    bins, ece = calibration_bins(probabilities, labels)
    fig = plot_reliability(bins, ece, "faces", str(tmp_path / "r.png"))
    ax = fig.axes[0]
    renderer = fig.canvas.get_renderer()
    bars = [p for p in ax.patches if isinstance(p, Rectangle) and p.get_height() > 0]
    legend = ax.get_legend().get_window_extent(renderer)
    assert not any(legend.overlaps(bar.get_window_extent(renderer)) for bar in bars)
    alphas = {round(bar.get_x(), 4): bar.get_alpha() for bar in bars}
    few, many = alphas[round(bins[8]["low"], 4)], max(alphas.values())
    assert few < 0.5 * many  # the bin of 3 faces is pale
    shown = {t.get_text() for t in ax.texts}
    assert {str(b["count"]) for b in bins if b["count"]} <= shown  # each bin's faces written by its bar
