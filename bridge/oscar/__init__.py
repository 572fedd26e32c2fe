"""The OSCAR client side: one REST client, its auth, cluster specs, errors, codec and FDL.

Everything else in the suite (local runtime tests, bridge service, CLI) talks to OSCAR
through these names. ``codec`` and ``fdl`` are loaded on first access so importing
this package stays cheap and free of import cycles.
"""

from __future__ import annotations

import importlib
from typing import Any

from .auth import BasicAuth, OidcAuth, ServiceTokenAuth
from .client import JobPage, OscarClient
from .cluster import ClusterSpec
from .errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    OscarError,
    ScriptFailed,
    Unauthorized,
    UpstreamUnavailable,
    error_for_status,
)

__all__ = [
    "BadRequest",
    "BasicAuth",
    "ClusterSpec",
    "Conflict",
    "Forbidden",
    "JobPage",
    "NotFound",
    "OidcAuth",
    "OscarClient",
    "OscarError",
    "ScriptFailed",
    "ServiceTokenAuth",
    "Unauthorized",
    "UpstreamUnavailable",
    "codec",
    "error_for_status",
    "fdl",
]


def __getattr__(name: str) -> Any:
    if name in ("codec", "fdl"):
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
