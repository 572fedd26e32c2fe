"""The CLI's clusters file: which OSCAR clusters the user can reach, and how.

It is a small YAML document in the user's data directory::

    default: my-cluster
    clusters:
      my-cluster: {endpoint: https://..., auth_kind: basic, user: oscar, password: ...}

The file holds credentials, so it is always written with mode 0600, atomically (a
temporary file in the same directory, then ``os.replace``) so that a crash or a
concurrent reader never sees half a file, and its secrets are only ever shown
through ``ClusterSpec.redacted()``. Validation is ClusterSpec's, so the CLI and the
bridge service agree on what a valid cluster is.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bridge.oscar.cluster import ClusterSpec
from bridge.settings import default_data_dir

ENV_CLUSTERS_FILE = "OSCAR_BRIDGE_CLUSTERS"
FILE_NAME = "clusters.yaml"


class ConfigError(ValueError):
    """A clusters file that cannot be read or used; the message names the file."""


def default_path(env: Mapping[str, str] | None = None) -> Path:
    """``$OSCAR_BRIDGE_CLUSTERS`` or ``<user data dir>/clusters.yaml``."""
    env = os.environ if env is None else env
    value = env.get(ENV_CLUSTERS_FILE)
    return Path(value).expanduser() if value else default_data_dir() / FILE_NAME


@dataclass
class ClustersConfig:
    """The parsed clusters file; ``save()`` writes it back safely."""

    path: Path
    clusters: dict[str, ClusterSpec] = field(default_factory=dict)
    default: str | None = None

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> ClustersConfig:
        """Read the file; a missing file is an empty configuration, not an error."""
        p = Path(path).expanduser() if path else default_path()
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            return cls(p)
        except OSError as exc:
            raise ConfigError(f"clusters file {p}: {exc.strerror or exc}") from None
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"clusters file {p}: invalid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"clusters file {p}: must be a mapping with 'clusters' and 'default'")
        raw = data.get("clusters") or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"clusters file {p}: clusters: must be a mapping of id -> cluster")
        clusters: dict[str, ClusterSpec] = {}
        for cid, spec in raw.items():
            if not isinstance(spec, dict):
                raise ConfigError(f"clusters file {p}: clusters.{cid}: must be a mapping")
            try:
                clusters[str(cid)] = ClusterSpec.from_dict({**spec, "id": str(cid)})
            except ValueError as exc:
                raise ConfigError(f"clusters file {p}: clusters.{cid}.{exc}") from None
        default = data.get("default")
        return cls(p, clusters, str(default) if default else None)

    def save(self) -> None:
        """Write the file atomically with mode 0600 (its directory 0700 when created)."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        doc = {
            "default": self.default,
            "clusters": {cid: _without_id(spec) for cid, spec in sorted(self.clusters.items())},
        }
        text = yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise

    def add(self, spec: ClusterSpec, *, make_default: bool = False) -> None:
        """Add or replace a cluster; the first one becomes the default."""
        self.clusters[spec.id] = spec
        if make_default or not self.default or self.default not in self.clusters:
            self.default = spec.id

    def remove(self, cluster_id: str) -> None:
        """Forget a cluster; KeyError when unknown. The default moves to a remaining one."""
        del self.clusters[cluster_id]
        if self.default == cluster_id:
            self.default = sorted(self.clusters)[0] if self.clusters else None

    def get(self, cluster_id: str | None) -> ClusterSpec:
        """The named cluster, else the default; ConfigError explains what is missing."""
        if cluster_id is None:
            if not self.clusters:
                raise ConfigError(
                    f"no cluster configured in {self.path}: add one with "
                    "'oscar-bridge clusters add ID ENDPOINT ...' (or use --bridge URL)"
                )
            cluster_id = self.default if self.default in self.clusters else None
            if cluster_id is None:
                raise ConfigError("no default cluster: pass -c CLUSTER or 'clusters add ... --default'")
        try:
            return self.clusters[cluster_id]
        except KeyError:
            known = ", ".join(sorted(self.clusters)) or "none"
            raise ConfigError(f"unknown cluster {cluster_id!r} (configured: {known})") from None


def _without_id(spec: ClusterSpec) -> dict:
    """The stored form: the id is the mapping key, empty optional fields are left out."""
    out = spec.to_dict(secrets=True)
    out.pop("id", None)
    return {k: v for k, v in out.items() if v not in ("", None) or k in ("endpoint", "auth_kind")}
