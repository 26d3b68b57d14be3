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
from vit_jax import paths

REPO = pathlib.Path(__file__).resolve().parents[2]


@dataclasses.dataclass
class Job:
    """A point to run: its name, its workdir (local or gs://), its config files and log file."""

    name: str
    dir: pathlib.Path  # An epath.Path for a gs:// sweep.
    finetune: bool = False  # A transfer stage runs after pre-training, in DIR/<name>/finetune.

    @property
    def local(self) -> pathlib.Path:
        """Where the config files and log live: DIR itself, or for a gs:// DIR a local staging
        folder (absl loads a config from a local file; a process logs to one)."""
        return pathlib.Path(paths.staging_dir(self.dir))

    @property
    def config_path(self) -> pathlib.Path:
        return self.local / "config.py"

    @property
    def finetune_dir(self) -> pathlib.Path:
        return self.dir / FINETUNE

    def stages(self) -> list[tuple[str, pathlib.Path]]:
        """(stage, config file) in run order: '' (pre-training), then 'finetune' if any."""
        out = [("", self.config_path)]
        return out + [(FINETUNE, self.local / FINETUNE / "config.py")] if self.finetune else out

    def record(self, stage: str):
        """A stage's config file as kept in DIR (the bucket, for a gs:// sweep): the copy a
        resume is checked against. For a local DIR it is the file the engine reads."""
        return self.dir / stage / "config.py" if stage else self.dir / "config.py"

    @property
    def log_path(self) -> pathlib.Path:
        return self.local / "log.txt"


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
        config = str(job.stages()[-1][1])
        cmds.append(
            engine_command(config, str(job.finetune_dir), python=python, init_from=str(job.dir))
        )
    return cmds


# Imported last: both modules build on the names above.
from experiments.backends.local import LocalBackend, cpu_groups, worker_env  # noqa: E402
from experiments.backends.tpu_vm import LaunchError, TpuVmBackend, TpuVmOptions  # noqa: E402

__all__ = ["Job", "LaunchError", "LocalBackend", "TpuVmBackend", "TpuVmOptions", "cpu_groups",
           "engine_command", "stage_commands", "worker_env"]  # fmt: skip
