"""Input pipelines: TFDS datasets, image folders and in-memory arrays -> per-host numpy batches.

    info = data.dataset_info(config.data)
    for batch in data.train_iterator(config.data, global_batch_size=..., seed=..., ...): ...
    for batch in data.eval_iterator(config.data, global_batch_size=..., ...): ...

`config.data.source` picks the path: 'tfds' and 'folder' go through tf.data (`pipeline`);
'arrays' (the MNIST family's IDX files) through numpy alone (`arrays`), so a run on it imports
neither TensorFlow nor TFDS; `digits` (scikit-learn's, no TFDS form) is read there under any
source. Fashion-MNIST needs no network either way: `fashion_mnist.prepare()` builds TFDS's
`fashion_mnist` from Debian's dataset-fashion-mnist files on first use.
"""

from __future__ import annotations

from collections.abc import Iterator

from vit_jax.data import arrays, fashion_mnist
from vit_jax.data.common import DatasetInfo, local_batch_size

__all__ = [
    "DatasetInfo",
    "dataset_info",
    "eval_iterator",
    "fashion_mnist",
    "local_batch_size",
    "num_eval_batches",
    "train_iterator",
]


def _numpy(data_config) -> bool:
    """Whether numpy serves this dataset: source='arrays', or a dataset with no TFDS form."""
    return data_config.source == "arrays" or data_config.name in arrays.NUMPY_ONLY


def _path(data_config):
    """The module that serves the config's source: numpy arrays, or tf.data (imported late)."""
    if _numpy(data_config):
        return arrays
    from vit_jax.data import pipeline

    return pipeline


def dataset_info(data_config) -> DatasetInfo:
    """Classes, channels and split sizes of the config's dataset (prepares only Fashion-MNIST)."""
    if not _numpy(data_config):
        from vit_jax.data import sources

        return sources.dataset_info(data_config)
    fields = arrays.info_fields(data_config)
    size = data_config.image_size
    return DatasetInfo(**fields, image_shape=(size, size, fields["channels"]))


def train_iterator(
    data_config,
    *,
    global_batch_size: int,
    seed: int,
    process_index: int = 0,
    process_count: int = 1,
    start_step: int = 0,
) -> Iterator[dict]:
    """Endless {'image': float32 [b, S, S, C] in [-1, 1], 'label': int32 [b]} of this process.

    b = global_batch_size // process_count. `start_step=k` starts with what batch k (0-based) of
    a fresh iterator would be, without decoding the k batches before it.
    """
    if start_step < 0:
        raise ValueError(f"start_step={start_step} must be >= 0")
    return _path(data_config).train_iterator(
        data_config, batch=local_batch_size(global_batch_size, process_count), seed=seed,
        process_index=process_index, process_count=process_count, start_step=start_step,
    )  # fmt: skip


def num_eval_batches(
    data_config, *, global_batch_size: int, process_count: int = 1, split: str | None = None
) -> int:
    """Batches every process yields for `split`: enough for the largest process slice."""
    batch = local_batch_size(global_batch_size, process_count)
    split = split or data_config.eval_split
    if _numpy(data_config):
        sizes = arrays.host_sizes(data_config, split, process_count=process_count)
    else:
        from vit_jax.data import sources

        sizes = sources.host_sizes(data_config, split, process_count=process_count)
    return -(-max(sizes) // batch)


def eval_iterator(
    data_config,
    *,
    global_batch_size: int,
    process_index: int = 0,
    process_count: int = 1,
    split: str | None = None,
) -> Iterator[dict]:
    """Every example of `split` once over all processes, resized to S, in a fixed order.

    Yields {'image', 'label', 'mask'}; mask is False on padding. Every process yields
    `num_eval_batches(...)` batches, a short one padded with fully masked batches, so collective
    eval steps never wait on a process that ran out.
    """
    split = split or data_config.eval_split
    count = num_eval_batches(
        data_config, global_batch_size=global_batch_size, process_count=process_count, split=split
    )
    return _path(data_config).eval_iterator(
        data_config, batch=local_batch_size(global_batch_size, process_count), split=split,
        process_index=process_index, process_count=process_count, count=count,
    )  # fmt: skip
