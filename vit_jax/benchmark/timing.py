"""Timing of steps: exactly the dispatched steps, blocked on their own outputs; the matmul peak."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp


def timed_loop(
    step: Callable, carry, *, steps: int, clock: Callable[[], float] = time.perf_counter
):
    """Runs `carry, out = step(carry)` exactly `steps` times; returns (seconds, carry).

    The clock stops once the outputs of these steps (every `out` and the final carry) are ready,
    so the time covers exactly the dispatched steps, and no earlier or later work.
    """
    outs = []
    start = clock()
    for _ in range(steps):
        carry, out = step(carry)
        outs.append(out)
    jax.block_until_ready((carry, outs))
    return clock() - start, carry


def measure(
    step: Callable,
    carry,
    *,
    steps: int,
    repeats: int,
    warmup: int,
    target_s: float = 0.0,
    max_steps: int = 1000,
    clock: Callable[[], float] = time.perf_counter,
) -> dict:
    """Warm-up (blocked on), optional 2-step calibration, then `repeats` timed loops.

    Returns {'times_s': per repeat, 'steps': steps per repeat, 'calls': total step calls}.
    """
    calls = 0
    if warmup:
        _, carry = timed_loop(step, carry, steps=warmup, clock=clock)
        calls += warmup
    if target_s > 0:
        seconds, carry = timed_loop(step, carry, steps=2, clock=clock)
        calls += 2
        steps = int(min(max(math.ceil(target_s / max(seconds / 2, 1e-9)), 1), max_steps))
    times = []
    for _ in range(repeats):
        seconds, carry = timed_loop(step, carry, steps=steps, clock=clock)
        times.append(seconds)
        calls += steps
    return {"times_s": times, "steps": steps, "calls": calls}


# ---------------------------------------------------------------------------------------------
# Peak and model FLOPs.


def matmul_peak(*, dtype: str, n: int, steps: int = 10, repeats: int = 5) -> dict:
    """TFLOP/s of an n×n×n product in `dtype` on the default device, random inputs.

    The best repeat, not the median: a peak is what the device can do, and interference from
    other work (this repository's CPU machine is shared) only ever slows a repeat down.
    """
    ka, kb = jax.random.split(jax.random.key(42, impl="rbg"))
    a = jax.random.normal(ka, (n, n), jnp.dtype(dtype))
    b = jax.random.normal(kb, (n, n), jnp.dtype(dtype))
    product = jax.jit(lambda x, y: x @ y).lower(a, b).compile()
    timing = measure(lambda c: (c, product(a, b)), None, steps=steps, repeats=repeats, warmup=2)
    seconds = min(timing["times_s"]) / timing["steps"]
    return {"kind": "peak", "dtype": dtype, "n": n, "tflops": 2 * n**3 / seconds / 1e12}


def default_peak_n() -> int:
    return 1024 if jax.default_backend() == "cpu" else 8192
