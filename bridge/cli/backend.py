"""Where a command's OSCAR calls go: straight to a cluster, or through a bridge.

Every command is written once against ``Backend`` (one cluster's services and jobs)
and ``ClusterStore`` (the list of clusters). ``DirectBackend`` wraps an OscarClient
built from the user's clusters file; ``bridge.cli.remote`` implements the same two
interfaces over a running bridge's HTTP API (``--bridge URL``). Keeping the seam this
narrow is what lets ``--bridge`` support *every* command without a second code path
in each of them.
"""

from __future__ import annotations

import argparse
from typing import Protocol

from bridge.oscar.cluster import ClusterSpec
from bridge.oscar.codec import Output

from .config import ClustersConfig


class Backend(Protocol):
    """One cluster's services and jobs, as the commands need them."""

    cluster_id: str

    def list_services(self) -> list[dict]: ...
    def get_service(self, name: str) -> dict: ...
    def apply_services(self, services: list[dict]) -> list[dict]:
        """Create or update each service; returns ``[{"name", "action"}]``."""
        ...

    def delete_service(self, name: str) -> None: ...
    def invoke(self, name: str, data: bytes | str) -> Output: ...
    def submit_job(self, name: str, data: bytes | str) -> str: ...
    def list_jobs(self, name: str) -> dict[str, dict]: ...
    def job_logs(self, name: str, job: str, timestamps: bool = False) -> str: ...
    def delete_job(self, name: str, job: str) -> None: ...
    def delete_jobs(self, name: str, all: bool = False) -> None: ...
    def check(self) -> dict: ...


class ClusterStore(Protocol):
    """The clusters a user can address with ``-c``."""

    def list(self) -> list[dict]:
        """Redacted cluster dicts, each with a boolean ``default``."""
        ...

    def ids(self) -> list[str]: ...
    def add(self, spec: ClusterSpec, *, make_default: bool = False) -> dict: ...
    def remove(self, cluster_id: str) -> None: ...
    def backend(self, cluster_id: str | None) -> Backend: ...
    def resolve(self, cluster_id: str | None) -> str: ...


class DirectBackend:
    """Talks to the cluster itself with the credentials of the clusters file."""

    def __init__(self, spec: ClusterSpec) -> None:
        self.cluster_id = spec.id
        self.client = spec.client()

    def list_services(self) -> list[dict]:
        return self.client.list_services()

    def get_service(self, name: str) -> dict:
        return self.client.get_service(name)

    def apply_services(self, services: list[dict]) -> list[dict]:
        return [{"name": svc["name"], "action": self.client.apply_service(svc)} for svc in services]

    def delete_service(self, name: str) -> None:
        self.client.delete_service(name)

    def invoke(self, name: str, data: bytes | str) -> Output:
        return self.client.invoke(name, data)

    def submit_job(self, name: str, data: bytes | str) -> str:
        from bridge.oscar.codec import encode_input

        body, content_type = encode_input(data)
        return self.client.submit_job(name, body, content_type)

    def list_jobs(self, name: str) -> dict[str, dict]:
        return dict(self.client.iter_jobs(name))

    def job_logs(self, name: str, job: str, timestamps: bool = False) -> str:
        return self.client.job_logs(name, job, timestamps=timestamps)

    def delete_job(self, name: str, job: str) -> None:
        self.client.delete_job(name, job)

    def delete_jobs(self, name: str, all: bool = False) -> None:
        self.client.delete_jobs(name, all=all)

    def check(self) -> dict:
        healthy = self.client.health()
        return {"cluster": self.cluster_id, "healthy": healthy, "info": self.client.info() if healthy else {}}


class FileClusterStore:
    """Clusters kept in the CLI's own YAML file (``--config`` / $OSCAR_BRIDGE_CLUSTERS)."""

    def __init__(self, path: str | None) -> None:
        self.config = ClustersConfig.load(path)

    def list(self) -> list[dict]:
        return [
            {**spec.redacted(), "default": cid == self.config.default}
            for cid, spec in sorted(self.config.clusters.items())
        ]

    def ids(self) -> list[str]:
        return sorted(self.config.clusters)

    def add(self, spec: ClusterSpec, *, make_default: bool = False) -> dict:
        self.config.add(spec, make_default=make_default)
        self.config.save()
        return {**spec.redacted(), "default": self.config.default == spec.id}

    def remove(self, cluster_id: str) -> None:
        if cluster_id not in self.config.clusters:
            from .config import ConfigError

            raise ConfigError(f"unknown cluster {cluster_id!r}")
        self.config.remove(cluster_id)
        self.config.save()

    def resolve(self, cluster_id: str | None) -> str:
        return self.config.get(cluster_id).id

    def backend(self, cluster_id: str | None) -> Backend:
        return DirectBackend(self.config.get(cluster_id))


def cluster_store(args: argparse.Namespace) -> ClusterStore:
    """The store the global options select: a bridge (``--bridge``) or the clusters file."""
    if getattr(args, "bridge", None):
        from .remote import BridgeClusterStore, resolve_token

        return BridgeClusterStore(args.bridge, resolve_token(args.bridge_token))
    return FileClusterStore(getattr(args, "config", None))
