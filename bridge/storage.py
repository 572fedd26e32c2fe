"""S3Store: the one S3/MinIO helper of the suite.

OSCAR keeps every file of a service in MinIO buckets, and clients talk to that S3
endpoint directly (OSCAR only hands out the keys in `/system/config`). The local
runtime (bucket creation, input download, output upload), the bridge (streamed uploads
into input folders, output listings, downloads, presigned URLs) and the CLI therefore
all need the same small set of S3 operations; they get them here, on the `minio` SDK,
so that endpoint parsing, TLS options, streaming and error wording exist once.

Design points:
- Streaming both ways: `put_object` accepts a file-like object of unknown length and
  uploads it in bounded parts; `open_object` yields chunks. Memory use is bounded by
  the part size, never by the object size, because the bridge relays user uploads.
- Every S3/transport failure surfaces as `StorageError`, naming the bucket and key and
  carrying the S3 error code (`NoSuchKey`, ...) so callers can map it to 404 and the
  like; messages never contain credentials.
"""

from __future__ import annotations

import io
import mimetypes
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, BinaryIO
from urllib.parse import urlsplit

import certifi
import urllib3
from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import InvalidResponseError, MinioException, S3Error, ServerError
from urllib3.util import Retry, Timeout

#: Multipart part size for streams of unknown length: the most one upload holds in memory.
PART_SIZE = 8 * 1024 * 1024
#: Chunk size of `open_object`'s iterator.
CHUNK_SIZE = 64 * 1024

#: S3 error codes that mean "the thing asked for is not there".
MISSING_CODES = frozenset({"NoSuchKey", "NoSuchBucket", "NotFound", "NoSuchObject", "ResourceNotFound"})


class StorageError(Exception):
    """An S3 operation failed. `code` is the S3 error code ("" for transport errors).

    `bucket` and `key` name the object concerned; `status` is the HTTP status when the
    server answered (None when it could not be reached).
    """

    def __init__(
        self, message: str, *, bucket: str = "", key: str = "", code: str = "", status: int | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.bucket = bucket
        self.key = key
        self.code = code
        self.status = status

    @property
    def missing(self) -> bool:
        """True when the bucket or object does not exist."""
        return self.code in MISSING_CODES or self.status == 404


@dataclass(frozen=True)
class ObjectInfo:
    """One object as listed or written. `last_modified` is a Unix timestamp (seconds).

    `content_type` is an extension to the documented contract: known after uploads and
    downloads, "" in listings (S3 listings do not carry it).
    """

    bucket: str
    key: str
    size: int
    etag: str
    last_modified: float
    content_type: str = ""


class _CountingReader:
    """Wraps a stream to count the bytes the SDK reads (the size of an unknown-length upload)."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        if data:
            self.count += len(data)
        return data


class _ChunkStream:
    """Iterator over an object's bytes that owns the HTTP response.

    A plain generator would leak the pooled connection when it is closed before its
    first `next()` (its `finally` never runs); this one releases it on `close()`,
    on exhaustion and on errors.
    """

    def __init__(self, response: Any, store: S3Store, bucket: str, key: str) -> None:
        self._response = response
        self._chunks = response.stream(CHUNK_SIZE)
        self._store = store
        self._bucket = bucket
        self._key = key
        self._closed = False

    def __iter__(self) -> _ChunkStream:
        return self

    def __next__(self) -> bytes:
        if self._closed:
            raise StopIteration
        try:
            with self._store._errors("download", self._bucket, self._key):
                return next(self._chunks)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._response.close()
        finally:
            self._response.release_conn()

    def __enter__(self) -> _ChunkStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _etag(value: str | None) -> str:
    return (value or "").strip().strip('"')


def _timestamp(value: datetime | str | None) -> float:
    if value is None:
        return time.time()
    if isinstance(value, str):
        try:
            value = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return time.time()
    return value.timestamp()


class S3Store:
    """A thin, streaming, error-wrapping facade over one S3 endpoint and key pair.

    `endpoint` is a URL (`http(s)://host:port`, as OSCAR's `minio_provider` gives it);
    without a scheme, https is assumed. `verify=False` disables TLS certificate checks
    (OSCAR clusters with self-signed certificates set `verify: false`). The client is
    thread-safe, so one S3Store serves every request thread.
    """

    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str,
        *,
        region: str = "us-east-1",
        verify: bool = True,
        timeout_s: float = 120.0,
        retries: int = 3,
    ) -> None:
        raw = (endpoint or "").strip()
        if not raw:
            raise ValueError("S3 endpoint is empty")
        parts = urlsplit(raw if "://" in raw else f"https://{raw}")
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"S3 endpoint {endpoint!r} is not an http(s)://host[:port] URL")
        if parts.path not in ("", "/") or parts.query:
            raise ValueError(f"S3 endpoint {endpoint!r} must not have a path or query")
        self.secure = parts.scheme == "https"
        self.endpoint = f"{parts.scheme}://{parts.netloc}"
        self.region = region or "us-east-1"
        self.verify = bool(verify)
        self.access_key = access_key or ""
        http = urllib3.PoolManager(
            timeout=Timeout(connect=min(10.0, timeout_s), read=timeout_s),
            maxsize=16,
            cert_reqs="CERT_REQUIRED" if self.verify else "CERT_NONE",
            ca_certs=certifi.where(),
            retries=Retry(total=retries, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
        )
        self._client = Minio(
            parts.netloc,
            access_key=access_key or None,
            secret_key=secret_key or None,
            secure=self.secure,
            region=self.region,
            http_client=http,
            cert_check=self.verify,
        )

    @classmethod
    def from_provider(cls, provider: dict, **kwargs: Any) -> S3Store:
        """Build from OSCAR's `minio_provider` dict {endpoint, verify, access_key, secret_key, region}."""
        if not isinstance(provider, dict) or not provider.get("endpoint"):
            raise ValueError("minio provider has no endpoint")
        verify = provider.get("verify", True)
        if isinstance(verify, str):
            verify = verify.strip().lower() not in ("false", "0", "no", "off")
        return cls(
            str(provider["endpoint"]),
            str(provider.get("access_key") or ""),
            str(provider.get("secret_key") or ""),
            region=str(provider.get("region") or "us-east-1"),
            verify=bool(verify),
            **kwargs,
        )

    def __repr__(self) -> str:
        return f"S3Store({self.endpoint!r}, access_key={self.access_key!r})"

    # -- helpers -----------------------------------------------------------------------------
    @staticmethod
    def split_path(path: str) -> tuple[str, str]:
        """'bucket/a/b' -> ('bucket', 'a/b'): an OSCAR storage path into bucket and key prefix."""
        cleaned = (path or "").strip().strip("/")
        if not cleaned:
            raise ValueError("storage path is empty: expected 'bucket[/folder]'")
        bucket, _, prefix = cleaned.partition("/")
        return bucket, prefix.strip("/")

    @contextmanager
    def _errors(self, op: str, bucket: str = "", key: str = "") -> Iterator[None]:
        """Turn SDK/transport exceptions into StorageError naming what was being done."""
        where = f"{bucket}/{key}" if key else (bucket or "(all buckets)")
        try:
            yield
        except StorageError:
            raise
        except S3Error as exc:
            code = exc.code or ""
            status = exc.response.status if exc.response is not None else None
            raise StorageError(
                f"S3 {op} of {where} at {self.endpoint} failed: {code}: {exc.message or 'no message'}",
                bucket=bucket,
                key=key,
                code=code,
                status=status,
            ) from None
        except (InvalidResponseError, ServerError) as exc:
            status = getattr(exc, "_code", None) or getattr(exc, "status_code", None)
            code = "NotFound" if status == 404 else ""
            raise StorageError(
                f"S3 {op} of {where} at {self.endpoint} failed: unexpected response ({status})",
                bucket=bucket,
                key=key,
                code=code,
                status=status if isinstance(status, int) else None,
            ) from None
        except ValueError as exc:  # the SDK's client-side checks (bucket/object names)
            raise StorageError(
                f"S3 {op} of {where} refused: {exc}", bucket=bucket, key=key, code="InvalidArgument"
            ) from None
        except (MinioException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise StorageError(
                f"S3 {op} of {where} at {self.endpoint} failed: {type(exc).__name__}: {exc}",
                bucket=bucket,
                key=key,
            ) from exc

    # -- buckets -------------------------------------------------------------------------------
    def list_buckets(self) -> list[str]:
        with self._errors("list buckets"):
            return [b.name for b in self._client.list_buckets()]

    def bucket_exists(self, bucket: str) -> bool:
        with self._errors("bucket check", bucket):
            return self._client.bucket_exists(bucket)

    def ensure_bucket(self, bucket: str) -> None:
        """Create the bucket unless it exists (a concurrent creator is not an error)."""
        if self.bucket_exists(bucket):
            return
        try:
            with self._errors("create bucket", bucket):
                self._client.make_bucket(bucket)
        except StorageError as exc:
            if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise

    def ensure_folder(self, bucket: str, folder: str) -> None:
        """Create the bucket and the `folder/` placeholder object OSCAR creates for inputs."""
        self.ensure_bucket(bucket)
        folder = (folder or "").strip("/")
        if not folder:
            return
        key = folder + "/"
        if self.stat(bucket, key) is None:
            self.put_object(bucket, key, b"")

    def delete_bucket(self, bucket: str) -> None:
        """Delete every object of the bucket, then the bucket (S3 refuses non-empty ones)."""
        keys = [info.key for info in self.list_objects(bucket)]
        if keys:
            with self._errors("delete objects in", bucket):
                errors = list(self._client.remove_objects(bucket, (DeleteObject(k) for k in keys)))
            failed = [e for e in errors if e.code not in MISSING_CODES]
            if failed:
                first = failed[0]
                raise StorageError(
                    f"S3 delete of {len(failed)} object(s) in {bucket} at {self.endpoint} failed, "
                    f"first {first.name}: {first.code}: {first.message}",
                    bucket=bucket,
                    key=first.name or "",
                    code=first.code or "",
                )
        with self._errors("delete bucket", bucket):
            self._client.remove_bucket(bucket)

    # -- objects --------------------------------------------------------------------------------
    def list_objects(self, bucket: str, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object under `prefix`, recursively, including `folder/` placeholders."""
        with self._errors("list", bucket, prefix):
            for obj in self._client.list_objects(bucket, prefix=prefix or None, recursive=True):
                if obj.object_name is None:
                    continue
                yield ObjectInfo(
                    bucket=bucket,
                    key=obj.object_name,
                    size=int(obj.size or 0),
                    etag=_etag(obj.etag),
                    last_modified=_timestamp(obj.last_modified),
                )

    def stat(self, bucket: str, key: str) -> ObjectInfo | None:
        """The object's metadata, or None when it (or its bucket) does not exist."""
        try:
            with self._errors("stat", bucket, key):
                obj = self._client.stat_object(bucket, key)
        except StorageError as exc:
            if exc.missing:
                return None
            raise
        return ObjectInfo(
            bucket=bucket,
            key=key,
            size=int(obj.size or 0),
            etag=_etag(obj.etag),
            last_modified=_timestamp(obj.last_modified),
            content_type=obj.content_type or "",
        )

    def put_object(
        self,
        bucket: str,
        key: str,
        data: bytes | bytearray | BinaryIO,
        length: int = -1,
        content_type: str = "application/octet-stream",
    ) -> ObjectInfo:
        """Upload bytes or a readable stream; `length=-1` streams in PART_SIZE parts."""
        if isinstance(data, bytes | bytearray | memoryview):
            data = io.BytesIO(bytes(data))
            length = len(data.getbuffer())
        if not callable(getattr(data, "read", None)):
            raise TypeError("put_object data must be bytes or a readable binary stream")
        reader = _CountingReader(data)
        content_type = content_type or "application/octet-stream"
        with self._errors("upload", bucket, key):
            result = self._client.put_object(
                bucket,
                key,
                reader,  # type: ignore[arg-type]
                length if length is not None and length >= 0 else -1,
                content_type=content_type,
                part_size=0 if length is not None and length >= 0 else PART_SIZE,
                num_parallel_uploads=1,
            )
        size = length if length is not None and length >= 0 else reader.count
        return ObjectInfo(
            bucket=bucket,
            key=key,
            size=int(size),
            etag=_etag(result.etag),
            last_modified=_timestamp(getattr(result, "last_modified", None)),
            content_type=content_type,
        )

    def put_file(self, bucket: str, key: str, path: str) -> ObjectInfo:
        """Upload a local file (content type guessed from its name)."""
        content_type = mimetypes.guess_type(str(path))[0] or "application/octet-stream"
        try:
            with open(path, "rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                return self.put_object(bucket, key, fh, size, content_type=content_type)
        except OSError as exc:
            raise StorageError(
                f"cannot read {path} to upload it to {bucket}/{key}: {exc.strerror or exc}",
                bucket=bucket,
                key=key,
            ) from exc

    def download_file(self, bucket: str, key: str, path: str) -> ObjectInfo:
        """Download an object to a local file (parent folders are created)."""
        with self._errors("download", bucket, key):
            obj = self._client.fget_object(bucket, key, str(path))
        return ObjectInfo(
            bucket=bucket,
            key=key,
            size=int(obj.size or 0),
            etag=_etag(obj.etag),
            last_modified=_timestamp(obj.last_modified),
            content_type=obj.content_type or "",
        )

    def get_bytes(self, bucket: str, key: str) -> bytes:
        """The whole object in memory: for small objects only (tests, small outputs)."""
        chunks, _ = self.open_object(bucket, key)
        with chunks:
            return b"".join(chunks)

    def open_object(self, bucket: str, key: str) -> tuple[_ChunkStream, ObjectInfo]:
        """Start a streamed download: (iterator of byte chunks with .close(), ObjectInfo).

        The caller must exhaust or `close()` the iterator to return the connection.
        """
        with self._errors("download", bucket, key):
            response = self._client.get_object(bucket, key)
        headers = response.headers
        info = ObjectInfo(
            bucket=bucket,
            key=key,
            size=int(headers.get("Content-Length") or 0),
            etag=_etag(headers.get("ETag")),
            last_modified=_timestamp(headers.get("Last-Modified")),
            content_type=headers.get("Content-Type") or "",
        )
        return _ChunkStream(response, self, bucket, key), info

    def delete_object(self, bucket: str, key: str) -> None:
        """Delete one object (extension; deleting a missing object is not an error in S3)."""
        with self._errors("delete", bucket, key):
            self._client.remove_object(bucket, key)

    def presign(
        self,
        bucket: str,
        key: str,
        operation: str = "download",
        expires_s: int = 900,
        content_type: str | None = None,
    ) -> str:
        """A presigned URL: GET for "download", PUT for "upload".

        For downloads, `content_type` becomes the response Content-Type; SigV4 query
        signing cannot bind a request header, so it is ignored for uploads.
        """
        expires = timedelta(seconds=max(1, min(int(expires_s), 7 * 24 * 3600)))
        op = (operation or "download").lower()
        with self._errors(f"presign {op}", bucket, key):
            if op in ("download", "get"):
                headers = {"response-content-type": content_type} if content_type else None
                return self._client.presigned_get_object(
                    bucket, key, expires=expires, response_headers=headers
                )
            if op in ("upload", "put"):
                return self._client.presigned_put_object(bucket, key, expires=expires)
        raise ValueError(f"presign operation must be 'download' or 'upload', not {operation!r}")
