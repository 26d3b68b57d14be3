"""config.data.train_examples: class-balanced, nested, deterministic training subsets.

Checked on both input paths (tf.data: folders and TFDS; numpy: arrays), since a data-size study
is only meaningful if every path trains on the same kind of subset.
"""

from __future__ import annotations

import collections

import numpy as np
import pytest
from test_data import fmnist, folder, folder_config, image_ids, needs_idx, take  # noqa: F401
from test_data_arrays import cfg

from vit_jax import config_lib, data
from vit_jax.data import arrays, subset


def test_balanced_indices_take_each_class_first_examples_in_order():
    labels = np.array([2, 0, 0, 1, 2, 0, 1, 1, 2, 0, 2, 2])
    idx = subset.balanced_indices(labels, 7, split="train")
    # 7 = 2 per class + 1 extra for the lowest label: 3 of class 0, 2 of 1, 2 of 2.
    assert list(idx) == [0, 1, 2, 3, 4, 5, 6]
    assert collections.Counter(labels[idx]) == {0: 3, 1: 2, 2: 2}
    smaller = subset.balanced_indices(labels, 4, split="train")
    assert set(smaller) <= set(idx)  # Nested: a smaller subset lies inside a larger one.
    assert list(subset.balanced_indices(labels, 7, split="train")) == list(idx)


@pytest.mark.parametrize(
    "n, match",
    [(13, "train_examples=13 exceeds the 12 examples of split 'train'"),
     (11, "class 1 of split 'train' has 3 examples, a balanced subset needs 4")],
)  # fmt: skip
def test_balanced_indices_errors_are_one_line(n, match):
    labels = np.array([2, 0, 0, 1, 2, 0, 1, 1, 2, 0, 2, 2])
    with pytest.raises(ValueError, match=match) as e:
        subset.balanced_indices(labels, n, split="train")
    assert "\n" not in str(e.value)


def test_negative_train_examples_is_a_config_error():
    config = config_lib.base_config()
    config.data.train_examples = -1
    with pytest.raises(config_lib.ConfigError, match="train_examples=-1: must be >= 0"):
        config_lib.validate(config)


def _epoch_ids(config, *, processes: int, batch: int, steps: int) -> collections.Counter:
    seen = collections.Counter()
    for index in range(processes):
        it = data.train_iterator(
            config, global_batch_size=batch * processes, seed=3, process_index=index,
            process_count=processes,
        )  # fmt: skip
        for b in take(it, steps):
            seen.update(image_ids(b))
    return seen


@pytest.mark.parametrize("cache", [True, False])
def test_folder_subset_is_balanced_and_each_process_sees_its_part(folder, cache):  # noqa: F811
    config = folder_config(folder, train_examples=9, cache=cache)
    assert data.dataset_info(config).num_train == 9
    # Classes sorted cat (ids 13-24), dog (25-36), eel (0-12): the first 3 of each.
    expected = {13, 14, 15, 25, 26, 27, 0, 1, 2}
    # 2 processes: parts of 5 and 4; 3 steps of 3 per process go past one epoch of each part.
    seen = _epoch_ids(config, processes=1, batch=3, steps=3)
    assert seen == collections.Counter(expected)
    both = _epoch_ids(config, processes=3, batch=1, steps=3)
    assert both == collections.Counter(expected)


def test_folder_subset_too_big_names_the_key(folder):  # noqa: F811
    config = folder_config(folder, train_examples=38)
    with pytest.raises(ValueError, match="train_examples=38 exceeds the 37 examples"):
        data.dataset_info(config)


@needs_idx
def test_arrays_subset_is_balanced_nested_and_trained_on():
    images, labels = arrays.train_arrays(cfg(train_examples=50))
    assert np.bincount(labels, minlength=10).tolist() == [5] * 10
    small, _ = arrays.train_arrays(cfg(train_examples=30))
    assert {bytes(x) for x in small} <= {bytes(x) for x in images}
    config = cfg(train_examples=50, augment="resize", flip=False)
    assert data.dataset_info(config).num_train == 50
    (batch,) = take(data.train_iterator(config, global_batch_size=50, seed=0), 1)
    expected = collections.Counter(bytes(arrays.normalize(x)) for x in images)
    assert collections.Counter(map(bytes, batch["image"])) == expected  # One epoch: all 50.
    with pytest.raises(ValueError, match="train_examples=60001 exceeds the 60000 examples"):
        data.dataset_info(cfg(train_examples=60_001))


@needs_idx
def test_tfds_subset_matches_the_arrays_rule(fmnist_dir):
    """TFDS's prepared order differs from the IDX files', but the rule is the same: 4 per class."""
    config = fmnist(fmnist_dir, train_split="train[:500]", train_examples=40, augment="resize")
    config.flip = False
    assert data.dataset_info(config).num_train == 40
    (batch,) = take(data.train_iterator(config, global_batch_size=40, seed=0), 1)
    assert np.bincount(batch["label"], minlength=10).tolist() == [4] * 10
    (whole,) = data.eval_iterator(config, global_batch_size=500, split="train[:500]")
    firsts = subset.balanced_indices(whole["label"], 40, split="train[:500]")
    expected = collections.Counter(map(bytes, whole["image"][firsts]))
    assert collections.Counter(map(bytes, batch["image"])) == expected
