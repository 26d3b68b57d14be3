"""`train_and_evaluate(config, workdir)`: the one entry from a config to a trained, evaluated run.

It composes the pieces — mesh and rules (sharding), model (models), optimizer (optim), state and
steps (steps), data (data), checkpoints (checkpoint), metrics (metrics) — and owns only the loop:
resume, step, log, evaluate, checkpoint. Re-running the same command resumes from the latest
complete checkpoint in `workdir`, with the same data order and dropout keys as an uninterrupted run.
"""

from __future__ import annotations

import json
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from vit_jax import (
    checkpoint,
    config_lib,
    data,
    errors,
    fewshot,
    finetune,
    models,
    optim,
    paths,
    sharding,
    steps,
)
from vit_jax import workdir as workdir_lib
from vit_jax.input_feed import Feed, progress
from vit_jax.metrics import MetricWriter
from vit_jax.preemption import Preempted, Stop


def build_model(config, *, num_classes: int):
    overrides = {k: config.model[k] for k in models.OVERRIDE_KEYS}
    return models.create(config.model.name, num_classes=num_classes, **overrides)


def check_shapes(config, mesh) -> None:
    """One-line errors for a batch or image size the mesh or model cannot take."""
    n_data = mesh.shape["data"]
    if config.batch_size % (n_data * config.grad_accum_steps):
        raise config_lib.ConfigError(
            f"config.batch_size={config.batch_size} is not divisible by the mesh's data axis "
            f"({n_data} devices) × config.grad_accum_steps={config.grad_accum_steps}"
        )
    if config.batch_size % jax.process_count():
        raise config_lib.ConfigError(
            f"config.batch_size={config.batch_size} is not divisible by "
            f"{jax.process_count()} processes"
        )
    try:
        models.grid_side(models.spec(config.model.name), config.data.image_size)
    except ValueError as e:
        raise config_lib.ConfigError(f"config.data.{e}") from None


def train_and_evaluate(config, workdir: str, *, restart: bool = False) -> dict:
    """Trains and evaluates per `config`; returns the final summary (also the last metrics line).

    Everything that can be checked is checked before the first write to `workdir`; a workdir
    holding another run is refused (or, with `restart`, moved aside): see vit_jax.workdir.
    """
    config_lib.validate(config)
    info = data.dataset_info(config.data)
    mesh = sharding.make_mesh(config.mesh)
    check_shapes(config, mesh)
    rules = sharding.rules_for(config.sharding, mesh)
    dataset = {"num_classes": info.num_classes, "class_names": list(info.class_names)}
    changes = workdir_lib.prepare(
        config, workdir, dataset=dataset, restart=restart, primary=jax.process_index() == 0
    )
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices("vit_jax_workdir_prepared")
    model = build_model(config, num_classes=info.num_classes)
    size = config.data.image_size
    with jax.set_mesh(mesh):
        shape = (1, size, size, info.channels)
        return _run(config, workdir, model, mesh, rules, shape, changes=changes)


def _run(config, workdir, model, mesh, rules, input_shape, *, changes):
    placed, train_step = steps.setup(model, config, mesh=mesh, input_shape=input_shape, rules=rules)
    ckpt = checkpoint.Checkpointer(
        str(paths.path(workdir) / "checkpoints"),
        keep=config.keep_checkpoints,
        keep_every=config.keep_checkpoints_every,
    )
    state = _initial_state(config, placed, ckpt)
    start = int(state.step)
    eval_step = steps.make_eval_step(
        model, mesh=mesh, param_shardings=placed.shardings.params, loss_kind=config.loss
    )
    run_eval = lambda params: evaluate(config, eval_step, params, mesh, model)  # noqa: E731
    writer = MetricWriter(workdir)
    if changes and start:  # A resumed run under a compatible new config: say what changed.
        writer.note(start, "config_change", {"changes": changes})
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(placed.abstract.params))
    logging.info("Model %s: %s params; starting at step %d", config.model.name, n_params, start)
    rng = jax.random.fold_in(jax.random.key(config.seed), 1)
    t0 = time.time()
    summary = {"step": start, "params": n_params}
    try:
        if start < config.total_steps:
            state = _train_loop(config, state, start, train_step, run_eval, rng, mesh, writer, ckpt)
        results = run_eval(state.params)
        summary.update(results)
        if start < config.total_steps:  # A finished run re-opened only re-reports.
            writer.write(config.total_steps, "eval", results)
        if ckpt.latest_step() != config.total_steps:
            _save(ckpt, config.total_steps, state, None)
    finally:  # Also on errors: let an in-flight async save commit.
        ckpt.close()
        writer.close()
    summary.update(
        step=config.total_steps,
        images_seen=config.total_steps * config.batch_size,
        wall_s=time.time() - t0,
    )
    _print_summary(config, summary)
    return summary


def _initial_state(config, placed, ckpt):
    if ckpt.latest_step() is not None:
        return ckpt.restore(placed.abstract)
    state = placed.init(jax.random.key(config.seed))
    if config.init_from.path:  # Fine-tuning: pre-trained weights, fresh head, resampled posemb.
        params = finetune.init_params(config, abstract_params=placed.abstract.params)
        state = state.replace(params=jax.device_put(params, placed.shardings.params))
    return state


def _train_loop(config, state, start, train_step, run_eval, rng, mesh, writer, ckpt):
    feed = Feed(
        data.train_iterator(
            config.data,
            global_batch_size=config.batch_size,
            seed=config.seed,
            process_index=jax.process_index(),
            process_count=jax.process_count(),
            start_step=start,
        ),
        mesh=mesh,
        size=config.data.prefetch,
    )
    bar = progress(config, start)
    last_t, last_step, metrics = time.time(), start, None
    stop = Stop()
    try:
        for step in range(start + 1, config.total_steps + 1):
            state, metrics = train_step(state, feed.next(), rng)
            if step % config.log_every == 0 or step == config.total_steps:
                values = _check_finite(jax.device_get(metrics), step, ckpt)
                now = time.time()
                rate = (step - last_step) * config.batch_size / max(now - last_t, 1e-9)
                values |= {
                    "img_per_sec": rate,
                    "input_img_per_sec": feed.rate(),
                    "lr": _lr(config, step),
                }
                writer.write(step, "train", values)
                bar.set_postfix(loss=f"{values['loss']:.4f}", img_s=f"{rate:.0f}")
                last_t, last_step = now, step
            bar.update(1)
            if step < config.total_steps and config.eval_every and step % config.eval_every == 0:
                results = run_eval(state.params)
                writer.write(step, "eval", results)
                bar.write(f"step {step}: eval accuracy {results['accuracy']:.4f}")
            if (
                step < config.total_steps
                and config.checkpoint_every
                and step % config.checkpoint_every == 0
            ):
                _save(ckpt, step, state, metrics)
            if step < config.total_steps and stop.requested(step):
                if ckpt.latest_step() != step:
                    _save(ckpt, step, state, metrics)
                raise Preempted(step)
    finally:
        stop.close()
        bar.close()
        feed.close()
    _check_finite(jax.device_get(metrics), config.total_steps, ckpt)
    return state


def _lr(config, step):
    return float(optim.schedule(config.optim, total_steps=config.total_steps)(step))


def _check_finite(values, step, ckpt) -> dict:
    values = {k: float(v) for k, v in values.items()}
    if not all(np.isfinite(v) for v in values.values()):
        ckpt.wait()
        last = ckpt.latest_step()
        kept = (
            f"the last good checkpoint (step {last}) is intact"
            if last is not None
            else "no checkpoint had been written yet (lower the learning rate or check the data)"
        )
        raise errors.Diverged(
            f"non-finite training metrics at step {step} ({values}); "
            f"stopped without saving — {kept}"
        )
    return values


def _save(ckpt, step, state, metrics):
    """Saves unless the state went non-finite since the last check (never overwrite good state)."""
    if metrics is not None:
        _check_finite(jax.device_get(metrics), step, ckpt)
    ckpt.save(step, state)


def features_fn(model, params, mesh):
    """images (the same full batch on every process) → pooled pre-logits as numpy, for few-shot."""
    sharding_ = sharding.batch_sharding(mesh)

    @jax.jit
    def apply(p, images):
        _, state = model.apply({"params": p}, images, train=False, mutable=["intermediates"])
        return state["intermediates"]["pre_logits"]["features"][0].astype(jnp.float32)

    def fn(images):
        images = np.asarray(images, np.float32)
        x = jax.make_array_from_callback(images.shape, sharding_, lambda idx: images[idx])
        return np.asarray(multihost_utils.process_allgather(apply(params, x), tiled=True))

    return fn


def evaluate(config, eval_step, params, mesh, model=None) -> dict:
    """Top-1 accuracy and mean loss over the whole eval split (every example exactly once),
    plus the few-shot linear probes of `config.fewshot` when a dataset is set."""
    totals = None
    for batch in data.eval_iterator(
        config.data,
        global_batch_size=config.batch_size,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    ):
        out = eval_step(params, sharding.to_global(batch, mesh))
        totals = out if totals is None else jax.tree.map(jnp.add, totals, out)
    totals = jax.device_get(totals)
    count = max(float(totals["count"]), 1.0)
    results = {
        "accuracy": float(totals["correct"]) / count,
        "loss": float(totals["loss"]) / count,
        "eval_examples": float(totals["count"]),
    }
    if config.fewshot.dataset and model is not None:
        fn = features_fn(model, params, mesh)
        results |= fewshot.evaluate(fn, config.fewshot, config.data, batch_size=config.batch_size)
    return results


def _print_summary(config, summary) -> None:
    if jax.process_index() == 0:
        print(
            f"Done: {config.model.name} on {config.data.name}, step {summary['step']}, "
            f"accuracy {summary['accuracy']:.4f}, loss {summary['loss']:.4f}, "
            f"{summary['images_seen']} images, {summary['wall_s']:.0f}s"
        )
        logging.info("summary %s", json.dumps(summary))
