"""The `local` backend: points as subprocesses on this machine, each pinned to its CPUs."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time

from experiments.backends import REPO, Job, OnDone, stage_commands


def cpu_groups(parallel: int) -> list[list[int]]:
    """This process's CPUs split into `parallel` disjoint groups (round-robin; ≥ 1 CPU each)."""
    cpus = sorted(os.sched_getaffinity(0))
    parallel = max(1, min(parallel, len(cpus)))
    return [cpus[i::parallel] for i in range(parallel)]


def worker_env(cpus: list[int], *, slot: int, parallel: int) -> dict[str, str]:
    """Environment of a worker: thread pools sized to its CPUs, its share of any GPUs."""
    env = dict(os.environ)
    n = str(len(cpus))
    env.update(OMP_NUM_THREADS=n, TF_NUM_INTRAOP_THREADS=n, TF_NUM_INTEROP_THREADS="1")
    if parallel > 1:
        flags = env.get("XLA_FLAGS", "")
        env["XLA_FLAGS"] = f"{flags} --xla_cpu_multi_thread_eigen={len(cpus) > 1}".strip()
        gpus = [g for g in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if g]
        if len(gpus) >= parallel:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus[slot::parallel])
    return env


class LocalBackend:
    """Points as subprocesses on this machine, `parallel` at a time, each pinned to its CPUs."""

    def __init__(self, *, parallel: int = 1, python: str = sys.executable, cache_dir=None):
        self.groups = cpu_groups(parallel)
        self.python = python
        self.cache_dir = cache_dir  # JAX's persistent compilation cache, shared by the points.

    def describe(self, job: Job) -> list[str]:
        cmds = stage_commands(job, python=self.python)
        return [shlex.join(cmd) + f"  >> {job.log_path}" for cmd in cmds]

    def run(self, jobs: list[Job], on_done: OnDone, on_start=lambda job: None, on_tick=None):
        queue, running = list(jobs), {}  # slot → (job, Popen, t0)
        try:
            while queue or running:
                for slot in range(len(self.groups)):
                    if slot not in running and queue:
                        on_start(queue[0])
                        running[slot] = self._start(queue.pop(0), slot)
                for slot, (job, proc, t0) in list(running.items()):
                    pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                    if pid:
                        proc.returncode = os.waitstatus_to_exitcode(status)  # Reaped here.
                        del running[slot]
                        cpu_s = usage.ru_utime + usage.ru_stime
                        wall = time.time() - t0
                        on_done(job, proc.returncode, wall, len(self.groups[slot]), cpu_s=cpu_s)
                if on_tick is not None:
                    on_tick()
                time.sleep(0.2)
        finally:
            for _, proc, _ in running.values():  # Interrupted: stop our own children only.
                proc.terminate()
                proc.wait(timeout=30)

    def _start(self, job: Job, slot: int):
        cpus = self.groups[slot]
        env = worker_env(cpus, slot=slot, parallel=len(self.groups))
        if self.cache_dir:
            env.setdefault("JAX_COMPILATION_CACHE_DIR", str(self.cache_dir))
            env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "1")
        cmds = stage_commands(job, python=self.python)
        # Stages run in one shell, so wait4's CPU time covers all of them (and stops at a failure).
        cmd = cmds[0] if len(cmds) == 1 else ["/bin/sh", "-c", " && ".join(map(shlex.join, cmds))]
        log = open(job.log_path, "a", encoding="utf-8")  # noqa: SIM115  (closed with the process)
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {shlex.join(cmd)}\n")
        log.flush()
        proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=lambda: os.sched_setaffinity(0, cpus),
        )
        log.close()  # The child holds its own descriptor.
        return job, proc, time.time()
