"""The one runner: plan items under a deadline. `run_many` runs items in this process (skipping,
or falling back for, an item whose estimate does not fit); `Runner` runs a sweep's phases, each
one `python -m vit_jax.benchmark --plan` process running `run_many`, so that a hard crash in XLA
or cuDNN loses one item, not the sweep. Both correct their estimates with `plan.compile_scale`
and stream every record to a JSON Lines file as it is made."""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable

from vit_jax import paths
from vit_jax.benchmark import plan
from vit_jax.benchmark.config import BenchConfig
from vit_jax.benchmark.report import summarize
from vit_jax.benchmark.runs import run
from vit_jax.benchmark.timing import default_peak_n, matmul_peak

GRACE_S = 15  # After the deadline, a phase process gets this long before it is killed.
MIN_PHASE_S = 20  # A phase with less time than this to its deadline is skipped.


def append_record(path: str | os.PathLike | None, record: dict) -> None:
    if path:  # Through the path layer: --json may name a gs:// file.
        paths.append_text(path, json.dumps(record, default=str) + "\n")


def read_records(path: pathlib.Path) -> list[dict]:
    """The records of a JSON Lines file (a line cut off by a kill is left out)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return out


def _fitting(item: dict, *, left: float | None, scale: float) -> tuple[dict, tuple, float]:
    """(item, (est compile, est run), estimate): the item, or its fallback when only that fits."""
    item, fallback = dict(item), item.get("fallback")
    item.pop("fallback", None)
    est = (item.pop("est_compile_s", 0.0), item.pop("est_run_s", 0.0))
    estimate = est[0] * scale + est[1]
    if left is not None and estimate > left and fallback:
        fb = dict(fallback)
        fb_est = (fb.pop("est_compile_s", est[0]), fb.pop("est_run_s", est[1]))
        if fb_est[0] * scale + fb_est[1] <= left:
            item = {**item, **fb, "label": f"{item.get('label', '')} (fallback)".strip()}
            est, estimate = fb_est, fb_est[0] * scale + fb_est[1]
    return item, est, estimate


def _run_or_record_error(cfg: BenchConfig, *, peaks: dict, peak_n: int | None) -> dict:
    """One run; an error is recorded, not raised, so one failing variant ends no other."""
    try:
        if not cfg.compile_only and cfg.dtype not in peaks:
            peaks[cfg.dtype] = matmul_peak(dtype=cfg.dtype, n=peak_n or default_peak_n())
        return run(cfg, peak=peaks.get(cfg.dtype))
    except Exception as e:  # noqa: BLE001 - recorded and reported, the sweep goes on.
        traceback.print_exc(file=sys.stderr)
        record = {"kind": cfg.mode, **dataclasses.asdict(cfg), "status": "error"}
        record["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
        return record


def run_many(
    items: Iterable[dict],
    *,
    peaks: dict | None = None,
    peak_n: int | None = None,
    json_path: str | None = None,
    deadline: float | None = None,
    log: Callable[[str], None] = print,
) -> list[dict]:
    """Runs plan items: BenchConfig fields, plus optional estimates 'est_compile_s'/'est_run_s'
    (seconds) and 'fallback' (overrides with their own estimates, tried when the item does not
    fit). An item whose estimate does not fit before `deadline` (time.time()) is skipped, or
    replaced by its fallback if that fits. Each record is appended to `json_path` as soon as it
    exists, so a run cut off later still leaves its results."""
    peaks = {} if peaks is None else peaks
    results = []
    for raw in items:
        left = None if deadline is None else deadline - time.time()
        item, est, estimate = _fitting(raw, left=left, scale=plan.compile_scale(results))
        cfg = BenchConfig(**item)
        name = cfg.label or f"{cfg.model} {cfg.mode} b{cfg.batch}"
        if left is not None and estimate > left:
            record = {"kind": cfg.mode, **dataclasses.asdict(cfg), "status": "skipped"}
            record["error"] = f"budget: needs ~{estimate:.0f}s, {left:.0f}s left"
        else:
            log(f"[bench] start {name} (estimate {estimate:.0f}s)")
            record = _run_or_record_error(cfg, peaks=peaks, peak_n=peak_n)
        record.update(est_compile_s=est[0], est_run_s=est[1])
        gc.collect()  # The run's state, batch and executable go now, before the next run's.
        log(f"[bench] {name}: {summarize(record)}")
        append_record(json_path, record)
        results.append(record)
    return results


class Runner:
    """A sweep's phases under one budget: each phase is one process running a plan (the items
    with estimates); a phase whose process dies mid-item goes on in a fresh process."""

    def __init__(self, out: pathlib.Path, s: plan.Settings, *, dry: bool = False):
        self.out, self.s, self.dry = out, s, dry  # dry: print each phase's plan, run nothing.
        self.results = out / "results.jsonl"
        self.log_path = out / "log.txt"
        self.start = time.time()
        self.deadline = self.start + s.budget_s
        self.peak_tflops = self.peak_n = None
        self.gflops: dict = {}
        self.phases: list[dict] = []
        self.dry_total = 0.0

    def say(self, text: str) -> None:
        line = f"[{time.time() - self.start:6.1f}s] {text}"
        print(line, flush=True)
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write(line + "\n")

    def records(self) -> list[dict]:
        return read_records(self.results)

    def estimate(self, item: dict) -> tuple[float, float]:
        """(compile, run + setup) seconds, unscaled; zero for the CPU smoke run."""
        if self.s.base_options is not None:  # CPU smoke: no guesses worth making.
            return 0.0, 0.0
        compile_s = plan.compile_guess(item["model"], item["mode"], item.get("scan", False))
        run_s = plan.run_guess(item, peak_tflops=self.peak_tflops or 500, gflops=self.gflops)
        return compile_s, run_s + plan.setup_guess(item["model"], item["mode"])

    def phase_estimate(self, items: list[dict]) -> float:
        scale = plan.compile_scale(self.records())
        return sum(c * scale + r for c, r in map(self.estimate, items)) + 10  # + process start

    def phase(self, name: str, args: list[str], *, deadline: float) -> int | None:
        """Runs one `vit_jax.benchmark` process; its stdout is relayed, stderr goes to log.txt."""
        left = deadline - time.time()
        if left < MIN_PHASE_S:
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
        rc, timed_out, tail = self._spawn(name, cmd, kill_after=max(left, 0) + GRACE_S)
        self.phases.append(
            {"phase": name, "rc": rc, "seconds": time.time() - t0, "timed_out": timed_out}
        )
        if rc != 0:
            self.say(f"phase {name}: exit code {rc}; last lines of its log:")
            for line in tail[-12:]:
                print("    " + line[:300], flush=True)
        return rc

    def _spawn(self, name: str, cmd: list[str], *, kill_after: float) -> tuple[int, bool, list]:
        """(exit code, killed at the deadline, its log lines): '[bench]' lines are relayed."""
        with open(self.log_path, "a", encoding="utf-8") as log:
            log.write(f"\n===== phase {name}: {' '.join(cmd)}\n")
            log.flush()
            offset = log.tell()
            proc = subprocess.Popen(
                cmd, cwd=pathlib.Path.cwd(), stdout=subprocess.PIPE, stderr=log, text=True,
                start_new_session=True,  # Own process group: a timeout ends it and its children.
            )  # fmt: skip
            killed = threading.Event()
            timer = threading.Timer(kill_after, _terminate, args=(proc, killed))
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
        tail = self.log_path.read_text(encoding="utf-8", errors="replace")[offset:]
        return rc, killed.is_set(), tail.strip().splitlines()

    def plan_phase(self, name: str, items: list[dict], *, deadline: float) -> None:
        """Runs `items` in one process; if it dies mid-item, the item it was on is recorded as
        crashed and the rest run in a fresh process (cuDNN items switched to XLA attention if
        the crash was in a cuDNN item)."""
        remaining = list(items)
        for _ in range(3):
            rc = self._run_plan(name, remaining, deadline=deadline)
            done = {
                str(x.get("label")).removesuffix(" (fallback)")
                for x in self.records()
                if x.get("group") == name
            }
            missing = [it for it in remaining if it["label"] not in done]
            if rc in (0, None) or not missing or time.time() > deadline - MIN_PHASE_S:
                return
            crashed, remaining = missing[0], missing[1:]
            self.say(f"{name}: process died (exit {rc}) in {crashed['label']}; going on")
            crash = {"kind": crashed["mode"], **crashed, "group": name, "status": "error"}
            crash["error"] = f"process died (exit {rc}) in this run"
            append_record(self.results, crash)
            if crashed.get("attention") == "cudnn":
                remaining = [_without_cudnn(it) for it in remaining]

    def _run_plan(self, name: str, items: list[dict], *, deadline: float) -> int | None:
        planned = [self._planned(item) for item in items]
        for it in planned if self.dry else []:
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
        scale = plan.compile_scale(self.records())
        item = dict(item)
        if self.s.base_options:
            item["xla_options"] = {**self.s.base_options, **(item.get("xla_options") or {})}
        compile_s, run_s = self.estimate(item)
        item.update(est_compile_s=compile_s * scale, est_run_s=run_s)
        if item.get("fallback"):
            fb_compile, fb_run = self.estimate({**item, **item["fallback"]})
            item["fallback"] = {
                **item["fallback"], "est_compile_s": fb_compile * scale, "est_run_s": fb_run,
            }  # fmt: skip
        return item


def _without_cudnn(item: dict) -> dict:
    if item.get("attention") != "cudnn":
        return item
    return {**item, "attention": "xla", "label": item["label"] + " [xla: cuDNN crashed]"}


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
