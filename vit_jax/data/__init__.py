"""Input pipelines: TFDS datasets and image folders -> per-host numpy batches.

    info = data.dataset_info(config.data)
    for batch in data.train_iterator(config.data, global_batch_size=..., seed=..., ...): ...
    for batch in data.eval_iterator(config.data, global_batch_size=..., ...): ...

Fashion-MNIST needs no network: `fashion_mnist.prepare()` builds TFDS's `fashion_mnist` from
Debian's dataset-fashion-mnist files, and happens by itself on first use.
"""

from vit_jax.data import fashion_mnist
from vit_jax.data.pipeline import eval_iterator, local_batch_size, num_eval_batches, train_iterator
from vit_jax.data.sources import DatasetInfo, dataset_info

__all__ = [
    "DatasetInfo",
    "dataset_info",
    "eval_iterator",
    "fashion_mnist",
    "local_batch_size",
    "num_eval_batches",
    "train_iterator",
]
