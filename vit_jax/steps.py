"""Train state, losses and the jitted train / eval steps with explicit shardings.

The state is born sharded: its shapes come from `jax.eval_shape`, its placement from the models'
logical axes and the strategy's rules, and `jax.jit(init, out_shardings=...)` materialises every
array directly on the devices that own it — no full copy ever exists on one device. The train step
takes and returns the state with the same shardings and donates it, so XLA updates in place.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from vit_jax import optim, sharding


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: dict
    opt_state: optax.OptState


@dataclasses.dataclass(frozen=True)
class Placed:
    """A train state's abstract shapes and the shardings it lives in."""

    abstract: TrainState  # jax.ShapeDtypeStruct leaves, sharding attached.
    shardings: TrainState
    init: Callable[[jax.Array], TrainState]  # rng → state, born sharded.


def place_state(model, tx_fn, *, input_shape, mesh, rules) -> Placed:
    """Shapes and shardings of the train state, and a jitted init that creates it in place.

    `tx_fn(params)` builds the optimizer (its masks need the param tree).
    """
    dummy = jnp.zeros((1, *input_shape[1:]), jnp.float32)
    boxed = jax.eval_shape(lambda r: model.init(r, dummy, train=False)["params"], jax.random.key(0))
    p_shard = sharding.param_shardings(boxed, mesh, rules)
    params_abs = nn.unbox(boxed)
    tx = tx_fn(params_abs)
    opt_abs = jax.eval_shape(tx.init, params_abs)
    replicated = NamedSharding(mesh, P())
    shardings = TrainState(
        step=replicated,
        params=p_shard,
        opt_state=sharding.like_params(opt_abs, params_abs, p_shard, mesh),
    )

    def init(rng):
        params = nn.unbox(model.init(rng, dummy, train=False)["params"])
        return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))

    abstract = jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
        TrainState(step=jax.ShapeDtypeStruct((), jnp.int32), params=params_abs, opt_state=opt_abs),
        shardings,
    )
    return Placed(
        abstract=abstract, shardings=shardings, init=jax.jit(init, out_shardings=shardings)
    )


def setup(model, config, *, mesh, input_shape, rules=None) -> tuple[Placed, Callable]:
    """(placed state, jitted train step) for `config`: its optimizer, loss, accumulation and (unless
    `rules` is given) its sharding strategy. The one way the trainer, the benchmarks and the tests
    build a step, so what they measure or check is what `train_and_evaluate` runs."""
    rules = sharding.rules_for(config.sharding, mesh) if rules is None else rules

    def tx_fn(params):
        return optim.make(config.optim, total_steps=config.total_steps, params=params)

    placed = place_state(model, tx_fn, input_shape=input_shape, mesh=mesh, rules=rules)
    step = make_train_step(
        model,
        tx_fn(placed.abstract.params),
        config=config,
        mesh=mesh,
        state_shardings=placed.shardings,
    )
    return placed, step


def per_example_loss(logits, labels, *, kind: str, label_smoothing: float = 0.0):
    """Loss per example. sigmoid_xent sums over classes (the paper's pre-training loss)."""
    num_classes = logits.shape[-1]
    targets = jax.nn.one_hot(labels, num_classes)
    if label_smoothing:
        targets = targets * (1.0 - label_smoothing) + label_smoothing / num_classes
    logits = logits.astype(jnp.float32)
    if kind == "sigmoid_xent":
        return optax.sigmoid_binary_cross_entropy(logits, targets).sum(-1)
    return optax.softmax_cross_entropy(logits, targets)


def make_train_step(model, tx, *, config, mesh, state_shardings):
    """Jitted (state, batch, rng) → (state, metrics) with gradient accumulation over micro-batches.

    Micro-batch i takes rows i, i+k, i+2k, ... of the global batch: each device then slices its own
    rows, so accumulation adds no communication. Dropout keys are folded from (rng, step), so a
    resumed run draws the same randomness as an uninterrupted one.
    """
    accum = config.grad_accum_steps
    batch_shard = sharding.batch_sharding(mesh)
    kind, smoothing = config.loss, config.label_smoothing

    def micro_grads(params, images, labels, rng):
        def loss_of(p):
            logits = model.apply({"params": p}, images, train=True, rngs={"dropout": rng})
            return per_example_loss(logits, labels, kind=kind, label_smoothing=smoothing).mean()

        return jax.value_and_grad(loss_of)(params)

    def step(state, batch, rng):
        rng = jax.random.fold_in(rng, state.step)
        if accum == 1:
            loss, grads = micro_grads(state.params, batch["image"], batch["label"], rng)
        else:
            loss, grads = _accumulate(micro_grads, state.params, batch, rng, accum, mesh)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {"loss": loss, "grad_norm": optax.global_norm(grads)}
        return TrainState(step=state.step + 1, params=params, opt_state=opt_state), metrics

    replicated = NamedSharding(mesh, P())
    return jax.jit(
        step,
        in_shardings=(state_shardings, batch_shard, replicated),
        out_shardings=(state_shardings, replicated),
        donate_argnums=(0,),
    )


def _accumulate(micro_grads, params, batch, rng, accum, mesh):
    def split(x):
        x = x.reshape(x.shape[0] // accum, accum, *x.shape[1:]).swapaxes(0, 1)
        return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, P(None, "data")))

    images, labels = split(batch["image"]), split(batch["label"])

    def body(carry, i):
        loss_sum, grad_sum = carry
        loss, grads = micro_grads(params, images[i], labels[i], jax.random.fold_in(rng, i))
        return (loss_sum + loss, jax.tree.map(jnp.add, grad_sum, grads)), None

    zeros = jax.tree.map(jnp.zeros_like, params)
    (loss, grads), _ = jax.lax.scan(body, (jnp.zeros((), jnp.float32), zeros), jnp.arange(accum))
    return loss / accum, jax.tree.map(lambda g: g / accum, grads)


def make_eval_step(model, *, mesh, param_shardings, loss_kind: str):
    """Jitted (params, batch) → summed correct / loss / count over the real (unmasked) examples."""

    def step(params, batch):
        logits = model.apply({"params": params}, batch["image"], train=False)
        mask = batch["mask"].astype(jnp.float32)
        labels = batch["label"]
        correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
        losses = per_example_loss(logits, labels, kind=loss_kind)
        return {
            "correct": (correct * mask).sum(),
            "loss": (losses * mask).sum(),
            "count": mask.sum(),
        }

    replicated = NamedSharding(mesh, P())
    return jax.jit(
        step,
        in_shardings=(param_shardings, sharding.batch_sharding(mesh)),
        out_shardings=replicated,
    )
