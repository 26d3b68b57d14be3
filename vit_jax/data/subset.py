"""Class-balanced training subsets (`config.data.train_examples`), for data-size studies.

A subset of n examples takes, from every class, its first examples in the split's canonical
order (TFDS's prepared order; file order for the arrays source): n // K per class for K classes,
and one more for the first n % K classes (by label). So subsets are deterministic, balanced
whatever the split's class mix, and nested (a smaller subset lies inside every larger one), which
keeps a data-size sweep's points comparable. Numpy only: both input paths use it.
"""

from __future__ import annotations

import numpy as np

from vit_jax import errors


def check_size(train_examples: int, *, available: int, split: str) -> None:
    """One-line ValueError when the split holds fewer examples than asked for."""
    if train_examples > available:
        raise errors.UserError(
            f"config.data.train_examples={train_examples} exceeds the {available} examples of "
            f"split {split!r}"
        )


def balanced_indices(labels: np.ndarray, train_examples: int, *, split: str) -> np.ndarray:
    """Ascending indices into `labels` of the class-balanced subset of `train_examples`."""
    labels = np.asarray(labels)
    check_size(train_examples, available=len(labels), split=split)
    classes = np.unique(labels)
    per_class, extra = divmod(train_examples, len(classes))
    chosen = []
    for i, label in enumerate(classes):
        wanted = per_class + (i < extra)
        members = np.flatnonzero(labels == label)
        if len(members) < wanted:
            raise errors.UserError(
                f"config.data.train_examples={train_examples}: class {label} of split "
                f"{split!r} has {len(members)} examples, a balanced subset needs {wanted}"
            )
        chosen.append(members[:wanted])
    return np.sort(np.concatenate(chosen))
