"""Drawing on a photo: each face's box, its label and confidence, and a short message, laid out so that no label
covers another label or another face."""

import cv2

MESSAGES = {  # shown under each face, one per emotion; any other class gets the "unknown" line
    "angry": "Pause, breathe slowly, and give yourself a moment.",
    "disgust": "Something feels off? It's fine to step away from it.",
    "fear": "You're safe here. Slow breaths help the worry pass.",
    "happy": "Keep smiling - it suits you!",
    "neutral": "Calm and steady - have a good day.",
    "sad": "It's okay to feel down. Take a breath; better moments are coming.",
    "surprise": "Something unexpected? Take it in at your own pace.",
    "unknown": "Whatever you feel, take good care of yourself.",
}


def message_for(emotion):
    """The short message shown under a face: its emotion's own, or the "unknown" line for other classes."""
    return MESSAGES.get(emotion, MESSAGES["unknown"])


def fit_text(text, scale, thickness, max_width):
    """The font scale at which `text` is at most `max_width` wide (never above `scale`), and its (w, h, baseline)."""
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    if w > max_width:
        scale *= max_width / w
        (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    return scale, (w, h, base)


def layout_labels(faces, shape, numbered=False):
    """Where each face's label and message go: [(text, colour, (x, y) origin, scale, thickness, (x0, y0, x1, y1))].
    numbered: with two faces or more, each label starts with the face's place in `faces` ("1: happy 87%").

    Every label lies inside the picture and covers no other label and no other face: it goes above its box,
    else below, else is pushed down to the first free place. A message with no legible free place is left out.
    """
    height, width = shape[:2]
    thickness = max(1, round(max(shape[:2]) / 400))
    font_scale = max(0.4, max(shape[:2]) / 1000)
    placed = []
    boxes = [(x, y, x + w, y + h) for x, y, w, h in (face["box"] for face in faces)]

    def place(text, colour, scale, weight, x, candidates, own):
        scale, (w, h, base) = fit_text(text, scale, weight, width - 2)
        if h + base + 2 > height or scale < 0.25:
            return
        x = min(max(0, x), width - w - 1)
        for y in [*candidates, *range(0, height, max(2, h // 2))]:  # y: the top of the label's rectangle
            y = min(max(0, y), height - h - base - 2)
            rect = (x, y, x + w + 1, y + h + base + 2)
            others = [r for *_, r in placed] + [b for i, b in enumerate(boxes) if i != own]  # no other face covered
            if not any(r[0] < rect[2] and rect[0] < r[2] and r[1] < rect[3] and rect[1] < r[3] for r in others):
                placed.append((text, colour, (x + 1, y + h + 1), scale, weight, rect))
                return

    for i, face in enumerate(faces):
        x, y, w, h = face["box"]
        label = f"{face['emotion']} {face['confidence']:.0%}"
        if numbered and len(faces) > 1:
            label = f"{i + 1}: {label}"
        lh = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)[0][1] + 8
        place(label, (0, 255, 0), font_scale, thickness, x, [y - lh, y + h + 2, y + 2], i)
        message = message_for(face["emotion"])
        place(message, (255, 255, 255), font_scale * 0.7, max(1, thickness - 1), x,
              [y + h + 2, y + h + lh, y + 2 + lh], i)
    return placed


def annotate(image, faces, numbered=False):
    """A BGR copy of an RGB image with a box, label, confidence and message drawn for each face; numbered: see
    layout_labels (predict's JSON and the web page's cards list the faces in that order)."""
    canvas = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    thickness = max(1, round(max(image.shape[:2]) / 400))
    for face in faces:
        x, y, w, h = face["box"]
        cv2.rectangle(canvas, (x, y), (x + w, y + h), (0, 200, 0), thickness)
    for text, colour, origin, scale, weight, (x0, y0, x1, y1) in layout_labels(faces, image.shape, numbered):
        cv2.rectangle(canvas, (x0, y0), (x1 - 1, y1 - 1), (0, 0, 0), -1)  # a dark backing: legible on any photo
        cv2.putText(canvas, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, weight)
    return canvas
