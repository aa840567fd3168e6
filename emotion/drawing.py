"""Drawing on a photo: each face's box, its label and confidence, and a short message, laid out so that no label
covers another label or another face (messages that find no place by their face are listed under the picture)."""

import cv2
import numpy as np

MESSAGES = {  # shown under each face, one per emotion; any other class gets the "unknown" line
    "angry": "Pause, breathe slowly, and give yourself a moment.",
    "disgust": "Something feels off? It's fine to step away from it.",
    "fear": "You're safe here. Slow breaths help the worry pass.",
    "happy": "Keep smiling - it suits you!",
    "neutral": "Calm and steady - have a good day.",
    "sad": "It's okay to feel down. Take a breath; better moments are coming.",
    "surprise": "Something unexpected? Take it in at your own pace.",
    "unknown": "Whatever you feel, take good care of yourself.",
    "unsure": "Hard to tell from this picture - the model is not sure.",
}
UNSURE_BELOW = 0.40  # a top probability below this gets the neutral "unsure" message, never consolation or praise


def message_for(emotion, confidence):
    """The short message shown under a face: its emotion's own, the "unknown" line for other classes, or the
    "unsure" line when the model's confidence is below UNSURE_BELOW (a guess that no message should build on)."""
    if confidence < UNSURE_BELOW:
        return MESSAGES["unsure"]
    return MESSAGES.get(emotion, MESSAGES["unknown"])


def fit_text(text, scale, thickness, max_width):
    """The font scale at which `text` is at most `max_width` wide (never above `scale`), and its (w, h, baseline)."""
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    if w > max_width:
        scale *= max_width / w
        (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    return scale, (w, h, base)


def body_of(box, shape):
    """The picture region a face's person probably fills: the box widened by half its width each side and
    extended three box heights down (shoulders and chest), clipped to the picture."""
    x, y, w, h = box
    return max(0, x - w // 2), y, min(shape[1], x + w + w // 2), min(shape[0], y + 4 * h)


def overlaps(a, b):
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def face_message(i, face, faces, numbered):
    """Face i's message, starting with its number as its label does when `numbered` (two faces or more)."""
    message = message_for(face["emotion"], face["confidence"])
    return f"{i + 1}: {message}" if numbered and len(faces) > 1 else message


def layout_labels(faces, shape, numbered=False):
    """Where each face's label and message go: [(text, colour, (x, y) origin, scale, thickness, (x0, y0, x1, y1))].
    numbered: with two faces or more, each label and message starts with the face's place in `faces` ("1: happy
    87%").

    Every label lies inside the picture and covers no other label and no other face: it goes above its box,
    else below, else is pushed down to the first free place. A message goes by its own face only (below or
    above it, left-aligned, centred or right-aligned with it) and covers no other face, label, or other face's
    person (body_of); with no legible free place there it is left out (annotate lists it under the picture).
    """
    height, width = shape[:2]
    thickness = max(1, round(max(shape[:2]) / 400))
    font_scale = max(0.4, max(shape[:2]) / 1000)
    placed = []
    boxes = [(x, y, x + w, y + h) for x, y, w, h in (face["box"] for face in faces)]
    bodies = [body_of(face["box"], shape) for face in faces]

    def place(text, colour, scale, weight, xs, candidates, own, near=None):
        scale, (w, h, base) = fit_text(text, scale, weight, width - 2)
        if h + base + 2 > height or scale < 0.25:
            return
        avoid = [r for *_, r in placed] + [b for i, b in enumerate(boxes) if i != own]  # no other face covered
        if near is not None:  # a message: nor another face's person
            avoid += [b for i, b in enumerate(bodies) if i != own]
        ys = candidates if near is not None else [*candidates, *range(0, height, max(2, h // 2))]
        for y in ys:  # y: the top of the label's rectangle
            y = min(max(0, y), height - h - base - 2)
            for x in xs:
                x = min(max(0, x), width - w - 1)
                rect = (x, y, x + w + 1, y + h + base + 2)
                if (near is None or overlaps(rect, near)) and not any(overlaps(rect, r) for r in avoid):
                    placed.append((text, colour, (x + 1, y + h + 1), scale, weight, rect))
                    return

    for i, face in enumerate(faces):
        x, y, w, h = face["box"]
        label = f"{face['emotion']} {face['confidence']:.0%}"
        if numbered and len(faces) > 1:
            label = f"{i + 1}: {label}"
        lh = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)[0][1] + 8
        place(label, (0, 255, 0), font_scale, thickness, [x], [y - lh, y + h + 2, y + 2], i)
        message = face_message(i, face, faces, numbered)
        scale, (mw, mh, base) = fit_text(message, font_scale * 0.7, max(1, thickness - 1), width - 2)
        # by its face: rows just below or above the box (and its label), within a box height of it
        near = (x - w, y - h - lh, x + 2 * w, y + 2 * h + lh)
        rows = [y + h + 2, y + h + lh, y - lh - mh - base - 4, y + h - mh - base - 4]  # below, under its label, above
        place(message, (255, 255, 255), font_scale * 0.7, max(1, thickness - 1), [x, x + (w - mw) // 2, x + w - mw],
              rows, i, near)
    return placed


def annotate(image, faces, numbered=False):
    """A BGR copy of an RGB image with a box, label, confidence and message drawn for each face; numbered: see
    layout_labels (predict's JSON and the web page's cards list the faces in that order), and with two faces or
    more each message that found no place by its face is listed, numbered, in a strip added under the picture."""
    canvas = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    thickness = max(1, round(max(image.shape[:2]) / 400))
    for face in faces:
        x, y, w, h = face["box"]
        cv2.rectangle(canvas, (x, y), (x + w, y + h), (0, 200, 0), thickness)
    placed = layout_labels(faces, image.shape, numbered)
    for text, colour, origin, scale, weight, (x0, y0, x1, y1) in placed:
        cv2.rectangle(canvas, (x0, y0), (x1 - 1, y1 - 1), (0, 0, 0), -1)  # a dark backing: legible on any photo
        cv2.putText(canvas, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, weight)
    shown = {text for text, *_ in placed}
    legend = [m for m in (face_message(i, f, faces, numbered) for i, f in enumerate(faces)) if m not in shown]
    if not numbered or len(faces) < 2:  # one face: nobody to mistake it for; the video keeps its frame size
        return canvas
    return add_legend(canvas, legend, max(0.4, max(image.shape[:2]) / 1000) * 0.7)


def add_legend(canvas, lines, scale):
    """`canvas` with a dark strip under it listing `lines` (the messages that found no place by their face)."""
    if not lines:
        return canvas
    weight = max(1, round(scale))
    fitted = [(line, *fit_text(line, scale, weight, canvas.shape[1] - 12)) for line in lines]
    row = max(h + base for _, _, (_, h, base) in fitted) + 8
    strip = np.zeros((row * len(lines) + 8, canvas.shape[1], 3), np.uint8)
    for i, (line, line_scale, (_, h, _)) in enumerate(fitted):
        cv2.putText(strip, line, (6, 4 + i * row + h + 2), cv2.FONT_HERSHEY_SIMPLEX, line_scale, (255, 255, 255),
                    weight)
    return np.vstack([canvas, strip])
