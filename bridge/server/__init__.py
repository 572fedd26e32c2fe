"""The bridge HTTP service (`oscar-bridge serve`).

Node-RED nodes, NiFi processors and scripts talk to this one service instead of each
re-implementing OSCAR's auth, base64/zip conventions, job naming and file staging.
`create_app` builds the Flask app; `BridgeServer` runs it under waitress with the
embedded local runtime. Imports are lazy so `import bridge.server` stays cheap.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ApiError", "BridgeServer", "create_app", "serve"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from .app import create_app

        return create_app
    if name in ("BridgeServer", "serve"):
        from . import serve as _serve

        return getattr(_serve, name)
    if name == "ApiError":
        from .errors import ApiError

        return ApiError
    raise AttributeError(name)
