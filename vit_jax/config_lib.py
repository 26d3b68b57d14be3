"""The one schema every run config is built from, and its checks.

Every file in `configs/` starts from `base_config()`, a *locked* ConfigDict holding every key the
code reads, with its type. Locking is what turns a misspelled key — in a config file or in a
`--config.a.b=` override — into an error at start instead of a silently ignored setting (the failure
mode of free-form config dicts). `validate()` then checks values that types cannot.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from typing import Any

import ml_collections
from ml_collections import config_dict

from vit_jax import errors
from vit_jax.data import arrays
from vit_jax.models import model_spec, registry

_str = lambda: config_dict.placeholder(str)  # noqa: E731  (None, but typed)
_int = lambda: config_dict.placeholder(int)  # noqa: E731
_float = lambda: config_dict.placeholder(float)  # noqa: E731


class ConfigError(errors.UserError):
    """A run config is wrong; the message is one line naming the key."""


def base_config() -> ml_collections.ConfigDict:
    """Every key a run reads, with defaults. Config files override; nothing else is accepted."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.total_steps = 1000
    c.batch_size = 256  # Global batch, over all devices and processes.
    c.grad_accum_steps = 1  # Micro-batches per step; batch_size must divide by it.
    c.eval_every = 500  # Steps between evaluations; 0 = only at the end.
    c.checkpoint_every = 1000  # Steps between checkpoints; 0 = only at the end.
    c.keep_checkpoints = 3  # Last K checkpoints kept ...
    c.keep_checkpoints_every = 0  # ... plus every M-th step kept for good (0 = none).
    c.log_every = 50
    c.progress_bar = True

    c.model = _model_section()

    c.data = ml_collections.ConfigDict()
    c.data.source = "tfds"  # tfds | folder | arrays (MNIST-family IDX files, no TensorFlow)
    c.data.name = "fashion_mnist"  # TFDS name (source=tfds); fashion_mnist|mnist|kmnist (arrays).
    c.data.root = _str()  # root/{train,test}/<class>/*.jpg|png (folder); IDX directory (arrays).
    c.data.data_dir = _str()  # TFDS data dir; None = $TFDS_DATA_DIR or ~/tensorflow_datasets.
    c.data.train_split = "train"  # Any TFDS split string, e.g. "train[:10%]" for data-size sweeps.
    c.data.train_examples = 0  # A class-balanced subset of train_split of this size; 0 = all.
    c.data.eval_split = "test"
    c.data.image_size = 28  # Model input resolution (square).
    c.data.augment = "pad_crop"  # inception_crop | pad_crop | resize
    c.data.crop_padding = 2  # Pixels of padding before the random crop (pad_crop).
    c.data.flip = True
    c.data.shuffle_buffer = 60_000
    c.data.cache = True  # Cache decoded images in memory (small datasets).
    c.data.prefetch = 2  # Batches prepared ahead, on device.

    c.optim = ml_collections.ConfigDict()
    c.optim.name = "adam"  # adam (pre-training) | sgd (fine-tuning)
    c.optim.lr = 1e-3
    c.optim.b1 = 0.9
    c.optim.b2 = 0.999
    c.optim.momentum = 0.9  # sgd only
    c.optim.weight_decay = 0.1  # Decoupled (AdamW-style), multiplied by lr.
    c.optim.decay_rules = ("kernel$",)  # Regexes: params that get weight decay.
    c.optim.schedule = "cosine"  # cosine | linear | constant
    c.optim.warmup_steps = 100
    c.optim.grad_clip_norm = 1.0  # 0 = no clipping.
    c.optim.freeze = ()  # Regexes of params kept fixed.

    c.loss = "softmax_xent"  # softmax_xent | sigmoid_xent
    c.label_smoothing = 0.0

    c.mesh = (("data", -1), ("model", 1))  # Axis name, size; -1 takes the remaining devices.
    c.sharding = "dp"  # dp | fsdp | tp | fsdp_tp: where params and optimizer state live.

    # Few-shot linear probe on frozen pre-logits (paper §4.1), at every eval when dataset is set.
    c.fewshot = ml_collections.ConfigDict()
    c.fewshot.dataset = _str()  # TFDS name; None = off.
    c.fewshot.train_split = "train"  # Shots are drawn from here ...
    c.fewshot.eval_split = "test"  # ... and accuracy measured here.
    c.fewshot.classes = ()  # Class ids to use (e.g. held out of pre-training); () = all.
    c.fewshot.shots = (1, 5, 10, 25)
    c.fewshot.seeds = 3
    c.fewshot.l2_reg = 1024.0
    c.fewshot.max_eval_examples = 10_000

    c.init_from = ml_collections.ConfigDict()
    c.init_from.path = _str()  # Workdir, Orbax checkpoint or .npz to fine-tune from.
    c.init_from.model = _str()  # Model name of that checkpoint when it cannot be read from it.
    c.init_from.keep_head = False  # False: fresh zero head for the new classes.

    c.lock()
    return c


def _model_section() -> ml_collections.ConfigDict:
    """`config.model`: the model's name plus every knob of `vit_jax.models.ModelSpec`, typed.

    A knob whose value differs between models defaults to None (keep the registry's value);
    `representation_size=-1` asks for a pre_logits layer as wide as the model.
    """
    model = ml_collections.ConfigDict()
    model.name = "Ti/16"  # A name from vit_jax.models.names().
    for key, knob in model_spec.KNOBS.items():
        default = model_spec.config_default(key)
        model[key] = config_dict.placeholder(knob.kind) if default is None else default
    return model


def load_file(path: str, *, what: str = "config"):
    """Executes a Python file (a config or sweep file) as a fresh module.

    A missing file or a syntax error in it is a one-line ConfigError naming the file.
    """
    if not os.path.isfile(path):
        raise ConfigError(f"{what} file {path!r} not found")
    stem = os.path.splitext(os.path.basename(path))[0]
    module_spec = importlib.util.spec_from_file_location(f"_{what}_{stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except SyntaxError as e:
        raise ConfigError(f"{what} file {path!r} line {e.lineno}: {e.msg}") from None
    return module


def load(spec: str) -> ml_collections.ConfigDict:
    """'configs/x.py[:arg]' → that file's get_config(arg), as `--config=` loads it."""
    path, _, arg = spec.partition(":")
    return load_file(path).get_config(arg or None)


def override(config: ml_collections.ConfigDict, overrides: Mapping[str, Any]) -> None:
    """Sets dotted keys ('optim.lr') on a locked config; an unknown key or bad type: ConfigError.

    Lists become tuples where the config holds tuples, so JSON and literals round-trip.
    """
    for key, value in overrides.items():
        *parents, leaf = key.split(".")
        node = config
        try:
            for part in parents:
                node = node[part]
            if leaf not in node:
                raise KeyError(leaf)
            old = node[leaf]
            if isinstance(old, tuple) and isinstance(value, list):
                value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
            node[leaf] = value
        except (KeyError, AttributeError):
            raise ConfigError(f"unknown config key {key!r}") from None
        except (TypeError, ValueError) as e:
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ConfigError(f"config key {key!r} = {value!r}: {msg}") from None


def parse_arg(arg: str | None, **defaults):
    """Parses `get_config`'s argument 'k=v,k=v' into a ConfigDict of `defaults`' keys and types.

    An unknown key or a value that does not convert to its default's type raises ConfigError.
    """
    out = ml_collections.ConfigDict(defaults)
    for item in filter(None, (arg or "").split(",")):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in defaults:
            known = ", ".join(sorted(defaults))
            raise ConfigError(f"config argument {item!r}: unknown key {key!r} (known: {known})")
        kind = type(defaults[key])
        try:
            out[key] = _convert(value.strip(), kind)
        except ValueError as e:
            raise ConfigError(f"config argument {key}={value!r}: {e}") from None
    return out


def _convert(value: str, kind: type):
    if kind is bool:
        if value.lower() not in ("true", "false", "1", "0"):
            raise errors.UserError("expected true/false")
        return value.lower() in ("true", "1")
    if kind in (int, float, str):
        return kind(value)
    raise errors.UserError(f"cannot set a {kind.__name__} from the command line")


_CHOICES = {
    "data.source": ("tfds", "folder", "arrays"),
    "data.augment": ("inception_crop", "pad_crop", "resize"),
    "optim.name": ("adam", "sgd"),
    "optim.schedule": ("cosine", "linear", "constant"),
    "loss": ("softmax_xent", "sigmoid_xent"),
    "sharding": ("dp", "fsdp", "tp", "fsdp_tp"),
} | {  # The model's knobs: their ModelSpec choices, and None where None keeps the registry's.
    f"model.{key}": (None,) * (model_spec.config_default(key) is None) + knob.choices
    for key, knob in model_spec.KNOBS.items()
    if knob.choices
}


def validate(config: ml_collections.ConfigDict) -> None:
    """Checks values against what the code supports; raises ConfigError with one line."""
    for key, choices in _CHOICES.items():
        value = config
        for part in key.split("."):
            value = value[part]
        if value not in choices:
            raise ConfigError(f"config.{key}={value!r}: must be one of {choices}")
    if config.data.train_examples < 0:
        raise ConfigError(
            f"config.data.train_examples={config.data.train_examples}: must be >= 0 (0 = all)"
        )
    for key in ("total_steps", "batch_size", "grad_accum_steps", "data.image_size"):
        value = config[key.split(".")[0]] if "." not in key else config.data.image_size
        if value <= 0:
            raise ConfigError(f"config.{key}={value}: must be positive")
    if config.batch_size % config.grad_accum_steps:
        raise ConfigError(
            f"config.batch_size={config.batch_size} does not divide into "
            f"config.grad_accum_steps={config.grad_accum_steps} micro-batches"
        )
    if config.data.source == "folder" and not config.data.root:
        raise ConfigError("config.data.root: required when config.data.source='folder'")
    if config.data.source == "arrays":
        try:
            arrays.check(config.data)
        except arrays.ArraysError as e:
            raise ConfigError(str(e)) from None
    if config.model.name not in registry.names():
        raise ConfigError(
            f"config.model.name={config.model.name!r}: unknown model (see vit_jax.models.names())"
        )
