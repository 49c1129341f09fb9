"""Progress of a long run on stderr: a tqdm bar on a terminal, plain periodic lines
otherwise (logs, CI); the caller prints one summary line at the end.

The figures are the engine's (`Progress`), never counted a second time here:
- done: samples the engine has handed back, in index order: written + failed (plus what a
  resumed file held before this run). At most the total.
- validated: validation runs per device, attempts that validation rejected included. It runs
  ahead of `written`: results leave in index order, so a slow index holds back later
  samples that are already validated.
- the rate: samples done per second over this run so far (start-up included), and the ETA
  the remaining samples at that rate. The ETA is shown once MIN_FOR_ETA samples are done:
  from the first sample alone (which waits for the workers' start-up) it read 17 minutes
  for a run that took 15 s.
"""
from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from service.engine import Progress

MIN_FOR_ETA = 5


def _devices(p: Progress) -> str:
    return " ".join(f"{d}={n}" for d, n in sorted(p.validated.items())) or "-"


def _clock(seconds: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(seconds))


class ProgressReporter:
    def __init__(self, total: int, initial: int, progress: Progress, stream: TextIO = sys.stderr,
                 interval: float = 10.0):
        """`initial`: samples a resumed file already holds; `progress`: the engine's counters
        of this run; a plain line every `interval` seconds when `stream` is no terminal."""
        self.total, self.initial, self.progress, self.stream = total, initial, progress, stream
        self.interval = interval
        self.started = self.last_line = time.monotonic()
        self.bar = None
        if stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="sample", file=stream, dynamic_ncols=True)

    @property
    def done(self) -> int:
        """Samples done, written or failed, this run and before it."""
        return self.initial + self.progress.done

    @property
    def written(self) -> int:
        return self.done - self.progress.failed

    def rate(self) -> float:
        """Samples done per second over this run so far."""
        return self.progress.done / max(time.monotonic() - self.started, 1e-9)

    def eta(self) -> float | None:
        """Seconds to the end at the rate so far; None until MIN_FOR_ETA samples are done."""
        left = self.total - self.done
        if left <= 0:
            return 0.0
        rate = self.rate()
        return left / rate if self.progress.done >= MIN_FOR_ETA and rate > 0 else None

    def update(self) -> None:
        """After each outcome the engine handed back."""
        p = self.progress
        if self.bar is not None:
            self.bar.update(self.done - self.bar.n)
            self.bar.set_postfix_str(f"written {self.written} failed {p.failed} validated {_devices(p)} "
                                     f"rejected {p.rejected} restarts {p.restarts}", refresh=False)
        elif time.monotonic() - self.last_line >= self.interval:
            self.last_line = time.monotonic()
            print(self.line(), file=self.stream, flush=True)

    def line(self) -> str:
        p, eta = self.progress, self.eta()
        resumed = f", {self.initial} before --resume" if self.initial else ""
        return (f"tcgen: written {self.written}/{self.total}, failed {p.failed} "
                f"({self.done / max(self.total, 1):.0%} done{resumed}); "
                f"validated {sum(p.validated.values())} ({_devices(p)}), rejected attempts {p.rejected}, "
                f"restarts {p.restarts}; {self.rate():.1f} samples/s"
                + (f", eta {_clock(eta)}" if eta is not None else ""))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
