"""Where a sweep's points run: this machine (`local`) or Cloud TPU VMs (`tpu_vm`).

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
import pathlib
from collections.abc import Callable

from experiments.sweep import FINETUNE

REPO = pathlib.Path(__file__).resolve().parents[2]


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


# Imported last: both modules build on the names above.
from experiments.backends.local import LocalBackend, cpu_groups, worker_env  # noqa: E402
from experiments.backends.tpu_vm import LaunchError, TpuVmBackend, TpuVmOptions  # noqa: E402

__all__ = ["Job", "LaunchError", "LocalBackend", "TpuVmBackend", "TpuVmOptions", "cpu_groups",
           "engine_command", "stage_commands", "worker_env"]  # fmt: skip
