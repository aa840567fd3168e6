"""The command line's shared options, each declared once, with the defaults of the modules that own them: the model
(--model-path, --tta, --precision), --classes, --detector, and the results options of train and evaluate."""

import argparse

from emotion.core.answers import TTA
from emotion.core.detection import DETECTOR, DETECTORS
from emotion.core.model_files import FACES_MODEL_PATH
from emotion.core.precision import PRECISION, PRECISIONS
from emotion.io.arguments import class_list, model_file_arg, positive_int


def add_model_arguments(parser, model_path=None):
    """The options of every command that loads (or trains) a model: its file, TTA and precision. model_path: train's
    file, in the working folder as the original; None: FACES_MODEL_PATH, from the working folder or else the shipped
    one (emotion_recognition.main resolves it)."""
    if model_path:
        parser.add_argument("--model-path", type=model_file_arg, default=model_path, help="trained model file (.h5)")
    else:
        parser.add_argument("--model-path", type=model_file_arg,
                            help=f"trained model file (.h5) (default: {FACES_MODEL_PATH}, from the working folder "
                                 "or else the one shipped with the package)")
    parser.add_argument("--tta", action=argparse.BooleanOptionalAction, default=TTA,
                        help="average predictions with the horizontally flipped image")
    parser.add_argument("--precision", default=PRECISION, choices=PRECISIONS,
                        help="float32, Keras' mixed bfloat16/float16, or auto (docs/performance.md)")


def add_classes_argument(parser):
    """--classes, of every command that answers with the model's classes."""
    parser.add_argument("--classes", type=class_list, metavar="A,B,...",
                        help="answer over these of the model's classes only (probabilities renormalised "
                             "over them), e.g. angry,happy,sad; default: all of them")


def add_detector_argument(parser):
    """--detector, of every command that finds faces."""
    parser.add_argument("--detector", default=DETECTOR, choices=DETECTORS,
                        help="face detector: mtcnn, a CNN whose weights come in its pip package; mtcnn+hog, the "
                             "same plus the faces dlib's HOG detector adds (more faces in group photos, a little "
                             "slower), where neither finds one, BlazeFace's (close-ups, faces cut by the "
                             "frame), and in a group more mtcnn looks for faces cut by the frame or tilted; or "
                             "haar, OpenCV's Haar cascade, as the original")


def add_results_arguments(parser, output_dir, batch_size):
    """--output-dir, --batch-size and --no-show, with the calling command's defaults."""
    parser.add_argument("--output-dir", default=output_dir, help="folder for metrics, reports and plots")
    parser.add_argument("--batch-size", type=positive_int, default=batch_size, help="images per batch")
    parser.add_argument("--no-show", dest="show", action="store_false",
                        help="never open plot windows (plots are always saved as PNG)")
