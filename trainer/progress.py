"""Progress lines with a rate and an ETA, for every long step (online and offline training,
the training cache build, evaluation): one helper, so every step reports alike.

Lines go to the caller's `log` callable when it passes one (the pipelines pass the Dagster
run's `context.log.info`, so they land in the run log), else to a bar rewritten in place on
an interactive terminal, else to the given logger (the CLIs configure it to print).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable

Log = Callable[[str], None]


def duration(seconds: float) -> str:
    """`1h02m`, `3m05s`, `42s`; `?` when unknown."""
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        return "?"
    s = max(round(seconds), 0)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def _rate(value: float) -> str:
    if value != value or value in (float("inf"), float("-inf")):
        return "?"
    return f"{value:,.0f}" if value >= 100 else f"{value:.2f}"


class Progress:
    """Progress of `total` units of work (env steps, updates, tasks), at most one line per
    `interval_s` (the first `due()` is always true, so a run shows its ETA early).

    `emit(done, rate, extra)` writes `done/total unit (pct)  rate rate_unit  ETA ...` + extra; the
    rate defaults to the mean since construction; the ETA is (total - done) / rate."""

    def __init__(self, total: int, unit: str, *, rate_unit: str | None = None,
                 interval_s: float = 0.0, log: Log | None = None,
                 logger: logging.Logger | None = None) -> None:
        self.total, self.unit = total, unit
        self.rate_unit = rate_unit or f"{unit.split()[-1]}/s"
        self.interval = interval_s
        self.log = log
        self.logger = logger or logging.getLogger("trainer")
        self.tty = log is None and sys.stderr.isatty()
        self.start = self.last = time.perf_counter()
        self.emitted = 0

    def due(self) -> bool:
        return not self.emitted or time.perf_counter() - self.last >= self.interval

    def eta_s(self, done: int, rate: float) -> float:
        """Seconds left at `rate` units/s; 0 when done; NaN when the rate is unknown."""
        if done >= self.total:
            return 0.0
        return (self.total - done) / rate if rate > 0 else float("nan")

    def emit(self, done: int, rate: float | None = None, extra: str = "") -> str:
        """Write (and return) the line for `done` units at `rate` units/s."""
        if rate is None:
            rate = done / max(time.perf_counter() - self.start, 1e-9)
        frac = done / self.total if self.total else 1.0
        text = (f"{done:,}/{self.total:,} {self.unit} ({frac:.1%})  "
                f"{_rate(rate)} {self.rate_unit}  ETA {duration(self.eta_s(done, rate))}"
                + extra)
        if self.tty:
            bar = "#" * int(24 * min(frac, 1.0))
            end = "\n" if extra or done >= self.total else ""
            sys.stderr.write(f"\r[{bar:<24}] {text}{end}")
            sys.stderr.flush()
        else:
            self.say(text)
        self.emitted += 1
        self.last = time.perf_counter()
        return text

    def say(self, text: str) -> None:
        """A plain line (a note between progress lines) to the same place."""
        if self.tty:
            sys.stderr.write("\r" + text + "\n")
        elif self.log is not None:
            self.log(text)
        else:
            self.logger.info(text)
