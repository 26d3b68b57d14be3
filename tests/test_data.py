"""vit_jax.data: offline Fashion-MNIST, deterministic per-host train batches, padded eval.

Offline: Fashion-MNIST comes from Debian's dataset-fashion-mnist (skipped where absent), prepared
once per session into a temp TFDS data_dir; sockets are blocked where it matters.
"""

from __future__ import annotations

import collections
import os
import shutil
import socket
import time

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from vit_jax import config_lib, data
from vit_jax.data import fashion_mnist

FMNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
HAVE_IDX = all(
    os.path.isfile(os.path.join(fashion_mnist.SOURCE_DIR, f))
    for files in fashion_mnist.SPLIT_FILES.values()
    for f in files
)
needs_idx = pytest.mark.skipif(not HAVE_IDX, reason="apt-get install dataset-fashion-mnist")


def data_config(**overrides):
    """A fresh config.data with overrides (the schema's lock still rejects unknown keys)."""
    config = config_lib.base_config().data
    for name, value in overrides.items():
        config[name] = value
    return config


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network disabled in tests")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def fmnist(fmnist_dir, **overrides):
    return data_config(data_dir=fmnist_dir, **overrides)


# --- Folder datasets ----------------------------------------------------------------------------


def write_image(path, image):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    encode = tf.io.encode_jpeg if path.endswith(".jpg") else tf.io.encode_png
    tf.io.write_file(path, encode(image))


def make_folder(root, counts, *, channels=3, size=(12, 12), ext=".png", start_id=0):
    """Images with a unique id in pixel [0, 0, 0]: root/<split>/<class>/<id>.png."""
    rng = np.random.default_rng(start_id)
    image_id = start_id
    for split, per_class in counts.items():
        for name, count in per_class.items():
            for _ in range(count):
                shape = size(image_id) if callable(size) else size
                image = rng.integers(0, 256, (*shape, channels), dtype=np.uint8)
                image[0, 0, 0] = image_id
                write_image(os.path.join(root, split, name, f"{image_id:03d}{ext}"), image)
                image_id += 1
    return str(root)


FOLDER_COUNTS = {
    "train": {"eel": 13, "cat": 12, "dog": 12},  # 37, classes sorted: cat, dog, eel.
    "test": {"cat": 4, "eel": 7},  # 11; "dog" absent from test.
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("folder"), FOLDER_COUNTS)


def image_ids(batch, mask=None):
    """Recovers the ids of 'resize'-augmented, unflipped folder images (no resampling)."""
    pixels = np.rint((batch["image"][:, 0, 0, 0] + 1.0) * 127.5).astype(int)
    return list(pixels if mask is None else pixels[mask])


def folder_config(root, **overrides):
    defaults = dict(source="folder", root=root, image_size=12, augment="resize", flip=False)
    return data_config(**{**defaults, **overrides})


# --- Offline Fashion-MNIST ----------------------------------------------------------------------


@needs_idx
def test_prepared_fashion_mnist_is_tfds_own(fmnist_dir, no_network):
    builder = tfds.builder("fashion_mnist", data_dir=fmnist_dir)
    assert builder.is_prepared() and str(builder.version) == "3.0.1"
    assert {s: builder.info.splits[s].num_examples for s in ("train", "test")} == {
        "train": 60_000,
        "test": 10_000,
    }
    assert builder.info.features["label"].names == FMNIST_CLASSES
    assert builder.info.features["image"].shape == (28, 28, 1)
    assert builder.info.features["image"].np_dtype == np.uint8
    official = tfds.builder("fashion_mnist", data_dir=os.path.join(fmnist_dir, "absent"))
    assert builder.info.features.to_json() == official.info.features.to_json()
    info = data.dataset_info(fmnist(fmnist_dir))
    assert info == data.DatasetInfo(10, 1, 60_000, 10_000, tuple(FMNIST_CLASSES), (28, 28, 1))


@needs_idx
def test_tfds_load_offline_matches_idx(fmnist_dir, raw_test, no_network):
    loaded = tfds.load("fashion_mnist", split="test", data_dir=fmnist_dir, batch_size=-1)
    images, labels = loaded["image"].numpy(), loaded["label"].numpy()
    raw_images, raw_labels = raw_test
    assert images.shape == raw_images.shape and images.dtype == np.uint8
    # Same examples (TFDS stores them shuffled by key): compare as multisets.
    digest = lambda ims, lbs: collections.Counter(zip(lbs.tolist(), map(bytes, ims), strict=True))
    assert digest(images, labels) == digest(raw_images, raw_labels)


@needs_idx
def test_prepare_is_idempotent(fmnist_dir):
    info_file = os.path.join(fmnist_dir, "fashion_mnist", "3.0.1", "dataset_info.json")
    before = os.stat(info_file).st_mtime_ns
    start = time.perf_counter()
    fashion_mnist.prepare(data_dir=fmnist_dir)
    assert time.perf_counter() - start < 5
    assert os.stat(info_file).st_mtime_ns == before
    assert sorted(os.listdir(fmnist_dir)) == ["fashion_mnist"]  # No temp dirs left behind.


@needs_idx
def test_interrupted_prepare_leaves_no_dataset(tmp_path, monkeypatch):
    def read_split(source_dir, split):
        if split == "test":
            raise KeyboardInterrupt  # As if killed half-way.
        return np.zeros((5, 28, 28, 1), np.uint8), np.zeros((5,), np.int64)

    monkeypatch.setattr(fashion_mnist, "read_split", read_split)
    with pytest.raises(KeyboardInterrupt):
        fashion_mnist.prepare(data_dir=str(tmp_path))
    assert not tfds.builder("fashion_mnist", data_dir=str(tmp_path)).is_prepared()
    assert not os.path.exists(tmp_path / "fashion_mnist" / "3.0.1")
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]


@needs_idx
def test_moving_into_place_replaces_leftovers_and_loses_races_quietly(fmnist_dir, tmp_path):
    final = tmp_path / "fashion_mnist" / "3.0.1"
    final.mkdir(parents=True)
    (final / "half_written.tfrecord").write_text("")  # No dataset_info.json: not TFDS's.
    prepared = os.path.join(fmnist_dir, "fashion_mnist", "3.0.1")
    for attempt in range(2):  # The second finds a complete dataset there (a lost race).
        built = tmp_path / f"built{attempt}"
        shutil.copytree(prepared, built)
        fashion_mnist._move_into_place(str(built), str(final), trash=str(tmp_path / "trash"))
        assert tfds.builder("fashion_mnist", data_dir=str(tmp_path)).is_prepared()
    assert not (final / "half_written.tfrecord").exists()


def test_prepare_without_any_source_says_how_to_get_data(tmp_path, monkeypatch):
    class Offline:  # TFDS's downloader as it ends without network (minus its minutes of retries).
        def __init__(self, name, data_dir):
            assert name == "fashion_mnist" and data_dir == str(tmp_path / "tfds")

        def is_prepared(self):
            return False

        def download_and_prepare(self):
            raise OSError("network disabled in tests")

    monkeypatch.setattr(tfds, "builder", Offline)
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist") as e:
        fashion_mnist.prepare(data_dir=str(tmp_path / "tfds"), source_dir=str(tmp_path))
    assert "download failed (OSError: network disabled in tests)" in str(e.value)
    assert "\n" not in str(e.value)


# --- Training iterator --------------------------------------------------------------------------


@needs_idx
@pytest.mark.parametrize(
    "augment, size", [("pad_crop", 28), ("inception_crop", 28), ("resize", 32), ("pad_crop", 32)]
)
def test_train_batches(fmnist_dir, augment, size):
    config = fmnist(fmnist_dir, train_split="train[:2000]", augment=augment, image_size=size)
    batch = next(data.train_iterator(config, global_batch_size=64, seed=0))
    assert set(batch) == {"image", "label"}
    assert batch["image"].shape == (64, size, size, 1) and batch["image"].dtype == np.float32
    assert batch["label"].shape == (64,) and batch["label"].dtype == np.int32
    assert -1.0 <= batch["image"].min() < 0.0 < batch["image"].max() <= 1.0
    assert 0 <= batch["label"].min() and batch["label"].max() < 10


def take(iterator, count):
    return [next(iterator) for _ in range(count)]


def assert_same_batches(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for name in x:
            np.testing.assert_array_equal(x[name], y[name])


@needs_idx
@pytest.mark.parametrize("cache", [True, False])
def test_train_is_deterministic_and_resumes_exactly(fmnist_dir, cache):
    # 500 examples, 32 a batch: epoch 0 ends inside batch 15; epoch 1 is reshuffled.
    config = fmnist(fmnist_dir, train_split="train[:500]", augment="inception_crop", cache=cache)
    config.shuffle_buffer = 150  # Streaming (cache=False): windowed shuffle, resume mid-window.
    run = lambda seed, start=0: data.train_iterator(
        config, global_batch_size=32, seed=seed, start_step=start
    )
    batches = take(run(seed=7), 20)
    assert_same_batches(take(run(seed=7), 20), batches)
    assert not np.array_equal(next(run(seed=8))["image"], batches[0]["image"])
    for step in (15, 19):  # Straddling the end of epoch 0; inside epoch 1.
        assert_same_batches(take(run(seed=7, start=step), 1), batches[step : step + 1])
    first_epoch = np.concatenate([b["image"] for b in batches[:15]])[:480]
    second_epoch = np.concatenate([b["image"] for b in batches[15:]])[20:]
    assert not np.array_equal(first_epoch[:100], second_epoch[:100])  # Reshuffled.


def test_train_process_slices_are_disjoint_and_cover(folder):
    config = folder_config(folder)
    epochs = []
    for index, size in enumerate((13, 12, 12)):  # 37 over 3 processes, the first gets one more.
        it = data.train_iterator(
            config, global_batch_size=3, seed=0, process_index=index, process_count=3
        )
        ids = [i for batch in take(it, 2 * size) for i in image_ids(batch)]
        assert sorted(ids[:size]) == sorted(ids[size:])  # An epoch visits each example once.
        epochs.append(set(ids[:size]))
        assert len(epochs[-1]) == size
    assert set.union(*epochs) == set(range(37)) and sum(map(len, epochs)) == 37


@needs_idx
def test_train_process_slices_of_tfds_cover_the_split(fmnist_dir):
    config = fmnist(fmnist_dir, train_split="train[:999]", augment="resize", flip=False)
    seen = collections.Counter()
    for index in range(3):  # 333 each: 9 local batches of 37 are exactly one epoch.
        it = data.train_iterator(
            config, global_batch_size=111, seed=0, process_index=index, process_count=3
        )
        seen.update(map(bytes, np.concatenate([b["image"] for b in take(it, 9)])))
    (whole,) = data.eval_iterator(config, global_batch_size=999, split="train[:999]")
    assert seen == collections.Counter(map(bytes, whole["image"]))


def test_folder_train_with_mixed_sizes_and_inception_crop(tmp_path):
    root = make_folder(tmp_path, FOLDER_COUNTS, size=lambda i: (10 + i % 7, 9 + i % 5))
    config = folder_config(root, augment="inception_crop", flip=True, image_size=16)
    for cache in (True, False):  # Mixed sizes: decoded one by one either way.
        config.cache = cache
        a, b = take(data.train_iterator(config, global_batch_size=8, seed=3, start_step=4), 2)
        assert a["image"].shape == (8, 16, 16, 3) and np.abs(a["image"]).max() <= 1.0
        (c,) = take(data.train_iterator(config, global_batch_size=8, seed=3, start_step=5), 1)
        assert_same_batches([b], [c])


def test_folder_cache_and_files_give_the_same_pixels(folder):
    batches = {}
    for cache in (True, False):
        config = folder_config(folder, cache=cache, augment="pad_crop", flip=True)
        batches[cache] = take(data.train_iterator(config, global_batch_size=8, seed=1), 6)
    assert_same_batches(batches[True], batches[False])


# --- Evaluation iterator ------------------------------------------------------------------------


@pytest.mark.parametrize("split, count, batch", [("train", 37, 24), ("test", 11, 9)])
def test_eval_counts_every_example_once(folder, split, count, batch):
    config = folder_config(folder, cache=split == "train")
    base = 0 if split == "train" else 37
    per_process = []
    for index in range(3):
        it = data.eval_iterator(
            config, global_batch_size=batch, process_index=index, process_count=3, split=split
        )
        batches = list(it)
        for b in batches:
            assert b["image"].shape == (batch // 3, 12, 12, 3) and b["mask"].dtype == bool
            assert not b["mask"][np.argmin(b["mask"]) :].any() or b["mask"].all()  # Real first.
        per_process.append(batches)
    expected_batches = data.num_eval_batches(
        config, global_batch_size=batch, process_count=3, split=split
    )
    assert [len(b) for b in per_process] == [expected_batches] * 3 == [2] * 3
    ids = [i for bs in per_process for b in bs for i in image_ids(b, b["mask"])]
    assert sorted(ids) == list(range(base, base + count))
    if split == "test":  # 4, 4, 3 examples with local batch 3: the last process pads a batch.
        assert per_process[2][1]["mask"].sum() == 0


def test_eval_labels_follow_sorted_classes(folder):
    (batch,) = data.eval_iterator(folder_config(folder), global_batch_size=37, split="train")
    info = data.dataset_info(folder_config(folder))
    assert info == data.DatasetInfo(3, 3, 37, 11, ("cat", "dog", "eel"), (12, 12, 3))
    ids = np.asarray(image_ids(batch))
    # Ids were assigned eel (0-12), cat (13-24), dog (25-36); labels index the sorted names.
    np.testing.assert_array_equal(batch["label"], np.digitize(ids, [13, 25]).choose([2, 0, 1]))


@needs_idx
def test_eval_fashion_mnist(fmnist_dir, raw_test):
    config = fmnist(fmnist_dir)
    batches = list(data.eval_iterator(config, global_batch_size=256))
    assert len(batches) == 40 == data.num_eval_batches(config, global_batch_size=256)
    assert sum(b["mask"].sum() for b in batches) == 10_000 and not batches[-1]["mask"][16:].any()
    images = np.concatenate([b["image"][b["mask"]] for b in batches])
    labels = np.concatenate([b["label"][b["mask"]] for b in batches])
    pixels = np.rint((images + 1.0) * 127.5).astype(np.uint8)
    digest = lambda ims, lbs: collections.Counter(zip(lbs.tolist(), map(bytes, ims), strict=True))
    assert digest(pixels, labels) == digest(*raw_test)
    config.eval_split = "test[:1000]"  # 334, 333, 333: each padded to 4 batches of 85.
    for index in range(3):
        it = data.eval_iterator(config, global_batch_size=255, process_index=index, process_count=3)
        masks = [b["mask"] for b in it]
        assert len(masks) == 4 and sum(m.sum() for m in masks) == 333 + (index == 0)


# --- Errors -------------------------------------------------------------------------------------


def test_unknown_tfds_dataset(tmp_path):
    with pytest.raises(ValueError, match="unknown TFDS dataset"):
        data.dataset_info(data_config(name="no_such_dataset_xyz", data_dir=str(tmp_path)))


def test_unprepared_tfds_dataset(tmp_path):
    with pytest.raises(FileNotFoundError, match="tfds build mnist"):
        data.dataset_info(data_config(name="mnist", data_dir=str(tmp_path)))


@needs_idx
def test_unknown_tfds_split(fmnist_dir):
    with pytest.raises(ValueError, match="validation"):
        data.dataset_info(fmnist(fmnist_dir, eval_split="validation"))


def test_missing_folder_and_split(folder, tmp_path):
    with pytest.raises(FileNotFoundError, match="folder not found"):
        data.dataset_info(folder_config(str(tmp_path / "absent")))
    with pytest.raises(FileNotFoundError, match="'val' not found"):
        data.dataset_info(folder_config(folder, eval_split="val"))


def test_folder_without_images(tmp_path):
    (tmp_path / "train" / "cat").mkdir(parents=True)
    (tmp_path / "train" / "cat" / "notes.txt").write_text("no images here")
    with pytest.raises(ValueError, match="no .jpg/.jpeg/.png images"):
        data.dataset_info(folder_config(str(tmp_path)))


def test_batch_not_divisible_by_processes(folder):
    with pytest.raises(ValueError, match="not divisible by process_count=3"):
        data.train_iterator(folder_config(folder), global_batch_size=8, seed=0, process_count=3)
    with pytest.raises(ValueError, match="not divisible"):
        data.eval_iterator(folder_config(folder), global_batch_size=8, process_count=3)


@pytest.mark.parametrize("cache", [True, False])
def test_folder_image_with_other_channel_count(tmp_path, cache):
    root = make_folder(tmp_path, {"train": {"a": 3}, "test": {"a": 2}})
    write_image(str(tmp_path / "train" / "a" / "zz_gray.png"), np.zeros((12, 12, 1), np.uint8))
    config = folder_config(root, cache=cache)
    with pytest.raises(ValueError, match="zz_gray.png: image has 1 channels, expected 3"):
        take(data.train_iterator(config, global_batch_size=2, seed=0), 2)  # The whole epoch.
