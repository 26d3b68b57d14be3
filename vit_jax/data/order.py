"""The order in which a host visits its training examples: a pure function of (seed, process).

Examples form one endless stream, epoch after epoch, each epoch in an order keyed by
(seed, process, epoch). Stream position p = step * batch + i, so any step's examples are found by
arithmetic (epoch = p // n, offset = p % n): resuming never replays earlier batches.
"""

from __future__ import annotations

import tensorflow as tf

from vit_jax.data import preprocess, reading

# Key domains: independent random streams derived from one seed.
PERMUTE, BATCH, EXAMPLE, SHARDS, WINDOW = range(5)


class Rng:
    """Keys for one (seed, process); every random choice of the pipeline derives from these."""

    def __init__(self, seed: int, process_index: int):
        self.seed, self.process = seed, process_index

    def __call__(self, domain: int, *counters) -> tf.Tensor:
        return preprocess.key(self.seed, domain, self.process, *counters)


def index_stream(n: int, *, start: int, rng: Rng) -> tf.data.Dataset:
    """Example indices (int64) from stream position `start`; epoch e is a uniform permutation.

    For random-access splits (in memory or files): a start costs a permutation and skipping
    integers, nothing more.
    """
    epoch, offset = divmod(start, n)
    permuted = lambda e: tf.data.Dataset.from_tensor_slices(
        preprocess.permutation(n, rng(PERMUTE, e))
    )
    return _epochs(permuted, epoch).skip(offset)


def record_stream(part, *, start: int, rng: Rng, window: int) -> tf.data.Dataset:
    """Serialized records of a TFDS host split from stream position `start`, never all in memory.

    Epoch e reads the shards in an order keyed by e, each from a random rotation, 16 interleaved,
    then permutes every run of `window` records (config.data.shuffle_buffer; a full shuffle when
    it covers the split). TFRecords have no index, so a resume reads, but does not decode, the
    records of the current epoch before it.
    """
    window = max(1, min(window, part.size))
    epoch, offset = divmod(start, part.size)
    shuffled = lambda e: _window_shuffle(_epoch_records(part, e, rng), e, window=window, rng=rng)
    return _epochs(shuffled, epoch).skip(offset)


def _epochs(epoch_fn, first: int) -> tf.data.Dataset:
    """Epochs first, first + 1, ... of `epoch_fn(epoch) -> Dataset`, concatenated (one trace)."""
    epoch_fn = tf.autograph.experimental.do_not_convert(epoch_fn)
    return tf.data.Dataset.counter(first).flat_map(epoch_fn)


def _epoch_records(part, epoch, rng: Rng) -> tf.data.Dataset:
    files, skips, takes = zip(*part.instructions, strict=True)
    skips, takes = tf.constant(skips, tf.int64), tf.constant(takes, tf.int64)
    order = preprocess.permutation(len(files), rng(SHARDS, epoch, 0))
    turns = tf.random.stateless_uniform([len(files)], rng(SHARDS, epoch, 1))
    turns = tf.cast(turns * tf.cast(takes, tf.float32), tf.int64)
    shards = tuple(tf.gather(x, order) for x in (tf.constant(files), skips, takes, turns))

    @tf.autograph.experimental.do_not_convert
    def read(filename, skip, take, turn):
        reader = lambda: tf.data.TFRecordDataset(filename, buffer_size=1 << 16)
        tail = reader().skip(skip + turn).take(take - turn)
        return tail.concatenate(reader().skip(skip).take(turn))

    return tf.data.Dataset.from_tensor_slices(shards).interleave(
        read,
        cycle_length=min(len(files), 16),
        num_parallel_calls=reading.AUTOTUNE,
        deterministic=True,
    )


def _window_shuffle(ds, epoch, *, window: int, rng: Rng) -> tf.data.Dataset:
    """Permutes each run of `window` elements, keyed by (epoch, window index)."""

    def shuffle(index, xs):
        return tf.gather(xs, preprocess.permutation(tf.shape(xs)[0], rng(WINDOW, epoch, index)))

    windows = tf.data.Dataset.zip(tf.data.Dataset.counter(), ds.batch(window))
    return reading.map_each(windows, shuffle, parallel=False).unbatch()
