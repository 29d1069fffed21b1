"""One progress line for a study, in place of Ray Tune's tables."""

from __future__ import annotations

import math
import sys
import time
from typing import TextIO


def _clock(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


class ProgressLine:
    """``configs done/total, running, failed, best objective, elapsed, ETA`` on one line.

    Every count is of configs (a pack of K configs running is K running), the unit of ``total``;
    ``running`` is what the last scheduler step saw, so it is capped by what is left to do.

    On a terminal the line is redrawn in place; elsewhere (CI, a log file) it is printed
    when a trial ends and at most every ``every_s`` seconds otherwise.
    """

    def __init__(self, study: str, total: int, metric: str, mode: str, stream: TextIO | None = None,
                 every_s: float = 15.0, already_done: int = 0):
        self.study, self.total, self.metric, self.mode = study, total, metric, mode
        self.stream = stream or sys.stdout
        self.every_s = every_s
        self.tty = self.stream.isatty()
        self.start = time.time()
        self.done = self.failed = self.running = 0
        self.already_done = already_done  # finished in an earlier invocation (resume)
        self.best = math.nan
        self._last_print = 0.0

    def __getstate__(self) -> dict:  # Tune pickles its callbacks; streams do not pickle
        state = dict(self.__dict__)
        state["stream"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.stream = sys.stdout

    def objective(self, value: float) -> None:
        if math.isfinite(value) and (math.isnan(self.best) or (value > self.best) == (self.mode == "max")):
            self.best = value

    def line(self) -> str:
        finished = self.done + self.failed
        elapsed = time.time() - self.start
        remaining = self.total - finished - self.already_done
        eta = elapsed / finished * remaining if finished else math.inf
        best = "-" if math.isnan(self.best) else f"{self.best:.4g}"
        running = max(0, min(self.running, remaining))
        return (f"[{self.study}] {finished + self.already_done}/{self.total} configs done · "
                f"{running} running · {self.failed} failed · best {self.metric} {best} · "
                f"{_clock(elapsed)} elapsed · ETA {_clock(eta if remaining > 0 else 0)}")

    def show(self, force: bool = False) -> None:
        now = time.time()
        if self.tty:
            if force or now - self._last_print > 0.5:
                self.stream.write("\r" + self.line().ljust(110))
                self.stream.flush()
                self._last_print = now
        elif force or now - self._last_print > self.every_s:
            print(self.line(), file=self.stream, flush=True)
            self._last_print = now

    def close(self) -> None:
        self.show(force=True)
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
