"""Few-shot linear evaluation of frozen features (ViT paper §4.1; big_vision's fewshot_lsr).

Why this recipe: a closed-form ridge regression onto ±1 one-hot targets is a cheap, deterministic
probe of representation quality — no optimizer, no tuning, fast enough to run at every eval.
Per (shots, seed) draw: sample `shots` examples per class, whiten with that few-shot set's mean and
std, append a constant bias feature, solve ridge with λ = l2_reg, predict by argmax.

The solve runs in float64 numpy, on the host, in whichever of the primal (D×D) or dual (N×N) form
is smaller: the same weights either way, W = (XᵀX + λI)⁻¹XᵀY = Xᵀ(XXᵀ + λI)⁻¹Y.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable

import numpy as np

from vit_jax import data

# A large constant bias feature: the ridge penalty on its weight is then negligible, so the bias
# is almost unregularized without a separate, unpenalized intercept (big_vision does the same).
BIAS = 100.0
_STD_EPS = 1e-5  # Keeps constant features (a 1-shot set, dead units) finite after whitening.


def ridge_weights(x: np.ndarray, y: np.ndarray, *, l2_reg: float) -> np.ndarray:
    """argmin_W |XW − Y|² + λ|W|², in float64, via the smaller of the primal and dual systems."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    n, d = x.shape
    if n >= d:
        return np.linalg.solve(x.T @ x + l2_reg * np.eye(d), x.T @ y)
    return x.T @ np.linalg.solve(x @ x.T + l2_reg * np.eye(n), y)


def sample_shots(labels: np.ndarray, *, classes: Iterable[int], shots: int, seed: int):
    """Indices of `shots` examples per class (all of a class if it has fewer).

    One permutation per class from `seed`, then its first `shots`: the draws for a seed are
    nested (the 5-shot set contains the 1-shot set), as in big_vision.
    """
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    picked = [rng.permutation(np.flatnonzero(labels == c))[:shots] for c in classes]
    return np.concatenate(picked).astype(np.int64)


def fewshot_accuracy(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    test_features: np.ndarray,
    test_labels: np.ndarray,
    *,
    shots: int,
    seed: int,
    l2_reg: float = 1024.0,
    classes: Iterable[int] | None = None,
) -> float:
    """Top-1 accuracy on the test features of a ridge probe fit on one few-shot draw.

    `classes` (default: every label in `train_labels`) restricts both sides to those classes.
    """
    train_labels = np.asarray(train_labels)
    test_labels = np.asarray(test_labels)
    classes = np.unique(train_labels) if classes is None else np.asarray(list(classes))
    idx = sample_shots(train_labels, classes=classes, shots=shots, seed=seed)
    x = np.asarray(train_features, np.float64)[idx]
    targets = 2.0 * (train_labels[idx][:, None] == classes[None, :]) - 1.0

    mean, std = x.mean(axis=0), x.std(axis=0) + _STD_EPS
    w = ridge_weights(_with_bias((x - mean) / std), targets, l2_reg=l2_reg)

    keep = np.isin(test_labels, classes)
    x_test = (np.asarray(test_features, np.float64)[keep] - mean) / std
    predicted = classes[np.argmax(_with_bias(x_test) @ w, axis=1)]
    return float(np.mean(predicted == test_labels[keep])) if keep.any() else float("nan")


def _with_bias(x: np.ndarray) -> np.ndarray:
    return np.concatenate([x, np.full((len(x), 1), BIAS)], axis=1)


def evaluate(
    features_fn: Callable[[np.ndarray], np.ndarray],
    fewshot_config,
    data_config,
    *,
    batch_size: int,
) -> dict[str, float]:
    """{'fewshot_{k}shot': mean accuracy over seeds} on `fewshot_config.dataset`.

    `features_fn(images) -> (batch, D)` pre-logits; it always gets exactly `batch_size` images
    (partial batches are padded), so a jitted function compiles once. Only the train examples
    some (shots, seed) draw needs get features: their labels are read in a first, model-free
    pass. Single-host semantics: every process reads the whole splits and calls features_fn alike.
    """
    fs = fewshot_config
    if not fs.dataset:
        return {}
    cfg = copy.deepcopy(data_config)
    cfg.name = fs.dataset  # The run's data settings (source, data_dir, image_size) otherwise.
    train_y = _labels(cfg, fs.train_split, batch_size=batch_size)
    classes = list(fs.classes) or sorted(np.unique(train_y).tolist())
    seeds = range(fs.seeds)
    draws = [sample_shots(train_y, classes=classes, shots=max(fs.shots), seed=s) for s in seeds]
    needed = np.unique(np.concatenate(draws))
    # Features only at the `needed` rows; sample_shots on the full label array picks within them.
    feats, _ = _features(features_fn, cfg, fs.train_split, batch_size=batch_size, wanted=needed)
    train_x = np.zeros((len(train_y), feats.shape[1]), feats.dtype)
    train_x[needed] = feats
    test_x, test_y = _features(
        features_fn,
        cfg,
        fs.eval_split,
        batch_size=batch_size,
        limit=fs.max_eval_examples,
        classes=classes,
    )
    probe = dict(classes=classes, l2_reg=fs.l2_reg)
    return {
        f"fewshot_{k}shot": float(
            np.mean(
                [
                    fewshot_accuracy(train_x, train_y, test_x, test_y, shots=k, seed=s, **probe)
                    for s in seeds
                ]
            )
        )
        for k in fs.shots
    }


def _batches(cfg, split, *, batch_size):
    for batch in data.eval_iterator(cfg, global_batch_size=batch_size, split=split):
        mask = np.asarray(batch.get("mask", np.ones(len(batch["label"]), bool)), bool)
        yield np.asarray(batch["image"])[mask], np.asarray(batch["label"])[mask]


def _labels(cfg, split, *, batch_size) -> np.ndarray:
    return np.concatenate([y for _, y in _batches(cfg, split, batch_size=batch_size)])


def _features(features_fn, cfg, split, *, batch_size, wanted=None, limit=None, classes=None):
    """Features and labels of the split's examples at positions `wanted` (or of the first
    `limit` examples of `classes`), computed in full batches as the selection fills them."""
    pending, labels, feats, seen, kept = [], [], [], 0, 0
    for x, y in _batches(cfg, split, batch_size=batch_size):
        take = np.ones(len(y), bool)
        if wanted is not None:
            take = np.isin(np.arange(seen, seen + len(y)), wanted)
        if classes is not None:
            take &= np.isin(y, classes)
        if limit is not None:
            take &= np.cumsum(take) + kept <= limit
        seen, kept = seen + len(y), kept + int(take.sum())
        pending.append(x[take])
        labels.append(y[take])
        pending = [np.concatenate(pending)]
        full = len(pending[0]) // batch_size * batch_size
        if full:
            feats.append(_run(features_fn, pending[0][:full], batch_size=batch_size))
            pending = [pending[0][full:]]
        if limit is not None and kept >= limit:
            break
    if pending and len(pending[0]):
        feats.append(_run(features_fn, pending[0], batch_size=batch_size))
    return np.concatenate(feats), np.concatenate(labels)


def _run(features_fn, images: np.ndarray, *, batch_size: int) -> np.ndarray:
    """features_fn over `images` in chunks of exactly batch_size (the last one edge-padded)."""
    out = []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        pad = batch_size - len(chunk)
        if pad:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
        out.append(np.asarray(features_fn(chunk))[: batch_size - pad])
    return np.concatenate(out).reshape(len(images), -1)
