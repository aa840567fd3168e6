"""Calibration: temperature scaling fitted on val after training (stored with the model), the expected
calibration error and the reliability diagram of evaluate."""

import numpy as np

from emotion.core.answers import answering_model, predict_probabilities
from emotion.core.model_checks import TEMPERATURE_RANGE
from emotion.core.model_files import save_model
from emotion.train.reporting import learning_warnings

CALIBRATION_BINS = 15  # confidence bins of the expected calibration error and the reliability diagram

MIN_CALIBRATION_FACES = 300  # fewer validation faces than this fit a temperature to noise: none is stored


def calibration_bins(probabilities, labels, bins=CALIBRATION_BINS):
    """How far confidence is from accuracy: per equal-width bin of the top probability, its faces, mean
    confidence and accuracy; and the expected calibration error (those gaps weighted by the bins' faces)."""
    confidence, correct = probabilities.max(axis=1), probabilities.argmax(axis=1) == labels
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    table = [{"low": i / bins, "high": (i + 1) / bins, "count": int((which == i).sum()),
              "confidence": float(confidence[which == i].mean()) if (which == i).any() else None,
              "accuracy": float(correct[which == i].mean()) if (which == i).any() else None} for i in range(bins)]
    ece = sum(b["count"] * abs(b["accuracy"] - b["confidence"]) for b in table if b["count"]) / max(len(labels), 1)
    return table, float(ece)


def fit_temperature(probabilities, labels):
    """The temperature T that minimises the cross-entropy of softmax(log p / T) (temperature scaling)."""
    from scipy.optimize import minimize_scalar
    from scipy.special import log_softmax
    log_p = np.log(np.clip(probabilities, 1e-12, 1.0))

    def loss(log_t):
        return -np.mean(log_softmax(log_p / np.exp(log_t), axis=1)[np.arange(len(labels)), labels])

    found = minimize_scalar(loss, bounds=np.log(TEMPERATURE_RANGE), method="bounded")
    return round(float(np.exp(found.x)), 4)


def plot_reliability(bins, ece, data_name, path):
    """The reliability diagram: accuracy against confidence per bin; a calibrated model follows the diagonal. Each
    bar is as strong as its share of the faces of the fullest bin, with its number of faces at its foot (a bin of
    three faces says little), and the legend sits below the axes, off the bars."""
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 5.6))
    full = [b for b in bins if b["count"]]
    most = max((b["count"] for b in full), default=1)
    for i, b in enumerate(full):
        strength = 0.15 + 0.85 * b["count"] / most
        ax.bar(b["low"], b["accuracy"], width=1 / len(bins), align="edge", edgecolor="navy", color="tab:blue",
               alpha=strength, label="accuracy (paler: fewer faces)" if i == 0 else None)
        ax.text(b["low"] + 0.5 / len(bins), 0.015, str(b["count"]), ha="center", va="bottom", fontsize=6,
                rotation=90, color="white" if strength > 0.5 else "navy")  # at the foot: clear of the dots
    ax.plot([b["confidence"] for b in full], [b["accuracy"] for b in full], "o", color="tab:orange",
            label="at mean confidence")
    ax.plot([0, 1], [0, 1], "k--", label="calibrated")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="Confidence (top probability); at each bar's foot: its faces",
           ylabel="Accuracy", title=f"Reliability: {data_name} (ECE {ece:.3f})")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=3, fontsize="small", frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return fig


def calibrate_model(model, metadata, images, labels, path, min_faces=MIN_CALIBRATION_FACES):
    """Temperature scaling fitted on val, stored with the model (so every command's confidences use it) only
    with at least `min_faces` faces (else the file is left as it is) and when it lowers val's expected calibration
    error (else it stores temperature 1). Returns the temperature the answers use."""
    if len(labels) < min_faces:
        print(f"Calibration on val: {len(labels)} faces are too few to fit a temperature (at least {min_faces}); "
              "none stored")
        return 1.0
    probabilities = predict_probabilities(model, images)
    for line in learning_warnings(probabilities.argmax(axis=1), labels, metadata["class_names"], "on val "):
        print(line)  # a temperature makes such a model's confidence honest, not the model useful
    temperature = fit_temperature(probabilities, labels)
    calibrated = answering_model(model, {**metadata, "temperature": temperature})[0]
    before, after = (calibration_bins(p, labels)[1] for p in (probabilities, predict_probabilities(calibrated, images)))
    if after >= before:
        print(f"Calibration on val: temperature {temperature} would not lower the expected calibration error "
              f"({before:.4f} -> {after:.4f}); none stored")
        temperature = 1.0
    else:
        print(f"Calibrated on val: temperature {temperature} (expected calibration error {before:.4f} -> {after:.4f})")
    save_model(model, path, {**metadata, "temperature": temperature})
    return temperature
