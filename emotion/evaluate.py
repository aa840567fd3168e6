"""The `evaluate` command: the saved model on any folder of <class>/ sub-folders, reported as after training."""

import os

from emotion.files import UserError, check_output_dir
from emotion_recognition import (answering_model, evaluate_model, list_class_names, load_folder, load_trained_model,
                                 report)


def run_evaluate(args):
    """Evaluate the saved model on any folder of <class>/ sub-folders (a subset of the model's classes)."""
    model, metadata = load_trained_model(args.model_path)
    folder_classes = list_class_names(args.folder)
    metadata.setdefault("class_names", folder_classes)  # a model from the original script stores none
    model, metadata = answering_model(model, metadata, args.classes, args.precision)
    class_names = metadata["class_names"]
    unknown = sorted(set(folder_classes) - set(class_names))
    if unknown:
        raise UserError(f"{args.folder!r} has classes {unknown} that the model's answers "
                        f"({','.join(class_names)}) lack; pass --classes to match the folder, or another folder")
    check_output_dir(args.output_dir, args.folder, {"the --model-path model": args.model_path})
    images, labels, _ = load_folder(args.folder, class_names, metadata["image_size"], metadata["color"],
                                    metadata["normalize"],
                                    os.path.join(args.output_dir, "cache"))
    if len(labels) == 0:
        raise UserError(f"no readable images under {args.folder!r}/<class>/")
    print(f"Evaluating {args.model_path} on {len(labels)} images from {args.folder}")
    metrics = evaluate_model(model, images, labels, class_names, args.batch_size, args.tta)
    report(metrics, labels, args.folder, args.output_dir, args.show)
