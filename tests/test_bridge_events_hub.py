"""Unit tests of the EventHub (ordering, filters, overflow, replay) and the Watcher.

The Watcher runs against a tiny in-memory fake registry (client + storage), and its
polling is driven with `tick()`, so nothing here depends on timing.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import pytest

from bridge.oscar.errors import NotFound, UpstreamUnavailable
from bridge.server.events import OVERFLOW, EventHub
from bridge.server.watcher import Watcher, minio_paths, parse_time

# --------------------------------------------------------------------------- EventHub


def test_ids_are_monotonic_and_order_is_kept() -> None:
    hub = EventHub()
    sub = hub.subscribe()
    events = [hub.publish("job", {"n": i}) for i in range(50)]
    assert [e.id for e in events] == list(range(1, 51))
    received = [sub.get(timeout=5) for _ in range(50)]
    assert [e.data["n"] for e in received] == list(range(50))
    assert sub.get(timeout=0) is None
    assert hub.last_id == 50


def test_concurrent_publishers_deliver_in_id_order() -> None:
    hub = EventHub(queue_size=10_000)
    sub = hub.subscribe()

    def burst(tag: str) -> None:
        for i in range(200):
            hub.publish("job", {"tag": tag, "i": i})

    threads = [threading.Thread(target=burst, args=(t,)) for t in "abcd"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = [sub.get(timeout=5).id for _ in range(800)]
    assert ids == sorted(ids) and len(set(ids)) == 800


def test_predicate_filters_and_faulty_predicate_is_ignored() -> None:
    hub = EventHub()
    outputs = hub.subscribe(lambda e: e.type == "output")
    broken = hub.subscribe(lambda e: e.data["missing"])  # raises KeyError
    hub.publish("job", {"x": 1})
    hub.publish("output", {"x": 2})
    got = outputs.get(timeout=5)
    assert got.type == "output" and got.data == {"x": 2}
    assert outputs.get(timeout=0) is None
    assert broken.get(timeout=0) is None


def test_slow_subscriber_gets_overflow_marker_and_is_dropped() -> None:
    hub = EventHub()
    slow = hub.subscribe(maxsize=3)
    fast = hub.subscribe()
    for i in range(10):
        hub.publish("job", {"i": i})  # never blocks although `slow` is full
    assert [slow.get(timeout=1).data["i"] for _ in range(3)] == [0, 1, 2]
    marker = slow.get(timeout=1)
    assert marker.type == OVERFLOW and marker.data["last_id"] == 3
    assert slow.get(timeout=0) is None and slow.closed and slow.overflowed
    assert hub.subscriber_count == 1
    assert [fast.get(timeout=1).data["i"] for _ in range(10)] == list(range(10))


def test_replay_after_last_event_id_then_live() -> None:
    hub = EventHub(history=5)
    for i in range(8):
        hub.publish("job" if i % 2 else "output", {"i": i})
    # ids 4..8 are buffered; ask for everything after id 5 of type job
    sub = hub.subscribe(lambda e: e.type == "job", last_event_id=5)
    hub.publish("job", {"i": 8})
    got = [sub.get(timeout=1) for _ in range(2)]
    assert [e.id for e in got] == [6, 8] and [e.data["i"] for e in got] == [5, 7]
    assert sub.get(timeout=1).id == 9
    assert [e.id for e in hub.recent(7)] == [8, 9]


def test_close_wakes_blocked_consumer_and_unregisters() -> None:
    hub = EventHub()
    sub = hub.subscribe()
    result: list[Any] = []
    t = threading.Thread(target=lambda: result.append(sub.get()))
    t.start()
    sub.close()
    t.join(10)
    assert result == [None] and hub.subscriber_count == 0
    hub.publish("job", {})  # closed subscriptions receive nothing, publish still works
    assert sub.get(timeout=0) is None


def test_event_to_sse() -> None:
    hub = EventHub()
    text = hub.publish("output", {"key": "a b", "size": 3}).to_sse()
    assert text == 'id: 1\nevent: output\ndata: {"key":"a b","size":3}\n\n'


# --------------------------------------------------------------------------- Watcher fakes


@dataclass
class Obj:
    bucket: str
    key: str
    size: int
    etag: str
    last_modified: float


class FakeStorage:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], Obj] = {}
        self.fail = False

    def put(self, bucket: str, key: str, etag: str, when: float, size: int = 1) -> None:
        self.objects[(bucket, key)] = Obj(bucket, key, size, etag, when)

    def list_objects(self, bucket: str, prefix: str = ""):
        if self.fail:
            raise UpstreamUnavailable("s3 down")
        for (b, k), o in sorted(self.objects.items()):
            if b == bucket and k.startswith(prefix):
                yield o


class FakeClient:
    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, dict]] = {}
        self.services: dict[str, dict] = {}
        self.fail = False

    def get_service(self, name: str) -> dict:
        if name not in self.services:
            raise NotFound("no such service", service=name)
        return self.services[name]

    def iter_jobs(self, name: str):
        if self.fail:
            raise UpstreamUnavailable("cluster down")
        if name not in self.services:
            raise NotFound("no such service", service=name)
        yield from list(self.jobs.get(name, {}).items())


class FakeRegistry:
    def __init__(self) -> None:
        self.c = FakeClient()
        self.s = FakeStorage()

    def client(self, cluster_id: str) -> FakeClient:
        return self.c

    def storage(self, cluster_id: str) -> FakeStorage:
        return self.s


WORDCOUNT = {
    "name": "wc",
    "input": [{"storage_provider": "minio.default", "path": "wc/in"}],
    "output": [
        {"storage_provider": "minio", "path": "wc/out"},
        {"storage_provider": "webdav.dcache", "path": "remote/out"},
        {"storage_provider": "minio", "path": "wc/out"},
    ],
}


@pytest.fixture()
def setup():
    reg = FakeRegistry()
    reg.c.services["wc"] = WORDCOUNT
    hub = EventHub()
    watcher = Watcher(reg, hub, interval_s=0.01, autostart=False)
    return reg, hub, watcher, hub.subscribe()


def drain(sub) -> list:
    out = []
    while (e := sub.get(timeout=0)) is not None:
        out.append(e)
    return out


def test_minio_paths_and_parse_time() -> None:
    outs = minio_paths(WORDCOUNT, "output")
    assert [(p.bucket, p.prefix, p.key_prefix) for p in outs] == [("wc", "out", "out/")]
    assert outs[0].contains("wc", "out/a.txt") and not outs[0].contains("wc", "out2/a.txt")
    assert not outs[0].contains("wc", "out/")
    assert (
        minio_paths({"input": [{"storage_provider": "minio", "path": "bucket"}]}, "input")[0].key_prefix == ""
    )
    assert parse_time("1970-01-01T00:00:10Z") == 10.0
    assert parse_time("1970-01-01T01:00:10+01:00") == 10.0
    assert parse_time("") is None and parse_time(None) is None and parse_time("garbage") is None


def test_track_job_publishes_each_status_change_until_final(setup) -> None:
    reg, hub, watcher, sub = setup
    info = {"status": "Pending", "creation_time": "2024-01-01T00:00:00Z", "start_time": None}
    reg.c.jobs["wc"] = {"wc-1": info, "wc-other": {"status": "Running"}}
    watcher.track_job("local", "wc", "wc-1")
    watcher.tick()
    watcher.tick()  # unchanged: no new event
    info.update(status="Running", start_time="2024-01-01T00:00:01Z")
    watcher.tick()
    info.update(status="Succeeded", finish_time="2024-01-01T00:00:02Z")
    watcher.tick()
    events = drain(sub)
    assert [e.data["status"] for e in events] == ["Pending", "Running", "Succeeded"]
    assert events[-1].data == {
        "cluster": "local",
        "service": "wc",
        "job": "wc-1",
        "status": "Succeeded",
        "creation_time": "2024-01-01T00:00:00Z",
        "start_time": "2024-01-01T00:00:01Z",
        "finish_time": "2024-01-01T00:00:02Z",
    }
    assert watcher.tracked_jobs() == []


def test_upstream_errors_are_retried_next_tick(setup, caplog) -> None:
    reg, hub, watcher, sub = setup
    reg.c.jobs["wc"] = {"wc-1": {"status": "Failed"}}
    reg.c.fail = True
    watcher.track_job("local", "wc", "wc-1")
    watcher.tick()
    watcher.tick()
    assert drain(sub) == [] and watcher.tracked_jobs() == [("local", "wc", "wc-1")]
    assert sum("will retry" in r.message for r in caplog.records) == 1  # logged once, not every tick
    reg.c.fail = False
    watcher.tick()
    assert [e.data["status"] for e in drain(sub)] == ["Failed"]


def test_job_that_disappears_ends_with_unknown(setup) -> None:
    reg, hub, watcher, sub = setup
    watcher.missing_grace_s = 0
    watcher.track_job("local", "gone-service", "x-1")
    watcher.tick()
    (event,) = drain(sub)
    assert event.data["status"] == "Unknown" and "no longer listed" in event.data["reason"]
    assert watcher.tracked_jobs() == []


def test_watch_outputs_reports_new_objects_once(setup) -> None:
    reg, hub, watcher, sub = setup
    reg.s.put("wc", "out/old.txt", "e0", when=1000.0)
    reg.s.put("wc", "out/", "", when=2000.0)  # folder placeholder
    reg.s.put("wc", "in/input.txt", "e1", when=2000.0)  # input, not an output
    watcher.watch_outputs("local", "wc", since=2000.0)
    watcher.tick()
    assert drain(sub) == []
    reg.s.put("wc", "out/input.txt", "e2", when=2001.0, size=7)
    watcher.tick()
    watcher.tick()
    (event,) = drain(sub)
    assert event.type == "output"
    assert event.data == {
        "cluster": "local",
        "service": "wc",
        "bucket": "wc",
        "key": "out/input.txt",
        "size": 7,
        "etag": "e2",
        "path": "wc/out/input.txt",
        "last_modified": "1970-01-01T00:33:21.000Z",
    }
    reg.s.put("wc", "out/input.txt", "e3", when=2002.0)  # overwritten: new etag, new event
    reg.s.fail = True
    watcher.tick()  # storage error: nothing published, watch kept
    reg.s.fail = False
    watcher.tick()
    assert [e.data["etag"] for e in drain(sub)] == ["e3"]
    watcher.unwatch_outputs("local", "wc")
    assert watcher.watched_outputs() == []


def test_output_watch_ends_after_quiet_period_or_until(setup) -> None:
    reg, hub, watcher, sub = setup
    watcher.quiet_s = 0
    watcher.watch_outputs("local", "wc", since=0)
    watcher.tick()
    assert watcher.watched_outputs() == []
    watcher.quiet_s = 600
    watcher.watch_outputs("local", "wc", since=0, until=1.0)  # already past
    watcher.tick()
    assert watcher.watched_outputs() == []
    assert drain(sub) == []


def test_job_outputs_time_window(setup) -> None:
    reg, hub, watcher, sub = setup
    for key, when in [("out/before", 98.0), ("out/edge", 99.5), ("out/mid", 105.0), ("out/late", 114.0)]:
        reg.s.put("wc", key, "e", when=when)
    reg.s.put("wc", "out/after", "e", when=116.0)
    job = {"creation_time": 90, "start_time": "1970-01-01T00:01:40Z", "finish_time": "1970-01-01T00:01:50Z"}
    keys = [o["key"] for o in watcher.job_outputs("local", "wc", job)]
    assert keys == ["out/edge", "out/mid", "out/late"]
    running = {"creation_time": "1970-01-01T00:01:40Z", "start_time": None, "finish_time": None}
    assert [o["key"] for o in watcher.job_outputs("local", "wc", running)][-1] == "out/after"
    assert watcher.job_outputs("local", "wc", {"status": "Pending"}) == []


def test_background_thread_publishes_and_stops(setup) -> None:
    reg, hub, watcher, sub = setup
    reg.c.jobs["wc"] = {"wc-9": {"status": "Succeeded"}}
    watcher.autostart = True
    watcher.track_job("local", "wc", "wc-9")
    try:
        event = sub.get(timeout=30)
        assert event is not None and event.data["job"] == "wc-9"
    finally:
        watcher.stop()
    assert not watcher.running


def test_output_watch_tracks_jobs_created_after_since(setup) -> None:
    reg, hub, watcher, sub = setup
    old = {"status": "Succeeded", "creation_time": "1970-01-01T00:10:00Z"}
    new = {"status": "Running", "creation_time": "1970-01-01T00:33:20Z"}
    reg.c.jobs["wc"] = {"wc-old": old, "wc-new": new}
    watcher.watch_outputs("local", "wc", since=2000.0)
    watcher.tick()
    new["status"] = "Succeeded"
    watcher.tick()
    watcher.tick()
    events = drain(sub)
    assert [(e.data["job"], e.data["status"]) for e in events] == [
        ("wc-new", "Running"),
        ("wc-new", "Succeeded"),
    ]
    assert watcher.tracked_jobs() == []
    watcher.unwatch_outputs("local", "wc")
    watcher.watch_outputs("local", "wc", since=2000.0, jobs=False)
    watcher.tick()
    assert drain(sub) == []
