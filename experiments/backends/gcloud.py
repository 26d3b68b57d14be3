"""The gcloud commands of the `tpu_vm` backend, for one TPU VM (pure: --dry-run prints these).

Checked against the gcloud reference (compute tpus tpu-vm create/describe/ssh/scp/delete,
compute tpus queued-resources create/describe/delete, storage cp, storage buckets describe).
"""

from __future__ import annotations

import dataclasses
import shlex

CODE_DIR = "~/vit_jax"
CONFIG_DIR = "$HOME/sweep_configs"
VENV = "~/vit_jax_venv"  # Python ≥ 3.11 from uv: TPU VM images ship Python 3.10.
PYTHON = "$HOME/vit_jax_venv/bin/python"  # The venv's interpreter, as the remote shell expands it.


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
    keep_vm: bool = False  # Leave the VMs up afterwards (one that pre-existed is never deleted).
    poll_s: float = 30.0
    pool: int = 1  # VMs at once, one point each: NAME-0 ... NAME-(N-1) (just NAME when 1).
    spot: bool = False
    reserved: bool = False
    network: str = ""
    subnetwork: str = ""
    service_account: str = ""
    labels: str = ""  # KEY=VALUE,...
    python_version: str = "3.11"
    max_preemptions: int = 10  # Per point; beyond it the point is left pending (not failed).


def vm_names(o: TpuVmOptions) -> list[str]:
    return [o.name] if o.pool == 1 else [f"{o.name}-{i}" for i in range(o.pool)]


class VmCommands:
    """The commands for the TPU VM `name` (and its queued resource NAME-qr, with --queued)."""

    def __init__(self, o: TpuVmOptions, name: str):
        self.o, self.name, self.qr = o, name, f"{name}-qr"

    def _loc(self) -> list[str]:
        project = [f"--project={self.o.project}"] if self.o.project else []
        return [f"--zone={self.o.zone}", *project]

    def _tpu(self, *args) -> list[str]:
        return ["gcloud", "compute", "tpus", *args]

    def state(self) -> list[str]:
        return self._tpu("tpu-vm", "describe", self.name, *self._loc(), "--format=value(state)")

    def queue_state(self) -> list[str]:
        return self._tpu(
            "queued-resources", "describe", self.qr, *self._loc(), "--format=value(state.state)"
        )

    def _options(self) -> list[str]:
        o = self.o
        flags = ["--spot"] if o.spot else []
        flags += ["--reserved"] if o.reserved else []
        values = {"network": o.network, "subnetwork": o.subnetwork,
                  "service-account": o.service_account, "labels": o.labels}  # fmt: skip
        flags += [f"--{flag}={value}" for flag, value in values.items() if value]
        return flags

    def create(self) -> list[str]:
        o = self.o
        if o.queued:
            return self._tpu(
                "queued-resources", "create", self.qr, f"--node-id={self.name}", *self._loc(),
                f"--accelerator-type={o.accelerator_type}", f"--runtime-version={o.version}",
                *self._options(),
            )  # fmt: skip
        return self._tpu(
            "tpu-vm", "create", self.name, *self._loc(),
            f"--accelerator-type={o.accelerator_type}", f"--version={o.version}", *self._options(),
        )  # fmt: skip

    def delete(self) -> list[str]:
        if self.o.queued:
            return self._tpu(
                "queued-resources", "delete", self.qr, *self._loc(), "--quiet", "--force"
            )
        return self._tpu("tpu-vm", "delete", self.name, *self._loc(), "--quiet")

    def ssh(self, command: str) -> list[str]:
        return self._tpu("tpu-vm", "ssh", self.name, *self._loc(), "--worker=all",
                         f"--command={command}")  # fmt: skip

    def scp(self, src: str, dst: str) -> list[str]:
        return self._tpu("tpu-vm", "scp", src, f"{self.name}:{dst}", *self._loc(), "--worker=all")

    def setup(self, tarball: str) -> list[list[str]]:
        """Code on every worker, a uv venv with Python ≥ 3.11, jax[tpu] and the project in it."""
        o = self.o
        venv = (
            f"python3 -m pip install -q --user uv && python3 -m uv venv -q --allow-existing "
            f"-p {o.python_version} {VENV} && cd {CODE_DIR} && "
            f'python3 -m uv pip install -q -p {VENV}/bin/python -e ".[tpu]" && '
            f"mkdir -p {CONFIG_DIR}"
        )
        if o.code == "git":
            clone = (
                f"(git clone {shlex.quote(o.repo_url)} {CODE_DIR} || "
                f"git -C {CODE_DIR} fetch) && git -C {CODE_DIR} checkout {o.ref}"
            )
            return [self.ssh(f"{clone} && {venv}")]
        unpack = f"mkdir -p {CODE_DIR} && tar xzf ~/vit_jax_code.tar.gz -C {CODE_DIR}"
        return [self.scp(tarball, "~/vit_jax_code.tar.gz"), self.ssh(f"{unpack} && {venv}")]


def copy(src: str, dst: str) -> list[str]:
    """`gcloud storage cp` (Google's documented successor of gsutil cp)."""
    return ["gcloud", "storage", "cp", src, dst]


def preflight_cmds(o: TpuVmOptions) -> dict[str, list[str]]:
    """The read-only checks run before any VM is created (see tpu_vm.preflight)."""
    project = [f"--project={o.project}"] if o.project else []
    cmds = {
        "auth": ["gcloud", "auth", "list", "--filter=status:ACTIVE", "--format=value(account)"],
        "accelerators": [
            "gcloud",
            "compute",
            "tpus",
            "accelerator-types",
            "list",
            f"--zone={o.zone}",
            *project,
            "--format=value(type)",
        ],  # fmt: skip
    }
    if o.remote_workdir.startswith("gs://"):
        bucket = "/".join(o.remote_workdir.split("/")[:3])
        cmds["bucket"] = ["gcloud", "storage", "buckets", "describe", bucket, *project,
                          "--format=value(name)"]  # fmt: skip
    return cmds
