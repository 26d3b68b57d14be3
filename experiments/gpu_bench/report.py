"""The benchmark's report: $OUT/summary.md and summary.json from the records so far."""

from __future__ import annotations

import json
import time

from experiments.gpu_bench.plan import GOALS, Settings, num_layers, train_item
from experiments.gpu_bench.runner import Runner


def write_summary(r: Runner, s: Settings) -> None:
    from vit_jax import benchmark

    recs = r.records()
    runs = [x for x in recs if x.get("kind") in ("train", "inference")]
    ok = [x for x in runs if x.get("status") == "ok"]
    env = next((x for x in recs if x.get("device_kind")), {})
    md = [
        f"# GPU benchmark: {env.get('device_kind', '?')}, jax {env.get('jax_version', '?')}",
        "",
        f"Wall {time.time() - r.start:.0f}s of a {s.budget_s:.0f}s budget. bf16 compute, float32 "
        "master weights (train; inference: bf16 weights), Adam (the paper's recipe), dropout 0, "
        "synthetic device-resident data, one device. MFU against the measured bf16 matmul peak"
        f" ({r.peak_tflops or 0:.0f} TFLOP/s at n={r.peak_n}). XLA_FLAGS: "
        f"`{env.get('xla_flags') or '(none)'}`; later phases reuse earlier autotuning, so their "
        "compile times are warm.",
        "",
        "## Goals (training)",
        "",
        "| model | batch | settings | img/s | TFLOP/s | MFU | timm+compile | × timm | goal | met |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    goals = []
    for label, (model, batch) in s.goals.items():
        cands = [
            x
            for x in ok
            if x["mode"] == "train"
            and x["model"] == model
            and x["batch"] == batch
            and x.get("group") in ("train", "extras", "rerun")
            and (x["label"].startswith(label))
        ]
        _, goal, timm = GOALS[label]
        if not cands:
            md.append(f"| {label} | {batch} | not measured | | | | {timm:,} | | {goal:,} | |")
            continue
        best = max(cands, key=lambda x: x["images_per_sec"])
        ips = best["images_per_sec"]
        goals.append({"model": label, "best": best, "goal": goal, "timm_compile": timm})
        md.append(
            f"| {label} | {batch} | {_settings(best)} | {ips:,.0f} | {best['tflops']:.0f} "
            f"| {best.get('mfu', 0):.1%} | {timm:,} | {ips / timm:.2f} | {goal:,} "
            f"| {'yes' if ips >= goal else 'no'} |"
        )
    md += [
        "",
        "## B/16 ablations (training, batch as the goal)",
        "",
        "| run | img/s | vs guess | compile s | program GiB | cuDNN in HLO |",
        "|---|---|---|---|---|---|",
    ]
    model, batch = s.goals["B/16"]
    b16 = [x for x in runs if x["mode"] == "train" and x["model"] == model and x["batch"] == batch]
    guess_label = train_item(s, "B/16")["label"]
    guess = next((x for x in b16 if x.get("status") == "ok" and x["label"] == guess_label), None)
    for x in b16:
        if x.get("status") != "ok":
            md.append(
                f"| {x.get('label')} | {x.get('status')}: {x.get('error', '')[:70]} | | | | |"
            )
            continue
        rel = f"{x['images_per_sec'] / guess['images_per_sec']:.3f}" if guess else ""
        gib = (x.get("program_bytes") or 0) / 2**30
        md.append(
            f"| {x['label']} | {x['images_per_sec']:,.0f} | {rel} | {x['compile_s']:.1f} "
            f"| {gib:.1f} | {x.get('cudnn_attention_in_hlo')} |"
        )
    md += [
        "",
        "## Inference (img/s, 224², bf16, layer scan)",
        "",
        "| model | " + " | ".join(f"b{b}" for b in s.inference_batches) + " |",
        "|---|" + "---|" * len(s.inference_batches),
    ]
    table = {}
    for m in s.inference_models:
        row = []
        for b in s.inference_batches:
            x = next(
                (
                    x
                    for x in ok
                    if x["mode"] == "inference"
                    and x["model"] == m
                    and x["batch"] == b
                    and x.get("group") == "inference"
                ),
                None,
            )
            row.append(f"{x['images_per_sec']:,.0f}" if x else "")
            table[f"{m} b{b}"] = x["images_per_sec"] if x else None
        md.append(f"| {m} | " + " | ".join(row) + " |")
    md += [
        "",
        "## Attention core, one layer, forward + backward (ms)",
        "",
        "| model | variant | length | ms | × layers |",
        "|---|---|---|---|---|",
    ]
    for x in recs:
        if x.get("kind") == "attention":
            ok_ = x.get("status") == "ok"
            ms = f"{x['ms']:.3f}" if ok_ else x.get("error", "")[:60]
            total = f"{x['ms'] * num_layers(x['model']):.1f}" if ok_ else ""
            md.append(
                f"| {x['model']} b{x['batch']} | {x['variant']} | {x['length']} | {ms} | {total} |"
            )
    md += [
        "",
        "## Numerics",
        "",
        benchmark.check_table(recs),
        "",
        "## Every run",
        "",
        benchmark.table(runs),
        "",
        "Phases: "
        + ", ".join(
            f"{p['phase']} ({p.get('status') or 'rc ' + str(p.get('rc'))}, "
            f"{p.get('seconds', 0):.0f}s)"
            for p in r.phases
        ),
        "",
    ]
    (r.out / "summary.md").write_text("\n".join(md), encoding="utf-8")
    summary = {
        "device_kind": env.get("device_kind"),
        "jax_version": env.get("jax_version"),
        "peak_tflops": r.peak_tflops,
        "goals": [
            {
                "model": g["model"],
                "images_per_sec": g["best"]["images_per_sec"],
                "mfu": g["best"].get("mfu"),
                "settings": _settings(g["best"]),
                "goal": g["goal"],
                "timm_compile": g["timm_compile"],
            }
            for g in goals
        ],
        "inference": table,
        "checks": [x for x in recs if x.get("kind") == "check"],
        "phases": r.phases,
        "elapsed_s": time.time() - r.start,
        "budget_s": s.budget_s,
    }
    (r.out / "summary.json").write_text(json.dumps(summary, indent=1, default=str), "utf-8")


def _settings(x: dict) -> str:
    parts = [x.get("attention", ""), "scan" if x.get("scan") else "unrolled"]
    if x.get("remat") not in (None, "none"):
        parts.append(f"remat={x['remat']}")
    if x.get("pad_multiple"):
        parts.append(f"pad={x['pad_multiple']}")
    opts = {
        k: v
        for k, v in (x.get("xla_options") or {}).items()
        if k != "xla_backend_optimization_level"
    }
    if opts:
        parts.append(",".join(f"{k.replace('xla_gpu_', '')}={v}" for k, v in opts.items()))
    return " ".join(parts)
