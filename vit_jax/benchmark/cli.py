"""The command line: `python -m vit_jax.benchmark --help`."""

from __future__ import annotations

import argparse
import json

import jax

import vit_jax.benchmark as _package
from vit_jax import paths
from vit_jax.benchmark import plan
from vit_jax.benchmark.attention import attention_timings
from vit_jax.benchmark.config import MODES
from vit_jax.benchmark.numerics import attention_numerics
from vit_jax.benchmark.report import check_table, table
from vit_jax.benchmark.runner import append_record, run_many
from vit_jax.benchmark.runs import environment
from vit_jax.benchmark.timing import default_peak_n, matmul_peak

EXTRA_MODES = ("peak", "check", "attention")


def _bools(text: str) -> list[bool]:
    table_ = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
    try:
        return [table_[t.strip().lower()] for t in text.split(",")]
    except KeyError:
        raise argparse.ArgumentTypeError(f"expected true/false values, got {text!r}") from None


def _strs(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _ints(text: str) -> list[int]:
    return [int(t) for t in _strs(text)]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m vit_jax.benchmark",
        description=_package.__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    a = p.add_argument
    a("--model", type=_strs, default=["B/16"], help="model name(s), e.g. B/16 or Ti/16,S/16")
    a("--batch", type=_ints, default=[256], help="global batch size(s)")
    a("--mode", type=_strs, default=["train"], help="train,inference and/or peak,check,attention")
    a("--dtype", default="bfloat16", help="compute dtype (bfloat16 | float32 | float16)")
    a("--param_dtype", default=None, help="default: float32 (train), the compute dtype (inference)")
    a("--image_size", type=int, default=224)
    a("--num_classes", type=int, default=1000)
    a("--scan", type=_bools, nargs="?", const=[True], default=[False], help="layer scan (list)")
    a("--remat", type=_strs, default=["none"], help="none | full | dots | dots_no_batch (list)")
    a("--attention", type=_strs, default=["auto"], help="auto | xla | cudnn (list)")
    a("--pad_multiple", type=int, default=None, help="attention sequence padding multiple")
    a("--dropout", type=float, default=0.0, help="dropout rate (0 as timm's benchmark)")
    a("--optimizer", default="adam", help="adam (pre-training recipe) | sgd")
    a("--steps", type=int, default=10, help="steps per timed repeat")
    a("--repeats", type=int, default=5, help="timed repeats (the median is reported)")
    a("--warmup", type=int, default=3, help="untimed steps after compiling")
    a("--target_s", type=float, default=0.0, help=">0: choose steps so a repeat lasts ~this")
    a("--compile_only", action="store_true", help="compile and report compile time only")
    a("--xla_options", type=json.loads, default=None, help='JSON, e.g. {"xla_gpu_...": true}')
    a("--matmul_precision", default=None, help="jax_default_matmul_precision (f32 runs)")
    a("--peak_n", type=int, default=None, help="matmul size for the peak (8192 GPU, 1024 CPU)")
    a("--peak_tflops", type=float, default=None, help="use this peak for --dtype, skip timing")
    a("--check_layers", type=int, default=2, help="--mode=check: layers kept (0 = all)")
    a("--check_batch", type=int, default=4, help="--mode=check: batch size")
    a("--plan", default=None, help="JSON list of run settings (BenchConfig fields) to run")
    a("--deadline", type=float, default=None, help="unix time: skip runs that would not fit")
    a("--label", default="", help="name of the run in tables")
    a("--rounds", type=int, default=1, help="run the whole sweep this many times, interleaved")
    a("--group", default="", help="tag stored in every record (the GPU sweep's phases)")
    a("--json", default=None, help="write results here (one JSON object per line)")
    a("--append", action="store_true", help="append to --json instead of starting it afresh")
    return p.parse_args(argv)


def _check_record(r: dict, args: argparse.Namespace, env: dict) -> None:
    append_record(args.json, {**r, **env, "group": args.group})
    if r["status"] == "ok":
        text = f"features {r['features_rel_err']:.1e}, grads {r['grads_rel_err']:.1e} vs f32"
    else:
        text = r["error"][:160]
    print(f"[bench] check {r['variant']}: ok={r['ok']}; {text}", flush=True)


def _attention(args: argparse.Namespace, env: dict) -> None:
    from vit_jax import models

    for model in args.model:
        spec = models.spec(model)
        tokens = (args.image_size // spec.patch_size) ** 2 + (spec.classifier == "token")

        def report(r, model=model):
            append_record(args.json, {**r, **env, "model": model, "group": args.group})
            text = f"{r['ms']:.3f} ms" if r["status"] == "ok" else r["error"][:160]
            print(f"[bench] attention {model} {r['variant']} (fwd+bwd): {text}", flush=True)

        attention_timings(
            batch=args.batch[0],
            tokens=tokens,
            heads=spec.num_heads,
            head_dim=spec.hidden_size // spec.num_heads,
            dtype=args.dtype,
            on_record=report,
        )


def main(argv=None) -> int:
    args = parse_args(argv)
    unknown = [m for m in args.mode if m not in (*MODES, *EXTRA_MODES)]
    if unknown:
        raise SystemExit(f"--mode: unknown {unknown}; use {(*MODES, *EXTRA_MODES)}")
    if args.matmul_precision:
        jax.config.update("jax_default_matmul_precision", args.matmul_precision)
    if args.json and not args.append:
        paths.write_text(args.json, "")  # Records are appended as they finish.
    env = environment()
    print(f"[bench] {env['backend']} / {env['device_kind']} / jax {env['jax_version']}", flush=True)
    peaks, failed = {}, False
    if args.peak_tflops:
        peaks[args.dtype] = {"kind": "peak", "dtype": args.dtype, "n": args.peak_n or 0}
        peaks[args.dtype]["tflops"] = args.peak_tflops
    if "peak" in args.mode:
        peaks[args.dtype] = matmul_peak(dtype=args.dtype, n=args.peak_n or default_peak_n())
        append_record(args.json, {**peaks[args.dtype], **env, "group": args.group})
        print(
            f"[bench] peak {args.dtype} n={peaks[args.dtype]['n']}: "
            f"{peaks[args.dtype]['tflops']:.4g} TFLOP/s",
            flush=True,
        )
    if "check" in args.mode:
        records = []
        for model in args.model:
            records += attention_numerics(
                model=model,
                batch=args.check_batch,
                image_size=args.image_size,
                num_layers=args.check_layers or None,
                on_record=lambda r: _check_record(r, args, env),
            )
        print(check_table(records), flush=True)
        failed |= not all(r["ok"] for r in records if r["attention"] == "xla")
    if "attention" in args.mode:
        _attention(args, env)
    if args.plan:
        loaded = json.loads(paths.read_text(args.plan))
        items = [{**item, "group": item.get("group") or args.group} for item in loaded]
    else:
        items = plan.from_args(args) * args.rounds  # Round-robin: drifting load hits all alike.
    if items:
        results = run_many(
            items, peaks=peaks, peak_n=args.peak_n, json_path=args.json, deadline=args.deadline
        )
        print(table(results), flush=True)
        failed |= any(r["status"] == "error" for r in results)
    return int(failed)
