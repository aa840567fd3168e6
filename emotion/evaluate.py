"""The `evaluate` command: the saved model on any folder of <class>/ sub-folders, reported as after training."""

import os

from emotion.files import UserError, check_output_dir
from emotion_recognition import (agreement, answering_model, evaluate_model, list_class_names, load_folder,
                                 load_trained_model, report)


def folder_answers(model_classes, folder_classes):
    """The folder's classes when it holds fewer than the model knows (the answers restricted to them, as a plain
    run does), said in one line; None (all the model's classes) otherwise."""
    if set(folder_classes) < set(model_classes):
        print(f"The model knows {','.join(model_classes)}: its answers are restricted to the folder's classes "
              f"{','.join(folder_classes)} (--classes chooses others)")
        return folder_classes
    return None


def run_evaluate(args):
    """Evaluate the saved model on any folder of <class>/ sub-folders (a subset of the model's classes)."""
    model, metadata = load_trained_model(args.model_path)
    folder_classes = list_class_names(args.folder)
    metadata.setdefault("class_names", folder_classes)  # a model from the original script stores none
    classes = args.classes or folder_answers(metadata["class_names"], folder_classes)
    model, metadata = answering_model(model, metadata, classes, args.precision)
    class_names = metadata["class_names"]
    unknown = sorted(set(folder_classes) - set(class_names))
    if unknown:
        raise UserError(f"{args.folder!r} has classes {unknown} that the model's answers "
                        f"({','.join(class_names)}) lack; pass --classes to match the folder, or another folder")
    check_output_dir(args.output_dir, args.folder, {"the --model-path model": args.model_path})
    images, labels, skipped = load_folder(args.folder, class_names, metadata["image_size"], metadata["color"],
                                    metadata["normalize"],
                                    os.path.join(args.output_dir, "cache"))
    if len(labels) == 0:
        raise UserError(f"no readable images under {args.folder!r}/<class>/")
    print(f"Evaluating {args.model_path} on {len(labels)} images from {args.folder}")
    metrics = evaluate_model(model, images, labels, class_names, args.batch_size, args.tta)
    metrics["annotator_agreement"] = agreement(args.folder, class_names, skipped, metrics)
    report(metrics, labels, args.folder, args.output_dir, args.show)
