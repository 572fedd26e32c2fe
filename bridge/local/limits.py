"""Concurrency caps for the embedded runtime: one global cap plus per-service caps.

OSCAR bounds sync work per service with Knative's `synchronous.max_scale` (each pod
serves one request at a time), and the cluster as a whole is bounded by its nodes. The
local runtime has one machine, so it needs both: a global cap (how many scripts may run
at once on this host) and the per-service `max_scale` (0 = unlimited, as in OSCAR).

A request over a cap *waits* instead of failing: Knative queues requests in its
activator rather than answering 503, and clients (Node-RED, NiFi) cope far better with
a slow answer than with a spurious error. Waiters are admitted oldest first among those
that fit, so one saturated service cannot starve another service's requests
(strict FIFO would let the head of the queue block everybody behind it).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass
class _Ticket:
    seq: int
    service: str
    max_scale: int


class Limiter:
    """Global + per-service concurrency caps; `slot()` blocks until both allow.

    `global_cap` <= 0 means "no global cap" (useful in tests and for callers that only
    want per-service limits).
    """

    def __init__(self, global_cap: int) -> None:
        self.global_cap = int(global_cap)
        self._cond = threading.Condition()
        self._active_total = 0
        self._active: dict[str, int] = {}
        self._waiting: list[_Ticket] = []
        self._seq = itertools.count()

    # -- introspection (metrics, tests) -----------------------------------------------
    @property
    def active(self) -> int:
        """Slots currently held, all services together."""
        with self._cond:
            return self._active_total

    def active_for(self, service_name: str) -> int:
        with self._cond:
            return self._active.get(service_name, 0)

    @property
    def waiting(self) -> int:
        """Callers currently blocked in `slot()`."""
        with self._cond:
            return len(self._waiting)

    # -- the cap ---------------------------------------------------------------------
    @contextmanager
    def slot(self, service_name: str, max_scale: int = 0) -> Iterator[None]:
        """Hold one execution slot for `service_name` for the duration of the block.

        `max_scale` is the service's `synchronous.max_scale` (0 or negative = no
        per-service cap). Async jobs pass 0: OSCAR's Jobs are not bound by it.
        """
        ticket = _Ticket(next(self._seq), service_name, max(0, int(max_scale or 0)))
        with self._cond:
            self._waiting.append(ticket)
            try:
                self._cond.wait_for(lambda: self._admissible(ticket))
            finally:
                # Also reached when the wait is interrupted (KeyboardInterrupt): never
                # leave a dead ticket in the queue, it would block later waiters.
                self._waiting.remove(ticket)
            self._active_total += 1
            self._active[service_name] = self._active.get(service_name, 0) + 1
            # Others may now be admissible too (or newly blocked); let them re-check.
            self._cond.notify_all()
        try:
            yield
        finally:
            with self._cond:
                self._active_total -= 1
                left = self._active[service_name] - 1
                if left:
                    self._active[service_name] = left
                else:
                    del self._active[service_name]
                self._cond.notify_all()

    # -- internals (call with the condition held) ------------------------------------------
    def _fits(self, ticket: _Ticket, extra_total: int, extra_service: dict[str, int]) -> bool:
        if self.global_cap > 0 and self._active_total + extra_total >= self.global_cap:
            return False
        if ticket.max_scale > 0:
            used = self._active.get(ticket.service, 0) + extra_service.get(ticket.service, 0)
            if used >= ticket.max_scale:
                return False
        return True

    def _admissible(self, ticket: _Ticket) -> bool:
        """True when `ticket` fits and no older waiter that also fits is ahead of it.

        Older waiters that fit are counted as if already admitted, so a younger waiter
        only jumps ahead when what the older ones need is unavailable anyway.
        """
        extra_total = 0
        extra_service: dict[str, int] = {}
        for other in self._waiting:
            if other is ticket:
                return self._fits(ticket, extra_total, extra_service)
            if self._fits(other, extra_total, extra_service):
                extra_total += 1
                extra_service[other.service] = extra_service.get(other.service, 0) + 1
        return False  # not queued (cannot happen while waiting)
