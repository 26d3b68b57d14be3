"""The GPU sweep: `python -m vit_jax.benchmark.sweep` (launched by `bash experiments/gpu_bench.sh`).

Phases, in priority order, each one `python -m vit_jax.benchmark --plan` process (a crash loses
one item, not the sweep; runs inside a phase share XLA's in-process autotuning results):
  check      bf16 matmul peak (8192³), and attention numerics on the B/16 geometry (197 tokens,
             2 layers): cuDNN vs XLA, padded vs unpadded, each against a float32 reference;
             the attention core alone at B/16 b256 (what per-layer padding costs).
  train      the goals — B/16 b256, S/16 b512, L/16 b128 — with the expected-best settings
             (cuDNN attention if the check passed, unrolled layers, no remat), then the B/16
             ablations: layer scan, XLA attention, remat 'dots'.
  inference  img/s at batch 64 / 256 / 1024 for Ti, S, B, L at 224 (layer scan: fast compiles).
  extras     B/16 with XLA option sets (cuBLASLt, command buffers off, latency-hiding scheduler,
             Triton GEMMs off), cuDNN with even (198) instead of 64-multiple padding, B/16
             inference unrolled.
  rerun      S/16 and L/16 again with the B/16 winner, if an ablation or extra beat the guess.
Each item is skipped when its estimated compile + run time would overrun the budget (estimates
rescaled by the compiles measured so far); the inference phase's estimate is held back from the
train phase. Records stream to $OUT/results.jsonl; $OUT/summary.md and summary.json are
rewritten after every phase.

Flags: --smoke (tiny models on CPU, end to end); --budget=SECONDS (default 460, or
BENCH_BUDGET_S); --phases=train,inference (a subset); --dry_run (the plan with estimates only).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import time

from vit_jax.benchmark import plan, report
from vit_jax.benchmark.runner import Runner

PHASES = ("check", "train", "inference", "extras", "rerun")
CHECK_CAP_S = 150  # The check phase may not take longer than this.


def parse_args(argv) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m vit_jax.benchmark.sweep", description="GPU sweep")
    p.add_argument("--smoke", action="store_true", help="tiny models on CPU, end to end")
    p.add_argument("--budget", type=float, default=float(os.environ.get("BENCH_BUDGET_S", 0)))
    p.add_argument("--phases", default=",".join(PHASES), help="comma list, in this order only")
    p.add_argument("--dry_run", action="store_true", help="print the plan with estimates only")
    p.add_argument(
        "--attention",
        default="auto",
        choices=("auto", "cudnn", "xla"),
        help="auto: cuDNN if the check passes (or, without a check, on GPU)",
    )
    args = p.parse_args(argv)
    args.want = set(args.phases.split(","))
    if args.want - set(PHASES):
        p.error(f"--phases: unknown {sorted(args.want - set(PHASES))}; choose from {PHASES}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    s = plan.settings(smoke=args.smoke, budget_s=args.budget or None)
    out = pathlib.Path(os.environ.get("OUT") or "bench_out").resolve()
    out.mkdir(parents=True, exist_ok=True)
    for name in ("results.jsonl", "log.txt", "summary.md", "summary.json", "env.txt"):
        (out / name).unlink(missing_ok=True)
    r = Runner(out, s, dry=args.dry_run)
    r.say(f"gpu_bench: budget {s.budget_s:.0f}s, out {out}, smoke={args.smoke}")
    r.gflops = plan.gflops_per_image(s)
    if args.dry_run:  # Assume an H200 whose check passed.
        r.peak_tflops, r.peak_n = 800.0, 8192
    else:
        record_environment(out, r)
    attention, checks = check_phase(r, s, args)
    write_summary(r)
    b16 = dict(attention=attention, scan=False, remat="none")  # The expected-best settings.
    goals = train_and_inference_phases(r, s, args.want, b16)
    extras_phase(r, s, args.want, b16, checks)
    rerun_phase(r, s, args.want, goals[0]["label"])
    write_summary(r)
    r.say(f"done in {time.time() - r.start:.0f}s; files in {out}")
    summary = (out / "summary.md").read_text(encoding="utf-8")
    print(summary.split("## Every run")[0], flush=True)  # The full table is in summary.md.
    return 0


def write_summary(r: Runner) -> None:
    report.write_summary(
        r.out, r.s, r.records(), peak=(r.peak_tflops, r.peak_n), phases=r.phases,
        elapsed_s=time.time() - r.start,
    )  # fmt: skip


def check_phase(r: Runner, s: plan.Settings, args) -> tuple[str, list[dict]]:
    """1. The matmul peak and attention numerics; returns the attention to use and the checks."""
    c = s.check
    if "check" in args.want:
        check_args = [
            "--mode=peak,check,attention", f"--model={c['model']}", f"--check_batch={c['batch']}",
            f"--batch={s.goals['B/16'][1]}", f"--image_size={c['image_size']}",
            f"--check_layers={c['check_layers']}", "--dtype=bfloat16",
        ] + (["--peak_n=512"] if args.smoke else [])  # fmt: skip
        r.phase("check", check_args, deadline=min(r.deadline, time.time() + CHECK_CAP_S))
    recs = r.records()
    peak = next((x for x in recs if x.get("kind") == "peak"), None)
    if peak:
        r.peak_tflops, r.peak_n = peak["tflops"], peak["n"]
    checks = [x for x in recs if x.get("kind") == "check"]
    cudnn_ok = plan.check_ok(checks, "cudnn", 64) or r.dry
    if not any(x.get("attention") == "cudnn" for x in checks) and not plan.check_crashed(r.phases):
        # No verdict (check not run, or cut off by its time cap): cuDNN on GPU; a crash in a
        # later phase switches the rest to XLA (Runner.plan_phase).
        cudnn_ok = not args.smoke
    pad2_ok = plan.check_ok(checks, "cudnn", 2) or r.dry
    attention = ("cudnn" if cudnn_ok else "xla") if args.attention == "auto" else args.attention
    r.say(
        f"check: peak {r.peak_tflops or 0:.0f} TFLOP/s; cuDNN attention ok={cudnn_ok}"
        f" (even padding ok={pad2_ok}) -> {attention}"
    )
    return attention, checks


def train_and_inference_phases(r: Runner, s: plan.Settings, want, b16: dict) -> list[dict]:
    """2. The goals, then the B/16 ablations (the inference phase's estimate held back); 3. the
    inference table. Returns the goal items."""
    goals = [plan.train_item(s, label, **b16) for label in s.goals]
    for item in goals[1:]:  # S/16, L/16: rather a scan number than none when time is short.
        item["fallback"] = {"scan": True}
    ablations = [plan.train_item(s, "B/16", tag="scan", **{**b16, "scan": True})]
    if b16["attention"] == "cudnn":
        ablations.append(
            plan.train_item(s, "B/16", tag="xla-attention", **{**b16, "attention": "xla"})
        )
    ablations.append(plan.train_item(s, "B/16", tag="remat=dots", **{**b16, "remat": "dots"}))
    inference = [
        plan.inference_item(s, m, b, attention=b16["attention"], scan=True, label=f"{m} b{b}")
        for m in s.inference_models
        for b in s.inference_batches
    ]
    reserve = min(r.phase_estimate(inference), 0.35 * s.budget_s) if "inference" in want else 0
    if "train" in want:
        r.plan_phase("train", goals + ablations, deadline=r.deadline - reserve)
        write_summary(r)
    if "inference" in want:
        r.plan_phase("inference", inference, deadline=r.deadline)
        write_summary(r)
    return goals


def extras_phase(r: Runner, s: plan.Settings, want, b16: dict, checks: list[dict]) -> None:
    """4. B/16 under XLA option sets, cuDNN with even / no padding, inference unrolled."""
    extras = [
        plan.train_item(s, "B/16", tag=f"+{name}", xla_options=opts, **b16)
        for name, opts in plan.XLA_OPTION_SETS.items()
    ]
    cudnn = b16["attention"] == "cudnn"
    if cudnn and (plan.check_ok(checks, "cudnn", 2) or r.dry):  # What per-layer padding costs.
        extras.insert(1, plan.train_item(s, "B/16", tag="cudnn pad 198", pad_multiple=2, **b16))
    if cudnn and plan.check_ok(checks, "cudnn", 1):
        extras.append(plan.train_item(s, "B/16", tag="cudnn unpadded", pad_multiple=1, **b16))
    m, b = s.goals["B/16"][0], s.inference_batches[1]
    label = f"B/16 b{b} unrolled"
    extras.append(plan.inference_item(s, m, b, attention=b16["attention"], scan=False, label=label))
    if "extras" in want:
        r.plan_phase("extras", extras, deadline=r.deadline)
        write_summary(r)


def rerun_phase(r: Runner, s: plan.Settings, want, guess_label: str) -> None:
    """5. S/16 and L/16 again with the B/16 winner, if an ablation or extra beat the guess."""
    winner = plan.b16_winner(r.records(), s, guess_label)
    if winner is None or "rerun" not in want:
        return
    r.say(f"rerun: B/16 winner {winner['label']} beats the guess; rerunning S/16 and L/16")
    keys = ("attention", "scan", "remat", "pad_multiple", "xla_options")
    chosen = {k: winner.get(k) for k in keys}
    if s.base_options:  # The smoke run's base options are added back to every item.
        options = chosen["xla_options"] or {}
        chosen["xla_options"] = {
            k: v for k, v in options.items() if k not in s.base_options
        } or None
    rerun = [plan.train_item(s, label, tag="rerun", **chosen) for label in ("S/16", "L/16")]
    r.plan_phase("rerun", rerun, deadline=r.deadline)


def record_environment(out: pathlib.Path, r: Runner) -> None:
    """Records the machine and versions in env.txt, and turns on XLA's per-fusion autotuning
    cache for the phase processes if this XLA accepts the flag (an unknown XLA flag aborts a
    process): later phases then reuse the GEMM/fusion autotuning of earlier ones, which
    shortens their compiles."""
    lines = [f"python {platform.python_version()} {sys.executable}"]
    versions = (
        "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__, "
        "'optax', optax.__version__, jax.devices()[0].device_kind)"
    )
    gpu = ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"]
    lines.append(_output(gpu))
    flags, probe = os.environ.get("XLA_FLAGS", ""), None
    if not os.environ.get("BENCH_NO_AUTOTUNE_CACHE"):
        cache = pathlib.Path("/tmp/vit_bench_autotune_cache")
        shutil.rmtree(cache, ignore_errors=True)
        trial = f"{flags} --xla_gpu_per_fusion_autotune_cache_dir={cache}".strip()
        probe = _output([sys.executable, "-c", versions], env={**os.environ, "XLA_FLAGS": trial})
        if probe.startswith("jax "):
            os.environ["XLA_FLAGS"] = flags = trial
        else:
            lines.append(f"autotune cache flag not accepted: {probe}")
            probe = None
    lines.append(probe or _output([sys.executable, "-c", versions]))
    lines.append(f"XLA_FLAGS={flags}")
    (out / "env.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for line in lines:
        r.say(f"env: {line}")


def _output(cmd: list[str], env: dict | None = None) -> str:
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"{cmd[0]}: {e}"
    if res.returncode:
        return f"{cmd[0]}: exit {res.returncode}: {res.stderr.strip()[-300:]}"
    return res.stdout.strip()


if __name__ == "__main__":
    sys.exit(main())
