"""Worker for the multi-process test: trains a few steps and saves the final params.

  python tests/mp_worker.py single OUT.npz DATA_ROOT            # 1 process, 8 devices
  python tests/mp_worker.py multi OUT.npz DATA_ROOT PORT PROC  # process PROC of 2, 4 devices each

Both see the same global batches: the single process concatenates the two per-process slices
that the two processes read on their own.
"""

import os
import sys

mode, out, root = sys.argv[1:4]
devices = 8 if mode == "single" else 4
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"

import jax  # noqa: E402
import numpy as np  # noqa: E402

if mode == "multi":
    port, proc = sys.argv[4], int(sys.argv[5])
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(f"localhost:{port}", num_processes=2, process_id=proc)

from jax.experimental import multihost_utils  # noqa: E402

from vit_jax import config_lib, data, param_paths, sharding, steps, train  # noqa: E402

STEPS, BATCH = 3, 16


def main():
    c = config_lib.base_config()
    c.model.name = "mu/4"
    c.batch_size, c.total_steps = BATCH, STEPS
    c.data.source, c.data.root, c.data.image_size = "folder", root, 16
    c.data.augment, c.data.flip = "resize", False
    c.optim.warmup_steps = 0
    mesh = sharding.make_mesh(c.mesh)
    rules = sharding.rules_for("fsdp", mesh)
    model = train.build_model(c, num_classes=3)
    with jax.set_mesh(mesh):
        placed, step = steps.setup(model, c, mesh=mesh, input_shape=(1, 16, 16, 3), rules=rules)
        state = placed.init(jax.random.key(0))
        if mode == "single":
            its = [iterator(c, i, 2) for i in range(2)]
            batches = (_concat([next(it) for it in its]) for _ in range(STEPS))
        else:
            it = iterator(c, jax.process_index(), 2)
            batches = (next(it) for _ in range(STEPS))
        for batch in batches:
            state, _ = step(state, sharding.to_global(batch, mesh), jax.random.key(1))
        params = multihost_utils.process_allgather(state.params, tiled=True)
    if jax.process_index() == 0:
        flat = {param_paths.path_str(p): np.asarray(v) for p, v in _leaves(params)}
        np.savez(out, **flat)


def iterator(c, index, count):
    return data.train_iterator(
        c.data, global_batch_size=BATCH, seed=0, process_index=index, process_count=count
    )


def _concat(parts):
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _leaves(tree):
    return jax.tree_util.tree_flatten_with_path(tree)[0]


if __name__ == "__main__":
    main()
