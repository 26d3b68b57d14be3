"""vit_jax.data with source='arrays': the numpy-only path (no TensorFlow, no TFDS).

Same contract as the tf.data pipeline: split slices as TFDS counts them, batches a pure function
of (seed, process, step), every eval example once with masked padding, one-line config errors;
and a whole training run in a process where TensorFlow cannot be imported.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from test_data import data_config, fmnist, needs_idx

from vit_jax import config_lib, data
from vit_jax.data import arrays

ROOT = pathlib.Path(__file__).resolve().parents[1]


def cfg(**overrides):
    return data_config(source="arrays", **overrides)


@needs_idx
@pytest.mark.parametrize(
    "split",
    ["train", "train[:10%]", "train[10%:20%]", "train[-1000:]", "train[:-33%]", "train[123:4567]",
     "train[33%:]", "test[:50%]", "test[-7%:-2%]", "test[:3]"],
)  # fmt: skip
def test_split_sizes_match_tfds(split, fmnist_dir):
    ours = data.dataset_info(cfg(train_split=split)).num_train
    assert ours == data.dataset_info(fmnist(fmnist_dir, train_split=split)).num_train


def test_split_bounds_round_and_clamp():
    assert arrays.split_bounds("train[:10%]", 60_000) == ("train", 0, 6_000)
    assert arrays.split_bounds("test[-7%:-2%]", 10_000) == ("test", 9_300, 9_800)
    assert arrays.split_bounds("train[:2%]", 75) == ("train", 0, 2)  # 1.5 → 2, as TFDS rounds
    assert arrays.split_bounds("train[5:100000]", 10) == ("train", 5, 10)
    with pytest.raises(arrays.ArraysError, match="expected NAME"):
        arrays.split_bounds("train[1:2:3]", 10)


@needs_idx
def test_train_batches_are_pure_functions_of_seed_and_step():
    c = cfg(train_split="train[:1000]")
    first = data.train_iterator(c, global_batch_size=64, seed=3)
    batches = [next(first) for _ in range(20)]  # 1,280 positions: crosses an epoch boundary.
    resumed = next(data.train_iterator(c, global_batch_size=64, seed=3, start_step=17))
    np.testing.assert_array_equal(resumed["image"], batches[17]["image"])
    np.testing.assert_array_equal(resumed["label"], batches[17]["label"])
    other = next(data.train_iterator(c, global_batch_size=64, seed=4))
    assert not np.array_equal(other["label"], batches[0]["label"])
    b = batches[0]
    assert b["image"].shape == (64, 28, 28, 1) and b["image"].dtype == np.float32
    assert b["image"].min() >= -1.0 and b["image"].max() <= 1.0 and b["label"].dtype == np.int32


@needs_idx
def test_every_example_once_per_epoch_with_its_own_label():
    c = cfg(train_split="train[:100]", augment="resize", flip=False)
    images, labels = arrays.load(c, "train[:100]")
    it = data.train_iterator(c, global_batch_size=20, seed=0)
    epoch = [next(it) for _ in range(5)]
    seen = np.concatenate([b["image"] for b in epoch]).reshape(100, -1)
    raw = arrays.normalize(images).reshape(100, -1)
    # Each yielded image is one stored image, exactly once, with that image's label.
    match = [int(np.flatnonzero((raw == x).all(axis=1))[0]) for x in seen]
    assert sorted(match) == list(range(100))
    np.testing.assert_array_equal(np.concatenate([b["label"] for b in epoch]), labels[match])


@needs_idx
def test_pad_crop_shifts_within_the_padding_and_flips():
    c = cfg(train_split="train[:8]", crop_padding=2, flip=True)
    images, _ = arrays.load(c, "train[:8]")
    rng = np.random.default_rng(0)
    out = arrays.augment(images, rng, c)
    padded = np.pad(images, ((0, 0), (2, 2), (2, 2), (0, 0)))
    for x, p in zip(out, padded, strict=True):
        crops = [p[dy : dy + 28, dx : dx + 28] for dy in range(5) for dx in range(5)]
        assert any(np.array_equal(x, y) or np.array_equal(x, y[:, ::-1]) for y in crops)


@needs_idx
def test_eval_covers_each_process_part_once_with_masked_padding():
    c = cfg(eval_split="test[:101]")
    _, labels = arrays.load(c, "test[:101]")
    got = []
    for p in range(3):
        n = data.num_eval_batches(c, global_batch_size=48, process_count=3)
        batches = list(
            data.eval_iterator(c, global_batch_size=48, process_index=p, process_count=3)
        )
        assert len(batches) == n == 3  # ceil(34 / 16): the same count on every process
        got += [b["label"][b["mask"]] for b in batches]
    np.testing.assert_array_equal(np.concatenate(got), labels)


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"image_size": 32}, "image_size=32: arrays yield the stored 28×28"),
        ({"augment": "inception_crop"}, "augment='inception_crop'"),
        ({"name": "cifar10"}, "data.name='cifar10': the arrays source reads"),
        ({"name": "mnist"}, "data.root: the directory with mnist's four IDX files"),
    ],
)
def test_config_errors_are_one_line(overrides, match):
    c = config_lib.base_config()
    c.data.source = "arrays"
    for k, v in overrides.items():
        c.data[k] = v
    with pytest.raises(config_lib.ConfigError, match=match) as e:
        config_lib.validate(c)
    assert "\n" not in str(e.value)


def test_missing_files_name_the_path(tmp_path):
    with pytest.raises(arrays.ArraysError, match=f"{tmp_path}.*No such file") as e:
        data.dataset_info(cfg(name="mnist", root=str(tmp_path)))
    assert "\n" not in str(e.value)


@needs_idx
def test_training_runs_where_tensorflow_cannot_be_imported(tmp_path):
    script = f"""
import sys
sys.modules["tensorflow"] = None  # Any import of TensorFlow or TFDS now fails.
sys.modules["tensorflow_datasets"] = None
from absl import app
from vit_jax import main
sys.argv = ["vit_jax.main", "--config=configs/fashion_mnist.py", "--workdir={tmp_path}",
            "--config.data.source=arrays", "--config.model.name=mu/7", "--config.total_steps=6",
            "--config.batch_size=32", "--config.eval_every=3", "--config.log_every=3",
            "--config.data.eval_split=test[:2%]", "--config.progress_bar=False"]
app.run(main.main, flags_parser=main.parse_flags)
"""
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=240)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    evals = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    evals = [e for e in evals if e["kind"] == "eval"]
    assert [e["step"] for e in evals] == [3, 6] and 0.0 <= evals[-1]["accuracy"] <= 1.0
    assert (tmp_path / "checkpoints").is_dir() and not (tmp_path / "tensorboard").exists()
