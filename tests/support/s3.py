"""Pytest fixtures for a real S3 server: SeaweedFS (`weed mini`) on 127.0.0.1.

Starting SeaweedFS takes a second or two and ~120 MB of memory, so one server is
shared by the session (`seaweed_s3`, `s3_store`, `s3_provider`); tests isolate
themselves with their own buckets (`s3_bucket` creates and removes one). Tests that
restart or break the server start their own with the `seaweed_factory` fixture.

tests/conftest.py registers this module as a plugin, so tests name the fixtures::

    def test_x(s3_store, s3_bucket, seaweed_factory): ...
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bridge.local.s3server import SeaweedS3
from bridge.storage import S3Store


def start_seaweed(data_dir: Path, **kwargs: Any) -> SeaweedS3:
    """A started SeaweedS3 with fresh random keys; the caller stops it (or uses `with`)."""
    access_key = kwargs.pop("access_key", "AK" + secrets.token_hex(8).upper())
    secret_key = kwargs.pop("secret_key", secrets.token_urlsafe(24))
    return SeaweedS3(data_dir, access_key, secret_key, host="127.0.0.1", **kwargs).start()


def unique_bucket(prefix: str = "bkt") -> str:
    """A fresh, valid S3 bucket name."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def seaweed_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """The session's shared S3 server."""
    server = start_seaweed(tmp_path_factory.mktemp("seaweed"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3_provider(seaweed_s3: SeaweedS3) -> dict:
    """OSCAR's `minio_provider` dict of the shared server."""
    return seaweed_s3.provider


@pytest.fixture(scope="session")
def s3_store(seaweed_s3: SeaweedS3) -> S3Store:
    """An S3Store on the shared server, with its admin keys."""
    return S3Store.from_provider(seaweed_s3.provider)


@pytest.fixture
def s3_bucket(s3_store: S3Store) -> Iterator[str]:
    """A fresh empty bucket on the shared server, deleted (with its objects) afterwards."""
    bucket = unique_bucket()
    s3_store.ensure_bucket(bucket)
    yield bucket
    if s3_store.bucket_exists(bucket):
        s3_store.delete_bucket(bucket)


@pytest.fixture
def seaweed_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., SeaweedS3]]:
    """`make(data_dir=None, **options)` starts a SeaweedS3 of the test's own; all are
    stopped at teardown. Pass the same data_dir (and keys) again after `stop()` to test
    restarts."""
    started: list[SeaweedS3] = []

    def make(data_dir: Path | None = None, **kwargs: Any) -> SeaweedS3:
        server = start_seaweed(data_dir or tmp_path_factory.mktemp("own-seaweed"), **kwargs)
        started.append(server)
        return server

    yield make
    for server in reversed(started):
        server.stop()
