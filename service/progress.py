"""Progress of a long run on stderr: a tqdm bar on a terminal, plain periodic lines
otherwise (logs, CI), and one summary line at the end."""
from __future__ import annotations

import sys
import time
from typing import TextIO

from service.engine import Progress


def _devices(p: Progress) -> str:
    return " ".join(f"{d}={n}" for d, n in sorted(p.validated.items())) or "-"


class ProgressReporter:
    def __init__(self, total: int, initial: int, progress: Progress, stream: TextIO = sys.stderr,
                 interval: float = 10.0):
        self.total, self.count, self.progress, self.stream = total, initial, progress, stream
        self.initial, self.interval = initial, interval
        self.started = self.last_line = time.monotonic()
        self.bar = None
        if stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="sample", file=stream, dynamic_ncols=True)

    def rate(self) -> float:
        return (self.count - self.initial) / max(time.monotonic() - self.started, 1e-9)

    def update(self) -> None:
        self.count += 1
        p = self.progress
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(f"rejected {p.rejected} failed {p.failed} restarts {p.restarts} "
                                     f"validated {_devices(p)}", refresh=False)
        elif time.monotonic() - self.last_line >= self.interval:
            self.last_line = time.monotonic()
            print(self.line(), file=self.stream, flush=True)

    def line(self) -> str:
        p, rate = self.progress, self.rate()
        eta = (self.total - self.count) / rate if rate > 0 else float("inf")
        eta_text = time.strftime("%H:%M:%S", time.gmtime(eta)) if eta != float("inf") else "?"
        return (f"tcgen: {self.count}/{self.total} samples ({self.count / max(self.total, 1):.0%}), "
                f"{rate:.1f}/s, rejected {p.rejected}, failed {p.failed}, restarts {p.restarts}, "
                f"validated {_devices(p)}, eta {eta_text}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
