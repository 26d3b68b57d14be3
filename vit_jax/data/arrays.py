"""A numpy-only input path for small datasets held in memory (`config.data.source='arrays'`).

For the MNIST family stored as IDX files (Fashion-MNIST from Debian's package by default; MNIST,
KMNIST from `config.data.root`) and scikit-learn's bundled digits (`digits`, 28×28 like MNIST; it
has no TFDS form, so it is read here whatever `data.source` says): no TensorFlow, no TFDS. It
exists for machines where those are missing or lag behind (a GPU image, a new Python), and for
runs where a tf.data runtime is more machinery than 47 MB of pixels need.

The same contract as `pipeline`: batch `step` of process `p` is a pure function of (seed, p, step)
(per-epoch permutations and per-step augmentation from numpy's counter-based generator), so
reruns are identical and resuming at step k decodes nothing before it. Its random streams are not
tf.data's: the same seed gives other (equally valid) batches than `source='tfds'`, and split
slices ('train[:10%]') are taken in file order, where TFDS's prepared copy is shuffled.
Augmentations: pad_crop (+flip) and resize at the stored size; images are not resized.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import numpy as np

from vit_jax import errors
from vit_jax.data import digits, fashion_mnist, subset
from vit_jax.data.common import even_bounds

# name: (default root, class names); the four IDX files as fashion_mnist.SPLIT_FILES names them.
DATASETS = {
    "fashion_mnist": (
        fashion_mnist.SOURCE_DIR,
        (
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
    ),  # fmt: skip
    "mnist": (None, tuple(str(i) for i in range(10))),
    "kmnist": (None, ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo")),
    "digits": (None, digits.CLASS_NAMES),
}
# Datasets with no TFDS form: read by this module under any `data.source`.
NUMPY_ONLY = ("digits",)
_SPLIT = re.compile(r"^(?P<name>\w+)(\[(?P<start>-?[\d.]+%?)?:(?P<stop>-?[\d.]+%?)?\])?$")
_CACHE: dict = {}


class ArraysError(errors.UserError):
    """A data config the arrays source cannot serve; one line (a ConfigError in validate)."""


def split_bounds(split: str, n: int) -> tuple[str, int, int]:
    """'train[10%:-100]' of a split of n examples → ('train', start, stop), as TFDS reads it:
    percentages rounded to the closest example, negative bounds from the end, clamped."""
    m = _SPLIT.match(split.replace(" ", ""))
    if not m:
        raise ArraysError(f"split {split!r}: expected NAME or NAME[a:b] (a, b: indices or a%)")

    def bound(text, default):
        if text is None:
            return default
        value = float(text[:-1]) * n / 100 if text.endswith("%") else float(text)
        value = int(round(value))
        return min(max(value + n if value < 0 else value, 0), n)

    return m["name"], bound(m["start"], 0), bound(m["stop"], n)


def load(data_config, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N, 28, 28, 1], labels int32 [N]) of a split slice, in file order."""
    root = _root(data_config)
    name = split_bounds(split, 0)[0]  # The split's name (and a checked format) before its size.
    if name not in fashion_mnist.SPLIT_FILES:
        raise ArraysError(f"split {split!r}: the arrays source has 'train' and 'test'")
    key = (data_config.name, root, name)
    if key not in _CACHE:
        _CACHE[key] = _read(data_config.name, root, name)
    images, labels = _CACHE[key]
    _, start, stop = split_bounds(split, len(labels))
    return images[start:stop], labels[start:stop].astype(np.int32)


def _read(dataset: str, root: str | None, split_name: str):
    if dataset in NUMPY_ONLY:
        try:
            return digits.read_split(split_name)
        except FileNotFoundError as e:
            raise ArraysError(f"config.data.name={dataset!r}: {e}") from None
    try:
        return fashion_mnist.read_split(root, split_name)
    except FileNotFoundError as e:
        raise ArraysError(f"config.data.root={root!r}: {e.strerror}: {e.filename}") from None


def _root(data_config) -> str | None:
    if data_config.name not in DATASETS:
        raise ArraysError(
            f"config.data.name={data_config.name!r}: the arrays source reads {tuple(DATASETS)}"
        )
    root = data_config.root or DATASETS[data_config.name][0]
    if not root and data_config.name not in NUMPY_ONLY:
        raise ArraysError(
            f"config.data.root: the directory with {data_config.name}'s four IDX files is needed"
        )
    return root


def check(data_config) -> None:
    """One-line errors for what this source does not do (config_lib.validate calls it)."""
    _root(data_config)
    if data_config.augment not in ("pad_crop", "resize"):
        raise ArraysError(
            f"config.data.augment={data_config.augment!r}: arrays do pad_crop, resize"
        )
    if data_config.image_size != 28:
        raise ArraysError(
            f"config.data.image_size={data_config.image_size}: arrays yield the stored 28×28"
        )


def train_arrays(data_config) -> tuple[np.ndarray, np.ndarray]:
    """The training split, cut to its class-balanced subset if config.data.train_examples."""
    images, labels = load(data_config, data_config.train_split)
    n = data_config.train_examples
    if not n:
        return images, labels
    idx = subset.balanced_indices(labels, n, split=data_config.train_split)
    return images[idx], labels[idx]


def host_part(data_config, split, *, process_index: int, process_count: int, train=False):
    """This process's even part of `split`, or (train=True) of the training subset."""
    images, labels = train_arrays(data_config) if train else load(data_config, split)
    start, stop = even_bounds(len(labels), process_count, process_index)
    return images[start:stop], labels[start:stop]


def _rng(seed: int, *counters: int) -> np.random.Generator:
    """A generator keyed by the seed, positioned by the counters (no state carried between)."""
    counter = [c % 2**64 for c in counters] + [0] * (4 - len(counters))
    return np.random.Generator(np.random.Philox(key=[seed % 2**64, 0], counter=counter))


def normalize(images: np.ndarray) -> np.ndarray:
    """Pixels [0, 255] → float32 [-1, 1], as the tf.data pipeline."""
    return images.astype(np.float32) / 127.5 - 1.0


def augment(images: np.ndarray, rng: np.random.Generator, data_config) -> np.ndarray:
    """Zero-padded random crops (pad_crop) and left-right flips, drawn per image."""
    b, h, w, _ = images.shape
    pad = data_config.crop_padding if data_config.augment == "pad_crop" else 0
    if pad > 0:
        padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
        dy, dx = rng.integers(0, 2 * pad + 1, size=(2, b))
        # Every h×w window of each padded image, as a view; pick one per image (no index grids).
        windows = np.lib.stride_tricks.sliding_window_view(padded, (h, w), axis=(1, 2))
        images = np.moveaxis(windows[np.arange(b), dy, dx], 1, -1)  # [b, C, h, w] → [b, h, w, C]
    if data_config.flip:
        flip = rng.random(b) < 0.5
        images = np.where(flip[:, None, None, None], images[:, :, ::-1], images)
    return images


def train_iterator(
    data_config, *, batch: int, seed: int, process_index: int, process_count: int, start_step: int
) -> Iterator[dict]:
    """Endless {'image': float32 [b, 28, 28, C] in [-1, 1], 'label': int32 [b]}; see module doc."""
    check(data_config)
    images, labels = host_part(
        data_config, data_config.train_split, process_index=process_index,
        process_count=process_count, train=True,
    )  # fmt: skip
    n = len(labels)
    if n == 0:
        raise errors.UserError(
            f"split {data_config.train_split!r} has no examples for this process"
        )
    orders: dict[int, np.ndarray] = {}
    for step in range(start_step, 2**62):
        positions = np.arange(step * batch, (step + 1) * batch)
        epochs, offsets = np.divmod(positions, n)
        for e in np.unique(epochs):
            orders.setdefault(int(e), _rng(seed, process_index, 0, int(e)).permutation(n))
        for e in [e for e in orders if e < epochs[0]]:
            del orders[e]
        idx = np.empty(batch, np.int64)
        for e in np.unique(epochs):
            idx[epochs == e] = orders[int(e)][offsets[epochs == e]]
        x = augment(images[idx], _rng(seed, process_index, 1, step), data_config)
        yield {"image": normalize(x), "label": labels[idx]}


def eval_iterator(
    data_config, *, batch: int, split: str, process_index: int, process_count: int, count: int
) -> Iterator[dict]:
    """`count` batches of the host's part of `split` in file order, then masked padding."""
    check(data_config)
    images, labels = host_part(
        data_config, split, process_index=process_index, process_count=process_count
    )
    for i in range(count):
        x, y = images[i * batch : (i + 1) * batch], labels[i * batch : (i + 1) * batch]
        real = len(y)
        if real < batch:
            x = np.concatenate([x, np.zeros((batch - real, *images.shape[1:]), images.dtype)])
            y = np.concatenate([y, np.zeros(batch - real, labels.dtype)])
        yield {"image": normalize(x), "label": y, "mask": np.arange(batch) < real}


def host_sizes(data_config, split: str, *, process_count: int) -> list[int]:
    n = len(load(data_config, split)[1])
    return [b - a for a, b in (even_bounds(n, process_count, i) for i in range(process_count))]


def info_fields(data_config) -> dict:
    """The DatasetInfo fields of the config's dataset."""
    _root(data_config)
    names = DATASETS[data_config.name][1]
    train_images, _ = train_arrays(data_config)
    return {
        "num_classes": len(names),
        "channels": int(train_images.shape[-1]),
        "num_train": len(train_images),
        "num_eval": len(load(data_config, data_config.eval_split)[1]),
        "class_names": names,
    }
