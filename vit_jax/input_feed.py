"""Feeding the step: a background thread turns host batches into global device arrays ahead of time.

The train step is dispatched asynchronously, so while the devices run step k this thread is
already decoding, augmenting and transferring batch k+1..k+size. `rate()` reports how many images
per second the input side alone could supply, logged beside the step's rate: when it is the
smaller of the two, the run is input-bound.
"""

from __future__ import annotations

import queue
import threading
import time

import jax
from tqdm import tqdm

from vit_jax import sharding

_DONE = object()


class Feed:
    def __init__(self, iterator, *, mesh, size: int = 2):
        self._queue: queue.Queue = queue.Queue(maxsize=max(size, 1))
        self._stop = threading.Event()
        self._busy_s = 0.0
        self._images = 0
        self._thread = threading.Thread(target=self._produce, args=(iterator, mesh), daemon=True)
        self._thread.start()

    def _produce(self, iterator, mesh):
        try:
            while not self._stop.is_set():
                t = time.perf_counter()
                batch = next(iterator, _DONE)
                if batch is _DONE:
                    self._put(_DONE)
                    return
                item = sharding.to_global(batch, mesh)
                self._busy_s += time.perf_counter() - t
                self._images += len(batch["label"]) * jax.process_count()
                self._put(item)
        except BaseException as e:  # Surfaced in the consumer (KeyboardInterrupt included).
            self._put(e)

    def _put(self, item):
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def next(self):
        item = self._queue.get()
        if item is _DONE:
            raise StopIteration
        if isinstance(item, BaseException):
            raise item
        return item

    def rate(self) -> float:
        """Images per second the input side delivers while busy (its capacity)."""
        return self._images / self._busy_s if self._busy_s else 0.0

    def close(self):
        self._stop.set()
        while not self._queue.empty():
            self._queue.get_nowait()
        self._thread.join(timeout=5)


def progress(config, start: int):
    """A progress bar (step, loss, img/s, ETA) on process 0; silent elsewhere or when disabled."""
    disable = not config.progress_bar or jax.process_index() != 0
    return tqdm(
        total=config.total_steps,
        initial=start,
        desc=config.model.name,
        unit="step",
        dynamic_ncols=True,
        disable=disable,
        mininterval=1.0,
    )
