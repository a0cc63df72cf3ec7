"""Serving a Starlette app with uvicorn on 127.0.0.1 at a free port, from async test code."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.types import ASGIApp


@dataclass
class Call:
    """One request a fake received, recorded before it was answered.

    `name` is the Telegram method (`sendMessage`) or the Graph path kind (`messages`, `media`,
    `download`, `unknown`). `params` are the parameters as the server understood them (typed:
    numbers, objects), `raw` as they came on the wire (for a form, every value a string), and
    `encoding` says which: `json`, `form`, `multipart`, `query` or `none`. `files` holds
    uploaded parts by field name: (filename, bytes). `status` and `response` are the answer.
    """

    name: str
    http_method: str
    path: str
    params: dict[str, Any]
    raw: dict[str, Any]
    encoding: str
    time: float
    headers: dict[str, str] = field(default_factory=dict)
    files: dict[str, tuple[str | None, bytes]] = field(default_factory=dict)
    status: int = 0
    response: Any = None


class _QuietServer(uvicorn.Server):
    """A uvicorn server that leaves the process's signal handlers (pytest's) alone."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ServedApp:
    """Runs `app` on 127.0.0.1 at a port the system picks, as a task of the running loop."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self._server: _QuietServer | None = None
        self._task: asyncio.Task[None] | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        if not self.port:
            raise RuntimeError("the fake is not running: use it as `async with`")
        return f"http://127.0.0.1:{self.port}"

    async def start(self, startup_seconds: float = 5.0) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
            timeout_keep_alive=5,
        )
        self._server = _QuietServer(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        deadline = asyncio.get_running_loop().time() + startup_seconds
        while not self._server.started:
            if self._task.done():
                sock.close()
                self._task.result()  # raises what stopped it
                raise RuntimeError("the fake server stopped during start-up")
            if asyncio.get_running_loop().time() > deadline:
                await self.stop()
                raise TimeoutError("the fake server did not start")
            await asyncio.sleep(0.005)

    async def stop(self) -> None:
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        try:
            await asyncio.wait_for(self._task, timeout=5)
        except TimeoutError:
            self._server.force_exit = True
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._server = None
        self._task = None
