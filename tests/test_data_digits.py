"""The offline transfer task: scikit-learn's digits as a 28×28 MNIST-like dataset."""

import numpy as np
import pytest

from vit_jax import config_lib, data
from vit_jax.data import arrays, digits

sklearn_datasets = pytest.importorskip("sklearn.datasets")


def _config(source="tfds"):
    c = config_lib.base_config().data
    c.source, c.name, c.image_size = source, "digits", 28
    c.train_split, c.eval_split, c.augment, c.flip = "train", "test", "pad_crop", False
    return c


def test_the_images_are_scikit_learns_framed_as_mnist():
    raw = sklearn_datasets.load_digits()
    small, labels = digits._read_all()
    np.testing.assert_array_equal(small, raw.images)
    np.testing.assert_array_equal(labels, raw.target)
    x_train, y_train = digits.read_split("train")
    x_test, y_test = digits.read_split("test")
    assert x_train.shape == (1297, 28, 28, 1) and x_test.shape == (500, 28, 28, 1)
    assert x_train.dtype == np.uint8 and y_train.dtype == np.int32
    np.testing.assert_array_equal(np.concatenate([y_train, y_test]), raw.target)
    both = np.concatenate([x_train, x_test])[..., 0]
    border = np.ones((28, 28), bool)
    border[4:24, 4:24] = False
    assert not both[:, border].any()  # MNIST's frame: a 20×20 box centred in 28×28.
    # Box averages over 2.5×2.5 px blocks ≈ the original 8×8 levels (0..16 → 0..255).
    box = both[:, 4:24, 4:24].astype(np.float64).reshape(-1, 4, 5, 4, 5).mean((2, 4))
    coarse = raw.images.reshape(-1, 4, 2, 4, 2).mean((2, 4)) * 255 / 16
    assert np.abs(box - coarse).mean() < 12
    for y in (y_train, y_test):
        assert np.bincount(y, minlength=10).min() >= 0.09 * len(y)  # Every class, near-equal.


@pytest.mark.parametrize("source", ["tfds", "arrays"])
def test_digits_are_served_by_numpy_under_any_source(source):
    c = _config(source)
    info = data.dataset_info(c)
    assert (info.num_classes, info.num_train, info.num_eval) == (10, 1297, 500)
    assert info.image_shape == (28, 28, 1)
    batch = next(data.train_iterator(c, global_batch_size=8, seed=0))
    assert batch["image"].shape == (8, 28, 28, 1) and batch["image"].dtype == np.float32
    evals = list(data.eval_iterator(c, global_batch_size=128))
    assert len(evals) == 4 and sum(int(b["mask"].sum()) for b in evals) == 500


def test_without_scikit_learn_the_error_is_one_line_with_the_fix(monkeypatch):
    monkeypatch.setattr(digits.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(arrays, "_CACHE", {})
    digits._read_all.cache_clear()
    with pytest.raises(arrays.ArraysError) as e:
        arrays.load(_config(), "train")
    assert str(e.value) == (
        "config.data.name='digits': the digits dataset ships inside scikit-learn: "
        "`pip install scikit-learn`"
    )
