"""One embedded store for every process on a data folder: shared, adopted, restarted, cleaned up.

The commands run as a shop runs them (subprocesses, typed input); every wait is bounded.
"""

from __future__ import annotations

import asyncio
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bot.embedded_valkey import EmbeddedValkey
from bot.store import Store, StoreUnavailable

ROOT = Path(__file__).parent.parent


def _env() -> dict[str, str]:
    """The caller's environment without AFTERSALES_* or REDIS_URL (the default data folder, the
    embedded store), but with the session's model cache."""
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL" and not k.startswith("AFTERSALES_")}
    env["AFTERSALES_CACHE"] = os.environ["AFTERSALES_CACHE"]
    env["PYTHONPATH"] = str(ROOT)
    return env


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def _servers(embedded: EmbeddedValkey) -> list[int]:
    """Running Valkey servers serving this folder's socket."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            command = (proc / "cmdline").read_bytes() if proc.name.isdigit() else b""
            serving = b"valkey-server" in command and str(embedded.socket_path).encode() in command
        except OSError:
            continue
        if serving and _alive(int(proc.name)):
            found.append(int(proc.name))
    return found


def _until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout} s waiting for {what}")
        time.sleep(0.05)


class Command:
    """A running `aftersales` command whose output is read line by line as it comes."""

    def __init__(self, cwd: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "channels.cli", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
            cwd=cwd,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.errors: list[str] = []
        threading.Thread(target=self._pump, args=(self.proc.stdout, self.lines.put), daemon=True).start()
        threading.Thread(target=self._pump, args=(self.proc.stderr, self.errors.append), daemon=True).start()

    @staticmethod
    def _pump(stream: object, sink: Callable[[str], object]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            sink(line)

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def expect(self, *words: str, timeout: float = 90) -> str:
        """The next bot line holding all `words` (case ignored)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no bot line with {words}; saw {self.seen}; stderr {''.join(self.errors)}")
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            self.seen.append(line)
            if "bot: " in line and all(w.lower() in line.lower() for w in words):
                return line

    def quit(self, timeout: float = 60) -> int:
        self.send("/quit")
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)


def run_command(cwd: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "channels.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=_env(),
        cwd=cwd,
        timeout=120,
    )


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[Path]:
    """A working folder whose default data folder (.aftersales) the test's processes share; no
    process or server of the test outlives it."""
    yield tmp_path
    for proc in Path("/proc").iterdir():
        try:
            mine = proc.name.isdigit() and Path(os.readlink(proc / "cwd")).is_relative_to(tmp_path)
            if mine and int(proc.name) != os.getpid():
                os.kill(int(proc.name), signal.SIGKILL)  # a command or server the test left running
        except OSError:
            continue


def test_chat_agent_and_tickets_share_one_server_on_the_default_data_folder(folder):
    embedded = EmbeddedValkey(folder / ".aftersales")
    chat = Command(folder, "chat", "--user", "side")
    try:
        chat.send("I want to talk to a real person")
        chat.expect("")
        server = embedded.pid
        assert _servers(embedded) == [server]

        agent = run_command(folder, "agent", "--name", "Ann", stdin="queue\nclaim 1\nreply 1 Hello from Ann\nquit\n")
        assert agent.returncode == 0, agent.stderr
        assert "customer_request" in agent.stdout and "agent_joined" in agent.stdout
        chat.expect("Hello from Ann", timeout=30)  # from the other process, through the outbox

        listed = run_command(folder, "tickets", "list")
        assert listed.returncode == 0, listed.stderr
        assert "talk_to_human" in listed.stdout and "escalated" in listed.stdout
        assert _servers(embedded) == [server] and embedded.pid == server  # the same server all along
    finally:
        assert chat.quit() == 0, "".join(chat.errors)
    _until(lambda: not _alive(server), 15, "the last user to take the server down")


def test_a_chat_killed_with_sigkill_leaves_its_conversation_to_the_next_process(folder):
    first = Command(folder, "chat", "--user", "killed")
    first.send("my parcel has not arrived yet")
    first.expect("order number")
    first.kill()
    killed_at = time.monotonic()

    second = Command(folder, "chat", "--user", "killed")
    assert time.monotonic() - killed_at < 5
    second.send("SO-10023")
    # The flow was remembered: the number is taken and proof of ownership is asked next.
    second.expect("SO-10023", "email")
    assert second.quit() == 0
    assert "already in use" not in "".join(second.errors)


def test_the_store_server_killed_mid_conversation_is_restarted_for_the_next_turn(folder):
    embedded = EmbeddedValkey(folder / ".aftersales")
    chat = Command(folder, "chat", "--user", "reconnect")
    try:
        chat.send("my parcel has not arrived yet")
        chat.expect("order number")
        killed = embedded.pid
        assert killed is not None
        os.kill(killed, signal.SIGKILL)
        _until(lambda: not _alive(killed), 10, "the server to die")

        chat.send("SO-10023")
        chat.expect("SO-10023", "email")  # reconnected to a new server that loaded the conversation
        assert embedded.pid not in (None, killed)
    finally:
        assert chat.quit() == 0, "".join(chat.errors)


_OPEN_AND_HOLD = """
import asyncio, sys
from pathlib import Path
from bot.store import Store

async def main():
    store = await Store.open(None, Path(sys.argv[1]), ttl_seconds=60)
    await store.redis.incr("as:opened")
    print(store.embedded.pid, flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    await store.close()

asyncio.run(main())
"""


def _first_line(proc: subprocess.Popen[str], timeout: float) -> str:
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(proc.stdout.readline()), daemon=True).start()  # type: ignore[union-attr]
    try:
        return lines.get(timeout=timeout).strip()
    except queue.Empty:
        raise AssertionError(f"no line from a process within {timeout} s") from None


def test_processes_starting_at_once_start_one_server(folder):
    data = folder / "data"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _OPEN_AND_HOLD, str(data)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        for _ in range(4)
    ]
    try:
        pids = {_first_line(proc, timeout=60) for proc in procs}  # each prints once it is connected
        assert len(pids) == 1 and pids != {""}, [p.stderr.read() for p in procs if p.poll() is not None]
        assert _servers(EmbeddedValkey(data)) == [int(pids.pop())]
    finally:
        for proc in procs:
            proc.communicate("\n", timeout=30)
    assert all(proc.returncode == 0 for proc in procs)
    _until(lambda: not _servers(EmbeddedValkey(data)), 15, "the last process to take the server down")


def test_the_server_of_a_killed_last_user_is_stopped_even_if_its_folder_moved(folder):
    """kill -9 of the only process using the server: the watchdog stops it (gracefully), even
    when the data folder was renamed meanwhile (as pytest tidies old temporary folders)."""
    data = folder / "data"
    user = subprocess.Popen(
        [sys.executable, "-c", _OPEN_AND_HOLD, str(data)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env=_env(),
    )  # fmt: skip
    server = int(_first_line(user, timeout=60))
    data.rename(folder / "moved")
    user.kill()
    user.wait(timeout=10)
    _until(lambda: not _alive(server), 40, "the watchdog to stop the server")


def test_a_stale_socket_and_pid_file_do_not_stop_a_start(tmp_path, run):
    embedded = EmbeddedValkey(tmp_path)
    embedded.folder.mkdir(parents=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stale:
        stale.bind(str(embedded.socket_path))  # a socket file nobody listens on, as a crash leaves it
    dead = subprocess.Popen(["true"])
    dead.wait(timeout=10)
    embedded.pid_path.write_text(f"{dead.pid}\n")  # a process that is gone

    async def open_use_close() -> object:
        store = await Store.open(None, tmp_path, ttl_seconds=60)
        try:
            await store.set_json({"ok": True}, "probe")
            return await store.get_json("probe")
        finally:
            await store.close()

    assert run(open_use_close()) == {"ok": True}


def test_a_lost_connection_is_retried_and_the_dead_server_restarted(tmp_path, run):
    async def scenario() -> tuple[object, int | None, int | None]:
        store = await Store.open(None, tmp_path, ttl_seconds=60)
        try:
            await store.set_json({"kept": True}, "probe")
            before = store.embedded.pid
            os.kill(before, signal.SIGKILL)
            await asyncio.to_thread(_until, lambda: not _alive(before), 10, "the server to die")
            return await store.get_json("probe"), before, store.embedded.pid
        finally:
            await store.close()

    value, before, after = run(scenario())
    assert value == {"kept": True} and after not in (None, before)


def test_an_unreachable_server_raises_store_unavailable(run):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens there once closed
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        run(Store.open(f"redis://127.0.0.1:{port}", Path("unused"), ttl_seconds=60))
    assert time.monotonic() - started < 15  # retried with backoff, then given up


def test_the_embedded_server_refuses_writes_when_full_instead_of_evicting(tmp_path, run, monkeypatch):
    monkeypatch.setenv("AFTERSALES_VALKEY_MAXMEMORY", "5mb")

    async def settings() -> list[object]:
        store = await Store.open(None, tmp_path, ttl_seconds=60)
        try:
            return [await store.redis.config_get("maxmemory"), await store.redis.config_get("maxmemory-policy")]
        finally:
            await store.close()

    maxmemory, policy = run(settings())
    assert maxmemory == {"maxmemory": str(5 * 1024 * 1024)} and policy == {"maxmemory-policy": "noeviction"}
