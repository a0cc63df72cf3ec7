"""A stand-in for a shop's order API on 127.0.0.1: knows some orders, and can be told to fail.

`mode` is None (answer), an HTTP status to answer every request with, "slow" (answer after 3 s,
past any lookup timeout) or "garbled" (200 with something that is not an order). `hits` lists
the paths asked. `closed_port()` gives a port nothing listens on.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class ShopApi:
    def __init__(self, orders: list[dict[str, Any]]) -> None:
        self.orders = {o["number"]: o for o in orders}
        self.mode: int | str | None = None
        self.hits: list[str] = []
        self.url = ""

    def answer(self, path: str) -> tuple[int, bytes]:
        self.hits.append(path)
        if self.mode == "slow":
            time.sleep(3)
        number = path.rsplit("/", 1)[-1]
        if isinstance(self.mode, int):
            return self.mode, b"{}"
        if self.mode == "garbled":
            return 200, b'{"no": "number"}'
        if number in self.orders:
            return 200, json.dumps(self.orders[number]).encode()
        return 404, b""


@contextmanager
def serve_shop(orders: list[dict[str, Any]]) -> Iterator[ShopApi]:
    api = ShopApi(orders)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = api.answer(self.path)
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except OSError:
                pass  # the client gave up (timeout tests)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    api.url = f"http://127.0.0.1:{server.server_address[1]}/orders/{{number}}"
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
