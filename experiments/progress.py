"""A sweep's progress: '[i/N] name …' lines, an ETA, and a live bar over the points' own steps.

The ETA fits wall = overhead + rate × predicted training compute over the points finished so far
(short points are dominated by start-up and compilation, long ones by compute), divided by the
speed-up that parallel slots gave so far. The bar (on a terminal only) counts finished points
plus the fraction of each running point's steps, read from the tail of its metrics.jsonl.
"""

from __future__ import annotations

import json
import pathlib
import sys
import time

import numpy as np
from tqdm import tqdm

from vit_jax import paths

BAR_FORMAT = "{desc} {percentage:3.0f}%|{bar}| {n:.1f}/{total} points [{elapsed}{postfix}]"


def latest_step(workdir: pathlib.Path) -> int:
    """The last `step` in DIR/metrics.jsonl (0 if there is none yet), read from the file's tail."""
    try:
        with (paths.path(workdir) / "metrics.jsonl").open("rb") as f:
            f.seek(max(0, f.seek(0, 2) - 4096))
            lines = f.read().splitlines()
    except FileNotFoundError:
        return 0
    for line in reversed(lines):
        try:
            return int(json.loads(line)["step"])
        except (ValueError, KeyError, TypeError):
            continue  # A partial first line of the tail, or a line being written.
    return 0


def hms(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class Progress:
    """Tracks the points of one sweep run: starts, ends, ETA, and the bar.

    `compute`: point name → predicted training FLOPs; `steps`: point name → total steps (for the
    bar's fraction of a running point); `bar=None` shows it only when stderr is a terminal.
    """

    def __init__(self, compute: dict[str, float], *, steps=None, out=print, bar=None):
        self.compute, self.total = compute, len(compute)
        self.steps = steps or {}
        self.t0, self.done, self.started = time.time(), {}, 0  # done: name → wall_s
        self.running: dict[str, pathlib.Path] = {}
        self._fraction: dict[str, float] = {}
        self._last_read = 0.0
        self._eta_at, self._eta_t = None, 0.0
        self.bar = tqdm(
            total=self.total, disable=not sys.stderr.isatty() if bar is None else not bar,
            bar_format=BAR_FORMAT,
            desc="sweep", dynamic_ncols=True, file=sys.stderr,
        )  # fmt: skip
        self._out = out

    def out(self, line: str) -> None:
        if self.bar.disable:
            self._out(line)
        else:
            self.bar.write(line, file=sys.stdout)

    def start(self, name: str, workdir: pathlib.Path | None = None) -> None:
        self.started += 1
        if workdir is not None:
            self.running[name] = paths.path(workdir)
        self.out(f"[{self.started}/{self.total}] {name}: started")
        self._refresh()

    def finish(self, name: str, wall_s: float, status: str) -> None:
        self.done[name] = wall_s
        self.running.pop(name, None)
        self._fraction.pop(name, None)
        eta = self._eta_at = self.eta()
        self._eta_t = time.time()
        tail = f", ETA {hms(eta)}" if eta is not None else ""
        self.out(f"[{len(self.done)}/{self.total}] {name}: {status} in {hms(wall_s)}{tail}")
        self._refresh()

    def tick(self) -> None:
        """Re-reads the running points' steps (at most once a second) and redraws the bar."""
        if self.bar.disable or time.time() - self._last_read < 1.0:
            return
        self._last_read = time.time()
        for name, workdir in self.running.items():
            total = self.steps.get(name)
            if total:
                self._fraction[name] = min(latest_step(workdir) / total, 1.0)
        self._refresh()

    def _refresh(self) -> None:
        if self.bar.disable:
            return
        self.bar.n = len(self.done) + sum(self._fraction.values())
        # The estimate made at the last finish, counting down until the next one.
        eta = None if self._eta_at is None else max(self._eta_at - (time.time() - self._eta_t), 0)
        running = ", ".join(f"{n} {self._fraction.get(n, 0.0):.0%}" for n in self.running)
        parts = ([f"ETA {hms(eta)}"] if eta is not None else []) + ([running] if running else [])
        self.bar.set_postfix_str(" | ".join(parts), refresh=True)

    def close(self) -> None:
        self.bar.close()

    def eta(self) -> float | None:
        left = [c for n, c in self.compute.items() if n not in self.done]
        if not left:
            return 0.0
        if not self.done:
            return None
        x = np.array([self.compute[n] for n in self.done])
        y = np.array(list(self.done.values()))
        serial = y.mean() * len(left)  # Fixed costs dominate until a compute trend shows.
        if len(x) >= 2 and np.ptp(x) > 0:
            rate, overhead = np.polyfit(x, y, 1)
            if rate > 0 and overhead >= 0:
                serial = sum(overhead + rate * c for c in left)
        # Parallel slots shrink wall time by the speed-up seen so far.
        speedup = max(y.sum() / max(time.time() - self.t0, 1e-9), 1.0)
        return serial / speedup
