"""Prometheus metrics of one service instance (its own registry, so several apps in one
process, as in tests, never collide). Also the engine's Observer."""
from __future__ import annotations

from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from service.engine import Observer

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


def rejection_reason(why: str) -> str:
    """A small, fixed label set from a free-text rejection ('attempt 2: output 0 is constant')."""
    text = why.split(": ", 1)[-1]
    for key, label in (("no solution", "no_solution"), ("numerics:", "numerics"), ("tie:", "tie"),
                       ("trivial:", "trivial"), ("removable:", "removable"), ("constant", "constant"),
                       ("NaN", "non_finite"), ("Inf", "non_finite"), ("shape", "shape"),
                       ("OutOfMemory", "out_of_memory")):
        if key in text:
            return label
    return "exception"


class Metrics(Observer):
    def __init__(self):
        self.registry = r = CollectorRegistry()
        self.requests = Counter("tcgen_http_requests", "HTTP requests", ["method", "route", "status"], registry=r)
        self.samples = Counter("tcgen_samples_generated", "samples generated", ["via"], registry=r)
        self.failed = Counter("tcgen_samples_failed", "indices given up after every attempt", registry=r)
        self.rejected = Counter("tcgen_attempts_rejected", "attempts redone, by reason", ["reason"], registry=r)
        self.solve_seconds = Histogram("tcgen_solve_seconds", "one solve attempt", buckets=LATENCY_BUCKETS,
                                       registry=r)
        self.validate_seconds = Histogram("tcgen_validation_seconds", "one validation", buckets=LATENCY_BUCKETS,
                                          registry=r)
        self.restarts = Counter("tcgen_worker_restarts", "engine workers replaced", ["stage"], registry=r)
        self.queue_depth = Gauge("tcgen_queue_depth", "work waiting for the engine", ["queue"], registry=r)
        self.jobs = Gauge("tcgen_jobs", "jobs by state", ["state"], registry=r)

    def track_jobs(self, count_by_state: Callable[[], dict[str, int]]) -> None:
        """Jobs by state are read from the store at scrape time."""
        self._count_by_state = count_by_state

    def refresh(self) -> None:
        for state, n in self._count_by_state().items():
            self.jobs.labels(state).set(n)

    # -- Observer ------------------------------------------------------------------------
    def stage_timed(self, stage: str, seconds: float) -> None:
        (self.solve_seconds if stage == "solve" else self.validate_seconds).observe(seconds)

    def attempt_rejected(self, reason: str) -> None:
        self.rejected.labels(rejection_reason(reason)).inc()

    def worker_restarted(self, stage: str) -> None:
        self.restarts.labels(stage).inc()
