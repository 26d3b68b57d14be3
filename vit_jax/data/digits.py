"""scikit-learn's 8×8 handwritten digits as an offline, MNIST-like 28×28 transfer task.

The Fashion-MNIST studies need a second dataset for transfer (few-shot probe, fine-tuning), and
MNIST itself needs a download (Debian packages only Fashion-MNIST). scikit-learn's wheel carries
the 1,797 images of the UCI optical-digits test set (`sklearn.datasets.load_digits`), so any
machine that can pip-install it has them. The file is read directly from the installed package
(scikit-learn itself is never imported: it would pull SciPy's start-up into every data read).

Each 8×8 image (16 grey levels) is upsampled bilinearly to 20×20 and zero-padded to 28×28 — the
size-normalised 20×20 box centred in 28×28 that MNIST uses — so it passes through the same
models and preprocessing as the MNIST family. Splits (deterministic, file order): 'train' is the
first 1,297 images, 'test' the last 500; each holds every class in near-equal numbers.
"""

from __future__ import annotations

import functools
import importlib.util
import os

import numpy as np

TRAIN_SIZE = 1297
CLASS_NAMES = tuple(str(i) for i in range(10))
_BOX, _SIZE = 20, 28


def source_file() -> str:
    """The digits CSV inside the installed scikit-learn, or FileNotFoundError saying what to do."""
    spec = importlib.util.find_spec("sklearn")
    path = None
    if spec and spec.submodule_search_locations:
        path = os.path.join(spec.submodule_search_locations[0], "datasets", "data", "digits.csv.gz")
    if not path or not os.path.isfile(path):
        raise FileNotFoundError(
            "the digits dataset ships inside scikit-learn: `pip install scikit-learn`"
        )
    return path


@functools.lru_cache(maxsize=1)
def _read_all() -> tuple[np.ndarray, np.ndarray]:
    """(images float [1797, 8, 8] in 0..16, labels int32 [1797]) in file order."""
    table = np.loadtxt(source_file(), delimiter=",", dtype=np.float32)
    return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int32)


def _upsample_matrix(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in] bilinear weights with half-pixel centres (edges clamped)."""
    centres = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
    return np.stack([np.interp(centres, np.arange(n_in), row) for row in np.eye(n_in)], axis=1)


def to_mnist_frame(small: np.ndarray) -> np.ndarray:
    """[N, 8, 8] grey levels 0..16 → uint8 [N, 28, 28, 1]: 20×20 box centred as in MNIST."""
    m = _upsample_matrix(small.shape[1], _BOX)
    box = np.einsum("ij,njk,lk->nil", m, small, m) * (255.0 / 16.0)
    pad = (_SIZE - _BOX) // 2
    frame = np.pad(box, ((0, 0), (pad, pad), (pad, pad)))
    return np.clip(np.rint(frame), 0, 255).astype(np.uint8)[..., None]


def read_split(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 [N, 28, 28, 1], int32 [N]) of 'train' or 'test'."""
    if name not in ("train", "test"):
        raise ValueError(f"split {name!r}: digits has 'train' and 'test'")
    small, labels = _read_all()
    part = slice(0, TRAIN_SIZE) if name == "train" else slice(TRAIN_SIZE, None)
    return to_mnist_frame(small[part]), labels[part]
