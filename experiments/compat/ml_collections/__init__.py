"""Stand-in for `ml_collections.ConfigDict`, put on PYTHONPATH by experiments/gpu_bench.sh only
when the real package is missing (the GPU machine's image has jax/flax/optax but not it).

Why: `vit_jax.models.registry` builds its model specs as ConfigDicts, so the benchmark's import
path needs the name. This keeps what the registry uses — construction from a dict (nested dicts
become ConfigDicts), attribute and item access, `get`, `copy.deepcopy` — and nothing else (no
type locking, FieldReference, lock()). Never installed, never on the path when the real one is.
"""

from __future__ import annotations

import copy


class ConfigDict(dict):
    """A dict with attribute access."""

    def __init__(self, initial=None, **kwargs):
        super().__init__()
        for key, value in dict(initial or {}, **kwargs).items():
            self[key] = value

    def __setitem__(self, key, value):
        if isinstance(value, dict) and not isinstance(value, ConfigDict):
            value = ConfigDict(value)
        super().__setitem__(key, value)

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name, value):
        self[name] = value

    def __delattr__(self, name):
        try:
            del self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __deepcopy__(self, memo):
        return ConfigDict({key: copy.deepcopy(value, memo) for key, value in self.items()})

    def to_dict(self) -> dict:
        return {k: v.to_dict() if isinstance(v, ConfigDict) else v for k, v in self.items()}


FrozenConfigDict = ConfigDict
