"""Few-shot linear probe: the closed-form solve, the sampling, and the evaluation loop."""

import sys
import types

import ml_collections
import numpy as np
import pytest

import vit_jax
from vit_jax import config_lib, fewshot


@pytest.mark.parametrize("n,d", [(50, 8), (8, 50)])  # Primal and dual branches.
def test_ridge_matches_direct_normal_equations(n, d):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(n, d)), rng.normal(size=(n, 3))
    lam = 2.5
    got = fewshot.ridge_weights(x.astype(np.float32), y, l2_reg=lam)
    # Ridge as ordinary least squares on the augmented system [X; √λ I] W = [Y; 0].
    aug_x = np.concatenate([x, np.sqrt(lam) * np.eye(d)])
    aug_y = np.concatenate([y, np.zeros((d, 3))])
    want = np.linalg.lstsq(aug_x, aug_y, rcond=None)[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got, np.linalg.inv(x.T @ x + lam * np.eye(d)) @ x.T @ y, atol=1e-6)
    assert got.dtype == np.float64


def _blobs(n_per_class, *, classes=5, dim=32, spread=0.05, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(classes, dim)) * 3
    labels = np.repeat(np.arange(classes), n_per_class)
    return centers[labels] + spread * rng.normal(size=(len(labels), dim)), labels


def test_separable_features_give_perfect_accuracy():
    x, y = _blobs(40)
    xt, yt = _blobs(20, seed=0)
    for shots in (1, 5, 10):
        acc = fewshot.fewshot_accuracy(x, y, xt, yt, shots=shots, seed=1)
        assert acc > 0.99, (shots, acc)


def test_noise_features_give_chance_accuracy():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(2000, 64)), rng.integers(0, 10, 2000)
    xt, yt = rng.normal(size=(4000, 64)), rng.integers(0, 10, 4000)
    accs = [fewshot.fewshot_accuracy(x, y, xt, yt, shots=10, seed=s) for s in range(3)]
    assert abs(np.mean(accs) - 0.1) < 0.03, accs


def test_sampling_is_seeded_nested_and_per_class():
    labels = np.repeat(np.arange(4), 30)
    one = fewshot.sample_shots(labels, classes=range(4), shots=1, seed=3)
    five = fewshot.sample_shots(labels, classes=range(4), shots=5, seed=3)
    assert np.array_equal(np.bincount(labels[five]), [5, 5, 5, 5])
    assert set(one) <= set(five)
    assert np.array_equal(five, fewshot.sample_shots(labels, classes=range(4), shots=5, seed=3))
    assert not np.array_equal(five, fewshot.sample_shots(labels, classes=range(4), shots=5, seed=4))


def test_class_subset_restricts_train_and_test():
    x, y = _blobs(30, classes=6)
    acc = fewshot.fewshot_accuracy(x, y, x, y, shots=3, seed=0, classes=[1, 4])
    assert acc == 1.0


def _fake_eval_iterator(splits):
    """Stands in for vit_jax.data.eval_iterator: padded batches with a mask, like the real one."""

    def eval_iterator(data_config, *, global_batch_size, process_index=0, process_count=1, split):
        images, labels = splits[split]
        for start in range(0, len(labels), global_batch_size):
            x, y = (
                images[start : start + global_batch_size],
                labels[start : start + global_batch_size],
            )
            pad = global_batch_size - len(y)
            yield {
                "image": np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)]),
                "label": np.concatenate([y, np.zeros(pad, y.dtype)]).astype(np.int32),
                "mask": np.arange(global_batch_size) < len(y),
            }

    return eval_iterator


def test_evaluate_extracts_features_and_averages_over_seeds(monkeypatch):
    # A stand-in vit_jax.data: the real one imports TensorFlow, slow and beside the point here.
    fake_data = types.ModuleType("vit_jax.data")
    monkeypatch.setitem(sys.modules, "vit_jax.data", fake_data)
    monkeypatch.setattr(vit_jax, "data", fake_data, raising=False)
    monkeypatch.setattr(fewshot, "data", fake_data)  # fewshot imports vit_jax.data at its top.
    # "Images" whose pixels are noisy class blobs; the feature function flattens them.
    x, y = _blobs(50, classes=4, dim=12, spread=0.3)
    xt, yt = _blobs(25, classes=4, dim=12, spread=0.3, seed=0)
    splits = {"train": (x.reshape(-1, 2, 2, 3), y), "test": (xt.reshape(-1, 2, 2, 3), yt)}
    fake_data.eval_iterator = _fake_eval_iterator(splits)
    sizes = []

    def features_fn(images):
        sizes.append(len(images))
        return images.reshape(len(images), -1)

    config = config_lib.base_config()
    config.fewshot.dataset = "blobs"
    config.fewshot.shots = (1, 5)
    config.fewshot.max_eval_examples = 60
    out = fewshot.evaluate(features_fn, config.fewshot, config.data, batch_size=16)
    assert set(out) == {"fewshot_1shot", "fewshot_5shot"}
    assert out["fewshot_5shot"] > 0.95
    assert set(sizes) == {16}  # Always full batches: one compilation.
    # Train features only for the drawn examples (≤ 5 shots × 4 classes × 3 seeds), plus ≤ 60 test.
    assert sum(sizes) <= 16 * (-(-60 // 16) + -(-60 // 16) + 1)


def test_evaluate_is_off_without_a_dataset():
    config = ml_collections.ConfigDict({"dataset": None})
    assert fewshot.evaluate(lambda x: x, config, None, batch_size=4) == {}
