"""`python -m vit_jax.inspect --workdir=DIR` (or `--weights=FILE [--model=NAME] --images=DIR`).

Loads the model, takes the first `--num_images` test images (a workdir's own eval split, or the
image files under `--images`, one class per sub-folder, labelled in sorted order) and writes the
analyses' PNGs and analysis.json to `--out` (default DIR/inspect). Prints the JSON's path.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from vit_jax import errors


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m vit_jax.inspect", description=__doc__.split("\n")[0]
    )
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--workdir", help="a finished `python -m vit_jax.main` run")
    where.add_argument("--weights", help="an .npz / .safetensors / Orbax checkpoint")
    p.add_argument("--model", help="registry name, when the weights cannot say")
    p.add_argument("--images", help="with --weights: a folder of class sub-folders of images")
    p.add_argument("--out", help="output folder (default: WORKDIR/inspect, else ./inspect)")
    p.add_argument("--num_images", type=int, default=64)
    p.add_argument("--max_shift", type=int, default=4, help="translation probe: 1…k pixels")
    args = p.parse_args(argv)
    if args.weights and not args.images:
        p.error("--weights needs --images (a folder of class sub-folders of test images)")
    if args.num_images < 1:
        p.error(f"--num_images={args.num_images} must be >= 1")
    return args


def run_images(workdir: str, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The first `count` examples of the run's eval split, preprocessed as its evaluation was."""
    import ml_collections

    from vit_jax import data, paths
    from vit_jax.interop.run import read_json

    config = read_json(paths.path(workdir) / "config.json")
    if config is None:
        raise errors.MissingFile(f"{workdir}: no config.json (not a vit_jax.main workdir)")
    data_config = ml_collections.ConfigDict(config["data"])
    images, labels = [], []
    for batch in data.eval_iterator(data_config, global_batch_size=min(count, 256)):
        keep = np.asarray(batch["mask"], bool)
        images.append(np.asarray(batch["image"])[keep])
        labels.append(np.asarray(batch["label"])[keep])
        if sum(len(x) for x in images) >= count:
            break
    return np.concatenate(images)[:count], np.concatenate(labels)[:count]


def folder_images(classifier, root: str, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Up to `count` images from ROOT/<class>/*, spread over the classes, labelled by the sorted
    class folders' order, preprocessed by the classifier."""
    from PIL import Image

    classes = sorted(d.name for d in os.scandir(root) if d.is_dir())
    if not classes:
        raise errors.UserError(f"--images={root}: no class sub-folders")
    files = [
        (os.path.join(root, c, f), i)
        for i, c in enumerate(classes)
        for f in sorted(os.listdir(os.path.join(root, c)))
    ]
    files = files[:: max(1, len(files) // count)][:count]
    images = [classifier.preprocess(np.asarray(Image.open(f).convert("RGB"))) for f, _ in files]
    return np.concatenate(images), np.array([label for _, label in files])


def main(argv=None) -> int:
    args = parse_args(argv)
    import vit_jax
    from vit_jax.inspect import JSON_NAME, analyse

    clf = vit_jax.load(args.workdir or args.weights, model=args.model)
    if args.workdir:
        images, labels = run_images(args.workdir, args.num_images)
    else:
        images, labels = folder_images(clf, args.images, args.num_images)
    out = args.out or os.path.join(args.workdir or ".", "inspect")
    result = analyse(clf, images, labels, out_dir=out, max_shift=args.max_shift)
    print(f"{clf}: {len(images)} images, {len(result['figures'])} figures")
    print(os.path.join(out, JSON_NAME))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")
