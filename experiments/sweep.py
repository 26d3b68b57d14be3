"""Sweep definitions: a base run config plus axes of overrides, expanded into named points.

A sweep file is Python with `get_sweep(arg=None) -> Sweep`. Axes are lists of override dicts
(dotted config keys → values) built with `axis`, `points`, `product` and `zip_`, so any
composition (a product of zips, ...) is itself an axis. Every override is applied to the *locked*
run config at expansion time: a misspelled key or a wrongly typed value fails before anything
runs, with one line naming the key.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import ml_collections

from vit_jax import config_lib, data, models

Axis = list[dict[str, Any]]

# Keys that are not config keys: resolved into config keys at expansion.
EPOCHS = "epochs"  # → total_steps = ceil(epochs × train examples / batch_size)
_LABELS = {
    "total_steps": "steps",
    "epochs": "ep",
    "optim.lr": "lr",
    "seed": "s",
    "batch_size": "bs",
    "optim.weight_decay": "wd",
    "data.train_split": "",
    "data.train_examples": "n",
    "data.image_size": "res",
    "optim.warmup_steps": "wu",
}


class SweepError(ValueError):
    """A sweep definition is wrong; the message is one line naming the point and the key."""


FINETUNE = "finetune"  # The transfer stage's name: its subdirectory of a point's workdir.


@dataclasses.dataclass
class Finetune:
    """A transfer stage after every point's pre-training (paper §3.2 / Table 6's fine-tuned
    accuracies): the point's final weights fine-tuned by another run config.

    The stage's config is `base` (e.g. `load_config("configs/finetune.py:dataset=mnist")`) with
    the point's model (name and every `model.*` key) and then `overrides` on top; the runner
    sets `init_from.path` to the point's workdir, so the head is replaced by a zero one and the
    position embeddings are resampled if the resolution changes. Results get
    `finetune_accuracy`. `smoke_overrides` apply under `--smoke`.
    """

    base: ml_collections.ConfigDict
    overrides: dict[str, Any] = dataclasses.field(default_factory=dict)
    smoke_overrides: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Sweep:
    """What a sweep file returns. `smoke_*` shrink the sweep for tests (`--smoke`)."""

    base: ml_collections.ConfigDict
    axes: Axis
    smoke_axes: Axis | None = None  # None: the same axes as the full sweep.
    smoke_overrides: dict[str, Any] = dataclasses.field(default_factory=dict)
    train_examples: int | None = None  # For `epochs`; None: asked of vit_jax.data.
    finetune: Finetune | None = None  # A transfer stage for every point.


@dataclasses.dataclass
class Point:
    """One run of a sweep: its own config and a stable, filesystem-safe name."""

    name: str
    family: str
    model: str
    overrides: dict[str, Any]
    config: ml_collections.ConfigDict
    finetune: ml_collections.ConfigDict | None = None  # The transfer stage's run config.


def axis(key: str, values: Iterable[Any]) -> Axis:
    """One key taking each of `values`."""
    return [{key: v} for v in values]


def points(*overrides: Mapping[str, Any]) -> Axis:
    """Hand-listed points, each a dict of overrides (e.g. a model with its own step count)."""
    return [dict(o) for o in overrides]


def product(*axes: Axis) -> Axis:
    """Every combination, the first axis varying slowest."""
    return [_merge(combo) for combo in itertools.product(*axes)]


def zip_(*axes: Axis) -> Axis:
    """Axes of equal length, walked together."""
    lengths = {len(a) for a in axes}
    if len(lengths) > 1:
        raise SweepError(f"zip_ of axes with different lengths {sorted(lengths)}")
    return [_merge(combo) for combo in zip(*axes, strict=True)]


def _merge(dicts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for d in dicts:
        clash = set(out) & set(d)
        if clash:
            raise SweepError(f"key {sorted(clash)[0]!r} set by two combined axes")
        out.update(d)
    return out


def expand(sweep: Sweep, *, smoke: bool = False) -> list[Point]:
    """Applies each point's overrides to a copy of the base config; checks and names it."""
    axes = sweep.smoke_axes if smoke and sweep.smoke_axes is not None else sweep.axes
    base = copy_config(sweep.base)
    if smoke:
        apply_overrides(base, sweep.smoke_overrides, where="smoke_overrides")
    out, seen = [], {}
    for overrides in axes or [{}]:
        point = _make_point(base, overrides, train_examples=sweep.train_examples)
        if sweep.finetune is not None:
            point.finetune = finetune_config(sweep.finetune, point, smoke=smoke)
        if point.name in seen:
            raise SweepError(f"two points named {point.name!r}: {seen[point.name]} and {overrides}")
        seen[point.name] = overrides
        out.append(point)
    return out


def _make_point(base, overrides, *, train_examples) -> Point:
    where = "point " + ", ".join(f"{k}={v!r}" for k, v in overrides.items())
    config = copy_config(base)
    plain = {k: v for k, v in overrides.items() if k != EPOCHS}
    apply_overrides(config, plain, where=where)
    if EPOCHS in overrides:
        config.total_steps = _epochs_to_steps(config, overrides[EPOCHS], train_examples)
    try:
        config_lib.validate(config)
    except config_lib.ConfigError as e:
        raise SweepError(f"{where}: {e}") from None
    model = config.model.name
    name = point_name(overrides)
    name = name if "model.name" in overrides else f"{model_label(model)}_{name}".rstrip("_")
    return Point(name=name, family=family(model), model=model, overrides=overrides, config=config)


def finetune_config(stage: Finetune, point: Point, *, smoke: bool) -> ml_collections.ConfigDict:
    """The transfer stage's config of `point`: the stage's base, the point's model, overrides."""
    where = f"finetune of point {point.name}"
    config = copy_config(stage.base)
    model = {f"model.{k}": v for k, v in point.config.model.items()}
    apply_overrides(config, model, where=where)
    apply_overrides(config, stage.overrides, where=where)
    if smoke:
        apply_overrides(config, stage.smoke_overrides, where=f"{where} (smoke)")
    try:
        config_lib.validate(config)
    except config_lib.ConfigError as e:
        raise SweepError(f"{where}: {e}") from None
    return config


def apply_overrides(config, overrides: Mapping[str, Any], *, where: str = "override") -> None:
    """Sets dotted keys on a locked ConfigDict; an unknown key or bad type is a SweepError."""
    try:
        config_lib.override(config, overrides)
    except config_lib.ConfigError as e:
        raise SweepError(f"{where}: {e}") from None


def copy_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A deep copy that keeps the lock and the placeholders' types (to_dict() would lose them)."""
    return copy.deepcopy(config)


def _epochs_to_steps(config, epochs: float, train_examples: int | None) -> int:
    if train_examples is None:
        train_examples = _num_train_examples(data.dataset_info(config.data))
    return max(1, math.ceil(epochs * train_examples / config.batch_size))


def _num_train_examples(info) -> int:
    for key in ("num_train_examples", "train_examples", "num_train"):
        value = info.get(key) if isinstance(info, Mapping) else getattr(info, key, None)
        if value is not None:
            return int(value)
    raise SweepError(f"cannot read the train-set size from vit_jax.data.dataset_info: {info!r}")


def family(model: str) -> str:
    """vit / resnet / hybrid, from the model registry."""
    return models.family(model)


def model_label(model: str) -> str:
    """'Ti/4' → 'ViT-Ti4'; 'R26-w32' stays; 'R14-w16+Ti/4' → 'R14-w16+Ti4'."""
    label = sanitize(model.replace("/", ""))
    return f"ViT-{label}" if family(model) == "vit" else label


def point_name(overrides: Mapping[str, Any]) -> str:
    """A readable name from the overrides, in their order: ViT-Ti4_steps2000_lr1e-3_s0."""
    parts = []
    for key, value in overrides.items():
        if key == "model.name":
            parts.insert(0, model_label(value))
            continue
        label = _LABELS.get(key, key.rsplit(".", 1)[-1].replace("_", ""))
        parts.append(f"{label}{format_value(value)}")
    return sanitize("_".join(parts))


def format_value(value) -> str:
    """Short, exact text for a value: 0.001 → 1e-3, 3e-4 → 3e-4, 0.5 → 0.5, True → 1."""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float):
        positional = f"{value:.6f}".rstrip("0").rstrip(".")
        mantissa, exp = f"{value:.6e}".split("e")
        scientific = f"{mantissa.rstrip('0').rstrip('.')}e{int(exp)}"
        if float(positional) != value:
            return scientific
        return positional if len(positional) <= len(scientific) else scientific
    if isinstance(value, tuple | list):
        return "-".join(format_value(v) for v in value)
    return str(value)


def sanitize(text: str) -> str:
    """Filesystem-safe: % → pct, : and spaces → -, anything else odd dropped."""
    text = text.replace("%", "pct").replace(":", "-").replace(" ", "-").replace("/", "-")
    return re.sub(r"[^A-Za-z0-9._+=-]", "", text).strip("-.") or "point"


def load_sweep(spec: str) -> Sweep:
    """'experiments/sweeps/x.py:arg' → get_sweep(arg), like ml_collections' config files."""
    path, _, arg = spec.partition(":")
    try:
        module = config_lib.load_file(path, what="sweep")
    except config_lib.ConfigError as e:
        raise SweepError(str(e)) from None
    sweep = module.get_sweep(arg or None)
    if not isinstance(sweep, Sweep):
        raise SweepError(f"{path}: get_sweep must return experiments.sweep.Sweep")
    return sweep


def load_config(spec: str) -> ml_collections.ConfigDict:
    """'configs/x.py:arg' → get_config(arg): a base config for a sweep from a configs/ file."""
    try:
        return config_lib.load(spec)
    except config_lib.ConfigError as e:
        raise SweepError(str(e)) from None
