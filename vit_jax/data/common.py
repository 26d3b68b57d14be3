"""What every input path shares, free of TensorFlow: the dataset summary and how work is split."""

from __future__ import annotations

import dataclasses

from vit_jax import errors


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a model and a training loop need to know about a dataset config."""

    num_classes: int
    channels: int
    num_train: int  # Examples in config.data.train_split (all processes together).
    num_eval: int  # Examples in config.data.eval_split.
    class_names: tuple[str, ...]
    image_shape: tuple[int, int, int]  # (S, S, C) of the images the iterators yield.


def local_batch_size(global_batch_size: int, process_count: int) -> int:
    """The batch each process yields; the global batch must split evenly over processes."""
    if global_batch_size <= 0 or process_count <= 0:
        raise errors.UserError(
            f"global batch size {global_batch_size} and process count must be > 0"
        )
    if global_batch_size % process_count:
        raise errors.UserError(
            f"global batch size {global_batch_size} is not divisible by "
            f"process_count={process_count}"
        )
    return global_batch_size // process_count


def even_bounds(n: int, count: int, index: int) -> tuple[int, int]:
    """[start, stop) of part `index` of `count`; the first n % count get one more (as TFDS)."""
    base, extra = divmod(n, count)
    start = index * base + min(index, extra)
    return start, start + base + (index < extra)
