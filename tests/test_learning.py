"""Training learns, and its parts follow their formulas.

The end-to-end check trains a small ViT on scikit-learn's shipped digits (offline, 1,297 train
images) and asks for an accuracy far above chance: a sign flip in the update, a zero learning
rate or a loss that ignores the labels leave it near 10%. The schedule, the two losses and the
weight-decay mask are compared with their closed forms, so a wrong constant cannot hide behind
"it still trains".
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vit_jax import config_lib, optim, steps, train


def test_a_few_hundred_steps_learn_the_digits(tmp_path):
    pytest.importorskip("sklearn")  # Ships the digits (vit_jax/data/digits.py).
    c = config_lib.base_config()
    c.model.name, c.model.dtype = "XXS/7", "float32"
    c.data.source, c.data.name, c.data.image_size = "arrays", "digits", 28
    c.data.train_split, c.data.eval_split, c.data.flip = "train", "test", False
    c.batch_size, c.total_steps, c.eval_every, c.checkpoint_every = 64, 300, 0, 0
    c.optim.lr, c.optim.warmup_steps, c.optim.weight_decay = 2e-3, 20, 0.0
    c.mesh, c.progress_bar = (("data", 1),), False
    summary = train.train_and_evaluate(c, str(tmp_path / "digits"))
    # Measured 0.874 (10 classes: chance 0.1); the margin absorbs other CPUs' rounding.
    assert summary["accuracy"] >= 0.7, summary
    assert summary["step"] == 300


def _optim(**changes):
    c = config_lib.base_config().optim
    c.update(changes)
    return c


@pytest.mark.parametrize("kind", ["cosine", "linear", "constant"])
def test_schedule_is_linear_warmup_then_the_named_decay(kind):
    lr, warm, total = 3e-3, 10, 110
    fn = optim.schedule(_optim(lr=lr, warmup_steps=warm, schedule=kind), total_steps=total)
    t = np.arange(0, total + 1)
    progress = np.clip((t - warm) / (total - warm), 0, 1)
    decayed = {
        "cosine": lr * 0.5 * (1 + np.cos(np.pi * progress)),
        "linear": lr * (1 - progress),
        "constant": np.full_like(progress, lr),
    }[kind]
    want = np.where(t < warm, lr * t / warm, decayed)
    got = np.array([float(fn(s)) for s in t])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-9)
    assert got[0] == 0.0 and abs(got[warm] - lr) < 1e-8
    if kind != "constant":
        assert abs(got[total]) < 1e-9  # Decays to zero at the last step.


def test_losses_equal_their_formulas():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(5, 4)).astype(np.float32) * 3
    labels = np.array([0, 3, 1, 2, 3])
    onehot = np.eye(4)[labels]
    z = logits.astype(np.float64)
    log_softmax = z - np.log(np.exp(z).sum(-1, keepdims=True))
    softmax = -(onehot * log_softmax).sum(-1)
    sig = 1 / (1 + np.exp(-z))
    sigmoid = -(onehot * np.log(sig) + (1 - onehot) * np.log(1 - sig)).sum(-1)
    smooth = onehot * 0.9 + 0.1 / 4
    smoothed = -(smooth * log_softmax).sum(-1)
    for kind, want, eps in [("softmax_xent", softmax, 0.0), ("sigmoid_xent", sigmoid, 0.0),
                            ("softmax_xent", smoothed, 0.1)]:  # fmt: skip
        got = steps.per_example_loss(
            jnp.asarray(logits), jnp.asarray(labels), kind=kind, label_smoothing=eps
        )
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, err_msg=kind)


def test_weight_decay_reaches_kernels_only_and_scales_with_lr():
    """With zero gradients, one SGD step moves exactly the decayed params, by -lr·wd·p."""
    params = {
        "Dense_0": {"kernel": jnp.full((2, 3), 2.0), "bias": jnp.full((3,), 2.0)},
        "LayerNorm_0": {"scale": jnp.full((3,), 2.0)},
        "posembed": {"pos_embedding": jnp.full((1, 4, 3), 2.0)},
    }
    lr, wd = 0.5, 0.1
    c = _optim(name="sgd", momentum=0.0, lr=lr, weight_decay=wd, warmup_steps=0,
               schedule="constant", grad_clip_norm=0.0)  # fmt: skip
    tx = optim.make(c, total_steps=10, params=params)
    zeros = jax.tree.map(jnp.zeros_like, params)
    updates, _ = tx.update(zeros, tx.init(params), params)
    flat = {
        "/".join(k.key for k in path): v for path, v in jax.tree_util.tree_leaves_with_path(updates)
    }
    np.testing.assert_allclose(flat["Dense_0/kernel"], -lr * wd * 2.0, rtol=1e-6)
    for name in ("Dense_0/bias", "LayerNorm_0/scale", "posembed/pos_embedding"):
        assert not np.asarray(flat[name]).any(), name
