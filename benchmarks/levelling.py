"""Does levelling a tilted face's eyes change its emotion answer? Faces HOG finds (the second pass of mtcnn+hog, which
gives no eyes), cropped as they stand or levelled by the eyes mtcnn's ONet gives for HOG's box (issue 37).

    python benchmarks/levelling.py                                  # webfaces7-dev, every 3rd photo, 25 degrees
    python benchmarks/levelling.py FOLDER --every 1 --angles 15 30

Each photo of the folder's <class>/ sub-folders is turned by +A and by -A degrees (its edges mirrored). On each
turned photo, dlib's HOG detector (as mtcnn+hog runs it: a 640-px copy, score 0.3) gives the face box with the
highest score; where ONet takes that box for a face, the face is classified three times by the shipped seven-class
model: cropped from HOG's box as it stands (as mtcnn+hog did before ONet was asked), from ONet's box as it stands
(its framing, not turned), and from ONet's box levelled by ONet's eyes (as now). The upright photo through the whole
`analyze` path is the reference. Printed: accuracy against the folder's labels, and how often each answer agrees
with the upright one. Photos are read at run time, none written.
"""
import argparse
import glob
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import cv2  # noqa: E402

import emotion.core.detection as F  # noqa: E402
from emotion.core.crops import crop_face  # noqa: E402
from emotion import EmotionRecognizer  # noqa: E402
from emotion.io.images import read_image  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", default=os.path.join("..", "shared", "datasets", "webfaces7-dev"))
    parser.add_argument("--every", type=int, default=3, help="every n-th photo of the folder")
    parser.add_argument("--angles", type=float, nargs="+", default=[25.0], help="turns, degrees (each + and -)")
    args = parser.parse_args()
    recognizer = EmotionRecognizer()
    _, (mtcnn, hog, _) = F.load_face_detector("mtcnn+hog")
    files = sorted(glob.glob(os.path.join(args.folder, "*", "*")))[::args.every]
    for angle in args.angles:
        crops = ("HOG's box", "ONet's box", "ONet's box levelled")
        counts = {"HOG": 0, "faces": 0, "upright": 0, **{(c, k): 0 for c in crops for k in ("right", "agrees")}}
        for path in files:
            label = os.path.basename(os.path.dirname(path))
            image = read_image(path)
            if image is None or label not in recognizer.class_names:
                continue
            upright = recognizer.analyze(image)
            if not upright:
                continue
            for turn in (angle, -angle):
                h, w = image.shape[:2]
                turned = cv2.warpAffine(image, cv2.getRotationMatrix2D((w / 2, h / 2), turn, 1), (w, h),
                                        borderMode=cv2.BORDER_REFLECT_101)
                boxes = F.find_faces("hog", hog, turned, F.DETECT_MAX_SIDE)
                if not boxes:
                    continue
                box = boxes[0][0]
                counts["HOG"] += 1
                (onet,) = F.onet_faces(mtcnn, turned, [box])
                if onet is None:
                    continue
                faces = [{"box": box, "eyes": None}, {"box": onet[0], "eyes": [[0, 0], [1, 0]]},  # level: not turned
                         {"box": onet[0], "eyes": onet[1]}]
                answers = recognizer.classify([crop_face(turned, face) for face in faces])
                counts["faces"] += 1
                counts["upright"] += upright[0].emotion == label
                for crop, answer in zip(crops, answers):
                    counts[crop, "right"] += answer.emotion == label
                    counts[crop, "agrees"] += answer.emotion == upright[0].emotion
        n = max(counts["faces"], 1)
        print(f"turned {angle:g} degrees either way ({len(files)} photos, two turns each): HOG found {counts['HOG']} "
              f"faces, ONet took {counts['faces']} of them for faces; upright, `analyze` answers "
              f"{counts['upright'] / n:.4f} of these people right")
        for crop in crops:
            print(f"  {crop}: accuracy {counts[crop, 'right'] / n:.4f}, the upright answer "
                  f"{counts[crop, 'agrees'] / n:.4f}", flush=True)


if __name__ == "__main__":
    main()
