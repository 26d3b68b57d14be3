"""Weights from anywhere → one canonical form → any of our models.

    weights = interop.read("ViT-B_16.npz")            # or a workdir, Orbax dir, timm .safetensors
    params = interop.fit(weights.params, abstract_params, source=weights.source)

Reading (reader.py: dispatch, run.py / npz.py / timm.py: the formats, infer.py: which model) ends
in canonical flat weights (tree.py); fitting (fitter.py) puts them on a model's parameter tree.
"""

from __future__ import annotations

from vit_jax.interop.fitter import POSEMB, abstract_params, fit
from vit_jax.interop.infer import stride
from vit_jax.interop.reader import PICKLE_SUFFIXES, Weights, read

__all__ = ["PICKLE_SUFFIXES", "POSEMB", "Weights", "abstract_params", "fit", "read", "stride"]
