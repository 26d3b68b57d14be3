"""The one report: markdown tables of throughput and numerics records (the CLI's output), the
log line of a run, and a sweep's summary.md / summary.json (rewritten after every phase, so a
sweep cut off still leaves what finished)."""

from __future__ import annotations

import json
import pathlib

from vit_jax.benchmark import plan
from vit_jax.benchmark.config import MODES


def table(records: list[dict]) -> str:
    """A markdown table of throughput records (ok, compiled, skipped and failed alike)."""
    head = (
        "| run | mode | batch | dtype | attention | scan | remat | img/s | TFLOP/s | MFU "
        "| compile s | program GiB | status |"
    )
    lines = [head, "|" + "---|" * 13]
    for r in records:
        if r.get("kind") not in MODES:
            continue
        ok = r.get("status") == "ok"
        gib = r.get("program_bytes")
        lines.append(
            "| "
            + " | ".join(
                [
                    r.get("label") or r.get("model", ""),
                    r.get("mode", ""),
                    str(r.get("batch", "")),
                    r.get("dtype", ""),
                    str(r.get("attention", "")),
                    str(r.get("scan", "")),
                    str(r.get("remat", "")),
                    rate(r["images_per_sec"]) if ok else "",
                    f"{r['tflops']:.3g}" if ok else "",
                    f"{r['mfu']:.1%}" if ok and r.get("mfu") is not None else "",
                    f"{r['compile_s']:.1f}" if r.get("compile_s") is not None else "",
                    f"{gib / 2**30:.2f}" if gib else "",
                    _status(r),
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def rate(x: float) -> str:
    """1,234 for GPU-sized rates; 3 significant digits for the CPU's small ones."""
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def _status(r: dict) -> str:
    if r.get("status") == "ok":
        return "ok"
    if r.get("status") == "compiled":
        return f"compiled ({r.get('compile_cpu_s', 0):.1f} CPU-s)"
    return f"{r.get('status')}: {r.get('error', '')[:80]}"


def check_table(records: list[dict]) -> str:
    lines = [
        "| variant | dtype | attention | pad | features err | grads err | vs XLA (f / g) "
        "| cuDNN in HLO | ok |",
        "|" + "---|" * 9,
    ]
    for r in records:
        if r.get("kind") != "check":
            continue
        if r.get("status") != "ok":
            lines.append(
                f"| {r['variant']} | {r['dtype']} | {r['attention']} | {r['pad_multiple']} "
                f"| | | | | error: {r.get('error', '')[:80]} |"
            )
            continue
        vs = (
            f"{r['features_rel_err_vs_xla']:.1e} / {r['grads_rel_err_vs_xla']:.1e}"
            if "features_rel_err_vs_xla" in r
            else ""
        )
        lines.append(
            f"| {r['variant']} | {r['dtype']} | {r['attention']} | {r['pad_multiple']} "
            f"| {r['features_rel_err']:.1e} | {r['grads_rel_err']:.1e} | {vs} "
            f"| {r['cudnn_attention_in_hlo']} | {r['ok']} |"
        )
    return "\n".join(lines)


def summarize(r: dict) -> str:
    """One line for the log: a run's throughput, its compile time, or why it did not run."""
    if r.get("status") == "ok":
        mfu = f", MFU {r['mfu']:.1%}" if r.get("mfu") is not None else ""
        return (
            f"{rate(r['images_per_sec'])} img/s, {r['tflops']:.3g} TFLOP/s{mfu}, "
            f"compile {r['compile_s']:.1f}s"
        )
    if r.get("status") == "compiled":
        return f"compiled in {r['compile_s']:.1f}s ({r['compile_cpu_s']:.1f} CPU-s)"
    return f"{r.get('status')}: {r.get('error', '')}"


# ---------------------------------------------------------------------------------------------
# A sweep's summary.


def write_summary(
    out: pathlib.Path, s: plan.Settings, records: list[dict], *, peak: tuple, phases: list,
    elapsed_s: float,
) -> None:  # fmt: skip
    """summary.md and summary.json in `out`; `peak` is (TFLOP/s, matmul n) of the sweep."""
    runs = [x for x in records if x.get("kind") in MODES]
    env = next((x for x in records if x.get("device_kind")), {})
    goal_lines, goals = _goals(runs, s)
    inference_lines, inference = _inference(runs, s)
    md = [
        *_header(env, s, peak=peak, elapsed_s=elapsed_s), *goal_lines, *_ablations(runs, s),
        *inference_lines, *_attention(records),
        "", "## Numerics", "", check_table(records), "", "## Every run", "", table(runs), "",
        "Phases: " + ", ".join(map(_phase, phases)), "",
    ]  # fmt: skip
    (out / "summary.md").write_text("\n".join(md), encoding="utf-8")
    summary = {
        "device_kind": env.get("device_kind"),
        "jax_version": env.get("jax_version"),
        "peak_tflops": peak[0],
        "goals": goals,
        "inference": inference,
        "checks": [x for x in records if x.get("kind") == "check"],
        "phases": phases,
        "elapsed_s": elapsed_s,
        "budget_s": s.budget_s,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str), "utf-8")


def _header(env: dict, s: plan.Settings, *, peak: tuple, elapsed_s: float) -> list[str]:
    return [
        f"# GPU benchmark: {env.get('device_kind', '?')}, jax {env.get('jax_version', '?')}",
        "",
        f"Wall {elapsed_s:.0f}s of a {s.budget_s:.0f}s budget. bf16 compute, float32 "
        "master weights (train; inference: bf16 weights), Adam (the paper's recipe), dropout 0, "
        "synthetic device-resident data, one device. MFU against the measured bf16 matmul peak"
        f" ({peak[0] or 0:.0f} TFLOP/s at n={peak[1]}). XLA_FLAGS: "
        f"`{env.get('xla_flags') or '(none)'}`; later phases reuse earlier autotuning, so their "
        "compile times are warm.",
        "",
        "## Goals (training)",
        "",
        "| model | batch | settings | img/s | TFLOP/s | MFU | timm+compile | × timm | goal | met |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]


def _goals(runs: list[dict], s: plan.Settings) -> tuple[list[str], list[dict]]:
    """The goals table's rows: each model's best training run in any phase that trains it."""
    lines, goals = [], []
    for label, (model, batch) in s.goals.items():
        _, goal, timm = plan.GOALS[label]
        cands = [
            x for x in runs
            if x.get("status") == "ok" and x["mode"] == "train" and x["model"] == model
            and x["batch"] == batch and x.get("group") in ("train", "extras", "rerun")
            and x["label"].startswith(label)
        ]  # fmt: skip
        if not cands:
            lines.append(f"| {label} | {batch} | not measured | | | | {timm:,} | | {goal:,} | |")
            continue
        best = max(cands, key=lambda x: x["images_per_sec"])
        ips = best["images_per_sec"]
        lines.append(
            f"| {label} | {batch} | {_settings(best)} | {ips:,.0f} | {best['tflops']:.0f} "
            f"| {best.get('mfu', 0):.1%} | {timm:,} | {ips / timm:.2f} | {goal:,} "
            f"| {'yes' if ips >= goal else 'no'} |"
        )
        goals.append(
            {"model": label, "images_per_sec": ips, "mfu": best.get("mfu"),
             "settings": _settings(best), "goal": goal, "timm_compile": timm}
        )  # fmt: skip
    return lines, goals


def _ablations(runs: list[dict], s: plan.Settings) -> list[str]:
    """Every B/16 training run at the goal's batch, relative to the expected-best guess."""
    lines = [
        "",
        "## B/16 ablations (training, batch as the goal)",
        "",
        "| run | img/s | vs guess | compile s | program GiB | cuDNN in HLO |",
        "|---|---|---|---|---|---|",
    ]
    b16 = plan.b16_runs(runs, s)
    guess_label = plan.train_item(s, "B/16")["label"]
    guess = next((x for x in b16 if x.get("status") == "ok" and x["label"] == guess_label), None)
    for x in b16:
        if x.get("status") != "ok":
            error = f"{x.get('status')}: {x.get('error', '')[:70]}"
            lines.append(f"| {x.get('label')} | {error} | | | | |")
            continue
        rel = f"{x['images_per_sec'] / guess['images_per_sec']:.3f}" if guess else ""
        gib = (x.get("program_bytes") or 0) / 2**30
        lines.append(
            f"| {x['label']} | {x['images_per_sec']:,.0f} | {rel} | {x['compile_s']:.1f} "
            f"| {gib:.1f} | {x.get('cudnn_attention_in_hlo')} |"
        )
    return lines


def _inference(runs: list[dict], s: plan.Settings) -> tuple[list[str], dict]:
    """The inference table (model × batch, the inference phase's runs) and its img/s by cell."""
    batches = s.inference_batches
    lines = [
        "",
        "## Inference (img/s, 224², bf16, layer scan)",
        "",
        "| model | " + " | ".join(f"b{b}" for b in batches) + " |",
        "|---|" + "---|" * len(batches),
    ]
    cells = {
        (x["model"], x["batch"]): x["images_per_sec"]
        for x in runs
        if x.get("status") == "ok" and x["mode"] == "inference" and x.get("group") == "inference"
    }
    inference = {}
    for m in s.inference_models:
        row = [cells.get((m, b)) for b in batches]
        inference.update({f"{m} b{b}": ips for b, ips in zip(batches, row, strict=True)})
        lines.append(f"| {m} | " + " | ".join(f"{x:,.0f}" if x else "" for x in row) + " |")
    return lines, inference


def _attention(records: list[dict]) -> list[str]:
    lines = [
        "",
        "## Attention core, one layer, forward + backward (ms)",
        "",
        "| model | variant | length | ms | × layers |",
        "|---|---|---|---|---|",
    ]
    for x in (x for x in records if x.get("kind") == "attention"):
        ok = x.get("status") == "ok"
        ms = f"{x['ms']:.3f}" if ok else x.get("error", "")[:60]
        total = f"{x['ms'] * plan.num_layers(x['model']):.1f}" if ok else ""
        run = f"{x['model']} b{x['batch']} | {x['variant']} | {x['length']}"
        lines.append(f"| {run} | {ms} | {total} |")
    return lines


def _phase(p: dict) -> str:
    status = p.get("status") or f"rc {p.get('rc')}"
    return f"{p['phase']} ({status}, {p.get('seconds', 0):.0f}s)"


def _settings(x: dict) -> str:
    """A run's settings in a few words: attention, layers, remat, padding, XLA options."""
    parts = [x.get("attention", ""), "scan" if x.get("scan") else "unrolled"]
    if x.get("remat") not in (None, "none"):
        parts.append(f"remat={x['remat']}")
    if x.get("pad_multiple"):
        parts.append(f"pad={x['pad_multiple']}")
    opts = (x.get("xla_options") or {}).items()
    opts = {k: v for k, v in opts if k != "xla_backend_optimization_level"}
    if opts:
        parts.append(",".join(f"{k.replace('xla_gpu_', '')}={v}" for k, v in opts.items()))
    return " ".join(parts)
