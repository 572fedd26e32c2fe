"""ClusterRegistry: the persisted clusters, and one shared client per cluster.

Specs (with their secrets) live in the Store under kind "cluster" so they survive
restarts; responses only ever show `ClusterSpec.redacted()`. Clients are cached because
an OscarClient holds a connection pool and the per-service token cache: building one
per request would re-read every service's token on every invocation.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from bridge.oscar.cluster import ClusterSpec

from .errors import ApiError

if TYPE_CHECKING:
    from bridge.oscar.client import OscarClient
    from bridge.storage import S3Store
    from bridge.store import Store

KIND = "cluster"
# The embedded local runtime: its cluster id and the marker saying the bridge registered it.
LOCAL_ID = "local"
SETTING_KIND = "bridge-setting"
EMBEDDED_MARKER = "embedded-local"


def unknown_cluster(cluster_id: str) -> ApiError:
    return ApiError(404, f"unknown cluster {cluster_id!r}", cluster=cluster_id)


class ClusterRegistry:
    """Thread-safe registry of ClusterSpecs over a Store, with cached clients and S3 stores.

    `client_kwargs` (extension) are passed to every OscarClient (timeouts, retries).
    """

    def __init__(self, store: Store, *, client_kwargs: dict[str, Any] | None = None) -> None:
        self.store = store
        self.client_kwargs = dict(client_kwargs or {})
        self._lock = threading.RLock()
        self._clients: dict[str, OscarClient] = {}
        self._storages: dict[str, S3Store] = {}

    # ------------------------------------------------------------------ specs
    def add(self, spec: ClusterSpec, replace: bool = False) -> ClusterSpec:
        """Persist a spec; ApiError 409 if the id exists and `replace` is false."""
        with self._lock, self.store.transaction():
            if not replace and self.store.get(KIND, spec.id) is not None:
                raise ApiError(409, f"cluster {spec.id!r} already exists", cluster=spec.id)
            self.store.put(KIND, spec.id, spec.to_dict(secrets=True))
            self._forget(spec.id)
        return spec

    def get(self, cluster_id: str) -> ClusterSpec:
        doc = self.store.get(KIND, cluster_id)
        if doc is None:
            raise unknown_cluster(cluster_id)
        return ClusterSpec.from_dict(doc)

    def disown_local(self) -> None:
        """A user registered or deleted `local` themselves: stop treating it as embedded."""
        self.store.delete(SETTING_KIND, EMBEDDED_MARKER)

    def exists(self, cluster_id: str) -> bool:
        return self.store.get(KIND, cluster_id) is not None

    def list(self) -> list[ClusterSpec]:
        return [ClusterSpec.from_dict(doc) for doc in self.store.values(KIND)]

    def remove(self, cluster_id: str) -> None:
        """Delete a spec; ApiError 404 when unknown."""
        with self._lock:
            if not self.store.delete(KIND, cluster_id):
                raise unknown_cluster(cluster_id)
            self._forget(cluster_id)

    # ------------------------------------------------------------------ clients
    def client(self, cluster_id: str) -> OscarClient:
        """The shared OscarClient of a cluster (built on first use)."""
        with self._lock:
            cached = self._clients.get(cluster_id)
            if cached is not None:
                return cached
            client = self.get(cluster_id).client(**self.client_kwargs)
            self._clients[cluster_id] = client
            return client

    def storage(self, cluster_id: str) -> S3Store:
        """The S3Store of the cluster's MinIO, from its /system/config (cached)."""
        with self._lock:
            cached = self._storages.get(cluster_id)
        if cached is not None:
            return cached
        # Network call outside the lock: a slow cluster must not block the others.
        provider = self.client(cluster_id).minio_provider()
        from bridge.storage import S3Store

        store = S3Store.from_provider(provider)
        with self._lock:
            return self._storages.setdefault(cluster_id, store)

    def close(self) -> None:
        with self._lock:
            for cluster_id in list(self._clients):
                self._forget(cluster_id)

    def _forget(self, cluster_id: str) -> None:
        client = self._clients.pop(cluster_id, None)
        self._storages.pop(cluster_id, None)
        if client is not None:
            client.close()
