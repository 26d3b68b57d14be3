"""Offline Fashion-MNIST as the standard prepared TFDS dataset `fashion_mnist`.

Debian's `dataset-fashion-mnist` ships the four original IDX files, but re-compressed, so TFDS's
own builder rejects them (its registered checksums are of the upstream .gz files). Instead of
turning checksums off, we subclass TFDS's `FashionMNIST` builder and replace only where the bytes
come from (`_split_generators`): name, version, features, class names, example keys (hence the
on-disk example order) and the writer are TFDS's own, so `tfds.builder('fashion_mnist',
data_dir=...)` and `tfds.load` read the result as if TFDS had downloaded it.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tempfile
import time

import numpy as np

from vit_jax import errors, paths

TFDS_NAME = "fashion_mnist"
SOURCE_DIR = "/usr/share/datasets/fashion-mnist"
SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
SPLIT_SIZES = {"train": 60_000, "test": 10_000}
_TMP_PREFIX = f".{TFDS_NAME}-prepare-"
_STALE_TMP_S = 3600  # Temp dirs older than this are from dead prepares.


def resolve_data_dir(data_dir: str | None) -> str:
    """TFDS's rule, applied at call time: explicit dir, else $TFDS_DATA_DIR, else the default."""
    data_dir = data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
    if "://" in data_dir:  # gs://... and other remote file systems: as given.
        return data_dir
    return os.path.abspath(os.path.expanduser(data_dir))


def read_idx(path: str) -> np.ndarray:
    """Decodes an IDX file (gzipped or raw, local or gs://) of unsigned bytes into an array."""
    data = paths.read_bytes(path)
    if path.endswith(".gz"):
        data = gzip.decompress(data)
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != 0x08:
        raise errors.UserError(f"{path}: not an IDX file of unsigned bytes")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    if len(data) - offset != int(np.prod(dims)):
        raise errors.UserError(f"{path}: {len(data) - offset} bytes of data for shape {dims}")
    return np.frombuffer(data, np.uint8, offset=offset).reshape(dims)


def read_split(source_dir: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Returns (images uint8 [N, 28, 28, 1], labels int64 [N]) of one split, in IDX order."""
    image_file, label_file = SPLIT_FILES[split]
    images = read_idx(str(paths.path(source_dir) / image_file))
    labels = read_idx(str(paths.path(source_dir) / label_file)).astype(np.int64)
    if images.shape != (SPLIT_SIZES[split], 28, 28) or labels.shape != (SPLIT_SIZES[split],):
        raise errors.UserError(f"{source_dir}: {split} has shapes {images.shape}, {labels.shape}")
    return images[..., None], labels


def prepare(*, data_dir: str | None = None, source_dir: str = SOURCE_DIR) -> str:
    """Makes `fashion_mnist` a prepared TFDS dataset in `data_dir`; returns that data_dir.

    Does nothing when TFDS already considers it prepared there. Otherwise builds it from the IDX
    files in `source_dir`, or, when they are absent, through TFDS's normal download.
    """
    import tensorflow_datasets as tfds  # deferred: TFDS, only to prepare its copy.

    data_dir = resolve_data_dir(data_dir)
    if tfds.builder(TFDS_NAME, data_dir=data_dir).is_prepared():
        return data_dir
    missing = [f for fs in SPLIT_FILES.values() for f in fs]
    missing = [f for f in missing if not paths.exists(paths.path(source_dir) / f)]
    if missing:
        _download(data_dir=data_dir, source_dir=source_dir, missing=missing)
    elif "://" in data_dir:  # No local rename there: rely on TFDS's own incomplete-dir rename.
        _offline_builder_cls()(data_dir=data_dir, source_dir=source_dir).download_and_prepare()
    else:
        _prepare_offline(data_dir=data_dir, source_dir=source_dir)
    return data_dir


def _download(*, data_dir: str, source_dir: str, missing: list[str]) -> None:
    import tensorflow_datasets as tfds  # deferred: TFDS, only to prepare its copy.

    try:
        tfds.builder(TFDS_NAME, data_dir=data_dir).download_and_prepare()
    except Exception as e:  # Any failure means the same thing to the user: no data.
        reason = (str(e).strip().splitlines() or [""])[0]
        raise errors.MissingFile(
            f"Fashion-MNIST unavailable: {missing[0]} not in {source_dir} and TFDS's download "
            f"failed ({type(e).__name__}: {reason}); run `apt-get install dataset-fashion-mnist` "
            "or give TFDS network access"
        ) from e


def _prepare_offline(*, data_dir: str, source_dir: str) -> None:
    """Writes into a private temp data_dir, then renames the version dir into place.

    TFDS only trusts a version dir holding dataset_info.json, and the rename is atomic, so an
    interrupted or concurrent prepare never exposes a half-written dataset. Loser of a race
    discards its copy.
    """
    os.makedirs(data_dir, exist_ok=True)
    _remove_stale_temp_dirs(data_dir)
    tmp = tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=data_dir)
    try:
        builder = _offline_builder_cls()(data_dir=tmp, source_dir=source_dir)
        builder.download_and_prepare()
        sizes = {s: builder.info.splits[s].num_examples for s in SPLIT_SIZES}
        if sizes != SPLIT_SIZES:
            raise errors.UserError(
                f"prepared {TFDS_NAME} has split sizes {sizes}, not {SPLIT_SIZES}"
            )
        built = os.path.join(tmp, TFDS_NAME, str(builder.version))
        final = os.path.join(data_dir, TFDS_NAME, str(builder.version))
        os.makedirs(os.path.dirname(final), exist_ok=True)
        _move_into_place(built, final, trash=os.path.join(tmp, "stale"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _move_into_place(built: str, final: str, *, trash: str) -> None:
    import tensorflow_datasets as tfds  # deferred: TFDS, only to prepare its copy.

    data_dir = os.path.dirname(os.path.dirname(final))
    if os.path.exists(final) and not tfds.builder(TFDS_NAME, data_dir=data_dir).is_prepared():
        try:  # Leftover without dataset_info.json (not TFDS's): move it out of the way.
            os.rename(final, trash)
        except FileNotFoundError:
            pass
    try:
        os.rename(built, final)
    except OSError:
        if not tfds.builder(TFDS_NAME, data_dir=data_dir).is_prepared():
            raise  # Not a lost race: a real failure.


def _remove_stale_temp_dirs(data_dir: str) -> None:
    now = time.time()
    for name in os.listdir(data_dir):
        path = os.path.join(data_dir, name)
        if name.startswith(_TMP_PREFIX) and now - os.path.getmtime(path) > _STALE_TMP_S:
            shutil.rmtree(path, ignore_errors=True)


def _encode_png(images: np.ndarray) -> list[bytes]:
    """PNG-encodes in parallel with the op TFDS's Image feature uses, so bytes are identical."""
    import tensorflow as tf  # deferred: TensorFlow, only for the TFDS copy.

    encode = lambda batch: tf.map_fn(tf.io.encode_png, batch, fn_output_signature=tf.string)
    ds = tf.data.Dataset.from_tensor_slices(images).batch(1000)
    ds = ds.map(encode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return [png for batch in ds.as_numpy_iterator() for png in batch]


def _check_roundtrip(images: np.ndarray, encoded: list[bytes], count: int = 256) -> None:
    import tensorflow as tf  # deferred: TensorFlow, only for the TFDS copy.

    for i in np.linspace(0, len(images) - 1, count).astype(int):
        if not np.array_equal(tf.io.decode_png(encoded[i]).numpy(), images[i]):
            raise errors.UserError(f"PNG round trip changed image {i}")


_BUILDER_CLS = None


def _offline_builder_cls():
    """TFDS's FashionMNIST with local IDX files as its only source (built lazily: imports TFDS)."""
    global _BUILDER_CLS
    if _BUILDER_CLS is not None:
        return _BUILDER_CLS
    from tensorflow_datasets.image_classification import mnist  # deferred: TFDS.

    class OfflineFashionMNIST(mnist.FashionMNIST, skip_registration=True):
        name = TFDS_NAME
        # No code file to find checksums next to: we download nothing. (TFDS's lookup of it also
        # needs `importlib_resources`, which this environment lacks.)
        code_path = None

        def __init__(self, *, source_dir: str, **kwargs):
            self._source_dir = source_dir
            super().__init__(**kwargs)

        def _split_generators(self, dl_manager):
            del dl_manager  # Nothing to download.
            return {split: self._generate_examples(split) for split in SPLIT_FILES}

        def _generate_examples(self, split):  # pylint: disable=arguments-differ
            images, labels = read_split(self._source_dir, split)
            encoded = _encode_png(images)
            _check_roundtrip(images, encoded)
            for index, (png, label) in enumerate(zip(encoded, labels, strict=True)):
                # Same keys as TFDS's generator, hence the same shuffled order on disk.
                yield index, {"image": png, "label": int(label)}

    _BUILDER_CLS = OfflineFashionMNIST
    return _BUILDER_CLS
