"""The phases in order (see the package docstring); `main` is `python -m experiments.gpu_bench`."""

from __future__ import annotations

import argparse
import os
import pathlib
import time

from experiments.gpu_bench import plan
from experiments.gpu_bench.report import write_summary
from experiments.gpu_bench.runner import Runner, environment


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny models on CPU, end to end")
    p.add_argument("--budget", type=float, default=float(os.environ.get("BENCH_BUDGET_S", 0)))
    p.add_argument("--phases", default=",".join(plan.PHASES), help="comma list, in this order only")
    p.add_argument("--dry_run", action="store_true", help="print the plan with estimates only")
    p.add_argument(
        "--attention",
        default="auto",
        choices=("auto", "cudnn", "xla"),
        help="auto: cuDNN if the check passes (or, without a check, on GPU)",
    )
    args = p.parse_args(argv)
    args.want = set(args.phases.split(","))
    if args.want - set(plan.PHASES):
        unknown = sorted(args.want - set(plan.PHASES))
        p.error(f"--phases: unknown {unknown}; choose from {plan.PHASES}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    s = plan.settings(smoke=args.smoke, budget_s=args.budget or None)
    out = pathlib.Path(os.environ.get("OUT") or plan.ROOT / "bench_out").resolve()
    out.mkdir(parents=True, exist_ok=True)
    for name in ("results.jsonl", "log.txt", "summary.md", "summary.json", "env.txt"):
        (out / name).unlink(missing_ok=True)
    r = Runner(out, s)
    r.say(f"gpu_bench: budget {s.budget_s:.0f}s, out {out}, smoke={args.smoke}")
    r.gflops = plan.gflops_per_image(s)
    if args.dry_run:  # Assume an H200 whose check passed.
        r.dry, r.peak_tflops, r.peak_n = True, 800.0, 8192
    else:
        environment(out, r)
    attention, checks = check_phase(r, s, args)
    write_summary(r, s)
    b16 = dict(attention=attention, scan=False, remat="none")  # The expected-best settings.
    goals = train_and_inference_phases(r, s, args.want, b16)
    extras_phase(r, s, args.want, b16, checks)
    rerun_phase(r, s, args.want, goals[0]["label"])
    write_summary(r, s)
    r.say(f"done in {time.time() - r.start:.0f}s; files in {out}")
    summary = (out / "summary.md").read_text(encoding="utf-8")
    print(summary.split("## Every run")[0], flush=True)  # The full table is in summary.md.
    return 0


def check_phase(r: Runner, s: plan.Settings, args) -> tuple[str, list[dict]]:
    """1. The matmul peak and attention numerics; returns the attention to use and the checks."""
    c = s.check
    if "check" in args.want:
        check_args = [
            "--mode=peak,check,attention",
            f"--model={c['model']}",
            f"--check_batch={c['batch']}",
            f"--batch={s.goals['B/16'][1]}",
            f"--image_size={c['image_size']}",
            f"--check_layers={c['check_layers']}",
            "--dtype=bfloat16",
        ] + (["--peak_n=512"] if args.smoke else [])
        r.phase("check", check_args, deadline=min(r.deadline, time.time() + plan.CHECK_CAP_S))
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


def inference_item(s: plan.Settings, model: str, batch: int, *, attention, scan, label) -> dict:
    return dict(
        model=model, batch=batch, mode="inference", dtype="bfloat16", image_size=s.image_size,
        attention=attention, scan=scan, label=label, **s.inference_timing,
    )  # fmt: skip


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
        inference_item(s, m, b, attention=b16["attention"], scan=True, label=f"{m} b{b}")
        for m in s.inference_models
        for b in s.inference_batches
    ]
    reserve = min(r.phase_estimate(inference), 0.35 * s.budget_s) if "inference" in want else 0
    if "train" in want:
        r.plan_phase("train", goals + ablations, deadline=r.deadline - reserve)
        write_summary(r, s)
    if "inference" in want:
        r.plan_phase("inference", inference, deadline=r.deadline)
        write_summary(r, s)
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
    extras.append(
        inference_item(s, m, b, attention=b16["attention"], scan=False, label=f"B/16 b{b} unrolled")
    )
    if "extras" in want:
        r.plan_phase("extras", extras, deadline=r.deadline)
        write_summary(r, s)


def rerun_phase(r: Runner, s: plan.Settings, want, guess_label: str) -> None:
    """5. S/16 and L/16 again with the B/16 winner, if an ablation or extra beat the guess."""
    winner = plan.b16_winner(r.records(), s, guess_label)
    if winner is None or "rerun" not in want:
        return
    r.say(f"rerun: B/16 winner {winner['label']} beats the guess; rerunning S/16 and L/16")
    keys = ("attention", "scan", "remat", "pad_multiple", "xla_options")
    chosen = {k: winner.get(k) for k in keys}
    if s.base_options:
        options = chosen["xla_options"] or {}
        chosen["xla_options"] = {
            k: v for k, v in options.items() if k not in s.base_options
        } or None
    rerun = [plan.train_item(s, label, tag="rerun", **chosen) for label in ("S/16", "L/16")]
    r.plan_phase("rerun", rerun, deadline=r.deadline)
