"""Convert weights: `python -m vit_jax.convert SRC OUT [--to orbax|npz|timm|hf]`.

  SRC   a training workdir / Orbax checkpoint, an .npz (vit_jax, AugReg, big_vision), a timm
        .safetensors file or a Hugging Face ViT folder (see `vit_jax.interop.read`).
  OUT   orbax: a folder that `vit_jax.load` and `config.init_from.path` read (config.json +
        checkpoints/0); npz: Linen names (`--pre_linen` for the original vit_jax names); timm:
        a .safetensors state dict for timm's VisionTransformer, with the model's timm kwargs in
        its metadata (`timm_kwargs`); hf: a folder that transformers'
        `ViTForImageClassification.from_pretrained` reads (config.json + model.safetensors).
`--to` defaults to OUT's extension (.npz, .safetensors, else orbax). An existing OUT is never
replaced unless --overwrite; the output is written to a temporary name and renamed when complete.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from vit_jax import errors, interop, models, paths
from vit_jax.classifier import Classifier
from vit_jax.interop import hf, npz, timm, tree

FORMATS = ("orbax", "npz", "timm", "hf")


def export(weights, out: str, *, to: str, pre_linen: bool = False, overwrite: bool = False):
    """Writes `weights` (an interop.Weights) to `out` in format `to`, atomically."""
    if to not in FORMATS:
        raise errors.UserError(f"--to={to!r}: one of {FORMATS}")
    if paths.exists(out) and not overwrite:
        raise errors.OutputExists(f"{out}: exists; pass --overwrite to replace it")
    tmp = f"{out.rstrip('/')}.tmp-{os.getpid()}"
    try:
        if to == "npz":
            npz.write(tmp, npz.from_canonical(weights.params, pre_linen=pre_linen))
        elif to == "timm":
            _write_timm(weights, tmp)
        elif to == "hf":
            hf.write(weights, tmp)
        else:
            _write_orbax(weights, tmp)
        _replace(tmp, out)
    finally:
        paths.remove(tmp)


def _write_timm(weights, path: str) -> None:
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
    from vit_jax import checkpoint, config_lib  # deferred: Orbax and ml_collections, --to orbax.

    c = config_lib.base_config()
    c.model.name = weights.model
    for key, value in weights.overrides.items():
        c.model[key] = value
    c.data.image_size = weights.image_size or c.data.image_size
    directory = paths.makedirs(directory)
    paths.write_text(directory / "config.json", c.to_json_best_effort(indent=2, sort_keys=True))
    info = {"num_classes": weights.num_classes, "class_names": list(weights.class_names or ())}
    paths.write_text(directory / "dataset.json", json.dumps(info, indent=2))
    params = tree.unflatten(weights.params)
    checkpoint.save_params(str(directory / checkpoint.CHECKPOINTS), params)


def _replace(tmp: str, out: str) -> None:
    """Moves `tmp` to `out`; an existing `out` is removed only once the new one is in place."""
    if not paths.exists(out):
        paths.replace(tmp, out)
        return
    old = f"{out.rstrip('/')}.old-{os.getpid()}"
    paths.replace(out, old)
    try:
        paths.replace(tmp, out)
    except OSError:
        paths.replace(old, out)
        raise
    paths.remove(old)


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
    except errors.UserError as e:  # Our checks: one line. Anything else: its traceback.
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {args.out} ({to}, model {weights.model}, {weights.num_classes} classes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
