"""The Server-Sent Events endpoint over real HTTP.

First against a minimal app (just the events blueprint and an EventHub, served by a
threaded WSGI server) to pin down the stream format, filters, Last-Event-ID replay and
disconnect clean-up; then end to end through the running bridge with the embedded
local runtime: upload into a service's input path and receive the job and output
events, then download the output.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import requests
from flask import Flask
from werkzeug.serving import make_server

from bridge.server.api import events as events_api
from bridge.server.errors import register_error_handlers
from bridge.server.events import EventHub
from tests.support.ports import wait_until

STREAM_TIMEOUT = (10, 180)  # (connect, read) seconds: generous for a loaded 2-core box


class SseReader:
    """Reads an SSE stream in a thread; parsed messages land in a queue."""

    def __init__(self, url: str, *, headers: dict[str, str] | None = None, params: Any = None) -> None:
        self.messages: queue.Queue[dict[str, Any]] = queue.Queue()
        self.connected = threading.Event()
        self.ended = threading.Event()
        self.comments: list[str] = []
        self.status: int | None = None
        self._resp: requests.Response | None = None
        self._thread = threading.Thread(target=self._run, args=(url, headers, params), daemon=True)
        self._thread.start()
        assert self.connected.wait(60), "the event stream did not open"

    def _run(self, url: str, headers: dict[str, str] | None, params: Any) -> None:
        try:
            with requests.get(
                url, headers=headers, params=params, stream=True, timeout=STREAM_TIMEOUT
            ) as resp:
                self._resp = resp
                self.status = resp.status_code
                self.content_type = resp.headers.get("Content-Type", "")
                if resp.status_code != 200:
                    self.body = resp.content
                    self.connected.set()
                    return
                fields: dict[str, Any] = {}
                for raw in resp.iter_lines(chunk_size=1, decode_unicode=True):
                    line = raw if isinstance(raw, str) else raw.decode()
                    if line.startswith(":"):
                        self.comments.append(line[1:].strip())
                        self.connected.set()
                    elif line == "":
                        if "data" in fields:
                            fields["data"] = json.loads(fields["data"])
                            self.messages.put(fields)
                        fields = {}
                    else:
                        name, _, value = line.partition(":")
                        fields[name] = value[1:] if value.startswith(" ") else value
        except Exception:  # closing the stream from the test ends here
            pass
        finally:
            self.connected.set()
            self.ended.set()

    def next(
        self, predicate: Callable[[dict[str, Any]], bool] = lambda m: True, timeout: float = 180
    ) -> dict:
        """The next message matching `predicate` (others are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError("no matching event arrived")
            try:
                message = self.messages.get(timeout=remaining)
            except queue.Empty:
                raise AssertionError("no matching event arrived") from None
            if predicate(message):
                return message

    def close(self) -> None:
        if self._resp is not None:
            self._resp.close()
        self._thread.join(30)


# --------------------------------------------------------------------------- minimal app


@pytest.fixture()
def mini() -> Iterator[SimpleNamespace]:
    hub = EventHub(history=50)
    app = Flask("sse-test")
    app.config["SSE_HEARTBEAT_S"] = 0.2
    app.extensions["bridge"] = SimpleNamespace(hub=hub)
    register_error_handlers(app)
    app.register_blueprint(events_api.bp)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    readers: list[SseReader] = []

    def open_stream(**kwargs: Any) -> SseReader:
        reader = SseReader(f"http://127.0.0.1:{server.server_port}/api/v1/events", **kwargs)
        readers.append(reader)
        return reader

    try:
        yield SimpleNamespace(hub=hub, open=open_stream, port=server.server_port)
    finally:
        for reader in readers:
            reader.close()
        server.shutdown()
        thread.join(30)


def test_stream_format_and_order(mini) -> None:
    reader = mini.open()
    assert reader.status == 200 and reader.content_type.startswith("text/event-stream")
    assert "connected" in reader.comments
    first = mini.hub.publish("job", {"cluster": "c", "service": "s", "job": "s-1", "status": "Pending"})
    mini.hub.publish("output", {"cluster": "c", "service": "s", "key": "out/a"})
    got = [reader.next(), reader.next()]
    assert got[0] == {"id": str(first.id), "event": "job", "data": first.data}
    assert got[1]["event"] == "output" and int(got[1]["id"]) == first.id + 1


def test_filters_by_cluster_service_and_type(mini) -> None:
    reader = mini.open(params={"cluster": "c", "service": "s", "types": "output"})
    mini.hub.publish("output", {"cluster": "other", "service": "s", "key": "x"})
    mini.hub.publish("output", {"cluster": "c", "service": "t", "key": "x"})
    mini.hub.publish("job", {"cluster": "c", "service": "s", "job": "s-1"})
    mini.hub.publish("output", {"cluster": "c", "service": "s", "key": "wanted"})
    assert reader.next()["data"]["key"] == "wanted"
    assert reader.messages.empty()


def test_heartbeats_and_last_event_id_replay(mini) -> None:
    for i in range(5):
        mini.hub.publish("job", {"cluster": "c", "service": "s", "i": i})
    reader = mini.open(headers={"Last-Event-ID": "3"})
    assert [reader.next()["data"]["i"] for _ in range(2)] == [3, 4]
    assert wait_until(lambda: "heartbeat" in reader.comments, timeout=60)
    mini.hub.publish("job", {"cluster": "c", "service": "s", "i": 5})
    assert reader.next()["id"] == "6"


def test_timeout_ends_stream_and_disconnect_drops_subscription(mini) -> None:
    finite = mini.open(params={"timeout": "0.5"})
    assert finite.ended.wait(60)
    reader = mini.open()
    assert wait_until(lambda: mini.hub.subscriber_count == 1, timeout=30)
    reader.close()
    # The next heartbeat write fails and the server-side generator drops the subscription.
    assert wait_until(lambda: mini.hub.subscriber_count == 0, timeout=60)


@pytest.mark.parametrize(
    ("params", "headers", "field"),
    [
        ({"types": "job,nope"}, None, "types"),
        ({"timeout": "-1"}, None, "timeout"),
        (None, {"Last-Event-ID": "abc"}, "Last-Event-ID"),
    ],
)
def test_bad_parameters_are_rejected(mini, params, headers, field) -> None:
    url = f"http://127.0.0.1:{mini.port}/api/v1/events"
    resp = requests.get(url, params=params, headers=headers, timeout=30)
    assert resp.status_code == 400, resp.text
    assert field in resp.json()["error"]


# --------------------------------------------------------------------------- through the bridge

E2E_SERVICE = "events-wc"
E2E_DEFINITION = {
    "name": E2E_SERVICE,
    "image": "local",
    "cpu": "0.5",
    "memory": "256Mi",
    "script": (
        "#!/bin/sh\n"
        'wc -w < "$INPUT_FILE_PATH" | tr -d \' \' > "$TMP_OUTPUT_DIR/$(basename "$INPUT_FILE_PATH").count"\n'
    ),
    "input": [{"storage_provider": "minio.default", "path": "events-wc/in"}],
    "output": [{"storage_provider": "minio.default", "path": "events-wc/out"}],
}


@pytest.fixture(scope="module")
def bridge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    from bridge.server.serve import BridgeServer
    from bridge.settings import Settings
    from tests.support.ports import free_port

    settings = Settings(
        data_dir=tmp_path_factory.mktemp("bridge-events"), port=free_port(), poll_interval_s=0.2
    )
    server = BridgeServer(settings)
    server.start()
    headers = {"Authorization": f"Bearer {server.token}"}
    try:
        resp = requests.post(
            f"{server.url}/api/v1/clusters/local/services", json=E2E_DEFINITION, headers=headers, timeout=120
        )
        assert resp.status_code in (200, 201), resp.text
        yield SimpleNamespace(url=server.url.rstrip("/"), headers=headers)
    finally:
        server.stop()


def test_upload_delivers_job_and_output_events(bridge) -> None:
    reader = SseReader(f"{bridge.url}/api/v1/events", headers=bridge.headers, params={"service": E2E_SERVICE})
    try:
        base = f"{bridge.url}/api/v1/clusters/local/services/{E2E_SERVICE}"
        put = requests.put(
            f"{base}/inputs/story.txt", data=b"it was a dark night", headers=bridge.headers, timeout=120
        )
        assert put.status_code == 201, put.text

        # The job event and the output event may arrive in either order (the watcher polls
        # both in one tick), so collect until both have been seen.
        job = output = None
        deadline = time.monotonic() + 180
        while job is None or output is None:
            message = reader.next(timeout=max(1.0, deadline - time.monotonic()))
            data = message["data"]
            if message["event"] == "job" and data["status"] == "Succeeded":
                job = message
            elif message["event"] == "output" and data["key"] == "out/story.txt.count":
                output = message
        assert job["data"]["cluster"] == "local" and job["data"]["job"].startswith(E2E_SERVICE)
        data = output["data"]
        assert data["service"] == E2E_SERVICE and data["bucket"] == "events-wc" and data["size"] > 0
        assert data["path"] == "events-wc/out/story.txt.count"

        down = requests.get(
            f"{base}/outputs/{data['bucket']}/{data['key']}", headers=bridge.headers, timeout=120
        )
        assert down.status_code == 200 and down.content.strip() == b"5"
    finally:
        reader.close()

    # A client reconnecting with Last-Event-ID gets what it missed from the buffer.
    again = SseReader(
        f"{bridge.url}/api/v1/events",
        headers={**bridge.headers, "Last-Event-ID": str(int(output["id"]) - 1)},
        params={"service": E2E_SERVICE, "types": "output", "timeout": "30"},
    )
    try:
        assert again.next()["id"] == output["id"]
    finally:
        again.close()


def test_event_stream_needs_the_token(bridge) -> None:
    resp = requests.get(f"{bridge.url}/api/v1/events", timeout=30)
    assert resp.status_code == 401
