"""Compute accounting and the results table of a sweep.

The compute axis is the ViT paper's (Table 6): training FLOPs = 6 × forward MACs per image ×
images seen — a forward and a backward pass (≈ 2 forwards) make 3 forward-equivalents, and each
MAC is 2 FLOPs. It counts what an ideal implementation must do, not what a given machine did, so
points run on different hardware, or resumed, stay comparable; `core_hours` measures the latter.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import pathlib
from typing import Any

import ml_collections

from experiments.sweep import FINETUNE
from vit_jax import data, flops, models, paths
from vit_jax.models import sizes

FLOPS_PER_MAC_TRAINING = 6  # 3 passes (forward + backward ≈ 2 forwards) × 2 FLOPs per MAC.
EXA = 1e18

# Columns every row has, in the order of results.csv; few-shot and extra keys follow.
COLUMNS = (
    "name",
    "family",
    "model",
    "status",
    "params",
    "macs_per_image",
    "images_seen",
    "train_flops",
    "train_exaflops",
    "accuracy",
    "wall_s",
    "cores",
    "core_hours",
    "cpu_s",
    "total_steps",
    "batch_size",
    "train_split",
    "train_examples",
    "lr",
    "seed",
)


def train_flops(*, macs_per_image: float, images_seen: float) -> float:
    """Training FLOPs by the paper's convention: 6 × forward MACs/image × images seen."""
    return FLOPS_PER_MAC_TRAINING * float(macs_per_image) * float(images_seen)


@functools.cache
def _dataset_info(data_items: tuple):
    """The data pipeline's DatasetInfo of a data config (cached: sweeps repeat it)."""

    return data.dataset_info(ml_collections.ConfigDict(dict(data_items)))


def dataset_info(data_config):
    items = tuple(sorted((k, _hashable(v)) for k, v in data_config.to_dict().items()))
    return _dataset_info(items)


def train_examples(data_config) -> int:
    """Examples trained on: the class-balanced subset's size, or the whole train split's."""
    return int(data_config.train_examples or dataset_info(data_config).num_train)


def dataset_shape(data_config) -> tuple[int, int]:
    """(num_classes, channels) of the config's dataset."""
    info = dataset_info(data_config)
    return int(info.num_classes), int(info.channels)


def _hashable(v):
    return tuple(_hashable(x) for x in v) if isinstance(v, list | tuple) else v


def _shape_overrides(config) -> dict:
    """The model settings that change its MACs and parameters, resolved as the engine does."""
    out = {k: config.model[k] for k in ("classifier", "representation_size")}
    return {k: v for k, v in out.items() if v is not None}


def model_macs(config) -> int:
    """Forward MACs per image of the point's model at its resolution, classes and channels."""
    num_classes, channels = dataset_shape(config.data)
    return int(
        flops.macs(
            config.model.name,
            image_size=config.data.image_size,
            num_classes=num_classes,
            channels=channels,
            **_shape_overrides(config),
        )
    )


def model_params(config) -> int:
    """Parameter count from abstract shapes (jax.eval_shape: no memory, no compute)."""
    num_classes, channels = dataset_shape(config.data)
    module = models.create(config.model.name, num_classes=num_classes, **_shape_overrides(config))
    return sizes.num_params(module, image_size=config.data.image_size, channels=channels)


def read_metrics(workdir) -> list[dict]:
    """The engine's DIR/metrics.jsonl lines (empty if it has none yet)."""
    path = paths.path(workdir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in paths.read_text(path).splitlines() if line.strip()]


def final_eval(metrics: list[dict]) -> dict[str, Any]:
    """The last eval line's accuracy (and params), plus the latest value of each few-shot key."""
    evals = [m for m in metrics if m.get("kind", "eval") == "eval" and "accuracy" in m]
    if not evals:
        return {}
    last = evals[-1]
    out = {"accuracy": float(last["accuracy"]), "final_step": int(last.get("step", 0))}
    if "params" in last:
        out["params"] = int(last["params"])
    if "eval_examples" in last:  # The test-set size: the accuracy's binomial noise.
        out["eval_examples"] = int(last["eval_examples"])
    for m in evals:
        out.update({k: float(v) for k, v in m.items() if k.startswith("fewshot_")})
    return out


def point_row(point, *, workdir, wall_s: float, cores: int, status: str = "ok") -> dict:
    """One results row for a point from its config and its run directory's metrics."""
    c = point.config
    images_seen = c.total_steps * c.batch_size
    evals = final_eval(read_metrics(workdir))
    macs = model_macs(c)
    flops = train_flops(macs_per_image=macs, images_seen=images_seen)
    row = {
        "name": point.name,
        "family": point.family,
        "model": point.model,
        "status": status,
        "params": evals.pop("params", None) or model_params(c),
        "macs_per_image": macs,
        "images_seen": images_seen,
        "train_flops": flops,
        "train_exaflops": flops / EXA,
        "accuracy": evals.pop("accuracy", None),
        "wall_s": round(float(wall_s), 2),
        "cores": cores,
        "core_hours": float(wall_s) * cores / 3600.0,
        "total_steps": c.total_steps,
        "batch_size": c.batch_size,
        "train_split": c.data.train_split,
        "train_examples": train_examples(c.data),
        "lr": c.optim.lr,
        "seed": c.seed,
    }
    if status == "ok" and row["accuracy"] is None:
        row["status"] = "failed"
        row["error"] = "no eval line with accuracy in metrics.jsonl"
    if point.finetune is not None:
        row |= _finetune_columns(point.finetune, paths.path(workdir) / FINETUNE)
        if row["status"] == "ok" and row["finetune_accuracy"] is None:
            row["status"] = "failed"
            row["error"] = "no eval line with accuracy in finetune/metrics.jsonl"
    return row | evals


def _finetune_columns(config, workdir: pathlib.Path) -> dict:
    """The transfer stage's accuracy, and what it was: dataset, split, steps."""
    return {
        "finetune_accuracy": final_eval(read_metrics(workdir)).get("accuracy"),
        "finetune_dataset": config.data.name,
        "finetune_train_split": config.data.train_split,
        "finetune_steps": config.total_steps,
    }


def write_tables(rows: list[dict], out_dir) -> tuple[pathlib.Path, pathlib.Path]:
    """DIR/results.jsonl and DIR/results.csv, rewritten whole (atomic renames), a line a point."""
    out_dir = paths.path(out_dir)
    jsonl, table = out_dir / "results.jsonl", out_dir / "results.csv"
    text = "".join(json.dumps(r, sort_keys=False) + "\n" for r in rows)
    paths.write_atomic(jsonl, text.encode("utf-8"))
    extra = sorted({k for r in rows for k in r} - set(COLUMNS))
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=list(COLUMNS) + extra)
    writer.writeheader()
    writer.writerows(rows)
    paths.write_atomic(table, buffer.getvalue().encode("utf-8"))
    return jsonl, table
