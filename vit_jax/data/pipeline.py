"""Per-host training and evaluation iterators: tf.data in, numpy batches out.

Training batch `step` of process `p` is a pure function of (seed, p, step): its examples come from
`order` (positions step * b ... step * b + b - 1 of an endless, per-epoch reshuffled stream) and
its augmentation from stateless ops keyed by (seed, p, step). Hence identical reruns and exact,
cheap resumption (`start_step`). Batches run across epoch boundaries; no example is dropped.
"""

from __future__ import annotations

from collections.abc import Iterator

import tensorflow as tf

from vit_jax import errors
from vit_jax.data import order, preprocess, reading, sources, subset
from vit_jax.data.common import even_bounds
from vit_jax.data.order import BATCH, EXAMPLE
from vit_jax.data.sources import ArraySplit, FileSplit

_DECODED: dict = {}  # Recently decoded host splits (eval runs many times in one training run).
_MAX_DECODED = 4


def train_iterator(
    data_config, *, batch: int, seed: int, process_index: int, process_count: int, start_step: int
) -> Iterator[dict]:
    """The tf.data path of `vit_jax.data.train_iterator` (which documents the contract); `batch`
    is this process's share of the global batch."""
    if data_config.train_examples:
        part = _train_subset(data_config, process_index, process_count)
    else:
        part = _host_split(data_config, data_config.train_split, process_index, process_count)
    if part.size == 0:
        raise errors.UserError(
            f"split {data_config.train_split!r} has no examples for this process"
        )
    rng = order.Rng(seed, process_index)
    aug = preprocess.Augment.from_config(data_config)
    window = data_config.shuffle_buffer
    ds, aug = _batches(part, batch=batch, start=start_step * batch, rng=rng, aug=aug, window=window)
    augment = lambda step, ex: {
        "image": preprocess.train_batch(ex["image"], rng(BATCH, step), aug),
        "label": ex["label"],
    }
    ds = reading.map_each(tf.data.Dataset.zip(tf.data.Dataset.counter(start_step), ds), augment)
    return _numpy(ds, data_config)


def _batches(part, *, batch: int, start: int, rng: order.Rng, aug, window: int):
    """Un-augmented training batches from stream position `start`, and what is left to augment.

    Images of one size are batched as stored and augmented whole; mixed sizes are first brought
    to S x S one by one (the inception crop happens there), keyed by stream position.
    """
    if isinstance(part, ArraySplit):
        ds = order.index_stream(part.size, start=start, rng=rng).batch(batch, drop_remainder=True)
        images, labels = tf.constant(part.images), tf.constant(part.labels)
        gather = lambda i: {"image": tf.gather(images, i), "label": tf.gather(labels, i)}
        return reading.map_each(ds, gather), aug
    if isinstance(part, FileSplit):
        paths, labels = tf.constant(part.paths), tf.constant(part.labels)
        decode = lambda i: {
            "image": reading.decode_file(paths[i], part.channels),
            "label": labels[i],
        }
        ds = reading.map_each(order.index_stream(part.size, start=start, rng=rng), decode)
    else:
        ds = order.record_stream(part, start=start, rng=rng, window=window).batch(256)
        ds = reading.map_each(ds, lambda s: reading.parse_records(s, part=part)).unbatch()
        ds = reading.map_each(ds, lambda ex: reading.decode_record(ex, part=part))
    if ds.element_spec["image"].shape.is_fully_defined():
        return ds.batch(batch, drop_remainder=True), aug
    to_size = lambda position, ex: {
        "image": preprocess.example_to_size(ex["image"], rng(EXAMPLE, position), aug),
        "label": ex["label"],
    }
    ds = reading.map_each(tf.data.Dataset.zip(tf.data.Dataset.counter(start), ds), to_size)
    return ds.batch(batch, drop_remainder=True), preprocess.batch_augment(aug)


def eval_iterator(
    data_config, *, batch: int, split: str, process_index: int, process_count: int, count: int
) -> Iterator[dict]:
    """`count` batches of this process's part of `split`: every example once, resized to S, in
    a fixed order, then fully masked padding (see `vit_jax.data.eval_iterator`)."""
    part = _host_split(data_config, split, process_index, process_count)
    size = data_config.image_size
    ds = reading.examples(part)
    if not ds.element_spec["image"].shape.is_fully_defined():  # Mixed sizes: resize each.
        ds = reading.map_each(ds, lambda ex: {**ex, "image": preprocess.resize(ex["image"], size)})
    ds = reading.map_each(ds, lambda ex: {**ex, "mask": True}, parallel=False)
    ds = ds.concatenate(_padding(ds.element_spec).repeat(count * batch - part.size))
    ds = ds.batch(batch, drop_remainder=True)
    ds = reading.map_each(ds, lambda ex: {**ex, "image": preprocess.eval_batch(ex["image"], size)})
    return _numpy(ds, data_config)


def _host_split(data_config, split: str, process_index: int, process_count: int):
    """This process's part of a split; decoded into memory (and remembered) if config.data.cache."""
    if not 0 <= process_index < process_count:
        raise errors.UserError(f"process_index={process_index} not in [0, {process_count})")
    part = sources.host_split(
        data_config, split, process_index=process_index, process_count=process_count
    )
    if not data_config.cache:
        return part
    key = (type(part), part.paths if isinstance(part, FileSplit) else part.instructions)
    if key not in _DECODED:
        _DECODED[key] = reading.load_arrays(part)
        while len(_DECODED) > _MAX_DECODED:
            _DECODED.pop(next(iter(_DECODED)))
    return _DECODED[key]


def _train_subset(data_config, process_index: int, process_count: int) -> ArraySplit:
    """This process's even part of the class-balanced subset (config.data.train_examples).

    The subset is chosen over the whole split, so it is the same for any process count; the
    split is decoded into memory to read its labels (a data-size study's datasets are small).
    """
    whole = _host_split(data_config, data_config.train_split, 0, 1)
    arrays = whole if isinstance(whole, ArraySplit) else reading.load_arrays(whole)
    if not isinstance(arrays, ArraySplit):
        raise errors.UserError(
            "config.data.train_examples needs images of one size (they are held in memory)"
        )
    split = data_config.train_split
    idx = subset.balanced_indices(arrays.labels, data_config.train_examples, split=split)
    start, stop = even_bounds(len(idx), process_count, process_index)
    idx = idx[start:stop]
    return ArraySplit(arrays.images[idx], arrays.labels[idx])


def _padding(spec) -> tf.data.Dataset:
    """One all-zero example with mask False, shaped like the real ones."""
    zero = {name: tf.zeros(s.shape, s.dtype) for name, s in spec.items()}
    return tf.data.Dataset.from_tensors({**zero, "mask": tf.constant(False)})


def _numpy(ds: tf.data.Dataset, data_config) -> Iterator[dict]:
    options = tf.data.Options()
    options.deterministic = True
    return _iterate(ds.with_options(options).prefetch(max(2, data_config.prefetch)))


def _iterate(ds) -> Iterator[dict]:
    with reading.raising_value_errors():
        yield from ds.as_numpy_iterator()
