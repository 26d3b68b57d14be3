"""The one benchmark run for the GPU machine: `bash experiments/gpu_bench.sh` from the repo root.

Phases, in priority order, each one `python -m vit_jax.benchmark` process (a crash loses one
phase, not the run; runs inside a phase share XLA's in-process autotuning results):
  check      bf16 matmul peak (8192³), and attention numerics on the B/16 geometry (197 tokens,
             2 layers): cuDNN vs XLA, padded vs unpadded, each against a float32 reference.
  train      the goals — B/16 b256, S/16 b512, L/16 b128 — with the expected-best settings
             (cuDNN attention if the check passed, unrolled layers, no remat), then the B/16
             ablations: layer scan, XLA attention, remat 'dots'.
  inference  img/s at batch 64 / 256 / 1024 for Ti, S, B, L at 224 (layer scan: fast compiles).
  extras     B/16 with XLA option sets (cuBLASLt, command buffers off, latency-hiding scheduler,
             Triton GEMMs off), cuDNN with even (198) instead of 64-multiple padding, B/16
             inference unrolled.
  rerun      S/16 and L/16 again with the B/16 winner, if an ablation or extra beat the guess.
Each run is skipped when its estimated compile + run time would overrun the budget (estimates
rescaled by the compiles measured so far); the inference phase's estimate is held back from the
train phase. Records stream to $OUT/results.jsonl as runs finish; $OUT/summary.md and
summary.json are rewritten after every phase, so a run cut off still leaves what finished.

Flags: --smoke (tiny models on CPU, end to end); --budget=SECONDS (default 460, or BENCH_BUDGET_S);
--phases=train,inference (a subset, e.g. to finish what a first run had to skip).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
# model: (batch, goal img/s, timm + torch.compile img/s), one H200, bf16 (the issue's numbers).
GOALS = {"B/16": (256, 4500, 3532), "S/16": (512, 11000, 9212), "L/16": (128, 1400, 1157)}
REFERENCE = {"B/16": {"original vit_jax": 1341, "timm eager": 2759}}
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
GRACE_S = 15  # After the deadline, a phase process gets this long before it is killed.
CHECK_CAP_S = 150  # The check phase may not take longer than this.
RERUN_GAIN = 1.02  # Rerun S/16 and L/16 with the B/16 winner only beyond timing noise.
PHASES = ("check", "train", "inference", "extras", "rerun")


@dataclasses.dataclass(frozen=True)
class Settings:
    """What one run of the script measures; `smoke` swaps in tiny models for a CPU dry run."""

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


# ---------------------------------------------------------------------------------------------
# Estimates (seconds). Compile guesses for a cold H200 compile, rescaled by measurements.


def _layers(model: str) -> int:
    return {"mu": 1, "Ti": 12, "S": 12, "M": 12, "B": 12, "L": 24, "H": 32}[model.split("/")[0]]


def compile_guess(model: str, mode: str, scan: bool) -> float:
    layers = _layers(model)
    if mode == "train":
        return 12 + (0.3 if scan else 2.5) * layers
    return 5 + (0.1 if scan else 0.8) * layers


def setup_guess(model: str, mode: str) -> float:
    """Building the model, the jitted init of params (and optimizer state), the synthetic batch."""
    return 3 + 0.2 * _layers(model) if mode == "train" else 2.0


def run_guess(item: dict, *, peak_tflops: float, gflops: dict) -> float:
    """Warm-up + timed steps at 35% of the matmul peak (the target_s runs: their repeats)."""
    step_s = item["batch"] * gflops[(item["model"], item["mode"])] / (0.35 * peak_tflops * 1e3)
    t = item.get("warmup", 0) * step_s + 2 * step_s + 1.0  # + calibration / setup
    if item.get("target_s"):
        return t + item["repeats"] * max(item["target_s"], step_s)
    return t + item["steps"] * item["repeats"] * step_s


# ---------------------------------------------------------------------------------------------
# Running phases.


class Runner:
    def __init__(self, out: pathlib.Path, s: Settings):
        self.out, self.s = out, s
        self.results = out / "results.jsonl"
        self.log_path = out / "log.txt"
        self.start = time.time()
        self.deadline = self.start + s.budget_s
        self.peak_tflops = None
        self.peak_n = None
        self.gflops: dict = {}
        self.phases: list[dict] = []
        self.dry = False  # --dry_run: print each phase's plan and estimates, run nothing.
        self.dry_total = 0.0

    def say(self, text: str) -> None:
        line = f"[{time.time() - self.start:6.1f}s] {text}"
        print(line, flush=True)
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write(line + "\n")

    def records(self) -> list[dict]:
        if not self.results.exists():
            return []
        out = []
        for line in self.results.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                pass  # A line cut off by a kill.
        return out

    def scale(self) -> float:
        """Median measured / guessed compile time so far (1 before any compile), in [0.3, 4]."""
        ratios = [
            r["compile_s"] / r["est_compile_s"]
            for r in self.records()
            if r.get("compile_s") and r.get("est_compile_s")
        ]
        return min(max(statistics.median(ratios), 0.3), 4.0) if ratios else 1.0

    def estimate(self, item: dict) -> tuple[float, float]:
        compile_s = compile_guess(item["model"], item["mode"], item.get("scan", False))
        if self.s.base_options is not None:  # CPU smoke: no guesses worth making.
            return 0.0, 0.0
        run_s = run_guess(item, peak_tflops=self.peak_tflops or 500, gflops=self.gflops)
        return compile_s, run_s + setup_guess(item["model"], item["mode"])

    def phase(self, name: str, args: list[str], *, deadline: float) -> int | None:
        """Runs one `vit_jax.benchmark` process; its stdout is relayed, stderr goes to log.txt."""
        left = deadline - time.time()
        if left < 20:
            self.say(f"phase {name}: skipped ({left:.0f}s left)")
            self.phases.append({"phase": name, "status": "skipped", "left_s": left})
            return None
        cmd = [sys.executable, "-m", "vit_jax.benchmark", *args]
        cmd += [f"--json={self.results}", "--append", f"--group={name}", f"--deadline={deadline}"]
        if self.peak_tflops:
            cmd += [f"--peak_tflops={self.peak_tflops}", f"--peak_n={self.peak_n}"]
        if self.dry:
            self.say(f"phase {name} (dry run): {' '.join(cmd[1:])}")
            return 0
        self.say(f"phase {name}: {left:.0f}s to its deadline")
        t0 = time.time()
        with open(self.log_path, "a", encoding="utf-8") as log:
            log.write(f"\n===== phase {name}: {' '.join(cmd)}\n")
            log.flush()
            offset = log.tell()
            proc = subprocess.Popen(
                cmd,
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                start_new_session=True,  # Own process group: a timeout ends it and its children.
            )
            killed = threading.Event()
            timer = threading.Timer(max(left, 0) + GRACE_S, _terminate, args=(proc, killed))
            timer.start()
            try:
                for line in proc.stdout:
                    line = line.rstrip("\n")
                    if line.startswith("[bench]"):
                        self.say(f"{name}: {line[8:]}")
                    else:
                        log.write(line + "\n")
                        log.flush()
                rc = proc.wait()
            finally:
                timer.cancel()
        self.phases.append(
            {"phase": name, "rc": rc, "seconds": time.time() - t0, "timed_out": killed.is_set()}
        )
        if rc != 0:
            self.say(f"phase {name}: exit code {rc}; last lines of its log:")
            tail = self.log_path.read_text(encoding="utf-8", errors="replace")[offset:]
            for line in tail.strip().splitlines()[-12:]:
                print("    " + line[:300], flush=True)
        return rc

    def plan_phase(self, name: str, items: list[dict], *, deadline: float) -> None:
        """Runs `items` in one process; if it dies mid-item (a hard crash in XLA or cuDNN), the
        item it was on is recorded as crashed and the rest run in a fresh process (cuDNN items
        switched to XLA attention if the crash was in a cuDNN item)."""
        remaining = list(items)
        for _ in range(3):
            rc = self._run_plan(name, remaining, deadline=deadline)
            done = {
                str(x.get("label")).removesuffix(" (fallback)")
                for x in self.records()
                if x.get("group") == name
            }
            missing = [it for it in remaining if it["label"] not in done]
            if rc in (0, None) or not missing or time.time() > deadline - 20:
                return
            crashed, remaining = missing[0], missing[1:]
            self.say(f"{name}: process died (exit {rc}) in {crashed['label']}; going on")
            crash = {"kind": crashed["mode"], **crashed, "group": name, "status": "error"}
            crash["error"] = f"process died (exit {rc}) in this run"
            with open(self.results, "a", encoding="utf-8") as f:
                f.write(json.dumps(crash) + "\n")
            if crashed.get("attention") == "cudnn":
                remaining = [
                    {**it, "attention": "xla", "label": it["label"] + " [xla: cuDNN crashed]"}
                    if it.get("attention") == "cudnn"
                    else it
                    for it in remaining
                ]

    def _run_plan(self, name: str, items: list[dict], *, deadline: float) -> int | None:
        planned = [self._planned(item) for item in items]
        if self.dry:
            for it in planned:
                est = it["est_compile_s"] + it["est_run_s"]
                self.dry_total += est
                fb = " (fallback: scan)" if it.get("fallback") else ""
                self.say(
                    f"  {name}: {it['label']}: compile ~{it['est_compile_s']:.0f}s + run/setup "
                    f"~{it['est_run_s']:.0f}s{fb}; cumulative ~{self.dry_total:.0f}s"
                )
        path = self.out / f".plan_{name}.json"
        path.write_text(json.dumps(planned, indent=1), encoding="utf-8")
        try:
            return self.phase(name, [f"--plan={path}"], deadline=deadline)
        finally:
            path.unlink(missing_ok=True)

    def _planned(self, item: dict) -> dict:
        """The item with estimates (and its fallback's) and the smoke run's base XLA options."""
        scale = self.scale()
        item = dict(item)
        if self.s.base_options:
            item["xla_options"] = {**self.s.base_options, **(item.get("xla_options") or {})}
        compile_s, run_s = self.estimate(item)
        item.update(est_compile_s=compile_s * scale, est_run_s=run_s)
        if item.get("fallback"):
            fb_compile, fb_run = self.estimate({**item, **item["fallback"]})
            item["fallback"] = {
                **item["fallback"],
                "est_compile_s": fb_compile * scale,
                "est_run_s": fb_run,
            }
        return item

    def phase_estimate(self, items: list[dict]) -> float:
        scale, total = self.scale(), 0.0
        for item in items:
            c, r = self.estimate(item)
            total += c * scale + r
        return total + 10  # + process start


def _terminate(proc: subprocess.Popen, killed: threading.Event) -> None:
    """Ends the phase process we started (its own process group), politely first."""
    killed.set()
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# ---------------------------------------------------------------------------------------------
# The plan.


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
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
    want = set(args.phases.split(","))
    if want - set(PHASES):
        p.error(f"--phases: unknown {sorted(want - set(PHASES))}; choose from {PHASES}")
    s = settings(smoke=args.smoke, budget_s=args.budget or None)
    out = pathlib.Path(os.environ.get("OUT") or ROOT / "bench_out").resolve()
    out.mkdir(parents=True, exist_ok=True)
    for name in ("results.jsonl", "log.txt", "summary.md", "summary.json", "env.txt"):
        (out / name).unlink(missing_ok=True)
    r = Runner(out, s)
    r.say(f"gpu_bench: budget {s.budget_s:.0f}s, out {out}, smoke={args.smoke}")
    r.gflops = _gflops(s)
    if args.dry_run:  # Assume an H200 whose check passed.
        r.dry, r.peak_tflops, r.peak_n = True, 800.0, 8192
    else:
        _environment(out, r)

    # 1. check: peak + attention numerics.
    c = s.check
    if "check" in want:
        check_args = [
            "--mode=peak,check,attention",
            f"--model={c['model']}",
            f"--check_batch={c['batch']}",
            f"--batch={s.goals['B/16'][1]}",
            f"--image_size={c['image_size']}",
            f"--check_layers={c['check_layers']}",
            "--dtype=bfloat16",
        ]
        check_deadline = min(r.deadline, time.time() + CHECK_CAP_S)
        r.phase(
            "check", check_args + (["--peak_n=512"] if args.smoke else []), deadline=check_deadline
        )
    recs = r.records()
    peak = next((x for x in recs if x.get("kind") == "peak"), None)
    if peak:
        r.peak_tflops, r.peak_n = peak["tflops"], peak["n"]
    checks = [x for x in recs if x.get("kind") == "check"]
    cudnn_ok = _check_ok(checks, "cudnn", 64) or r.dry
    if not any(x.get("attention") == "cudnn" for x in checks) and not _check_crashed(r):
        # No verdict (check not run, or cut off by its time cap): cuDNN on GPU; a crash in a
        # later phase switches the rest to XLA (Runner.plan_phase).
        cudnn_ok = not args.smoke
    pad2_ok = _check_ok(checks, "cudnn", 2) or r.dry
    attention = ("cudnn" if cudnn_ok else "xla") if args.attention == "auto" else args.attention
    r.say(
        f"check: peak {r.peak_tflops or 0:.0f} TFLOP/s; cuDNN attention ok={cudnn_ok}"
        f" (even padding ok={pad2_ok}) -> {attention}"
    )
    _write_summary(r, s)

    # 2. train: goals, then B/16 ablations; hold back the inference phase's estimate.
    best_guess = dict(attention=attention, scan=False, remat="none")
    goals = [_train_item(s, label, **best_guess) for label in s.goals]
    for item in goals[1:]:  # S/16, L/16: rather a scan number than none when time is short.
        item["fallback"] = {"scan": True}
    b16 = dict(best_guess)
    ablations = [
        _train_item(s, "B/16", tag="scan", **{**b16, "scan": True}),
        *(
            [_train_item(s, "B/16", tag="xla-attention", **{**b16, "attention": "xla"})]
            if attention == "cudnn"
            else []
        ),
        _train_item(s, "B/16", tag="remat=dots", **{**b16, "remat": "dots"}),
    ]
    inference = [
        dict(
            model=m,
            batch=b,
            mode="inference",
            dtype="bfloat16",
            image_size=s.image_size,
            attention=attention,
            scan=True,
            label=f"{m} b{b}",
            **s.inference_timing,
        )
        for m in s.inference_models
        for b in s.inference_batches
    ]
    reserve = min(r.phase_estimate(inference), 0.35 * s.budget_s) if "inference" in want else 0
    if "train" in want:
        r.plan_phase("train", goals + ablations, deadline=r.deadline - reserve)
        _write_summary(r, s)

    # 3. inference table.
    if "inference" in want:
        r.plan_phase("inference", inference, deadline=r.deadline)
        _write_summary(r, s)

    # 4. extras: XLA option sets, even padding, unrolled inference.
    extras = [
        _train_item(s, "B/16", tag=f"+{name}", xla_options=opts, **b16)
        for name, opts in XLA_OPTION_SETS.items()
    ]
    if attention == "cudnn" and pad2_ok:  # Second: what the per-layer padding costs.
        extras.insert(1, _train_item(s, "B/16", tag="cudnn pad 198", pad_multiple=2, **b16))
    if attention == "cudnn" and _check_ok(checks, "cudnn", 1):
        extras.append(_train_item(s, "B/16", tag="cudnn unpadded", pad_multiple=1, **b16))
    m, b = s.goals["B/16"][0], s.inference_batches[1]
    extras.append(
        dict(
            model=m,
            batch=b,
            mode="inference",
            dtype="bfloat16",
            image_size=s.image_size,
            attention=attention,
            scan=False,
            label=f"B/16 b{b} unrolled",
            **s.inference_timing,
        )
    )
    if "extras" in want:
        r.plan_phase("extras", extras, deadline=r.deadline)
        _write_summary(r, s)

    # 5. rerun S/16 and L/16 with the B/16 winner, if it is not the guess.
    winner = _b16_winner(r.records(), s, goals[0]["label"])
    if winner is not None and "rerun" in want:
        r.say(f"rerun: B/16 winner {winner['label']} beats the guess; rerunning S/16 and L/16")
        keys = ("attention", "scan", "remat", "pad_multiple", "xla_options")
        chosen = {k: winner.get(k) for k in keys}
        if s.base_options:
            chosen["xla_options"] = {
                k: v for k, v in (chosen["xla_options"] or {}).items() if k not in s.base_options
            } or None
        rerun = [_train_item(s, label, tag="rerun", **chosen) for label in ("S/16", "L/16")]
        r.plan_phase("rerun", rerun, deadline=r.deadline)
    _write_summary(r, s)
    r.say(f"done in {time.time() - r.start:.0f}s; files in {out}")
    summary = (out / "summary.md").read_text(encoding="utf-8")
    print(summary.split("## Every run")[0], flush=True)  # The full table is in summary.md.
    return 0


def _train_item(s: Settings, label: str, *, tag: str = "", **settings_) -> dict:
    model, batch = s.goals[label]
    name = f"{label} b{batch}" + (f" {tag}" if tag else "")
    if model != label:
        name += f" [{model}]"
    return dict(
        model=model,
        batch=batch,
        mode="train",
        dtype="bfloat16",
        image_size=s.image_size,
        label=name,
        **s.train_timing,
        **settings_,
    )


def _check_crashed(r: Runner) -> bool:
    """The check process died on its own (not cut off by its time cap): likely in cuDNN."""
    check = next((p for p in r.phases if p["phase"] == "check"), None)
    return bool(check and check.get("rc") not in (0, 1, None) and not check.get("timed_out"))


def _check_ok(checks: list[dict], attention: str, pad: int) -> bool:
    return any(
        c.get("attention") == attention and c.get("pad_multiple") == pad and c.get("ok")
        for c in checks
    )


def _b16_winner(records: list[dict], s: Settings, guess_label: str) -> dict | None:
    """The fastest B/16 training run (train + extras phases) if it beats the guess by > 2%."""
    model, batch = s.goals["B/16"]
    runs = [
        x
        for x in records
        if x.get("kind") == "train"
        and x.get("status") == "ok"
        and x.get("model") == model
        and x.get("batch") == batch
        and x.get("group") in ("train", "extras")
    ]
    guess = next((x for x in runs if x.get("label") == guess_label), None)
    if guess is None:
        return None
    best = max(runs, key=lambda x: x["images_per_sec"])
    return best if best["images_per_sec"] > RERUN_GAIN * guess["images_per_sec"] else None


def _gflops(s: Settings) -> dict:
    """GFLOP per image for every (model, mode) the plan can run (for run-time estimates)."""
    from vit_jax import flops

    out = {}
    models = {m for m, _ in s.goals.values()} | set(s.inference_models) | {s.goals["B/16"][0]}
    for m in models:
        macs = flops.macs(m, image_size=s.image_size)
        out[(m, "train")] = 6 * macs / 1e9
        out[(m, "inference")] = 2 * macs / 1e9
    return out


def _environment(out: pathlib.Path, r: Runner) -> None:
    """Records the machine and versions, and turns on XLA's per-fusion autotuning cache for the
    phase processes if this XLA accepts the flag (an unknown XLA flag aborts a process): later
    phases then reuse the GEMM/fusion autotuning of earlier ones, which shortens their compiles."""
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


# ---------------------------------------------------------------------------------------------
# The report.


def _write_summary(r: Runner, s: Settings) -> None:
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
    guess_label = _train_item(s, "B/16")["label"]
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
            total = f"{x['ms'] * _layers(x['model']):.1f}" if ok_ else ""
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


if __name__ == "__main__":
    sys.exit(main())
