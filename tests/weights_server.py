"""A loopback HTTP server standing in for the weight hosts (importable as ``weights_server``).

``serve()`` starts a threaded ``http.server`` on 127.0.0.1 (a free port) in a background thread;
each file is a :class:`Route` that can also misbehave the ways real hosts and networks do: cut the
connection after some bytes, send a body shorter than its ``Content-Length``, answer 404/500,
redirect in a loop, ignore ``Range``. It records every request (path and ``Range`` header).
Nothing here reaches the internet.
"""
from __future__ import annotations

import contextlib
import re
import socket
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Route:
    """What the server does for one path.

    Attributes:
        body: the file's bytes.
        status: answer this HTTP status (with a short text body) instead of the file.
        redirect_to: answer ``302`` to this path (``/name``) instead.
        cut_after: with ``cuts > 0``: send this many bytes of the body, then reset the connection.
        cuts: how many requests are cut (later ones are served whole).
        short_by: always announce the full ``Content-Length`` but send this many bytes less, then close.
        ignore_range: answer ``200`` with the whole body even to a ``Range`` request.
    """

    body: bytes = b""
    status: int = 200
    redirect_to: str | None = None
    cut_after: int | None = None
    cuts: int = 0
    short_by: int = 0
    ignore_range: bool = False


@dataclass
class Request:
    path: str
    range: str | None


@dataclass
class WeightsServer:
    base_url: str
    routes: dict[str, Route] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, name: str, body: bytes = b"", **behaviour: object) -> Route:
        route = Route(body=body, **behaviour)  # type: ignore[arg-type]
        self.routes[name] = route
        return route

    def requested(self, name: str) -> list[Request]:
        return [r for r in self.requests if r.path == name]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        state = self.server.state
        name = self.path.split("?", 1)[0].lstrip("/")
        wanted = self.headers.get("Range")
        with state.lock:
            state.requests.append(Request(name, wanted))
            route = state.routes.get(name)
            cut = route is not None and route.cuts > 0 and route.cut_after is not None
            if cut and route is not None:
                route.cuts -= 1
        if route is None:
            return self._text(404, "Not Found")
        if route.redirect_to is not None:
            self.send_response(302)
            self.send_header("Location", route.redirect_to)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        if route.status != 200:
            return self._text(route.status, f"error {route.status}")
        body, start = route.body, 0
        match = re.fullmatch(r"bytes=(\d+)-", wanted or "")
        if match and not route.ignore_range:
            start = int(match.group(1))
            if start >= len(body):
                return self._text(416, "Range Not Satisfiable")
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        payload = body[start:]
        if cut and route.cut_after is not None:
            self.wfile.write(payload[: route.cut_after])
            self.wfile.flush()
            # reset, not a clean close: what a dropped connection looks like to the client
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            return None
        self.wfile.write(payload[: len(payload) - route.short_by] if route.short_by else payload)
        return None

    def _text(self, status: int, text: str) -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: WeightsServer


@contextlib.contextmanager
def serve() -> Iterator[WeightsServer]:
    """A running server on 127.0.0.1; stopped when the block ends."""
    server = _Server(("127.0.0.1", 0), _Handler)
    host, port = server.server_address[:2]
    server.state = WeightsServer(f"http://{host!s}:{port}")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def closed_port() -> int:
    """A loopback port nothing listens on (connection refused: the offline case)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
