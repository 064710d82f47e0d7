"""Plain-text progress for long work: one bar that redraws in a terminal and prints a line now and then
elsewhere (notebooks, CI logs, pipes), so logs stay short and readable."""
from __future__ import annotations

import queue
import sys
import time
from typing import Optional, TextIO

POLL_SECONDS = 2.0  # how often an executor reads the epochs that runs in other processes reported


def fmt_seconds(s: float) -> str:
    s = max(0.0, s)
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


class ProgressBar:
    """done / running / failed out of a total, with the rate and the time left. Work that reports its
    epochs (`epoch`) shows them beside the running count, and counts them towards the time left, so a
    phase of long runs has an estimate before its first run finishes."""

    def __init__(self, total: int, label: str = "runs", stream: Optional[TextIO] = None, every: float = 10.0,
                 width: int = 28):
        self.total, self.label, self.width, self.every = total, label, width, every
        self.stream = stream or sys.stdout
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.done = self.failed = self.running = 0
        self.epochs: dict = {}  # key of a running item -> (epochs done, epochs in all)
        self.started = self._last = time.perf_counter()
        self._closed = False
        self._printed = ""

    def line(self) -> str:
        elapsed = time.perf_counter() - self.started
        finished = self.done + self.failed
        frac = finished / self.total if self.total else 1.0
        fill = int(round(self.width * frac))
        rate = 60.0 * finished / elapsed if elapsed > 0 and finished else 0.0
        # items done, plus the part of each running one that its epochs say is done
        worked = finished + sum(k / n for k, n in self.epochs.values())
        left = (self.total - worked) * elapsed / worked if worked and elapsed > 0 else float("nan")
        eta = f", about {fmt_seconds(left)} left" if worked and finished < self.total else ""
        inner = ", ".join(f"{k}/{n}" for k, n in self.epochs.values())
        inner = f" (epoch {inner})" if inner else ""
        return (f"[{'#' * fill}{'.' * (self.width - fill)}] {finished}/{self.total} {self.label} "
                f"({self.done} done, {self.running} running{inner}, {self.failed} failed), {rate:.1f}/min, "
                f"{fmt_seconds(elapsed)}{eta}")

    def epoch(self, key, done: int, epochs: int) -> None:
        """Running item `key` has trained `done` of its `epochs` epochs."""
        self.epochs[key] = (done, epochs)
        self.update()

    def ended(self, key) -> None:
        """Running item `key` is over (done or failed): its epochs leave the line."""
        self.epochs.pop(key, None)

    def update(self, done: int = 0, failed: int = 0, running: Optional[int] = None, force: bool = False) -> None:
        self.done += done
        self.failed += failed
        if running is not None:
            self.running = running
        now = time.perf_counter()
        if self.tty:
            self.stream.write("\r" + self.line() + "\033[K")
            self.stream.flush()
        elif force or now - self._last >= self.every:
            self._print_line()
            self._last = now

    def _print_line(self) -> None:
        line = self.line()
        if line != self._printed:
            self.stream.write(line + "\n")
            self.stream.flush()
            self._printed = line

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.running = 0
        if self.tty:
            self.stream.write("\r" + self.line() + "\033[K\n")
            self.stream.flush()
        else:
            self._print_line()


def drain_epochs(feed, bar: ProgressBar) -> None:
    """Show on `bar` the epochs that runs in other processes (worker processes, Ray workers) put on `feed`
    (a queue of (key, epoch, epochs)) since the last look."""
    while True:
        try:
            bar.epoch(*feed.get_nowait())
        except queue.Empty:
            return
