"""EventHub: the in-process publish/subscribe bus behind the bridge's event stream.

The watcher publishes `job` and `output` events; every open Server-Sent Events
connection holds one `Subscription`. Two properties matter more than throughput:

* A publisher (the watcher thread, a request thread) must never block on a slow or
  stalled consumer. Each subscription therefore has a bounded queue; when it fills,
  the subscription receives one final `overflow` event and is dropped. The SSE client
  reconnects with `Last-Event-ID` and catches up from the ring buffer.
* A client that reconnects must not silently lose events. The hub keeps the last
  `history` events, and `subscribe(last_event_id=N)` replays those with id > N
  atomically with registering, so nothing falls between replay and live delivery.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

OVERFLOW = "overflow"
"""Type of the final event a dropped (too slow) subscription receives."""


@dataclass(frozen=True)
class Event:
    """One published fact. `id` grows by one per publish, across all types."""

    id: int
    type: str
    data: dict[str, Any]
    time: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type, "data": self.data, "time": self.time}

    def to_sse(self) -> str:
        """The event as one Server-Sent Events message (data is compact JSON, one line)."""
        payload = json.dumps(self.data, separators=(",", ":"), default=str)
        return f"id: {self.id}\nevent: {self.type}\ndata: {payload}\n\n"


Predicate = Callable[[Event], bool]


class Subscription:
    """A bounded, thread-safe queue of events for one consumer.

    `get()` returns the next event, or None on timeout or once the subscription is
    closed and drained; check `closed` to tell the two apart.
    """

    def __init__(self, hub: EventHub, predicate: Predicate | None, maxsize: int) -> None:
        self._hub = hub
        self._predicate = predicate
        self._maxsize = max(1, maxsize)
        self._items: deque[Event] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self.overflowed = False

    @property
    def closed(self) -> bool:
        """True once closed or dropped; buffered events may still be read with get()."""
        return self._closed

    def matches(self, event: Event) -> bool:
        if self._predicate is None:
            return True
        try:
            return bool(self._predicate(event))
        except Exception:  # a faulty filter must not break the publisher
            return False

    def _offer(self, event: Event) -> bool:
        """Queue `event` without blocking; False means this subscription must be dropped."""
        with self._cond:
            if self._closed:
                return False
            if len(self._items) >= self._maxsize:
                # One marker beyond the bound, then nothing more: the consumer learns
                # where it stopped (last_id) and can resume with Last-Event-ID.
                last_id = self._items[-1].id if self._items else event.id - 1
                marker = Event(event.id, OVERFLOW, {"last_id": last_id, "dropped_from": event.id})
                self._items.append(marker)
                self.overflowed = True
                self._closed = True
                self._cond.notify_all()
                return False
            self._items.append(event)
            self._cond.notify_all()
            return True

    def get(self, timeout: float | None = None) -> Event | None:
        """The next event; waits up to `timeout` seconds (None = until one arrives or close)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._items:
                if self._closed:
                    return None
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining)
            return self._items.popleft()

    def close(self) -> None:
        """Stop receiving; wakes a consumer blocked in get(). Idempotent."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._hub._remove(self)

    def __iter__(self) -> Iterator[Event]:
        """Events until closed (blocking); convenient in tests and simple consumers."""
        while True:
            event = self.get()
            if event is None:
                return
            yield event

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventHub:
    """Thread-safe pub/sub with a replay ring buffer.

    `queue_size` bounds each subscription; `history` is how many recent events a
    reconnecting client can recover.
    """

    def __init__(self, *, history: int = 1000, queue_size: int = 1000) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._history: deque[Event] = deque(maxlen=max(0, history))
        self._subs: list[Subscription] = []
        self._queue_size = queue_size
        self._last_id = 0

    def publish(self, type: str, data: dict[str, Any]) -> Event:
        """Record and deliver one event to every matching subscriber; never blocks on them."""
        with self._lock:
            event = Event(next(self._ids), type, dict(data), time.time())
            self._last_id = event.id
            self._history.append(event)
            # Delivering under the lock keeps per-subscriber order equal to id order;
            # _offer never blocks, so holding the lock here is cheap.
            dropped = [s for s in self._subs if s.matches(event) and not s._offer(event)]
            if dropped:
                self._subs = [s for s in self._subs if s not in dropped]
        return event

    def subscribe(
        self,
        predicate: Predicate | None = None,
        *,
        last_event_id: int | None = None,
        maxsize: int | None = None,
    ) -> Subscription:
        """A new subscription; with `last_event_id`, buffered later events come first.

        `last_event_id` and `maxsize` are keyword extensions of the documented
        `subscribe(predicate=None)`. If the replay alone exceeds the queue bound the
        subscription overflows at once, exactly as a slow live consumer would.
        """
        sub = Subscription(self, predicate, self._queue_size if maxsize is None else maxsize)
        with self._lock:
            if last_event_id is not None:
                for event in self._history:
                    if event.id > last_event_id and sub.matches(event) and not sub._offer(event):
                        return sub
            self._subs.append(sub)
        return sub

    def recent(self, after_id: int = 0) -> list[Event]:
        """Buffered events with id > after_id, oldest first (diagnostics and tests)."""
        with self._lock:
            return [e for e in self._history if e.id > after_id]

    @property
    def last_id(self) -> int:
        with self._lock:
            return self._last_id

    @property
    def subscriber_count(self) -> int:
        with self._lock:
            return len(self._subs)

    def _remove(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)
