"""BridgeContext: everything a request handler needs, in one object.

Blueprints reach it as `current_app.extensions["bridge"]` (or `ctx()`), never through
module globals, so several apps (tests, benchmarks) can live in one process.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flask import current_app

if TYPE_CHECKING:
    from bridge.settings import Settings
    from bridge.store import Store

    from .events import EventHub
    from .metrics import Metrics
    from .registry import ClusterRegistry
    from .watcher import Watcher


@dataclass
class BridgeContext:
    """The bridge's shared state. `token` is the bearer token callers must present."""

    settings: Settings
    store: Store
    registry: ClusterRegistry
    hub: EventHub
    watcher: Watcher
    metrics: Metrics
    token: str
    # Extension: resources create_app made itself and must release in close().
    owned: list[Any] = field(default_factory=list, repr=False)

    def close(self) -> None:
        """Stop the watcher and release what create_app created (not what it was given)."""
        self.watcher.stop()
        self.registry.close()
        for resource in reversed(self.owned):
            resource.close()
        self.owned.clear()


def ctx() -> BridgeContext:
    """The current app's BridgeContext (inside a request)."""
    return current_app.extensions["bridge"]
