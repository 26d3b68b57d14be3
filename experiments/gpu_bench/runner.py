"""Runs the benchmark's phases: one `vit_jax.benchmark` process each, under a deadline, with
crash recovery inside a phase; records stream to $OUT/results.jsonl."""

from __future__ import annotations

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

from experiments.gpu_bench.plan import (
    GRACE_S,
    ROOT,
    Settings,
    compile_guess,
    run_guess,
    setup_guess,
)


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


def environment(out: pathlib.Path, r: Runner) -> None:
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
