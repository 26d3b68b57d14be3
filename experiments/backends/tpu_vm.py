"""The `tpu_vm` backend: a pool of Cloud TPU VMs, one point at a time on each, all workers of a VM.

Each VM is created (or reused, or queued), gets this code and a uv venv with Python ≥ 3.11 and
jax[tpu], then runs points with `gcloud compute tpus tpu-vm ssh --worker=all`; the engine joins
the slice's workers itself (vit_jax.tpu_cluster) and writes to the gs:// workdir, from which each
point's metrics are copied back. A spot VM that is preempted (the engine exits EXIT_PREEMPTED, or
the VM's state is no longer READY) is re-created and the point re-run, which resumes from its
checkpoint; a preempted point is never recorded as failed. VMs this backend created are deleted
at the end, also on Ctrl-C.
"""

from __future__ import annotations

import pathlib
import re
import shlex
import shutil
import subprocess
import threading
import time

from experiments.backends import REPO, Job, OnDone, engine_command
from experiments.backends.gcloud import (
    CODE_DIR,
    CONFIG_DIR,
    PYTHON,
    TpuVmOptions,
    VmCommands,
    copy,
    preflight_cmds,
    vm_names,
)
from vit_jax.preemption import EXIT_PREEMPTED

__all__ = ["LaunchError", "TpuVmBackend", "TpuVmOptions"]


class LaunchError(RuntimeError):
    """The sweep cannot start or go on on Cloud TPU; one line that names the fix."""


def preflight(o: TpuVmOptions, *, run=None) -> None:
    """The errors a user meets first, found before any VM is created (quota shows at create)."""
    run = run or _output
    if shutil.which("gcloud") is None:
        raise LaunchError(
            "gcloud not found on PATH: install the Google Cloud CLI "
            "(https://cloud.google.com/sdk/docs/install), then `gcloud auth login`"
        )
    cmds = preflight_cmds(o)
    rc, out = run(cmds["auth"])
    if rc or not out.strip():
        raise LaunchError("gcloud has no active account: run `gcloud auth login` "
                          "(and `gcloud config set project PROJECT`)")  # fmt: skip
    rc, out = run(cmds["accelerators"])
    if rc:
        raise LaunchError(f"cannot list TPU types in zone {o.zone} ({_last(out)}): check --zone, "
                          "--project and `gcloud services enable tpu.googleapis.com`")  # fmt: skip
    if o.accelerator_type not in out.split():
        raise LaunchError(f"zone {o.zone} offers no {o.accelerator_type} TPUs: choose a zone that "
                          f"lists it in `{shlex.join(cmds['accelerators'][:-1])}`")  # fmt: skip
    if "bucket" in cmds and run(cmds["bucket"])[0]:
        bucket = cmds["bucket"][4]
        raise LaunchError(
            f"bucket {bucket} is missing or not readable: create it with "
            f"`gcloud storage buckets create {bucket} --location=REGION` (the TPU's region)"
        )


class TpuVmBackend:
    """Runs points on a pool of `opts.pool` TPU VMs (see the module docstring)."""

    def __init__(self, opts: TpuVmOptions, *, sweep_dir: pathlib.Path, log=print):
        self.o = opts
        self.sweep_dir = pathlib.Path(sweep_dir)
        self.log = log
        self.cores = int(re.findall(r"\d+", opts.accelerator_type)[-1])
        self.vms = [VmCommands(opts, name) for name in vm_names(opts)]
        self._lock = threading.Lock()  # The runner's callbacks, the shared queue, the sets below.
        self._stop = threading.Event()
        self._procs: set[subprocess.Popen] = set()
        self._created: list[VmCommands] = []
        self._errors: list[BaseException] = []

    @property
    def tarball(self) -> str:
        return str(self.sweep_dir / "code.tar.gz")

    def point_cmds(self, job: Job, vm: VmCommands) -> list[dict[str, list[str]]]:
        """Per stage, in order: copy its config to all workers, run it on all, fetch its metrics."""
        remote_dir = f"{self.o.remote_workdir.rstrip('/')}/{job.name}"
        stages = []
        for stage, path in job.stages():
            config = f"{CONFIG_DIR}/{job.name}{'.' + stage if stage else ''}.py"
            workdir = f"{remote_dir}/{stage}" if stage else remote_dir
            local = job.dir / stage if stage else job.dir
            init_from = remote_dir if stage else None
            run = shlex.join(engine_command(config, workdir, python=PYTHON, init_from=init_from))
            for word in (PYTHON, f"--config={config}"):  # Keep $HOME for the remote shell.
                run = run.replace(shlex.quote(word), f'"{word}"')
            stages.append({
                "config": vm.scp(str(path), config.replace("$HOME", "~")),
                "run": vm.ssh(f"cd {CODE_DIR} && {run}"),  # $HOME and ~ expand on the VM.
                "collect": copy(f"{workdir}/metrics.jsonl", f"{local}/metrics.jsonl"),
            })  # fmt: skip
        return stages

    def describe(self, job: Job) -> list[str]:
        return [shlex.join(c) for st in self.point_cmds(job, self.vms[0]) for c in st.values()]

    def dry_run_lines(self, jobs: list[Job]) -> list[str]:
        lines = [f"# check: {shlex.join(c)}" for c in preflight_cmds(self.o).values()]
        if len(self.vms) > 1:
            lines.append("# VMs run in parallel; each takes the next point when free (one order:)")
        for i, vm in enumerate(self.vms[: max(1, len(jobs))]):
            lines += [f"# VM {vm.name}: reused if READY: {shlex.join(vm.state())}"]
            lines += [shlex.join(vm.create())]
            if self.o.queued:
                lines.append(f"# poll until ACTIVE: {shlex.join(vm.queue_state())}")
            lines += [shlex.join(c) for c in vm.setup(self.tarball)]
            for job in jobs[i :: len(self.vms)]:
                lines += [f"# {job.name} on {vm.name}"]
                lines += [shlex.join(c) for st in self.point_cmds(job, vm) for c in st.values()]
            lines += [] if self.o.keep_vm else [shlex.join(vm.delete())]
        return lines

    # Running ----------------------------------------------------------------------------------

    def run(self, jobs: list[Job], on_done: OnDone, on_start=lambda job: None, on_tick=None):
        preflight(self.o)
        if self.o.code == "copy":
            self._pack_code()
        queue = list(jobs)
        threads = [
            threading.Thread(target=self._vm_loop, args=(vm, queue, on_start, on_done), daemon=True)
            for vm in self.vms[: len(jobs)]
        ]
        try:
            for t in threads:
                t.start()
            while any(t.is_alive() for t in threads):
                time.sleep(0.2)
                if on_tick is not None:
                    with self._lock:
                        on_tick()
        finally:  # Also on Ctrl-C: stop our commands, then delete the VMs we created.
            self._stop.set()
            with self._lock:
                for proc in list(self._procs):
                    proc.terminate()
            for t in threads:
                t.join(timeout=60)
            if not self.o.keep_vm:
                for vm in self._created:
                    self._call(vm.delete(), log_to=self._vm_log(vm))
        if self._errors:
            raise self._errors[0]

    def _vm_loop(self, vm: VmCommands, queue: list[Job], on_start, on_done) -> None:
        """One VM: brought up at its first point, then takes points from the queue until empty."""
        try:
            up = False
            while not self._stop.is_set():
                with self._lock:
                    job = queue.pop(0) if queue else None
                if job is None:
                    return
                if not up:
                    self._bring_up(vm, reuse=True)
                    up = True
                self._run_point(vm, job, on_start, on_done)
        except BaseException as e:  # Reported by run() in the main thread.
            self._errors.append(e)
            self._stop.set()

    def _run_point(self, vm: VmCommands, job: Job, on_start, on_done) -> None:
        with self._lock:
            on_start(job)
        t0, rc, preemptions = time.time(), 0, 0
        for stage in self.point_cmds(job, vm):
            while True:
                rc = self._call(stage["config"], log_to=job.log_path)
                rc = rc or self._call(stage["run"], log_to=job.log_path)
                if rc == 0 or self._stop.is_set() or not self._preempted(vm, rc):
                    break
                preemptions += 1
                if preemptions > self.o.max_preemptions:
                    self.log(f"tpu_vm: {job.name} preempted {preemptions - 1} times; left pending")
                    return
                self.log(f"tpu_vm: {vm.name} preempted; re-creating it, {job.name} resumes")
                self._bring_up(vm, reuse=False)
            if self._stop.is_set():
                return  # Interrupted: neither done nor failed; a re-run resumes it.
            rc = rc or self._call(stage["collect"], log_to=job.log_path)
            if rc:
                break
        with self._lock:
            on_done(job, rc, time.time() - t0, self.cores)

    def _preempted(self, vm: VmCommands, rc: int) -> bool:
        """True after the VM was taken (not READY) or the engine stopped on SIGTERM (exit 75)."""
        return rc == EXIT_PREEMPTED or self._state(vm) != "READY"

    def _state(self, vm: VmCommands) -> str:
        proc = subprocess.run(vm.state(), capture_output=True, text=True)
        return proc.stdout.strip() if proc.returncode == 0 else "MISSING"

    def _bring_up(self, vm: VmCommands, *, reuse: bool) -> None:
        """A READY VM with the code and venv: reused if READY (never ours to delete), else made."""
        log = self._vm_log(vm)
        if reuse and self._state(vm) == "READY":
            self.log(f"tpu_vm: reusing existing TPU VM {vm.name}")
        else:
            if not reuse:  # A preempted VM (or its suspended queued resource) goes first.
                self._call(vm.delete(), log_to=log)
            self._create(vm, log)
        for cmd in vm.setup(self.tarball):
            if self._call(cmd, log_to=log):
                raise LaunchError(f"set-up of TPU VM {vm.name} failed; see {log}")

    def _create(self, vm: VmCommands, log: pathlib.Path) -> None:
        self.log(f"$ {shlex.join(vm.create())}")
        rc, out = _output(vm.create())
        with open(log, "a", encoding="utf-8") as f:
            f.write(out)
        if rc:
            if re.search(r"quota|RESOURCE_EXHAUSTED", out, re.IGNORECASE):
                raise LaunchError(f"no quota for {self.o.accelerator_type} in {self.o.zone}: "
                                  "request it (https://cloud.google.com/tpu/docs/quota), or try "
                                  "--spot, --queued or another zone")  # fmt: skip
            raise LaunchError(f"could not create TPU VM {vm.name}: {_last(out)}")
        with self._lock:
            if vm not in self._created:
                self._created.append(vm)
        while self.o.queued and not self._stop.is_set():
            state = subprocess.run(vm.queue_state(), capture_output=True, text=True).stdout.strip()
            if state == "ACTIVE":
                break
            if state in ("FAILED", "SUSPENDED"):
                raise LaunchError(f"queued resource {vm.qr} is {state}")
            self.log(f"tpu_vm: queued resource {vm.qr} is {state or '?'}; waiting")
            time.sleep(self.o.poll_s)

    def _vm_log(self, vm: VmCommands) -> pathlib.Path:
        return self.sweep_dir / f"tpu_vm-{vm.name}.log"

    def _pack_code(self) -> None:
        """This checkout's tracked and untracked-but-not-ignored files (no .venv, no runs)."""
        files = subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard", "-z"],
            cwd=REPO, capture_output=True, check=True,
        ).stdout.split(b"\0")  # fmt: skip
        names = [f.decode() for f in files if f and (REPO / f.decode()).is_file()]
        subprocess.run(["tar", "czf", self.tarball, "-C", str(REPO), "--", *names], check=True)

    def _call(self, cmd: list[str], *, log_to: pathlib.Path) -> int:
        """Runs `cmd` with its output appended to `log_to`; Ctrl-C / stop terminates it."""
        self.log(f"$ {shlex.join(cmd)}")
        with open(log_to, "a", encoding="utf-8") as log:
            log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {shlex.join(cmd)}\n")
            log.flush()
            with self._lock:
                if self._stop.is_set() and "delete" not in cmd:
                    return 130
                proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
                self._procs.add(proc)
            try:
                return proc.wait()
            finally:
                with self._lock:
                    self._procs.discard(proc)


def _output(cmd: list[str]) -> tuple[int, str]:
    """(returncode, stdout + stderr) of a short gcloud query."""
    proc = subprocess.run(cmd, capture_output=True, text=True)
    return proc.returncode, proc.stdout + proc.stderr


def _last(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"
