"""`ModelSpec`: the one typed list of a model's hyperparameters and of what a run may override.

Everything that names a model setting derives from this dataclass: the registry fills one spec per
name, `models.build` turns a spec into a Flax module, `config_lib.base_config()` builds the run
config's `model` section from `KNOBS`, and `resolve` checks overrides against the same list. A new
setting is one field here (plus its use in the module); nothing else spells the list out.

Pure Python on purpose (no JAX, no config library): configs, sweeps and the benchmark read it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from vit_jax import errors


@dataclasses.dataclass(frozen=True)
class Knob:
    """How a run may override one spec field.

    `kind` is the type a config holds; `choices` (when not empty) the accepted values;
    `per_model=True`: the config's default is None, which keeps the registry's value for the model
    (the field differs between models); otherwise the config's default is the field's default.
    """

    kind: type
    choices: tuple = ()
    per_model: bool = False
    doc: str = ""


def _knob(default, kind, *, choices=(), per_model=False, doc=""):
    knob = Knob(kind=kind, choices=tuple(choices), per_model=per_model, doc=doc)
    return dataclasses.field(default=default, metadata={"knob": knob})


DTYPES = ("float32", "bfloat16", "float16")


@dataclasses.dataclass(frozen=True)
class ResNetSpec:
    """A ResNet trunk (BiT, or the small 28×28 ones): residual units per stage, base width, stem."""

    units: tuple[int, ...]
    width: int
    stem: str  # bit | small | conv4 | conv8 (see resnet.stem_downsampling)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A named model's hyperparameters. ViT-only fields are None for plain ResNets.

    `image_size`, `channels` and `num_classes` are the variant's native setting (224/3/1000 or
    28/1/10), used by the README table and tests; a model runs at any size its patches divide.
    `total_stride` is the input pixels per token (or final ResNet feature-map cell) along a side.
    """

    name: str
    family: str  # vit | hybrid | resnet
    size: str | None = None
    hidden_size: int | None = None
    num_layers: int | None = None
    mlp_dim: int | None = None
    num_heads: int | None = None
    patch_size: int | None = None
    total_stride: int | None = None
    resnet: ResNetSpec | None = None
    image_size: int = 224
    channels: int = 3
    num_classes: int = 1000
    # Overridable per run (config.model.<field>, or `models.create(name, <field>=...)`).
    dtype: str = _knob("float32", str, choices=DTYPES, doc='Compute dtype ("bfloat16": mixed).')
    param_dtype: str = _knob("float32", str, choices=DTYPES)
    classifier: str | None = _knob(None, str, choices=("token", "gap", "map"), per_model=True)
    representation_size: int | None = _knob(
        None, int, per_model=True, doc="pre_logits width; -1 in a config: the model's width."
    )
    posemb: str | None = _knob(None, str, choices=("learn", "sincos2d"), per_model=True)
    dropout_rate: float = _knob(0.0, float, per_model=True)
    attention_dropout_rate: float = _knob(0.0, float, per_model=True)
    stochastic_depth: float = _knob(0.0, float, per_model=True)
    gelu: str | None = _knob(None, str, choices=("tanh", "exact"), per_model=True)
    scan: bool = _knob(
        False, bool, choices=(False, True), doc="nn.scan over encoder blocks (faster compile)."
    )
    remat_policy: str = _knob("none", str, choices=("none", "full", "dots", "dots_no_batch"))
    attention_impl: str | None = _knob(
        None, str, choices=("xla", "cudnn"), doc='None = XLA; "cudnn" = fused flash attention.'
    )

    def replace(self, **changes) -> ModelSpec:
        return dataclasses.replace(self, **changes)


KNOBS: dict[str, Knob] = {
    f.name: f.metadata["knob"] for f in dataclasses.fields(ModelSpec) if "knob" in f.metadata
}
# Values of ViT-only knobs that a ResNet accepts (and ignores): a no-op setting.
RESNET_NEUTRAL: dict[str, tuple] = {
    "classifier": ("gap",),
    "dropout_rate": (0.0,),
    "attention_dropout_rate": (0.0,),
    "stochastic_depth": (0.0,),
    "scan": (False,),
    "remat_policy": ("none",),
    "attention_impl": ("xla",),
}
_FAMILY_FREE = ("dtype", "param_dtype")  # Knobs every family has.


def config_default(key: str) -> Any:
    """The default of `key` in a run config: None where the registry's value is kept."""
    knob = KNOBS[key]
    return None if knob.per_model else _default(key)


def _default(key: str) -> Any:
    return next(f.default for f in dataclasses.fields(ModelSpec) if f.name == key)


def check_override(spec: ModelSpec, key: str, value: Any) -> bool:
    """Whether `value` (not None) for knob `key` changes `spec`; ValueError naming a bad one.

    False means the family ignores the knob at this (neutral) value, e.g. scan=False on a ResNet.
    """
    if key not in KNOBS:
        raise errors.UserError(f"unknown model override {key!r} (known: {', '.join(KNOBS)})")
    choices = KNOBS[key].choices
    if choices and value not in choices:
        raise errors.UserError(f"model override {key}={value!r}: must be one of {choices}")
    if spec.family == "resnet" and key not in _FAMILY_FREE:
        if value not in RESNET_NEUTRAL.get(key, ()):
            raise errors.UserError(
                f"model override {key}={value!r} does not apply to ResNet {spec.name!r}"
            )
        return False
    return True
