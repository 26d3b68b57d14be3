"""`python -m vit_jax.main --config=configs/fashion_mnist.py --workdir=DIR [--config.key=value]`.

The only place that reads flags: it initialises multi-host JAX where asked, loads the config and
hands it to `train_and_evaluate`. Re-running the same command resumes the run in DIR.

Errors: bad input found by our own checks (`vit_jax.errors.UserError`: a config value, a data
folder, a checkpoint that does not fit) prints one line, `error: ...`, exit status 1; a bad flag
or config file, exit status 2. Anything else (a bug, or an unexpected error inside JAX, Orbax or
TensorFlow) keeps its full traceback. `VIT_JAX_TRACEBACK=1` shows the traceback of a UserError too.
"""

from __future__ import annotations

import os
import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from vit_jax import errors, preemption, tpu_cluster

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Run config: configs/FILE.py[:k=v,...].")
flags.DEFINE_string("workdir", None, "Run directory: checkpoints, metrics, config.json.")
flags.DEFINE_bool(
    "restart", False, "Start over: move a run already in --workdir aside (never deleted)."
)
flags.DEFINE_enum(
    "distributed",
    "auto",
    ["auto", "on", "off"],
    "jax.distributed.initialize(): auto = on multi-host TPU VM slices and with --coordinator.",
)
flags.DEFINE_string("coordinator", None, "host:port of process 0 (GPU clusters, localhost tests).")
flags.DEFINE_integer("num_processes", None, "Number of processes (with --coordinator).")
flags.DEFINE_integer("process_id", None, "This process's index (with --coordinator).")
flags.mark_flags_as_required(["config", "workdir"])


def _init_distributed() -> None:
    """Joins a multi-host run's processes: --coordinator, or a TPU VM slice found as JAX does."""

    if FLAGS.distributed == "off":
        return
    if FLAGS.coordinator:
        if os.environ.get("JAX_PLATFORMS", "") == "cpu" or not _has_accelerator_env():
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(
            FLAGS.coordinator, num_processes=FLAGS.num_processes, process_id=FLAGS.process_id
        )
        return
    worker = tpu_cluster.worker()
    if FLAGS.distributed == "on" or (worker and tpu_cluster.tpu_chips_present()):
        jax.distributed.initialize()  # JAX's own cluster detection (metadata server on TPU VMs).
    elif worker and len(worker.hosts) > 1:  # A slice's workers without TPU chips: CPU over gloo.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        address = tpu_cluster.coordinator(worker)
        n, i = len(worker.hosts), worker.index
        jax.distributed.initialize(address, num_processes=n, process_id=i)
    else:
        return
    print(f"vit_jax: process {jax.process_index()} of {jax.process_count()}", file=sys.stderr)


def _has_accelerator_env() -> bool:
    return tpu_cluster.tpu_chips_present() or "CUDA_VISIBLE_DEVICES" in os.environ


def parse_flags(argv):
    """absl flag parsing, with any config error (bad key, type, file or argument) as one line."""
    try:
        argv = FLAGS(argv)
        FLAGS.config.keys()  # config_flags loads the file lazily; fail here, not mid-run.
        return argv
    except (flags.Error, OSError, KeyError, AttributeError, TypeError, ValueError) as e:
        message = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        lines = [line.strip() for line in str(message).splitlines() if line.strip()]
        # Errors raised inside a config file arrive wrapped in a traceback: keep its last line.
        traceback = any(line.startswith("Traceback") for line in lines)
        text = lines[-1] if traceback or "Errno" in lines[-1] else " ".join(lines)
        print(f"error: bad config or flag: {text}", file=sys.stderr)
        sys.exit(2)


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    _init_distributed()
    logging.set_verbosity(logging.WARNING)
    train_or_exit(FLAGS.config, FLAGS.workdir, restart=FLAGS.restart)


def train_or_exit(config, workdir: str, *, restart: bool = False) -> dict:
    """train_and_evaluate, with any expected failure as one line on stderr and exit status 1.

    Expected: a bad config or input, a workdir holding another run, non-finite training, a
    file-system error (read-only, disk full). VIT_JAX_TRACEBACK=1 shows the traceback instead.
    """
    from vit_jax import train  # Here, after distributed init: importing data touches devices.

    try:
        return train.train_and_evaluate(config, workdir, restart=restart)
    except preemption.Preempted as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(preemption.EXIT_PREEMPTED)
    except (errors.UserError, OSError) as e:  # Our checks, the file system: one line.
        if os.environ.get("VIT_JAX_TRACEBACK", "") not in ("", "0"):
            raise
        text = " ".join(line.strip() for line in str(e).splitlines() if line.strip())
        print(f"error: {text or type(e).__name__}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
