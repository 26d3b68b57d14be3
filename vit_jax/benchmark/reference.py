r"""Our train step against the original vit_jax's, same ViT and batch, side by side in one run.

  git clone https://github.com/google-research/vision_transformer /tmp/vision_transformer
  python -m vit_jax.benchmark.reference --reference_dir=/tmp/vision_transformer \
      --config=configs/fashion_mnist.py --set=model.name=XXS/7 --rounds=3

The model, batch, image size and optimizer settings come from one of our configs (any of its
`--config.*`-style overrides via `--set=key=value`); the original gets the same dimensions through
its own `VisionTransformer(patches=..., transformer=..., hidden_size=...)` and its pmap update
step. Each (implementation, round) runs in a fresh process (`reference_worker.py`), alternating
which goes first, so drift in a shared machine's load hits both; the table reports the median
img/s over rounds and the ratio. Plain ViTs only (the original's hybrids need its ResNet config).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference_worker.py")
IMPLS = ("ours", "reference")


class BenchError(RuntimeError):
    """A missing checkout or a failed worker: reported as one line."""


def load_config(path_arg: str, overrides: dict):
    """`FILE.py[:arg]` → its config with `overrides` (dotted keys) applied, validated."""
    from vit_jax import config_lib

    config = config_lib.load(path_arg)
    config_lib.override(config, overrides)
    config_lib.validate(config)
    return config


def parse_value(text: str):
    """A `--set` value: JSON where it parses (numbers, true/false, lists), else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def model_dims(config) -> dict:
    from vit_jax import models

    spec = models.spec(config.model.name)
    if spec.family != "vit":
        raise BenchError(
            f"{config.model.name} is a {spec.family}: the comparison covers plain ViTs (the "
            "original's hybrids take only its BiT ResNet trunk); pass --set=model.name=XXS/7 "
            "or another plain ViT"
        )
    dropout = config.model.dropout_rate
    return {
        "hidden_size": spec.hidden_size,
        "patch_size": spec.patch_size,
        "num_layers": spec.num_layers,
        "mlp_dim": spec.mlp_dim,
        "num_heads": spec.num_heads,
        "dropout_rate": spec.dropout_rate if dropout is None else dropout,
        "image_size": config.data.image_size,
        "channels": spec.channels,
        "num_classes": spec.num_classes,
    }


def make_job(args, config, overrides: dict, impl: str) -> dict:
    o = config.optim
    return {
        "impl": impl,
        "reference_dir": os.path.abspath(args.reference_dir),
        "config": args.config,
        "overrides": overrides,
        "model": model_dims(config),
        "batch": config.batch_size,
        "seed": config.seed,
        "steps": args.steps,
        "repeats": args.repeats,
        "optim": {
            "lr": o.lr,
            "b1": o.b1,
            "b2": o.b2,
            "weight_decay": o.weight_decay,
            "warmup_steps": o.warmup_steps,
            "total_steps": config.total_steps,
            "grad_clip_norm": o.grad_clip_norm,
        },
    }


def run_worker(job: dict, *, timeout: float) -> dict:
    """One implementation in a fresh process (`-P`: its own directory stays off sys.path)."""
    cmd = [sys.executable, "-P", WORKER, json.dumps(job)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    raise BenchError(f"{job['impl']} worker failed (exit {proc.returncode}): {tail}")


def summarize(records: list[dict], *, batch: int) -> dict:
    """Median img/s per implementation over rounds and ours ÷ reference."""
    out = {}
    for impl in IMPLS:
        rates = [batch / r["step_s"] for r in records if r["impl"] == impl]
        compiles = [r["compile_s"] for r in records if r["impl"] == impl]
        out[impl] = {
            "images_per_sec": statistics.median(rates),
            "rounds": rates,
            "compile_s": statistics.median(compiles),
        }
    out["speedup"] = out["ours"]["images_per_sec"] / out["reference"]["images_per_sec"]
    return out


def table(summary: dict, *, model: str, batch: int) -> str:
    rows = [
        f"| implementation ({model}, batch {batch}) | img/s (median) | per round | compile s |",
        "|---|---|---|---|",
    ]
    for impl, label in zip(IMPLS, ("vit_jax (this repo)", "original vit_jax"), strict=True):
        s = summary[impl]
        rounds = ", ".join(f"{r:,.0f}" for r in s["rounds"])
        rows.append(f"| {label} | {s['images_per_sec']:,.0f} | {rounds} | {s['compile_s']:.1f} |")
    rows.append(f"\nours ÷ original: {summary['speedup']:.2f}×")
    return "\n".join(rows)


def parse(argv):
    p = argparse.ArgumentParser(prog="python -m vit_jax.benchmark.reference", description=__doc__)
    p.add_argument("--reference_dir", required=True, help="checkout of vision_transformer")
    p.add_argument("--config", default="configs/fashion_mnist.py", help="FILE.py[:arg]")
    p.add_argument("--set", action="append", default=[], help="config override key=value")
    p.add_argument("--steps", type=int, default=30, help="steps per timed repeat")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats per process")
    p.add_argument("--rounds", type=int, default=3, help="processes per implementation")
    p.add_argument("--timeout", type=float, default=900, help="seconds per worker process")
    p.add_argument("--json", help="write the records and summary here")
    return p.parse_args(argv)


def main(argv=None) -> int:
    from vit_jax import config_lib

    args = parse(argv)
    try:
        if not os.path.isfile(os.path.join(args.reference_dir, "vit_jax", "models_vit.py")):
            raise BenchError(
                f"no vit_jax/models_vit.py under --reference_dir={args.reference_dir}: "
                "git clone https://github.com/google-research/vision_transformer there"
            )
        overrides = {k: parse_value(v) for k, v in (kv.split("=", 1) for kv in args.set)}
        config = load_config(args.config, overrides)
        records = []
        for r in range(args.rounds):
            for impl in IMPLS if r % 2 == 0 else IMPLS[::-1]:
                rec = run_worker(make_job(args, config, overrides, impl), timeout=args.timeout)
                records.append(rec)
                rate = config.batch_size / rec["step_s"]
                print(f"[reference] round {r + 1}/{args.rounds} {impl}: {rate:,.0f} img/s")
    except (BenchError, config_lib.ConfigError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    summary = summarize(records, batch=config.batch_size)
    print(table(summary, model=config.model.name, batch=config.batch_size))
    if args.json:
        from vit_jax import paths

        paths.write_text(args.json, json.dumps({"records": records, "summary": summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
