"""Times one train step of ours or of the original vit_jax; run as a script by `reference.py`.

Each implementation runs in its own process: both packages are called `vit_jax`, so the original
can only be imported with its checkout first on `sys.path` and ours out of the way. Nothing here
imports our package at module level for that reason. Both sides get the same synthetic batch
shape, model dimensions and optimizer (global-norm clip + AdamW with warm-up and cosine decay),
and are timed by the same loop: compile, warm-up, then `repeats` runs of `steps` steps, each
blocked on its final state. The original's step is its `train.make_update_fn` (pmap over the
local devices, one-hot labels), rebuilt here because importing its train.py needs `clu`.

  python vit_jax/benchmark/reference_worker.py '{"impl": "ours", ...}'   # prints one JSON line
"""

from __future__ import annotations

import contextlib
import json
import statistics
import sys
import time


def time_steps(step, carry, *, steps: int, repeats: int, warmup: int) -> dict:
    """Compile (the first call), warm up, then the median of `repeats` timed runs of `steps`."""
    import jax

    start = time.perf_counter()
    carry = jax.block_until_ready(step(carry))
    compile_s = time.perf_counter() - start
    for _ in range(warmup):
        carry = step(carry)
    jax.block_until_ready(carry)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            carry = step(carry)
        jax.block_until_ready(carry)
        times.append(time.perf_counter() - start)
    return {"compile_s": compile_s, "times_s": times, "step_s": statistics.median(times) / steps}


def _tx(optim: dict):
    import jax
    import optax

    lr = optax.warmup_cosine_decay_schedule(
        0.0,
        optim["lr"],
        optim["warmup_steps"],
        max(optim["total_steps"], optim["warmup_steps"] + 1),
    )
    adamw = optax.adamw(
        lr,
        b1=optim["b1"],
        b2=optim["b2"],
        weight_decay=optim["weight_decay"],
        mask=lambda params: jax.tree.map(lambda x: x.ndim > 1, params),
    )
    return optax.chain(optax.clip_by_global_norm(optim["grad_clip_norm"]), adamw)


def build_reference(job: dict):
    """The original VisionTransformer and its data-parallel update step, on synthetic data."""
    import jax
    import jax.numpy as jnp

    model = _original_model(job)
    n_dev = jax.local_device_count()
    b, s, c = job["batch"], job["model"]["image_size"], job["model"]["channels"]
    classes = job["model"]["num_classes"]
    key_x, key_y = jax.random.split(jax.random.PRNGKey(job["seed"] + 1))
    images = jax.random.normal(key_x, (n_dev, b // n_dev, s, s, c))
    labels = jax.nn.one_hot(jax.random.randint(key_y, (n_dev, b // n_dev), 0, classes), classes)
    batch = {"image": images, "label": labels}
    params = jax.jit(
        lambda: model.init(jax.random.PRNGKey(job["seed"]), jnp.ones((1, s, s, c)), train=False)
    )()["params"]
    tx = _tx(job["optim"])
    update = _original_update(model, tx)

    def replicate(tree):  # flax.jax_utils.replicate, without its deprecated device_put_replicated
        return jax.tree.map(lambda x: jnp.broadcast_to(x, (n_dev, *jnp.shape(x))), tree)

    carry = (replicate(params), replicate(tx.init(params)), replicate(jax.random.PRNGKey(0)))

    def step(carry):
        params, opt_state, rng = carry
        params, opt_state, _, rng = update(params, opt_state, batch, rng)
        return params, opt_state, rng

    return step, carry, contextlib.nullcontext()


def _original_model(job: dict):
    """The original's `models_vit.VisionTransformer`, imported from `reference_dir`."""
    import types

    sys.path.insert(0, job["reference_dir"])
    from vit_jax import models_vit  # The original's, from reference_dir.

    if not models_vit.__file__.startswith(job["reference_dir"]):
        raise RuntimeError(f"imported {models_vit.__file__}, not the reference checkout")
    m = job["model"]
    return models_vit.VisionTransformer(
        num_classes=m["num_classes"],
        patches=types.SimpleNamespace(size=(m["patch_size"], m["patch_size"])),
        transformer={
            "num_layers": m["num_layers"],
            "mlp_dim": m["mlp_dim"],
            "num_heads": m["num_heads"],
            "dropout_rate": m["dropout_rate"],
            "attention_dropout_rate": m["dropout_rate"],
        },
        hidden_size=m["hidden_size"],
        classifier="token",
        representation_size=None,
    )


def _original_update(model, tx):
    """The original's `train.make_update_fn`: pmap, one-hot cross-entropy, pmean'd grads."""
    import jax
    import jax.numpy as jnp
    import optax

    def update_fn(params, opt_state, batch, rng):
        _, new_rng = jax.random.split(rng)
        dropout_rng = jax.random.fold_in(rng, jax.lax.axis_index("batch"))

        def loss_fn(params, images, labels):
            logits = model.apply(
                {"params": params}, rngs={"dropout": dropout_rng}, inputs=images, train=True
            )
            return -jnp.mean(jnp.sum(jax.nn.log_softmax(logits) * labels, axis=1))

        loss, grads = jax.value_and_grad(loss_fn)(params, batch["image"], batch["label"])
        grads = jax.tree.map(lambda x: jax.lax.pmean(x, axis_name="batch"), grads)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return params, opt_state, jax.lax.pmean(loss, axis_name="batch"), new_rng

    return jax.pmap(update_fn, axis_name="batch", donate_argnums=(0,))


def build_ours(job: dict):
    """Our model and train step, built from the config exactly as `train_and_evaluate` does."""
    import jax
    import numpy as np

    from vit_jax import sharding, steps
    from vit_jax.benchmark.reference import load_config
    from vit_jax.train import build_model, check_shapes

    config = load_config(job["config"], job["overrides"])
    mesh = sharding.make_mesh(config.mesh)
    check_shapes(config, mesh)
    m = job["model"]
    model = build_model(config, num_classes=m["num_classes"])
    b, s, c = job["batch"], m["image_size"], m["channels"]
    with jax.set_mesh(mesh):
        placed, train_step = steps.setup(model, config, mesh=mesh, input_shape=(b, s, s, c))
        state = placed.init(jax.random.key(job["seed"]))
        rs = np.random.default_rng(job["seed"] + 1)
        batch = sharding.to_global(
            {
                "image": rs.standard_normal((b, s, s, c), np.float32),
                "label": rs.integers(0, m["num_classes"], (b,)).astype(np.int32),
            },
            mesh,
        )
        rng = jax.random.key(0)

    return (lambda state: train_step(state, batch, rng)[0]), state, jax.set_mesh(mesh)


def main(argv: list[str]) -> None:
    job = json.loads(argv[1])
    build = build_reference if job["impl"] == "reference" else build_ours
    step, carry, context = build(job)  # context: our mesh, entered once around the timing.
    with context:
        result = time_steps(step, carry, steps=job["steps"], repeats=job["repeats"], warmup=3)
    print("RESULT " + json.dumps({"impl": job["impl"], **result}), flush=True)


if __name__ == "__main__":
    main(sys.argv)
