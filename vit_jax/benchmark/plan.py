"""The one plan: what a benchmark run measures, as a list of items (`BenchConfig` fields plus
time estimates). The CLI's list flags give a cartesian product (`from_args`); the GPU sweep's
phases give the goals, ablations, inference table and XLA option sets (`Settings`, `train_item`,
`inference_item`), with the estimates that let one runner keep them inside a deadline."""

from __future__ import annotations

import dataclasses
import itertools
import statistics

from vit_jax.benchmark.config import MODES

# model: (batch, goal img/s, timm + torch.compile img/s), one H200, bf16.
GOALS = {"B/16": (256, 4500, 3532), "S/16": (512, 11000, 9212), "L/16": (128, 1400, 1157)}
INFERENCE_MODELS = ("Ti/16", "S/16", "B/16", "L/16")
INFERENCE_BATCHES = (64, 256, 1024)
# Per-compile XLA options tried on B/16 (extras). Defaults otherwise: on one GPU the latency-hiding
# scheduler has no collectives to hide, command buffers (CUDA graphs) are on by default, and
# jax_default_matmul_precision only affects float32 matmuls (none here: bf16 compute).
XLA_OPTION_SETS = {
    "cublaslt": {"xla_gpu_enable_cublaslt": True},  # bias / GELU epilogues fused into the GEMMs
    "no-cmdbuf": {"xla_gpu_enable_command_buffer": ""},  # CUDA graphs off
    "lhs": {"xla_gpu_enable_latency_hiding_scheduler": True},
    "no-triton-gemm": {"xla_gpu_enable_triton_gemm": False},  # cuBLAS for every GEMM
}
RERUN_GAIN = 1.02  # Rerun S/16 and L/16 with the B/16 winner only beyond timing noise.
SETTING_FLAGS = ("model", "batch", "mode", "scan", "remat", "attention")
SHARED_FLAGS = (
    "dtype", "param_dtype", "image_size", "num_classes", "pad_multiple", "dropout", "optimizer",
    "steps", "repeats", "warmup", "target_s", "compile_only", "xla_options", "label", "group",
)  # fmt: skip


def from_args(args) -> list[dict]:
    """The cartesian product of the CLI's list-valued flags, as plan items (train / inference)."""
    shared = {name: getattr(args, name) for name in SHARED_FLAGS}
    modes = [m for m in args.mode if m in MODES]
    lists = (args.model, args.batch, modes, args.scan, args.remat, args.attention)
    return [
        {**dict(zip(SETTING_FLAGS, values, strict=True)), **shared}
        for values in itertools.product(*lists)
    ]


@dataclasses.dataclass(frozen=True)
class Settings:
    """What one GPU sweep measures; `smoke` swaps in tiny models for a CPU dry run."""

    goals: dict  # label model -> (model actually run, batch)
    image_size: int
    inference_models: tuple
    inference_batches: tuple
    check: dict
    train_timing: dict
    inference_timing: dict
    budget_s: float
    base_options: dict | None = None


def settings(*, smoke: bool, budget_s: float | None) -> Settings:
    if not smoke:
        return Settings(
            goals={m: (m, b) for m, (b, _, _) in GOALS.items()},
            image_size=224,
            inference_models=INFERENCE_MODELS,
            inference_batches=INFERENCE_BATCHES,
            check=dict(model="B/16", batch=4, image_size=224, check_layers=2),
            train_timing=dict(steps=10, repeats=5, warmup=3),
            inference_timing=dict(steps=5, repeats=3, warmup=2, target_s=0.25),
            budget_s=budget_s or 460,
        )
    # CPU dry run: every phase and decision, tiny models, fast-compiling XLA (-O0).
    return Settings(
        goals={"B/16": ("mu/16", 4), "S/16": ("mu/16", 8), "L/16": ("mu/16", 2)},
        image_size=32,
        inference_models=("mu/16",),
        inference_batches=(2, 4),
        check=dict(model="mu/16", batch=2, image_size=32, check_layers=0),
        train_timing=dict(steps=2, repeats=2, warmup=1),
        inference_timing=dict(steps=2, repeats=2, warmup=1, target_s=0.05),
        budget_s=budget_s or 900,
        base_options={"xla_backend_optimization_level": 0},
    )


def train_item(s: Settings, label: str, *, tag: str = "", **settings_) -> dict:
    model, batch = s.goals[label]
    name = f"{label} b{batch}" + (f" {tag}" if tag else "")
    if model != label:
        name += f" [{model}]"
    return dict(
        model=model, batch=batch, mode="train", dtype="bfloat16", image_size=s.image_size,
        label=name, **s.train_timing, **settings_,
    )  # fmt: skip


def inference_item(s: Settings, model: str, batch: int, *, attention, scan, label) -> dict:
    return dict(
        model=model, batch=batch, mode="inference", dtype="bfloat16", image_size=s.image_size,
        attention=attention, scan=scan, label=label, **s.inference_timing,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Estimates (seconds). Compile guesses for a cold H200 compile, rescaled by measurements.


def num_layers(model: str) -> int:
    return {"mu": 1, "Ti": 12, "S": 12, "M": 12, "B": 12, "L": 24, "H": 32}[model.split("/")[0]]


def compile_guess(model: str, mode: str, scan: bool) -> float:
    layers = num_layers(model)
    if mode == "train":
        return 12 + (0.3 if scan else 2.5) * layers
    return 5 + (0.1 if scan else 0.8) * layers


def setup_guess(model: str, mode: str) -> float:
    """Building the model, the jitted init of params (and optimizer state), the synthetic batch."""
    return 3 + 0.2 * num_layers(model) if mode == "train" else 2.0


def run_guess(item: dict, *, peak_tflops: float, gflops: dict) -> float:
    """Warm-up + timed steps at 35% of the matmul peak (the target_s runs: their repeats)."""
    step_s = item["batch"] * gflops[(item["model"], item["mode"])] / (0.35 * peak_tflops * 1e3)
    t = item.get("warmup", 0) * step_s + 2 * step_s + 1.0  # + calibration / setup
    if item.get("target_s"):
        return t + item["repeats"] * max(item["target_s"], step_s)
    return t + item["steps"] * item["repeats"] * step_s


def compile_scale(records: list[dict]) -> float:
    """Median measured ÷ estimated compile time of the records so far (1 before any), clamped
    to [0.3, 4]: the one correction both the phase planner and the in-process runner apply."""
    ratios = [
        r["compile_s"] / r["est_compile_s"]
        for r in records
        if r.get("compile_s") and r.get("est_compile_s")
    ]
    return min(max(statistics.median(ratios), 0.3), 4.0) if ratios else 1.0


def gflops_per_image(s: Settings) -> dict:
    """GFLOP per image for every (model, mode) the plan can run (for run-time estimates)."""
    from vit_jax import flops  # Deferred: pulls in the model registry.

    out = {}
    for m in {m for m, _ in s.goals.values()} | set(s.inference_models):
        macs = flops.macs(m, image_size=s.image_size)
        out[(m, "train")] = 6 * macs / 1e9
        out[(m, "inference")] = 2 * macs / 1e9
    return out


# ---------------------------------------------------------------------------------------------
# Decisions between phases, from the records so far.


def check_crashed(phases: list[dict]) -> bool:
    """The check process died on its own (not cut off by its time cap): likely in cuDNN."""
    check = next((p for p in phases if p["phase"] == "check"), None)
    return bool(check and check.get("rc") not in (0, 1, None) and not check.get("timed_out"))


def check_ok(checks: list[dict], attention: str, pad: int) -> bool:
    return any(
        c.get("attention") == attention and c.get("pad_multiple") == pad and c.get("ok")
        for c in checks
    )


def b16_runs(records: list[dict], s: Settings, *, groups=None) -> list[dict]:
    """The B/16 training runs at the goal's batch (in the given phases; None: all)."""
    model, batch = s.goals["B/16"]
    return [
        x
        for x in records
        if x.get("kind") == "train" and x.get("model") == model and x.get("batch") == batch
        and (groups is None or x.get("group") in groups)
    ]  # fmt: skip


def b16_winner(records: list[dict], s: Settings, guess_label: str) -> dict | None:
    """The fastest B/16 training run (train + extras phases) if it beats the guess by > 2%."""
    runs = b16_runs(records, s, groups=("train", "extras"))
    runs = [x for x in runs if x.get("status") == "ok"]
    guess = next((x for x in runs if x.get("label") == guess_label), None)
    if guess is None:
        return None
    best = max(runs, key=lambda x: x["images_per_sec"])
    return best if best["images_per_sec"] > RERUN_GAIN * guess["images_per_sec"] else None
