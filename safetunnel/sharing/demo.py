"""A tiny built-in web page for ``safetunnel demo``: something harmless to share."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DEMO_PORT = 62893
PAGE = (
    b"<!doctype html><title>safetunnel demo</title>"
    b"<h1>It works.</h1><p>This page came through a safetunnel share: confirmed, "
    b"token-gated and time-limited.</p>\n"
)


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the tunnel reports connections itself."""


class DemoServer:
    """The demo page on 127.0.0.1, on 62893 when free, else any free port. ``close()`` joins."""

    def __init__(self, port: int = DEMO_PORT) -> None:
        try:
            self._server = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
        except OSError:
            self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = False
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="demo-http")
        self._thread.start()
        self._closed = False

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
