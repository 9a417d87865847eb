"""Running the app under uvicorn with a clean exit on SIGTERM/SIGINT."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Generator

import uvicorn

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Server(uvicorn.Server):
    """uvicorn re-raises the captured signal after a graceful shutdown, which kills the
    process before ``atexit`` runs (leaving the embedded PostgreSQL up) and makes the
    exit status look like a crash. We shut down gracefully and return instead."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in _SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
