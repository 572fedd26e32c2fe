"""waitress in a background thread, with the clean stop waitress itself lacks.

Both long-running HTTP parts (the local runtime's OSCAR API and the bridge) need the
same three things: a production WSGI server (not Flask's development server) running
in a thread, the port it really bound (port 0 means "any free port"), and a stop that
neither drops in-flight requests nor races waitress's poll loop. Keeping that here
means the subtle shutdown sequence exists once.
"""

from __future__ import annotations

import logging
import signal
import threading
import warnings
from typing import Any

log = logging.getLogger(__name__)


class BackgroundServer:
    """One waitress server serving `app` from a daemon thread."""

    def __init__(self, app: Any, *, host: str, port: int, ident: str, **options: Any) -> None:
        self._app = app
        self._host = host
        self._requested_port = port
        self._ident = ident
        self._options = options
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.port = port

    def start(self) -> int:
        """Bind and start serving; returns the bound port."""
        from waitress.server import create_server

        with warnings.catch_warnings():
            # waitress 3 deprecates send_bytes, but it is still the only way to make it
            # flush small writes of a running response (Server-Sent Events) at once:
            # below send_bytes (18000 by default) it holds them back.
            warnings.filterwarnings("ignore", message="send_bytes", category=DeprecationWarning)
            self._server = create_server(
                self._app,
                host=self._host,
                port=self._requested_port,
                ident=self._ident,
                clear_untrusted_proxy_headers=True,
                **self._options,
            )
        self.port = int(self._server.effective_port)
        self._thread = threading.Thread(target=self._server.run, name=f"{self._ident}-http", daemon=True)
        self._thread.start()
        return self.port

    def stop(self) -> None:
        """Finish in-flight requests (bounded), then close every socket; idempotent.

        waitress has no public shutdown. The worker threads are drained first (a worker
        finishing after its channel closed would die on the closed trigger); then every
        channel, the listener included, is closed *inside the loop thread* through
        waitress's trigger, because closing sockets under a running poll() from another
        thread races with it. An empty channel map ends the loop.
        """
        server, self._server = self._server, None
        if server is None:
            return
        server.task_dispatcher.shutdown(cancel_pending=True, timeout=5)
        thread, self._thread = self._thread, None
        if thread is not None and thread.is_alive():
            try:
                server.trigger.pull_trigger(lambda: _close_channels(server))
            except OSError:
                pass
            thread.join(timeout=10)
        if server._map:  # the loop was not running, or did not answer: close from here
            _close_channels(server)
            if thread is not None:
                thread.join(timeout=5)


def _close_channels(server: Any) -> None:
    from waitress.channel import HTTPChannel

    for channel in list(server._map.values()):
        try:
            if isinstance(channel, HTTPChannel):
                channel.handle_close()
            else:
                channel.close()
        except Exception:
            log.debug("error closing %r", channel, exc_info=True)
            server._map.pop(getattr(channel, "_fileno", None), None)


def wait_for_stop_signal() -> None:
    """Block the foreground command until SIGINT or SIGTERM, then restore the handlers."""
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
