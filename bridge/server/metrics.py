"""Metrics: the bridge's counters and latency histograms in Prometheus text format.

Hand-rolled rather than prometheus_client: four metric families, one lock, and an
exact text exposition (format 0.0.4) that tests can parse, without a global registry
that would leak state between app instances in one process.
"""

from __future__ import annotations

import math
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Sync OSCAR calls range from milliseconds (local) to minutes (cold Knative pods).
DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

Labels = tuple[tuple[str, str], ...]


def _escape(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Labels, extra: tuple[str, str] | None = None) -> str:
    items = list(labels) + ([extra] if extra else [])
    if not items:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in items) + "}"


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


class _Histogram:
    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.sum += value
        self.count += 1
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1


class Metrics:
    """Thread-safe counters and histograms; `render()` gives the /metrics body."""

    def __init__(self, buckets: tuple[float, ...] = DEFAULT_BUCKETS) -> None:
        self._lock = threading.Lock()
        self._buckets = tuple(sorted(buckets))
        self._invocations: dict[Labels, int] = defaultdict(int)
        self._durations: dict[Labels, _Histogram] = {}
        self._errors: dict[Labels, int] = defaultdict(int)
        self._jobs: dict[Labels, int] = defaultdict(int)

    def observe_invocation(self, cluster: str, service: str, mode: str, seconds: float, ok: bool) -> None:
        """One sync (`mode="sync"`) or async submission (`mode="async"`) through the bridge."""
        outcome = "ok" if ok else "error"
        key = (("cluster", cluster), ("service", service), ("mode", mode))
        with self._lock:
            self._invocations[(*key, ("outcome", outcome))] += 1
            hist = self._durations.get(key)
            if hist is None:
                hist = self._durations[key] = _Histogram(self._buckets)
            hist.observe(max(0.0, seconds))

    @contextmanager
    def timed_invocation(self, cluster: str, service: str, mode: str) -> Iterator[None]:
        """Observe the block as one invocation: an exception counts it as an error."""
        started = time.perf_counter()
        try:
            yield
        except BaseException:
            self.observe_invocation(cluster, service, mode, time.perf_counter() - started, False)
            raise
        self.observe_invocation(cluster, service, mode, time.perf_counter() - started, True)

    def count_error(self, kind: str) -> None:
        """An error answered by the bridge, by kind (http_404, upstream_unavailable...)."""
        with self._lock:
            self._errors[(("kind", kind),)] += 1

    def count_job(self, cluster: str, service: str, status: str) -> None:
        """A job reached `status` (`submitted` when the bridge submitted it)."""
        with self._lock:
            self._jobs[(("cluster", cluster), ("service", service), ("status", status))] += 1

    def render(self) -> str:
        with self._lock:
            invocations = sorted(self._invocations.items())
            durations = sorted((k, h.counts[:], h.sum, h.count) for k, h in self._durations.items())
            errors = sorted(self._errors.items())
            jobs = sorted(self._jobs.items())
        lines = [
            "# HELP oscar_bridge_invocations_total Service invocations through the bridge.",
            "# TYPE oscar_bridge_invocations_total counter",
        ]
        lines += [f"oscar_bridge_invocations_total{_labels(k)} {v}" for k, v in invocations]
        lines += [
            "# HELP oscar_bridge_invocation_duration_seconds Time from request to upstream answer.",
            "# TYPE oscar_bridge_invocation_duration_seconds histogram",
        ]
        name = "oscar_bridge_invocation_duration_seconds"
        for key, counts, total, count in durations:
            for bound, n in zip(self._buckets, counts, strict=True):
                lines.append(f"{name}_bucket{_labels(key, ('le', _number(bound)))} {n}")
            lines.append(f"{name}_bucket{_labels(key, ('le', '+Inf'))} {count}")
            lines.append(f"{name}_sum{_labels(key)} {_number(total)}")
            lines.append(f"{name}_count{_labels(key)} {count}")
        lines += [
            "# HELP oscar_bridge_errors_total Error responses of the bridge, by kind.",
            "# TYPE oscar_bridge_errors_total counter",
        ]
        lines += [f"oscar_bridge_errors_total{_labels(k)} {v}" for k, v in errors]
        lines += [
            "# HELP oscar_bridge_jobs_total Async jobs submitted through the bridge and their final states.",
            "# TYPE oscar_bridge_jobs_total counter",
        ]
        lines += [f"oscar_bridge_jobs_total{_labels(k)} {v}" for k, v in jobs]
        return "\n".join(lines) + "\n"
