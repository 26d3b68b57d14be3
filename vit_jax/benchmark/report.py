"""Markdown tables of benchmark and numerics records."""

from __future__ import annotations

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
