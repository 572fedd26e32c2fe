"""StorageTriggers against a real S3 server: MinIO-style events for new input objects."""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote_plus

import pytest

from bridge.local.triggers import SEEN_KIND, StorageTriggers, input_paths, make_minio_event
from bridge.storage import S3Store
from bridge.store import Store
from tests.support.ports import wait_until

TIMEOUT = 20.0  # generous: the box may be loaded; the poller itself ticks every 0.1-0.5 s


class Recorder:
    """A fire() callback that records (service name, event) pairs; can be told to fail."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict]] = []
        self.failures_left: dict[str, int] = {}
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, service: dict, event: dict) -> None:
        key = unquote_plus(event["Records"][0]["s3"]["object"]["key"])
        with self._lock:
            self.calls += 1
            if self.failures_left.get(key, 0) > 0:
                self.failures_left[key] -= 1
                raise RuntimeError(f"simulated failure for {key}")
            self.events.append((service["name"], event))

    def keys(self, service: str | None = None) -> list[str]:
        with self._lock:
            return [
                unquote_plus(e["Records"][0]["s3"]["object"]["key"])
                for name, e in self.events
                if service is None or name == service
            ]

    def wait_for(self, *keys: str, service: str | None = None) -> None:
        assert wait_until(lambda: all(k in self.keys(service) for k in keys), timeout=TIMEOUT), (
            f"no event for {keys}; got {self.keys()}"
        )


def _service(name: str, bucket: str, *folders: str) -> dict:
    return {
        "name": name,
        "input": [{"storage_provider": "minio.default", "path": f"{bucket}/{f}"} for f in folders],
        "output": [{"storage_provider": "minio.default", "path": f"{bucket}/out"}],
    }


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    db = Store(tmp_path / "local.db")
    yield db
    db.close()


@pytest.fixture
def bucket(s3_store: S3Store) -> Iterator[str]:
    name = f"trg-{uuid.uuid4().hex[:10]}"
    s3_store.ensure_folder(name, "in")
    s3_store.ensure_folder(name, "out")
    yield name
    if s3_store.bucket_exists(name):
        s3_store.delete_bucket(name)


@pytest.fixture
def make_triggers(store: Store, s3_store: S3Store) -> Iterator:
    started: list[StorageTriggers] = []

    def make(fire: Recorder, db: Store | None = None, interval_s: float = 0.1) -> StorageTriggers:
        triggers = StorageTriggers(db or store, s3_store, fire, interval_s=interval_s)
        started.append(triggers)
        return triggers

    yield make
    for triggers in started:
        triggers.stop()


# -- the event ---------------------------------------------------------------------------------------------


def test_make_minio_event_has_minios_shape() -> None:
    event = make_minio_event(
        "photos",
        "in/photo 1+2&ü.jpg",
        size=1234,
        etag="abc123",
        access_key="AKEXAMPLE",
        event_time=1767261600.25,  # 2026-01-01T10:00:00.250Z
    )
    assert list(event) == ["EventName", "Key", "Records"]
    assert event["EventName"] == "s3:ObjectCreated:Put"
    encoded = "in%2Fphoto+1%2B2%26%C3%BC.jpg"
    assert event["Key"] == f"photos/{encoded}"
    [record] = event["Records"]
    assert record["eventVersion"] == "2.0"
    assert record["eventSource"] == "minio:s3"
    assert record["eventName"] == "s3:ObjectCreated:Put"
    assert record["eventTime"] == "2026-01-01T10:00:00.250Z"
    assert record["userIdentity"] == {"principalId": "AKEXAMPLE"}
    assert record["requestParameters"]["principalId"] == "AKEXAMPLE"
    assert "sourceIPAddress" in record["requestParameters"]
    s3 = record["s3"]
    assert s3["s3SchemaVersion"] == "1.0"
    assert s3["bucket"]["name"] == "photos"
    assert s3["bucket"]["arn"] == "arn:aws:s3:::photos"
    assert s3["bucket"]["ownerIdentity"] == {"principalId": "AKEXAMPLE"}
    assert s3["object"]["key"] == encoded
    assert unquote_plus(s3["object"]["key"]) == "in/photo 1+2&ü.jpg"  # what the supervisor does
    assert s3["object"]["size"] == 1234 and s3["object"]["eTag"] == "abc123"


def test_event_time_defaults_to_now_in_rfc3339_milliseconds() -> None:
    stamp = make_minio_event("b", "k")["Records"][0]["eventTime"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", stamp)


def test_input_paths_only_minio_inputs() -> None:
    svc = {
        "name": "s",
        "input": [
            {"storage_provider": "minio", "path": "b1/in"},
            {"storage_provider": "minio.default", "path": "/b2/deep/folder/"},
            {"storage_provider": "s3.aws", "path": "elsewhere/in"},
            {"storage_provider": "minio.default", "path": "b1/in"},
        ],
    }
    assert input_paths(svc) == [("b1", "in"), ("b2", "deep/folder")]


# -- firing ------------------------------------------------------------------------------------------------


def test_fires_once_per_new_object_not_for_old_placeholders_or_outputs(
    make_triggers, s3_store: S3Store, bucket: str
) -> None:
    s3_store.put_object(bucket, "in/existing.txt", b"was here before")
    fire = Recorder()
    triggers = make_triggers(fire)
    triggers.watch(_service("svc-a", bucket, "in"))
    triggers.start()

    info = s3_store.put_object(bucket, "in/new file.txt", b"hello")
    fire.wait_for("in/new file.txt")
    s3_store.put_object(bucket, "out/new file.txt.out", b"result")  # an output: no trigger
    s3_store.put_object(bucket, "in/sub/", b"")  # a folder placeholder: no trigger
    s3_store.put_object(bucket, "inbox/x.txt", b"x")  # same prefix letters, other folder
    s3_store.put_object(bucket, "in/second.txt", b"2")
    fire.wait_for("in/second.txt")
    # Several more ticks: nothing fires twice.
    marker = fire.calls
    time.sleep(1.0)  # ten ticks at least
    assert fire.calls == marker
    assert sorted(fire.keys()) == ["in/new file.txt", "in/second.txt"]

    name, event = fire.events[0]
    assert name == "svc-a"
    record = event["Records"][0]
    assert record["s3"]["bucket"]["name"] == bucket
    assert record["s3"]["object"]["key"] == "in%2Fnew+file.txt"
    assert record["s3"]["object"]["size"] == 5
    assert record["s3"]["object"]["eTag"] == info.etag
    assert record["requestParameters"]["principalId"] == s3_store.access_key


def test_changed_content_fires_again_and_deleted_then_reuploaded_too(
    make_triggers, s3_store: S3Store, bucket: str
) -> None:
    fire = Recorder()
    triggers = make_triggers(fire)
    triggers.watch(_service("svc-b", bucket, "in"))
    triggers.start()
    s3_store.put_object(bucket, "in/data.csv", b"v1")
    fire.wait_for("in/data.csv")
    s3_store.put_object(bucket, "in/data.csv", b"v2 changed")
    assert wait_until(lambda: fire.keys().count("in/data.csv") == 2, timeout=TIMEOUT)
    etags = [e["Records"][0]["s3"]["object"]["eTag"] for _, e in fire.events]
    assert etags[0] != etags[1]

    s3_store.delete_object(bucket, "in/data.csv")
    # Once the poller noticed the deletion, the same content uploaded again is a new event.
    assert wait_until(lambda: ("svc-b", bucket, "in/data.csv") not in _seen(triggers), timeout=TIMEOUT)
    s3_store.put_object(bucket, "in/data.csv", b"v2 changed")
    assert wait_until(lambda: fire.keys().count("in/data.csv") == 3, timeout=TIMEOUT)


def _seen(triggers: StorageTriggers) -> set[tuple[str, str, str]]:
    return {
        ("svc-b", doc["bucket"], doc["key"]) for _, doc in triggers.store.items(SEEN_KIND, parent="svc-b")
    }


def test_restart_fires_only_objects_uploaded_while_stopped(
    make_triggers, s3_store: S3Store, bucket: str, tmp_path: Path
) -> None:
    s3_store.put_object(bucket, "in/ancient.txt", b"before the first watch")
    db_path = tmp_path / "restart.db"
    svc = _service("svc-c", bucket, "in")

    db = Store(db_path)
    first = Recorder()
    triggers = make_triggers(first, db)
    triggers.watch(svc)
    triggers.start()
    s3_store.put_object(bucket, "in/during-first-run.txt", b"1")
    first.wait_for("in/during-first-run.txt")
    triggers.stop()
    db.close()

    s3_store.put_object(bucket, "in/while-down.txt", b"queued")
    s3_store.put_object(bucket, "out/while-down.txt.out", b"an output")

    db = Store(db_path)
    second = Recorder()
    triggers = make_triggers(second, db)
    triggers.watch(svc)
    triggers.start()
    second.wait_for("in/while-down.txt")
    s3_store.put_object(bucket, "in/after-restart.txt", b"2")
    second.wait_for("in/after-restart.txt")
    triggers.stop()
    db.close()
    assert sorted(second.keys()) == ["in/after-restart.txt", "in/while-down.txt"]
    assert first.keys() == ["in/during-first-run.txt"]


def test_a_raising_callback_is_retried_and_does_not_stop_the_poller(
    make_triggers, s3_store: S3Store, bucket: str
) -> None:
    fire = Recorder()
    fire.failures_left["in/flaky.txt"] = 2
    triggers = make_triggers(fire)
    triggers.watch(_service("svc-d", bucket, "in"))
    triggers.start()
    s3_store.put_object(bucket, "in/flaky.txt", b"f")
    fire.wait_for("in/flaky.txt")
    assert fire.calls >= 3  # two failures, then the success
    s3_store.put_object(bucket, "in/after.txt", b"a")
    fire.wait_for("in/after.txt")
    assert sorted(fire.keys()) == ["in/after.txt", "in/flaky.txt"]  # each delivered once


def test_several_services_and_inputs(make_triggers, s3_store: S3Store, bucket: str) -> None:
    other = f"trg-{uuid.uuid4().hex[:10]}"
    s3_store.ensure_folder(other, "incoming")
    try:
        fire = Recorder()
        triggers = make_triggers(fire)
        svc_e = _service("svc-e", bucket, "in")
        svc_e["input"].append({"storage_provider": "minio", "path": f"{other}/incoming"})
        svc_e["input"].append({"storage_provider": "s3.aws", "path": f"{bucket}/out"})  # not ours
        triggers.watch(svc_e)
        triggers.watch(_service("svc-f", bucket, "other-in"))
        triggers.start()
        s3_store.put_object(bucket, "in/e1.txt", b"e1")
        s3_store.put_object(other, "incoming/e2.txt", b"e2")
        s3_store.put_object(bucket, "other-in/f1.txt", b"f1")
        s3_store.put_object(bucket, "out/ignored.txt", b"x")
        fire.wait_for("in/e1.txt", "incoming/e2.txt", service="svc-e")
        fire.wait_for("other-in/f1.txt", service="svc-f")
        assert sorted(fire.keys("svc-e")) == ["in/e1.txt", "incoming/e2.txt"]
        assert fire.keys("svc-f") == ["other-in/f1.txt"]
        assert triggers.watched() == ["svc-e", "svc-f"]
    finally:
        s3_store.delete_bucket(other)


def test_rewatch_keeps_state_and_unwatch_forgets(make_triggers, s3_store: S3Store, bucket: str) -> None:
    fire = Recorder()
    triggers = make_triggers(fire)
    triggers.watch(_service("svc-g", bucket, "in"))
    triggers.start()
    s3_store.put_object(bucket, "in/one.txt", b"1")
    fire.wait_for("in/one.txt")
    s3_store.put_object(bucket, "extra/preexisting.txt", b"p")

    # An update adding an input: old objects of the new input do not fire, nothing re-fires.
    triggers.watch(_service("svc-g", bucket, "in", "extra"))
    s3_store.put_object(bucket, "extra/two.txt", b"2")
    fire.wait_for("extra/two.txt")
    assert sorted(fire.keys()) == ["extra/two.txt", "in/one.txt"]

    triggers.unwatch("svc-g")
    assert triggers.watched() == []
    assert triggers.store.items(SEEN_KIND, parent="svc-g") == []
    s3_store.put_object(bucket, "in/three.txt", b"3")
    assert not wait_until(lambda: "in/three.txt" in fire.keys(), timeout=1.5)


def test_missing_bucket_does_not_break_the_poller(make_triggers, s3_store: S3Store, bucket: str) -> None:
    fire = Recorder()
    triggers = make_triggers(fire)
    triggers.watch(_service("svc-h", f"trg-missing-{uuid.uuid4().hex[:8]}", "in"))
    triggers.watch(_service("svc-i", bucket, "in"))
    triggers.start()
    s3_store.put_object(bucket, "in/ok.txt", b"ok")
    fire.wait_for("in/ok.txt", service="svc-i")


def test_poll_once_without_thread(make_triggers, s3_store: S3Store, bucket: str) -> None:
    fire = Recorder()
    triggers = make_triggers(fire)
    triggers.watch(_service("svc-j", bucket, "in"))
    s3_store.put_object(bucket, "in/manual.txt", b"m")
    triggers.poll_once()
    assert fire.keys() == ["in/manual.txt"]
    triggers.poll_once()
    assert fire.keys() == ["in/manual.txt"]
