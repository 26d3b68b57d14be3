"""Device mesh and parameter placement: logical axis names → mesh axes → NamedSharding.

The models name every parameter dimension with a logical axis ('embed', 'mlp', 'heads', ...) and
the activations with ('batch', 'length', 'act_embed', ...). A *strategy* is just a list of rules
mapping those names to mesh axes, so data parallelism, FSDP, tensor parallelism and their mixes are
the same code with a different rule list — on 1 CPU, 8 GPUs or a TPU pod.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from vit_jax import errors, param_paths

# Activations: the batch is always split over 'data'; TP also splits MLP hidden and heads.
_BATCH = [("batch", "data"), ("length", None), ("act_embed", None)]
_FSDP = [("embed", "data"), ("conv_out", "data")]
_TP = [("mlp", "model"), ("heads", "model"), ("act_mlp", "model"), ("act_heads", "model")]

RULES: dict[str, list[tuple[str, str | None]]] = {
    "dp": _BATCH,
    "fsdp": _BATCH + _FSDP,
    "tp": _BATCH + _TP,
    "fsdp_tp": _BATCH + _FSDP + _TP,
}


def make_mesh(axes: Sequence[Sequence], devices=None) -> Mesh:
    """Mesh from config.mesh, e.g. (('data', -1), ('model', 2)); -1 takes what is left."""
    devices = list(jax.devices() if devices is None else devices)
    names = tuple(str(name) for name, _ in axes)
    sizes = [int(size) for _, size in axes]
    if sizes.count(-1) > 1:
        raise errors.UserError(f"config.mesh={tuple(axes)}: at most one axis may have size -1")
    known = int(np.prod([s for s in sizes if s != -1]))
    if -1 not in sizes and known < len(devices) and jax.process_count() == 1:
        devices = devices[:known]  # A smaller mesh on one host: use the first devices.
    if known <= 0 or len(devices) % known:
        raise errors.UserError(f"config.mesh={tuple(axes)} does not divide {len(devices)} devices")
    sizes = [len(devices) // known if s == -1 else s for s in sizes]
    if int(np.prod(sizes)) != len(devices):
        raise errors.UserError(
            f"config.mesh={tuple(axes)} needs {np.prod(sizes)} devices, have {len(devices)}"
        )
    # Auto axes: XLA's sharding propagation places intermediates; the rules pin params and batch.
    auto = (jax.sharding.AxisType.Auto,) * len(names)
    return jax.make_mesh(tuple(sizes), names, axis_types=auto, devices=devices)


def rules_for(strategy: str, mesh: Mesh) -> list[tuple[str, str | None]]:
    """The strategy's rules, with mesh axes the mesh lacks mapped to None (replicated)."""
    if strategy not in RULES:
        raise errors.UserError(f"config.sharding={strategy!r}: must be one of {tuple(RULES)}")
    return [(name, axis if axis in mesh.axis_names else None) for name, axis in RULES[strategy]]


def param_shardings(boxed_abstract_params, mesh: Mesh, rules) -> object:
    """NamedSharding per parameter from the models' logical annotations.

    A dimension that does not divide its mesh axis is left replicated rather than failing: small
    models (and 1-channel stems) meet mesh sizes that do not divide every width.
    """
    logical = nn.get_partition_spec(boxed_abstract_params)
    shapes = nn.unbox(boxed_abstract_params)

    table = {}
    for name, axis in rules:
        table.setdefault(name, axis)  # The first rule for a name wins, as in Flax.

    def place(spec, leaf):
        mesh_spec = P(*(table.get(name) if name else None for name in (spec or ())))
        return NamedSharding(mesh, _fit(mesh_spec, leaf.shape, mesh))

    return jax.tree.map(place, logical, shapes, is_leaf=lambda x: isinstance(x, P))


def _fit(spec: P, shape, mesh: Mesh) -> P:
    axes = list(spec) + [None] * (len(shape) - len(spec))
    used = set()
    for i, (axis, dim) in enumerate(zip(axes, shape, strict=True)):
        names = axis if isinstance(axis, tuple) else (axis,) if axis else ()
        size = int(np.prod([mesh.shape[n] for n in names])) if names else 1
        if not names or dim % size or used & set(names):
            axes[i] = None
        used |= set(names) if axes[i] else set()
    return P(*axes)


def like_params(tree, params, param_sharding, mesh: Mesh):
    """Shardings for a tree holding copies of params (optimizer moments): match by path suffix.

    Any leaf whose key path ends with a parameter's path and has its shape gets that parameter's
    sharding (so Adam's mu and nu are sharded like the weights under FSDP); the rest (step counts,
    scalars) are replicated.
    """
    by_path = {}
    for (path, leaf), sharding in zip(
        jax.tree_util.tree_flatten_with_path(params)[0],
        jax.tree.leaves(param_sharding),
        strict=True,
    ):
        by_path[param_paths.names(path)] = (leaf.shape, sharding)
    replicated = NamedSharding(mesh, P())

    def pick(path, leaf):
        names = param_paths.names(path)
        for start in range(len(names)):
            hit = by_path.get(names[start:])
            if hit and hit[0] == getattr(leaf, "shape", None):
                return hit[1]
        return replicated

    return jax.tree_util.tree_map_with_path(pick, tree)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis over 'data'; everything else replicated (e.g. over 'model')."""
    return NamedSharding(mesh, P("data"))


def to_global(batch: dict, mesh: Mesh) -> dict:
    """Per-process numpy batch → global jax.Arrays split over the mesh's 'data' axis."""
    sharding = batch_sharding(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}
