"""Limiter: global and per-service caps hold under real concurrency, and waiters are served.

Overlap is measured with real /bin/sh scripts that register themselves in a directory
while they run: the number of entries seen is the true concurrency, independent of how
slow the machine is. No assertion depends on timing; sleeps only widen the windows.
"""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import pytest

from bridge.local.limits import Limiter

# Each run adds marker files (one in a shared directory, one in its service's), records
# how many markers exist (the overlap, overall and per service), lingers a little so
# that overlaps can happen, and removes its markers.
OVERLAP_SCRIPT = """
mkdir -p "$RUN_DIR/active-$SERVICE"
marker="$RUN_DIR/active/$$"
: > "$marker"
: > "$RUN_DIR/active-$SERVICE/$$"
ls "$RUN_DIR/active" | wc -l >> "$RUN_DIR/seen-all"
ls "$RUN_DIR/active-$SERVICE" | wc -l >> "$RUN_DIR/seen-$SERVICE"
sleep 0.3
ls "$RUN_DIR/active" | wc -l >> "$RUN_DIR/seen-all"
ls "$RUN_DIR/active-$SERVICE" | wc -l >> "$RUN_DIR/seen-$SERVICE"
rm -f "$RUN_DIR/active-$SERVICE/$$"
rm -f "$marker"
"""


def _run_script(run_dir: Path, service: str) -> None:
    subprocess.run(
        ["/bin/sh", "-c", OVERLAP_SCRIPT],
        env={"RUN_DIR": str(run_dir), "SERVICE": service, "PATH": "/usr/bin:/bin"},
        check=True,
        timeout=120,
    )


def _max_seen(run_dir: Path, service: str) -> int:
    return max(int(line) for line in (run_dir / f"seen-{service}").read_text().split())


def _run_all(limiter: Limiter, run_dir: Path, calls: list[tuple[str, int]]) -> None:
    errors: list[BaseException] = []

    def call(service: str, max_scale: int) -> None:
        try:
            with limiter.slot(service, max_scale):
                _run_script(run_dir, service)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=call, args=c) for c in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(180)
        assert not thread.is_alive(), "a caller never got a slot"
    assert not errors, errors


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    (tmp_path / "active").mkdir()
    return tmp_path


def test_global_cap_bounds_concurrency(run_dir: Path) -> None:
    limiter = Limiter(2)
    _run_all(limiter, run_dir, [("svc", 0)] * 4 + [("two", 0)] * 2)
    assert _max_seen(run_dir, "all") <= 2
    assert len((run_dir / "seen-all").read_text().split()) == 12  # every call ran
    assert limiter.active == 0 and limiter.waiting == 0


def test_per_service_cap_bounds_that_service_only(run_dir: Path) -> None:
    limiter = Limiter(0)  # no global cap
    _run_all(limiter, run_dir, [("one", 1)] * 4 + [("other", 0)] * 2)
    assert _max_seen(run_dir, "one") == 1
    assert len((run_dir / "seen-one").read_text().split()) == 8
    assert len((run_dir / "seen-other").read_text().split()) == 4
    assert limiter.active == 0


def test_max_scale_one_serialises(run_dir: Path) -> None:
    limiter = Limiter(8)
    _run_all(limiter, run_dir, [("solo", 1)] * 4)
    assert _max_seen(run_dir, "solo") == 1


def test_cap_of_two_admits_two_at_once() -> None:
    """With room for two, two holders really do hold slots at the same time."""
    limiter = Limiter(2)
    inside = threading.Barrier(2, timeout=60)

    def hold() -> None:
        with limiter.slot("svc", 0):
            inside.wait()  # only passes if both are inside together

    threads = [threading.Thread(target=hold) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    assert not inside.broken


def test_saturated_service_does_not_block_another() -> None:
    """A waiter for a service at its max_scale must not hold up other services."""
    limiter = Limiter(3)
    release = threading.Event()
    holding = threading.Event()
    order: list[str] = []

    def hog() -> None:
        with limiter.slot("busy", 1):
            holding.set()
            release.wait(120)

    def blocked() -> None:
        with limiter.slot("busy", 1):
            order.append("busy")

    def other() -> None:
        with limiter.slot("free", 0):
            order.append("free")

    first = threading.Thread(target=hog)
    first.start()
    assert holding.wait(60)
    second = threading.Thread(target=blocked)
    second.start()
    _wait_until(lambda: limiter.waiting == 1)
    third = threading.Thread(target=other)
    third.start()
    third.join(60)
    assert not third.is_alive() and order == ["free"]
    release.set()
    for thread in (first, second):
        thread.join(60)
    assert order == ["free", "busy"]


def test_waiters_are_admitted_oldest_first() -> None:
    limiter = Limiter(1)
    release = threading.Event()
    holding = threading.Event()
    order: list[int] = []

    def hog() -> None:
        with limiter.slot("svc", 0):
            holding.set()
            release.wait(120)

    def waiter(index: int) -> None:
        with limiter.slot("svc", 0):
            order.append(index)

    first = threading.Thread(target=hog)
    first.start()
    assert holding.wait(60)
    threads = []
    for index in range(4):
        thread = threading.Thread(target=waiter, args=(index,))
        thread.start()
        threads.append(thread)
        _wait_until(lambda n=index: limiter.waiting == n + 1)  # queued in this order
    release.set()
    for thread in [first, *threads]:
        thread.join(60)
    assert order == [0, 1, 2, 3]


def test_slot_released_on_exception() -> None:
    limiter = Limiter(1)
    with pytest.raises(RuntimeError):
        with limiter.slot("svc", 1):
            raise RuntimeError("boom")
    assert limiter.active == 0 and limiter.active_for("svc") == 0
    with limiter.slot("svc", 1):  # would block forever if the slot leaked
        assert limiter.active_for("svc") == 1


def _wait_until(predicate, timeout_s: float = 60.0) -> None:
    done = threading.Event()
    deadline = threading.Timer(timeout_s, done.set)
    deadline.start()
    try:
        while not predicate():
            assert not done.is_set(), "condition never became true"
            done.wait(0.01)
    finally:
        deadline.cancel()
