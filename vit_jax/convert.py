"""Convert weights between formats: `python -m vit_jax.convert SRC OUT [--to orbax|npz|timm]`.

  SRC   a training workdir / Orbax checkpoint, an .npz (vit_jax, AugReg, big_vision) or a timm
        .safetensors file (see `vit_jax.interop.read`).
  OUT   orbax: a folder that `vit_jax.load` and `config.init_from.path` read (config.json +
        checkpoints/0); npz: Linen names (`--pre_linen` for the original vit_jax names); timm:
        a .safetensors state dict for timm's VisionTransformer, with the model's timm kwargs in
        its metadata (`timm_kwargs`).
`--to` defaults to OUT's extension (.npz, .safetensors, else orbax). An existing OUT is never
replaced unless --overwrite; the output is written to a temporary name and renamed when complete.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys

from vit_jax import interop
from vit_jax.classifier import Classifier
from vit_jax.interop import npz, timm, tree

FORMATS = ("orbax", "npz", "timm")


def export(weights, out: str, *, to: str, pre_linen: bool = False, overwrite: bool = False):
    """Writes `weights` (an interop.Weights) to `out` in format `to`, atomically."""
    if to not in FORMATS:
        raise ValueError(f"--to={to!r}: one of {FORMATS}")
    if os.path.exists(out) and not overwrite:
        raise FileExistsError(f"{out}: exists; pass --overwrite to replace it")
    tmp = f"{out.rstrip('/')}.tmp-{os.getpid()}"
    try:
        if to == "npz":
            npz.write(tmp, npz.from_canonical(weights.params, pre_linen=pre_linen))
        elif to == "timm":
            _write_timm(weights, tmp)
        else:
            _write_orbax(weights, tmp)
        _replace(tmp, out)
    finally:
        _remove(tmp)


def _write_timm(weights, path: str) -> None:
    from vit_jax import models

    spec = models.resolve(weights.model, weights.overrides)
    sd = timm.to_timm(weights.params, num_heads=spec.num_heads)
    meta = {
        "format": "vit_jax/timm",
        "model": weights.model,
        "gelu": spec.gelu,
        "num_classes": weights.num_classes,
        "image_size": weights.image_size,
        "class_names": list(weights.class_names or ()),
        "timm_kwargs": timm.timm_kwargs(
            weights.model,
            num_classes=weights.num_classes or 0,
            image_size=weights.image_size or spec.image_size,
            overrides=weights.overrides,
        ),
    }
    timm.write(path, sd, metadata=meta)


def _write_orbax(weights, directory: str) -> None:
    from vit_jax import checkpoint, config_lib

    c = config_lib.base_config()
    c.model.name = weights.model
    for key, value in weights.overrides.items():
        c.model[key] = value
    c.data.image_size = weights.image_size or c.data.image_size
    os.makedirs(directory)
    with open(os.path.join(directory, "config.json"), "w") as f:
        f.write(c.to_json_best_effort(indent=2, sort_keys=True))
    info = {"num_classes": weights.num_classes, "class_names": list(weights.class_names or ())}
    with open(os.path.join(directory, "dataset.json"), "w") as f:
        json.dump(info, f, indent=2)
    params = tree.unflatten(weights.params)
    checkpoint.save_params(os.path.join(os.path.abspath(directory), checkpoint.CHECKPOINTS), params)


def _replace(tmp: str, out: str) -> None:
    """Moves `tmp` to `out`; an existing `out` is removed only once the new one is in place."""
    if not os.path.isdir(tmp) and not os.path.isdir(out):
        os.replace(tmp, out)  # Atomic for files.
        return
    if not os.path.exists(out):
        os.rename(tmp, out)
        return
    old = f"{out.rstrip('/')}.old-{os.getpid()}"
    os.rename(out, old)
    try:
        os.rename(tmp, out)
    except OSError:
        os.rename(old, out)
        raise
    _remove(old)


def _remove(path: str) -> None:
    if os.path.isdir(path):
        shutil.rmtree(path)
    elif os.path.exists(path):
        os.remove(path)


def _default_format(out: str) -> str:
    if out.endswith(".npz"):
        return "npz"
    if out.endswith(".safetensors"):
        return "timm"
    return "orbax"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vit_jax.convert",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("src")
    parser.add_argument("out")
    parser.add_argument("--model", help="registry name, when SRC cannot say")
    parser.add_argument("--to", choices=FORMATS, help="output format (default: from OUT)")
    parser.add_argument("--pre_linen", action="store_true", help="npz: original vit_jax names")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    args = parser.parse_args(argv)
    try:
        weights = interop.read(args.src, model=args.model)
        Classifier(weights)  # Every key and shape checked against the model before any write.
        to = args.to or _default_format(args.out)
        export(weights, args.out, to=to, pre_linen=args.pre_linen, overwrite=args.overwrite)
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {args.out} ({to}, model {weights.model}, {weights.num_classes} classes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
