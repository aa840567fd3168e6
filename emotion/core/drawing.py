"""Drawing on a photo: each face's box, its label and confidence, and a short message, laid out so that no label
covers another label or a face (with several faces, each box carries its number, and a label or message that finds no
place by its face is listed under the picture)."""

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
LEGEND_MIN_WIDTH = 100  # one face in a picture narrower than this (a face crop) gets no list under it: too narrow to read
UNSURE_BELOW = 0.40  # a top probability below this gets the neutral "unsure" message, never consolation or praise
UNSURE_MARGIN = 0.20  # ... and so does one less than this above the runner-up's (sad 46 % against neutral 40 %)


def message_for(emotion, confidence, probabilities=None):
    """The short message shown under a face: its emotion's own, the "unknown" line for other classes, or the
    "unsure" line when the model's confidence is below UNSURE_BELOW or within UNSURE_MARGIN of the runner-up's in
    `probabilities` ({class: probability}): a guess that no message should build on."""
    runner_up = sorted((probabilities or {}).values())[-2:-1] or [0.0]
    if confidence < UNSURE_BELOW or confidence - runner_up[0] < UNSURE_MARGIN:
        return MESSAGES["unsure"]
    return MESSAGES.get(emotion, MESSAGES["unknown"])


def line_thickness(shape):
    """Boxes' and labels' line width in pixels for a picture of `shape`: 1 up to 600 px, one more per 400 px."""
    return max(1, round(max(shape[:2]) / 400))


def label_scale(shape):
    """The labels' font scale for a picture of `shape` (messages and the list under it: 0.7 of it)."""
    return max(0.4, max(shape[:2]) / 1000)


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
    message = message_for(face["emotion"], face["confidence"], face.get("probabilities"))
    return f"{i + 1}: {message}" if numbered and len(faces) > 1 else message


def face_label(i, face, faces, numbered):
    """Face i's label ("happy 87%"), starting with its number when `numbered` (two faces or more)."""
    label = f"{face['emotion']} {face['confidence']:.0%}"
    return f"{i + 1}: {label}" if numbered and len(faces) > 1 else label


def layout_labels(faces, shape, numbered=False):
    """Where each face's label and message go: [(text, colour, (x, y) origin, scale, thickness, (x0, y0, x1, y1))].
    numbered: with two faces or more, each label and message starts with the face's place in `faces` ("1: happy
    87%").

    Every label lies inside the picture and covers no other label and no face: it goes above its box, else below
    (left-aligned, centred or right-aligned with it), else beside it. With no free place there, a numbered label is
    left out (annotate lists it under the picture, and the box carries the number); an unnumbered one (one face, or
    the video) goes inside its own box, else to the first free place further down. A message goes by its own face
    only (below or above it, left-aligned, centred or right-aligned with it) and covers no face, label, or other
    face's person (body_of); with no legible free place there it is left out (annotate lists it).
    """
    height, width = shape[:2]
    thickness = line_thickness(shape)
    font_scale = label_scale(shape)
    placed = []
    boxes = [(x, y, x + w, y + h) for x, y, w, h in (face["box"] for face in faces)]
    bodies = [body_of(face["box"], shape) for face in faces]

    def place(text, colour, scale, weight, xs, ys, own, near=None, cover_own=False):
        """Put `text` at the first (x, y) of xs x ys (y: the top of its rectangle) that covers nothing it must not;
        True when placed. xs, ys: numbers, or functions of the text's width (of its height for ys)."""
        scale, (w, h, base) = fit_text(text, scale, weight, width - 2)
        if h + base + 2 > height or scale < 0.25:
            return False
        avoid = [r for *_, r in placed] + [b for i, b in enumerate(boxes) if i != own or not cover_own]
        if near is not None:  # a message: nor another face's person
            avoid += [b for i, b in enumerate(bodies) if i != own]
        for y in ys:
            y = min(max(0, y(h + base + 2) if callable(y) else y), height - h - base - 2)
            for x in xs:
                x = min(max(0, x(w + 1) if callable(x) else x), width - w - 1)
                rect = (x, y, x + w + 1, y + h + base + 2)
                if (near is None or overlaps(rect, near)) and not any(overlaps(rect, r) for r in avoid):
                    placed.append((text, colour, (x + 1, y + h + 1), scale, weight, rect))
                    return True
        return False

    for i, face in enumerate(faces):
        x, y, w, h = face["box"]
        label = face_label(i, face, faces, numbered)
        (_, text_h), text_base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)
        lh = text_h + text_base + 2  # the height of a label's rectangle (place's)
        aligned = [x, lambda lw: x + (w - lw) // 2, lambda lw: x + w - lw]  # left-aligned, centred, right-aligned
        beside = [lambda lw: x - lw - 2, x + w + 2]  # left or right of the box
        found = place(label, (0, 255, 0), font_scale, thickness, aligned, [lambda th: y - th, y + h + 1], i) or \
            place(label, (0, 255, 0), font_scale, thickness, beside, [y, lambda th: y + (h - th) // 2,
                                                                      lambda th: y + h - th], i)
        if not found and not (numbered and len(faces) > 1):  # inside its own box, else further down
            place(label, (0, 255, 0), font_scale, thickness, [x], [y + 2, *range(0, height, max(2, lh // 2))], i,
                  cover_own=True)
        message = face_message(i, face, faces, numbered)
        # by its face: rows just below or above the box (and its label), within a box height of it
        near = (x - w, y - h - lh, x + 2 * w, y + 2 * h + lh)
        # below the box, under a label below it, above a label above it, just above the box
        rows = [y + h + 1, y + h + lh + 2, lambda th: y - lh - th - 1, lambda th: y - th]
        place(message, (255, 255, 255), font_scale * 0.7, max(1, thickness - 1), aligned, rows, i, near)
    return placed


def annotate(image, faces, numbered=False):
    """A BGR copy of an RGB image with a box, label, confidence and message drawn for each face. numbered (predict
    and the web page, whose JSON and cards list the faces in that order): see layout_labels; with two faces or more
    each box carries its number in its top-left corner, and whatever label or message found no place by its face is
    listed under the picture, one line per face, after the face's number. The video (not numbered) keeps its frame
    size and leaves out what found no place."""
    canvas = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    thickness = line_thickness(image.shape)
    for face in faces:
        x, y, w, h = face["box"]
        cv2.rectangle(canvas, (x, y), (x + w, y + h), (0, 200, 0), thickness)
    placed = layout_labels(faces, image.shape, numbered)
    for text, colour, origin, scale, weight, (x0, y0, x1, y1) in placed:
        cv2.rectangle(canvas, (x0, y0), (x1 - 1, y1 - 1), (0, 0, 0), -1)  # a dark backing: legible on any photo
        cv2.putText(canvas, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, weight)
    if not numbered or (len(faces) == 1 and image.shape[1] < LEGEND_MIN_WIDTH):
        return canvas
    several = len(faces) > 1
    if several:
        for i, face in enumerate(faces):
            number_box(canvas, face["box"], str(i + 1), thickness)
    shown = {text for text, *_ in placed}
    legend = []
    for i, face in enumerate(faces):  # what is not shown, listed without the number its line starts with
        missing = [make(i, face, faces, False) for make in (face_label, face_message)
                   if make(i, face, faces, numbered) not in shown]
        if missing:
            legend.append((f"{i + 1}: " if several else "") + " - ".join(missing))
    return add_legend(canvas, legend, label_scale(image.shape) * 0.7)


def number_box(canvas, box, number, thickness):
    """The face's number in a small dark tag inside the top-left corner of its box (drawn in place)."""
    x, y, w, h = box
    scale, (tw, th, base) = fit_text(number, max(0.3, min(w, h) / 150), thickness, max(8, w // 3))
    cv2.rectangle(canvas, (x, y), (x + tw + 4, y + th + base + 4), (0, 0, 0), -1)
    cv2.putText(canvas, number, (x + 2, y + th + 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 255, 0), thickness)


def wrap_text(text, scale, weight, max_width):
    """`text` cut at spaces into lines at most `max_width` wide at `scale` (a word too long alone gets its own)."""
    lines = []
    for word in text.split(" "):
        longer = f"{lines[-1]} {word}" if lines else word
        if lines and cv2.getTextSize(longer, cv2.FONT_HERSHEY_SIMPLEX, scale, weight)[0][0] <= max_width:
            lines[-1] = longer
        else:
            lines.append(word)
    return lines


def add_legend(canvas, lines, scale):
    """`canvas` with a dark strip under it listing `lines` (what found no place by its face), each wrapped to the
    picture's width."""
    if not lines:
        return canvas
    weight = max(1, round(scale))
    lines = [part for line in lines for part in wrap_text(line, scale, weight, canvas.shape[1] - 12)]
    fitted = [(line, *fit_text(line, scale, weight, canvas.shape[1] - 12)) for line in lines]
    row = max(h + base for _, _, (_, h, base) in fitted) + 8
    strip = np.zeros((row * len(lines) + 8, canvas.shape[1], 3), np.uint8)
    for i, (line, line_scale, (_, h, _)) in enumerate(fitted):
        cv2.putText(strip, line, (6, 4 + i * row + h + 2), cv2.FONT_HERSHEY_SIMPLEX, line_scale, (255, 255, 255),
                    weight)
    return np.vstack([canvas, strip])
