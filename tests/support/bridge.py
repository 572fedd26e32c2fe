"""A running bridge for tests: `BridgeServer` on a temporary data dir, over real HTTP.

The bridge starts its embedded local runtime and registers it as cluster `local`, just
as `oscar-bridge serve` does on a fresh machine. tests/conftest.py registers this module
as a plugin, so tests name the fixtures (`bridge_api`, `bridge_server`) directly.

`bridge_api` is an authenticated `requests.Session` whose paths are relative to the
bridge (``bridge_api.get("/api/v1/clusters")``). Both are module-scoped: starting the
local runtime (and its S3 server) takes a few seconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from bridge.server.serve import BridgeServer
from bridge.settings import Settings

DEFAULT_TIMEOUT = 120.0
# Small enough that oversize-body tests stay cheap, big enough for real payloads.
TEST_MAX_BODY_BYTES = 4 * 1024 * 1024


def bridge_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings for a test bridge: loopback, OS-chosen ports, fast polling."""
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "host": "127.0.0.1",
        "port": 0,
        "poll_interval_s": 0.2,
        "max_body_bytes": TEST_MAX_BODY_BYTES,
        "threads": 8,
        "local_max_concurrency": 4,
        "local_timeout_s": 60.0,
    }
    values.update(overrides)
    return Settings().with_overrides(**values)


def start_bridge(data_dir: Path, **overrides: Any) -> BridgeServer:
    """Start a BridgeServer (the caller stops it)."""
    return BridgeServer(bridge_settings(data_dir, **overrides)).start()


class BridgeApi(requests.Session):
    """A requests.Session bound to one bridge: base URL, bearer token, default timeout."""

    def __init__(self, base_url: str, token: str | None) -> None:
        super().__init__()
        self.base_url = base_url.rstrip("/")
        if token is not None:
            self.headers["Authorization"] = f"Bearer {token}"
        self.trust_env = False  # never through a proxy

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if url.startswith("/"):
            url = self.base_url + url
        kwargs.setdefault("timeout", DEFAULT_TIMEOUT)
        return super().request(method, url, *args, **kwargs)

    def service_path(self, service: str, suffix: str = "", cluster: str = "local") -> str:
        return f"/api/v1/clusters/{cluster}/services/{service}{suffix}"


def api_for(server: BridgeServer, token: str | None = "") -> BridgeApi:
    """A session for `server`; `token=""` means the server's own, None means no header."""
    return BridgeApi(server.url, server.token if token == "" else token)


@pytest.fixture(scope="module")
def bridge_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BridgeServer]:
    """A running bridge with the embedded local runtime as cluster `local`."""
    server = start_bridge(tmp_path_factory.mktemp("bridge"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def bridge_api(bridge_server: BridgeServer) -> Iterator[BridgeApi]:
    """An authenticated session on `bridge_server`."""
    with api_for(bridge_server) as session:
        yield session
