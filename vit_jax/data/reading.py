"""Reading and decoding the examples of a host split (see `sources`) with tf.data."""

from __future__ import annotations

import contextlib
import logging
import re

import numpy as np
import tensorflow as tf

from vit_jax import errors
from vit_jax.data.sources import ArraySplit, FileSplit, RecordSplit

AUTOTUNE = tf.data.AUTOTUNE

try:  # tf.data runs on the host; a GPU build of TF must not take accelerator memory from JAX.
    tf.config.set_visible_devices([], "GPU")
except RuntimeError:  # TF's devices were initialised before this import: too late, harmless.
    pass
_MARK = re.compile(r"<<(.*?)>>", re.S)  # Wraps the messages of our in-graph checks.


def map_each(ds: tf.data.Dataset, fn, *, parallel: bool = True) -> tf.data.Dataset:
    """ds.map without AutoGraph (our functions have no tensor-dependent Python control flow, and
    converting them costs seconds per pipeline on a busy 2-core host), order kept."""
    fn = tf.autograph.experimental.do_not_convert(fn)
    if not parallel:
        return ds.map(fn)
    return ds.map(fn, num_parallel_calls=AUTOTUNE, deterministic=True)


def examples(part) -> tf.data.Dataset:
    """{'image': uint8 [H, W, C], 'label': int32} of a host split, in canonical order."""
    if isinstance(part, ArraySplit):
        return tf.data.Dataset.from_tensor_slices({"image": part.images, "label": part.labels})
    if isinstance(part, FileSplit):
        ds = tf.data.Dataset.from_tensor_slices((tf.constant(part.paths, tf.string), part.labels))
        return map_each(ds, lambda p, y: {"image": decode_file(p, part.channels), "label": y})
    ds = map_each(records(part.instructions).batch(1024), lambda s: parse_records(s, part=part))
    return map_each(ds.unbatch(), lambda ex: decode_record(ex, part=part))


def records(instructions) -> tf.data.Dataset:
    """Serialized tf.Examples of (file, skip, take) instructions, in order."""
    if not instructions:
        return tf.data.Dataset.from_tensor_slices(tf.constant([], tf.string))
    files, skips, takes = zip(*instructions, strict=True)
    skips, takes = np.asarray(skips, np.int64), np.asarray(takes, np.int64)
    read = lambda f, s, t: tf.data.TFRecordDataset(f, buffer_size=1 << 16).skip(s).take(t)
    read = tf.autograph.experimental.do_not_convert(read)
    return tf.data.Dataset.from_tensor_slices((list(files), skips, takes)).flat_map(read)


def parse_records(serialized, *, part: RecordSplit) -> dict:
    """Batched parse (far faster than TFDS's per-example one): {image: bytes, label: int64}."""
    image_key, label_key = part.keys
    spec = {
        image_key: tf.io.FixedLenFeature([], tf.string),
        label_key: tf.io.FixedLenFeature([], tf.int64),
    }
    parsed = tf.io.parse_example(serialized, spec)
    return {"image": parsed[image_key], "label": parsed[label_key]}


def decode_record(example, *, part: RecordSplit) -> dict:
    """Decodes as TFDS's Image feature does (decode_image with the feature's channel count)."""
    image = tf.io.decode_image(example["image"], channels=part.shape[-1], expand_animations=False)
    image.set_shape(part.shape)
    return {"image": image, "label": tf.cast(example["label"], tf.int32)}


# First bytes of PNG and JPEG (the folder source's formats): a file without them is no image.
_MAGIC = (b"\x89PNG", b"\xff\xd8\xff")


def decode_file(path, channels: int) -> tf.Tensor:
    """Decodes an image file as stored; one that is not an image or has another channel count
    fails the pipeline with a message naming the file."""
    data = tf.io.read_file(path)
    known = tf.reduce_any(
        tf.stack([tf.equal(tf.strings.substr(data, 0, len(m)), m) for m in _MAGIC])
    )
    bad = tf.strings.join(["<<", path, ": not an image file (expected JPEG or PNG)>>"])
    with tf.control_dependencies([tf.debugging.Assert(known, [bad])]):
        data = tf.identity(data)
    image = tf.io.decode_image(data, channels=0, expand_animations=False)
    found = tf.shape(image)[-1]
    message = tf.strings.join(
        ["<<", path, ": image has ", tf.strings.as_string(found), " channels, expected "]
        + [f"{channels} (those of the first training image)>>"]
    )
    with tf.control_dependencies([tf.debugging.Assert(tf.equal(found, channels), [message])]):
        image = tf.identity(image)
    image.set_shape([None, None, channels])
    return image


@contextlib.contextmanager
def raising_value_errors(_tf_error=tf.errors.InvalidArgumentError):
    """Turns our in-graph check failures (tf errors) into one-line ValueErrors; any other
    InvalidArgumentError (e.g. a damaged image past its header) into its first line.

    (`_tf_error` is bound at import: iterators may be closed at interpreter exit, after module
    globals such as `tf` are gone.)
    """
    try:
        yield
    except _tf_error as e:
        match = _MARK.search(e.message or "")
        if match is None:
            first = (e.message or type(e).__name__).strip().splitlines()[0]
            raise errors.UserError(f"reading the data failed: {first}") from e
        raise errors.UserError(match.group(1)) from None


def load_arrays(part):
    """The host split decoded into memory, if its images share one shape; else `part` itself."""
    if isinstance(part, ArraySplit):
        return part
    if isinstance(part, RecordSplit) and None in part.shape:
        logging.warning("config.data.cache ignored: images of varying size are streamed")
        return part
    ds = examples(part)
    # Folder images may differ in size: collect them one by one, then stack if they agree.
    ds = ds.batch(4096) if isinstance(part, RecordSplit) else map_each(ds, _add_batch_dim)
    images, labels = [], []
    with raising_value_errors():
        for batch in ds.as_numpy_iterator():
            images.append(batch["image"])
            labels.append(batch["label"])
    if not images:
        channels = part.channels if isinstance(part, FileSplit) else part.shape[-1]
        return ArraySplit(np.zeros((0, 1, 1, channels), np.uint8), np.zeros((0,), np.int32))
    if len({im.shape[1:] for im in images}) > 1:
        logging.warning("config.data.cache ignored: folder images vary in size")
        return part
    return ArraySplit(np.concatenate(images), np.concatenate(labels).astype(np.int32))


def _add_batch_dim(example):
    return {name: value[None] for name, value in example.items()}
