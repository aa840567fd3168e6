"""Average the weights of models fine-tuned from one starting model into one network ("model soup").

    python tools/soup.py --out EmotionRecognitionSystem.h5 tuned-1.h5 tuned-2.h5 tuned-3.h5 base.h5

Runs fine-tuned from the same weights (`train --initial-model base.h5`, other seeds) stay in one basin
of the loss, so their average is a network as cheap to run as each of them, and usually better on
faces none of them was tuned on (Wortsman et al., 2022, "Model soups"). BatchNormalization statistics
are averaged too. The metadata (classes, image settings, --normalize) is the first model's, plus the recipe,
so list a fine-tuned model first when the starting model predates --normalize.
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from emotion.io.errors import UserError  # noqa: E402
import emotion_recognition as er  # noqa: E402  (the script sits one folder up)


def make_soup(paths):
    """(model, metadata): the first model with every weight replaced by the mean over all the models."""
    loaded = [er.load_trained_model(path) for path in paths]
    model, metadata = loaded[0]
    for path, (other, other_metadata) in zip(paths[1:], loaded[1:]):
        same_input = {k: other_metadata.get(k) for k in ("class_names", "image_size", "color")} == \
            {k: metadata.get(k) for k in ("class_names", "image_size", "color")}
        same_shapes = [w.shape for w in other.get_weights()] == [w.shape for w in model.get_weights()]
        if not (same_input and same_shapes):
            raise UserError(f"{path!r} is not the same architecture, classes and input as {paths[0]!r}")
    settings = {path: other_metadata["normalize"] for path, (_, other_metadata) in zip(paths, loaded)}
    if len(set(settings.values())) > 1:  # e.g. a starting model saved before --normalize existed
        print(f"Warning: the models differ in normalize ({settings}); the average uses the first model's, "
              f"{metadata['normalize']!r}")
    model.set_weights([np.mean(weights, axis=0) for weights in zip(*(m.get_weights() for m, _ in loaded))])
    names = ", ".join(os.path.basename(p) for p in paths)
    return model, {**metadata, "recipe": f"weight average (tools/soup.py) of {names}"}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="two or more .h5 models fine-tuned from the same weights")
    parser.add_argument("--out", required=True, help="the averaged model (.h5)")
    args = parser.parse_args(argv)
    try:
        if len(args.models) < 2:
            raise UserError("give at least two models to average")
        model, metadata = make_soup(args.models)
        er.save_model(model, args.out, metadata)
    except UserError as error:
        sys.exit(f"error: {error}")
    print(f"Averaged {len(args.models)} models into {args.out}")


if __name__ == "__main__":
    main()
