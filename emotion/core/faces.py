"""The one path from a picture to its faces' emotions, for every front end (EmotionRecognizer, and through it
predict, webcam, serve and batch jobs): detect -> align -> crop -> classify -> restrict -> calibrate. Detection and
classification come in as two functions (the recognizer's, which hold its model, detector and lock); restriction to
some classes and the stored temperature are part of the answering model (answers.answering_model)."""

import numpy as np

from emotion.core.answers import TTA, predict_probabilities
from emotion.core.crops import crop_face
from emotion.io.images import prepare_image

WHOLE_IMAGE_SIDES = (16, 160)  # no face found: an image with sides in this range (px) is taken for a face crop
#                                and classified whole; larger photos get no emotion, smaller ones are not faces


def classify_crops(model, metadata, crops, tta=TTA):
    """Emotion, confidence and every class's probability for each face crop: one model call for all of them."""
    if not crops:
        return []
    class_names = metadata["class_names"]
    batch = np.stack([prepare_image(c, metadata["image_size"], metadata["color"], metadata["normalize"])
                      for c in crops])
    probabilities = predict_probabilities(model, batch, tta)
    return [{"emotion": class_names[p.argmax()], "confidence": round(float(p.max()), 4),
             "probabilities": {n: round(float(v), 4) for n, v in zip(class_names, p)}} for p in probabilities]


def looks_like_face_crop(image):
    """An image the detector found no face in is classified whole only when it is crop-sized (see WHOLE_IMAGE_SIDES)."""
    return WHOLE_IMAGE_SIDES[0] <= min(image.shape[:2]) and max(image.shape[:2]) <= WHOLE_IMAGE_SIDES[1]


def analyze_images(images, detect, classify):
    """Faces of several RGB images, classified together (one `classify` call for every crop). detect(image) -> the
    detector's faces, or detect None: each whole image is one face; classify(crops) -> classify_crops' answers.

    Returns, per image, a list of {"box", "detected", "emotion", "confidence", "probabilities"}, left to right: a
    face the detector found ("detected": True, aligned by its eyes), or the whole image ("detected": False) when
    there is no detector, or when it found nothing in a crop-sized image. Other photos without a face get [].
    """
    found = [detect(im) if detect is not None else [] for im in images]
    crops, owners = [], []
    for i, (image, faces) in enumerate(zip(images, found)):
        if not faces and (detect is None or looks_like_face_crop(image)):
            found[i] = [{"box": [0, 0, image.shape[1], image.shape[0]], "whole": True}]
            crops.append(image)
        else:
            crops += [crop_face(image, f) for f in faces]
        owners += [i] * len(found[i])
    results = [[] for _ in images]
    for i, face, labels in zip(owners, [f for fs in found for f in fs], classify(crops)):
        results[i].append({"box": face["box"], "detected": "whole" not in face, **labels})
    return results


def detection_of(faces):
    """What predict's JSON reports under "detection": "whole-image" (a face crop classified whole) or "detector"."""
    return "whole-image" if any(not f["detected"] for f in faces) else "detector"
