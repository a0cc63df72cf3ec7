"""The terminal as a channel: typed lines become Inbound messages, replies are printed.

Commands: /photo PATH (send an image), /button PAYLOAD (press a button), /lang CODE (what the
"platform" says about your language), /quit.
"""

from __future__ import annotations

import asyncio
import getpass
import io
import logging
import mimetypes
import sys
from pathlib import Path
from typing import TextIO

from bot.app import uses_sample_orders
from bot.config import Settings, shipped_folder
from bot.manager import DialogueManager
from bot.messages import Attachment, Inbound, Outbound
from bot.store import StoreError

log = logging.getLogger(__name__)

HELP = "Type a message. Commands: /photo PATH, /button PAYLOAD, /lang CODE, /quit"
YOUR_OWN = "Set AFTERSALES_ORDERS (a file) or AFTERSALES_ORDERS_URL (your order API) for your own."


def orders_notice(settings: Settings) -> str | None:
    """What a chat says first when no shop orders are configured: which orders it knows, and
    how to try them. None when the shop's own orders are used."""
    if not uses_sample_orders(settings):
        return None
    path = settings.dialogues_dir / "sample_orders.yml"
    if not path.is_file():
        return f"No orders configured and no {path}: every order number is unknown. {YOUR_OWN}"
    if settings.dialogues_dir == shipped_folder("dialogues"):
        return f"Using the sample orders (dialogues/sample_orders.yml): try SO-10023 with sato@example.jp. {YOUR_OWN}"
    return f"Using the sample orders in {path}. {YOUR_OWN}"


def render(reply: Outbound) -> str:
    """A reply as the terminal shows it: the text, then its buttons as `[payload] label`."""
    lines = [f"bot: {reply.text}"]
    if reply.buttons:
        lines.append("     " + "  ".join(f"[{b.payload}] {b.label}" for b in reply.buttons))
    return "\n".join(lines)


def parse_line(line: str, *, conversation_id: str, user_id: str, hint: str | None) -> Inbound | str:
    """A typed line as an Inbound, or a message for the user when the command is malformed."""
    command, _, rest = line.strip().partition(" ")
    rest = rest.strip()
    if command == "/button":
        if not rest:
            return "usage: /button PAYLOAD (e.g. /button done)"
        return Inbound("console", conversation_id, user_id, button=rest, locale_hint=hint)
    if command == "/photo":
        path = Path(rest).expanduser()
        if not rest or not path.is_file():
            return f"no such file: {rest or '(none given)'}"
        data = path.read_bytes()
        mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        attachment = Attachment("photo", data, mime, len(data), path.name)
        return Inbound("console", conversation_id, user_id, attachments=(attachment,), locale_hint=hint)
    return Inbound("console", conversation_id, user_id, text=line, locale_hint=hint)


async def chat(
    manager: DialogueManager,
    *,
    user: str | None = None,
    stdin: TextIO = sys.stdin,
    settings: Settings | None = None,
) -> None:
    """Talk to the bot as a customer until /quit or end of input. `settings` (read from the
    environment when not given) only decide the first line: whether the sample orders are in use."""
    user_id = user or getpass.getuser()
    conversation_id = f"console:{user_id}"
    if isinstance(stdin, io.TextIOWrapper):
        stdin.reconfigure(errors="surrogateescape")  # bytes that are not UTF-8 reach the core, which cleans them
    notice = orders_notice(settings or Settings.from_env())
    if notice:
        print(notice, flush=True)
    print(HELP, flush=True)
    relay = asyncio.create_task(_show_agent_messages(manager, conversation_id))
    try:
        await _talk(manager, stdin, conversation_id, user_id)
    finally:
        relay.cancel()


async def _show_agent_messages(manager: DialogueManager, conversation_id: str) -> None:
    """What a person writes from the agent console (another process) appears here; a message
    is acknowledged once shown, so one not shown yet (a crash) is shown by the next chat."""
    while True:
        try:
            replies = await manager.collect(conversation_id)
            for reply in replies:
                print("\n" + render(reply), flush=True)
            if replies:
                await manager.ack(conversation_id)
        except StoreError as error:  # the store is restarting or unreachable: try again shortly
            log.warning("could not read the agent's messages: %s", error)
        await asyncio.sleep(0.5)


async def _talk(manager: DialogueManager, stdin: TextIO, conversation_id: str, user_id: str) -> None:
    hint: str | None = None
    while True:
        print("you: ", end="", flush=True)
        line = await asyncio.to_thread(stdin.readline)
        if not line:
            print()
            return
        line = line.rstrip("\n")
        if not line.strip():
            continue
        if line.strip() == "/quit":
            return
        if line.startswith("/lang"):
            hint = line.partition(" ")[2].strip() or None
            print(f"(locale hint: {hint or 'none'})")
            continue
        inbound = parse_line(line, conversation_id=conversation_id, user_id=user_id, hint=hint)
        if isinstance(inbound, str):
            print(inbound)
            continue
        for reply in await manager.handle(inbound):
            print(render(reply), flush=True)
