"""Pytest fixtures for a running LocalRuntime (the embedded OSCAR-compatible runtime).

Starting one costs a SeaweedFS start (a few seconds), so the shared runtime is
session-scoped: tests must use their own service names (`unique_name`) and clean up
what they create when it would disturb others. Tests that need a runtime of their own
(restarts, special limits) use `start_local_runtime(tmp_path, ...)` in a `with` block.

tests/conftest.py registers this module as a plugin, so tests name the fixtures::

    def test_x(local_runtime, local_admin, runtime_factory): ...
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from bridge.local.runtime import LocalRuntime
from tests.support.ports import wait_until


def start_local_runtime(data_dir: Path, **kwargs: Any) -> LocalRuntime:
    """A started runtime on 127.0.0.1 with free ports; the caller stops it (or uses `with`)."""
    options: dict[str, Any] = {"host": "127.0.0.1", "port": 0, "s3_port": 0, "timeout_s": 60.0}
    options.update(kwargs)
    runtime = LocalRuntime(data_dir, **options).start()
    try:
        if not wait_until(lambda: requests.get(runtime.endpoint + "/health", timeout=5).status_code == 200):
            raise RuntimeError(f"local runtime at {runtime.endpoint} did not become healthy")
    except BaseException:
        runtime.stop()
        raise
    return runtime


def unique_name(prefix: str = "svc") -> str:
    """A fresh service/bucket name (lowercase, valid for OSCAR and S3)."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def local_runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntime]:
    """One runtime shared by the whole session (admin user "oscar", generated password)."""
    runtime = start_local_runtime(tmp_path_factory.mktemp("local-runtime"), max_concurrency=4)
    try:
        yield runtime
    finally:
        runtime.stop()


@pytest.fixture
def local_admin(local_runtime: LocalRuntime) -> Iterator[requests.Session]:
    """A requests session with the shared runtime's admin Basic credentials."""
    session = requests.Session()
    session.auth = (local_runtime.user, local_runtime.password)
    yield session
    session.close()


@pytest.fixture
def runtime_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., LocalRuntime]]:
    """`make(data_dir=None, **options)` starts a runtime of the test's own; all are stopped
    at teardown. Pass the same data_dir again (after `stop()`) to test restarts."""
    started: list[LocalRuntime] = []

    def make(data_dir: Path | None = None, **kwargs: Any) -> LocalRuntime:
        runtime = start_local_runtime(data_dir or tmp_path_factory.mktemp("own-runtime"), **kwargs)
        started.append(runtime)
        return runtime

    yield make
    for runtime in reversed(started):
        runtime.stop()
