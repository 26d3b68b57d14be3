"""Where a sweep's points run: this machine (`local`) or a Cloud TPU VM (`tpu_vm`).

Every point runs as its own `python -m vit_jax.main --config=DIR/<name>/config.py
--workdir=DIR/<name>` process. A subprocess isolates failures (a crash, an OOM, a NaN stop only
lose that point) and makes resume free: re-running the same command in the same workdir continues
from the engine's last checkpoint.

A backend's `run(jobs, on_done, on_start, on_tick=...)` calls `on_start(job)` as a point starts
and `on_done(job, returncode, wall_s, cores, cpu_s=...)` as it finishes (cpu_s: the point's CPU
seconds, where the backend can measure them); the runner turns that into results rows. A backend
that polls its points calls `on_tick()` as it does (the runner's live progress bar).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable

from experiments.sweep import FINETUNE

REPO = pathlib.Path(__file__).resolve().parent.parent


@dataclasses.dataclass
class Job:
    """A point to run: its name, its directory (config.py inside) and its log file."""

    name: str
    dir: pathlib.Path
    finetune: bool = False  # A transfer stage runs after pre-training, in DIR/<name>/finetune.

    @property
    def config_path(self) -> pathlib.Path:
        return self.dir / "config.py"

    @property
    def finetune_dir(self) -> pathlib.Path:
        return self.dir / FINETUNE

    def stages(self) -> list[tuple[str, pathlib.Path]]:
        """(stage, config file) in run order: '' (pre-training), then 'finetune' if any."""
        out = [("", self.config_path)]
        return out + [(FINETUNE, self.finetune_dir / "config.py")] if self.finetune else out

    @property
    def log_path(self) -> pathlib.Path:
        return self.dir / "log.txt"


OnDone = Callable[[Job, int, float, int], None]


def engine_command(
    config: str, workdir: str, *, python: str = "python3", init_from: str | None = None
) -> list[str]:
    """`python -m vit_jax.main` for one stage; `init_from`: the workdir a fine-tune starts from."""
    cmd = [python, "-m", "vit_jax.main", f"--config={config}", f"--workdir={workdir}"]
    return cmd + ([f"--config.init_from.path={init_from}"] if init_from else [])


def stage_commands(job: Job, *, python: str) -> list[list[str]]:
    """The engine commands of a point on this machine: pre-training, then its transfer stage."""
    cmds = [engine_command(str(job.config_path), str(job.dir), python=python)]
    if job.finetune:
        ft = job.finetune_dir
        cmds.append(
            engine_command(str(ft / "config.py"), str(ft), python=python, init_from=str(job.dir))
        )
    return cmds


# --------------------------------------------------------------------------------------- local


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


# ------------------------------------------------------------------------------------- TPU VM


@dataclasses.dataclass
class TpuVmOptions:
    name: str
    zone: str
    accelerator_type: str
    version: str
    project: str | None = None
    queued: bool = False  # Queue a request (queued-resources) instead of creating directly.
    remote_workdir: str = ""  # gs://bucket/path: where the points' workdirs live.
    code: str = "copy"  # copy: this checkout's files; git: clone repo_url at ref.
    repo_url: str = ""
    ref: str = "HEAD"
    keep_vm: bool = False  # Leave the VM up afterwards (it is never deleted if it pre-existed).
    poll_s: float = 30.0


class TpuVmBackend:
    """Creates (or reuses, or queues) a TPU VM, installs the code, runs each point on all workers
    (multi-host via jax.distributed, which vit_jax.main initialises on TPU VMs), writes to a
    gs:// workdir, copies each point's metrics back, and deletes the VM it created."""

    CODE_DIR = "~/vit_jax"
    CONFIG_DIR = "$HOME/sweep_configs"

    def __init__(self, opts: TpuVmOptions, *, sweep_dir: pathlib.Path, log=print):
        self.o = opts
        self.sweep_dir = pathlib.Path(sweep_dir)
        self.log = log
        self.cores = int(re.findall(r"\d+", opts.accelerator_type)[-1])

    # Commands (pure: --dry-run prints exactly these) -------------------------------------------

    def _loc(self) -> list[str]:
        return [f"--zone={self.o.zone}"] + (
            [f"--project={self.o.project}"] if self.o.project else []
        )

    def _tpu(self, *args) -> list[str]:
        return ["gcloud", "compute", "tpus", *args]

    def describe_cmd(self):
        return self._tpu("tpu-vm", "describe", self.o.name, *self._loc(), "--format=value(state)")

    def create_cmds(self) -> list[list[str]]:
        o = self.o
        if not o.queued:
            return [
                self._tpu(
                    "tpu-vm", "create", o.name, *self._loc(),
                    f"--accelerator-type={o.accelerator_type}", f"--version={o.version}",
                )
            ]  # fmt: skip
        return [
            self._tpu(
                "queued-resources", "create", self._qr, f"--node-id={o.name}", *self._loc(),
                f"--accelerator-type={o.accelerator_type}", f"--runtime-version={o.version}",
            )
        ]  # fmt: skip

    @property
    def _qr(self) -> str:
        return f"{self.o.name}-qr"

    def queue_state_cmd(self):
        return self._tpu(
            "queued-resources", "describe", self._qr, *self._loc(), "--format=value(state.state)"
        )

    def ssh(self, command: str) -> list[str]:
        return self._tpu("tpu-vm", "ssh", self.o.name, *self._loc(), "--worker=all",
                         f"--command={command}")  # fmt: skip

    def scp(self, src: str, dst: str) -> list[str]:
        return self._tpu("tpu-vm", "scp", src, f"{self.o.name}:{dst}", *self._loc(),
                         "--worker=all")  # fmt: skip

    def setup_cmds(self) -> list[list[str]]:
        install = f'cd {self.CODE_DIR} && pip install -q -e ".[tpu]" && mkdir -p {self.CONFIG_DIR}'
        if self.o.code == "git":
            clone = (
                f"(git clone {shlex.quote(self.o.repo_url)} {self.CODE_DIR} || "
                f"git -C {self.CODE_DIR} fetch) && git -C {self.CODE_DIR} checkout {self.o.ref}"
            )
            return [self.ssh(f"{clone} && {install}")]
        tarball = str(self.sweep_dir / "code.tar.gz")
        unpack = f"mkdir -p {self.CODE_DIR} && tar xzf ~/vit_jax_code.tar.gz -C {self.CODE_DIR}"
        return [self.scp(tarball, "~/vit_jax_code.tar.gz"), self.ssh(f"{unpack} && {install}")]

    def point_cmds(self, job: Job) -> list[dict[str, list[str]]]:
        """Per stage, in order: copy its config to all workers, run it on all, fetch its metrics."""
        remote_dir = f"{self.o.remote_workdir.rstrip('/')}/{job.name}"
        stages = []
        for stage, path in job.stages():
            config = f"{self.CONFIG_DIR}/{job.name}{'.' + stage if stage else ''}.py"
            workdir = f"{remote_dir}/{stage}" if stage else remote_dir
            local = job.dir / stage if stage else job.dir
            init_from = remote_dir if stage else None
            run = shlex.join(engine_command(config, workdir, init_from=init_from)).replace(
                shlex.quote(f"--config={config}"), f'"--config={config}"'
            )  # Keep $HOME expandable by the remote shell.
            stages.append({
                "config": self.scp(str(path), config.replace("$HOME", "~")),
                "run": self.ssh(f"cd {self.CODE_DIR} && {run}"),
                "collect": ["gsutil", "cp", f"{workdir}/metrics.jsonl", f"{local}/metrics.jsonl"],
            })  # fmt: skip
        return stages

    def delete_cmds(self) -> list[list[str]]:
        if self.o.queued:
            return [self._tpu("queued-resources", "delete", self._qr, *self._loc(), "--quiet",
                              "--force")]  # fmt: skip
        return [self._tpu("tpu-vm", "delete", self.o.name, *self._loc(), "--quiet")]

    # Running ----------------------------------------------------------------------------------

    def describe(self, job: Job) -> list[str]:
        return [shlex.join(c) for stage in self.point_cmds(job) for c in stage.values()]

    def dry_run_lines(self, jobs: list[Job]) -> list[str]:
        lines = [f"# reuse the VM if this succeeds: {shlex.join(self.describe_cmd())}"]
        lines += [shlex.join(c) for c in self.create_cmds()]
        if self.o.queued:
            lines.append(f"# poll until ACTIVE: {shlex.join(self.queue_state_cmd())}")
        lines += [shlex.join(c) for c in self.setup_cmds()]
        for job in jobs:
            lines += [f"# {job.name}"] + self.describe(job)
        lines += [shlex.join(c) for c in self.delete_cmds()] if not self.o.keep_vm else []
        return lines

    def run(self, jobs: list[Job], on_done: OnDone, on_start=lambda job: None, on_tick=None):
        del on_tick  # Points run one blocking ssh at a time: nothing to poll in between.
        created = self._acquire()
        try:
            if self.o.code == "copy":
                self._pack_code()
            for cmd in self.setup_cmds():
                self._call(cmd, check=True)
            for job in jobs:
                on_start(job)
                t0, rc = time.time(), 0
                for stage in self.point_cmds(job):
                    for cmd in stage.values():  # config, run, collect; stop at a failure.
                        rc = rc or self._call(cmd)
                on_done(job, rc, time.time() - t0, self.cores)
        finally:
            if created and not self.o.keep_vm:
                for cmd in self.delete_cmds():
                    self._call(cmd)

    def _acquire(self) -> bool:
        """Reuses the VM if it exists (returns False: not ours to delete); else creates it."""
        if self._call(self.describe_cmd(), quiet=True) == 0:
            self.log(f"tpu_vm: reusing existing TPU VM {self.o.name}")
            return False
        for cmd in self.create_cmds():
            self._call(cmd, check=True)
        while self.o.queued:
            out = subprocess.run(self.queue_state_cmd(), capture_output=True, text=True)
            state = out.stdout.strip()
            if state == "ACTIVE":
                break
            if state in ("FAILED", "SUSPENDED"):
                raise RuntimeError(f"queued resource {self._qr} is {state}")
            self.log(f"tpu_vm: queued resource {self._qr} is {state or '?'}; waiting")
            time.sleep(self.o.poll_s)
        return True

    def _pack_code(self) -> None:
        """This checkout's tracked and untracked-but-not-ignored files (no .venv, no runs)."""
        files = subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard", "-z"],
            cwd=REPO, capture_output=True, check=True,
        ).stdout.split(b"\0")  # fmt: skip
        names = [f.decode() for f in files if f and (REPO / f.decode()).is_file()]
        subprocess.run(
            ["tar", "czf", str(self.sweep_dir / "code.tar.gz"), "-C", str(REPO), "--", *names],
            check=True,
        )

    def _call(self, cmd: list[str], *, check: bool = False, quiet: bool = False) -> int:
        if not quiet:
            self.log(f"$ {shlex.join(cmd)}")
        rc = subprocess.run(cmd, stdout=subprocess.DEVNULL if quiet else None,
                            stderr=subprocess.DEVNULL if quiet else None).returncode  # fmt: skip
        if check and rc:
            raise RuntimeError(f"command failed ({rc}): {shlex.join(cmd)}")
        return rc
