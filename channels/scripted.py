"""Scripted dialogues through the real channel adapters (`bot.scripted.ChannelCodec`).

A script with `channel: telegram` or `channel: whatsapp` then runs each customer step as the
platform would deliver it: the adapter's `script_event` makes the webhook event (and its media),
the event goes through JSON as the durable inbox keeps it, and the adapter's own `to_inbound`
reads it back, with media served from memory instead of downloaded. Each reply is rendered by
the adapter's `render` into the platform's request bodies, which are checked against the limits
the platform enforces; the customer's view of them (texts, button payloads) goes to the checks.

The adapters are built offline: dummy credentials, an address that resolves nowhere, never
started. Nothing here touches the network.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from bot.messages import Inbound, Outbound
from bot.scripted import ChannelCodec, Delivered
from channels.base import ChannelEvent, RetryLater

_NOWHERE = "http://scripted.invalid"  # `.invalid` never resolves: a stray request fails at once


def _stored(event: ChannelEvent) -> ChannelEvent:
    """The event as a worker gets it back from the inbox (which keeps it as JSON)."""
    return ChannelEvent.from_json(json.loads(json.dumps(event.to_json())))


class _Media:
    """One step's media by platform id, served instead of a download."""

    def __init__(self) -> None:
        self.files: dict[str, Any] = {}

    def get(self, file_id: str) -> Any:
        if file_id not in self.files:
            # The adapter asked for a file the update did not carry: its own bug, shown as such.
            raise ValueError(f"the adapter fetched media {file_id!r}, which the event does not refer to")
        return self.files[file_id]


class TelegramCodec:
    """Scripted steps through `channels.telegram.TelegramChannel`."""

    def __init__(self) -> None:
        from channels.telegram import TelegramChannel

        self._media = _Media()

        async def from_memory(file_id: str) -> bytes:
            data: bytes = self._media.get(file_id)
            return data

        self.channel = TelegramChannel("1:scripted-dialogues-offline-token", api_base=_NOWHERE, download=from_memory)
        self._next_update = 0

    async def inbound(self, inbound: Inbound) -> Inbound:
        from channels.telegram import script_event

        # A step's number as the update id: the same step is the same update, as on a redelivery.
        step = inbound.message_id or ""
        self._next_update += 1
        update_id = int(step) if step.isdigit() else 10**6 + self._next_update
        event, files = script_event(inbound, update_id)
        self._media.files = files
        try:
            converted = await self.channel.to_inbound([_stored(event)])
        except RetryLater as error:
            raise ValueError(f"telegram: {error.reason}") from None
        finally:
            self._media.files = {}
        if converted is None:
            raise ValueError("the Telegram adapter made no turn of this step")
        return converted

    def delivered(self, outbound: Outbound) -> Delivered:
        from channels.telegram import buttons_of

        bodies = self.channel.render(outbound)
        for body in bodies:
            _telegram_acceptable(body)
        return Delivered(
            parts=tuple(str(body["text"]) for body in bodies),
            buttons=tuple(str(payload) for body in bodies for payload in buttons_of(body)),
        )

    async def aclose(self) -> None:
        """Nothing was opened (the channel never started)."""


class WhatsAppCodec:
    """Scripted steps through `channels.whatsapp.WhatsAppChannel`; the script's customer id is the
    sender's phone number, which WhatsApp vouches for."""

    PHONE_NUMBER_ID = "100000000000001"  # the business number the scripted webhooks are addressed to

    def __init__(self) -> None:
        from channels.whatsapp import WhatsAppChannel

        self._media = _Media()

        async def from_memory(media_id: str) -> tuple[bytes, str]:
            data: tuple[bytes, str] = self._media.get(media_id)
            return data

        self.channel = WhatsAppChannel(
            access_token="scripted-dialogues-offline-token",
            phone_number_id=self.PHONE_NUMBER_ID,
            app_secret="scripted",
            verify_token="scripted",
            api_base=_NOWHERE,
            download=from_memory,
        )
        # The list rows last offered to each customer (by number): a choice picked from a list comes
        # back as a `list_reply`, not as the `button_reply` of a reply button.
        self._rows: dict[str, dict[str, dict[str, Any]]] = {}

    async def inbound(self, inbound: Inbound) -> Inbound:
        from channels.whatsapp import script_event

        event, files = script_event(inbound, self.PHONE_NUMBER_ID)
        message = event.payload["message"]
        row = self._rows.get(str(message["from"]), {}).get(inbound.button or "")
        if message.get("type") == "interactive" and row is not None:
            message["interactive"] = {"type": "list_reply", "list_reply": dict(row)}
        self._media.files = files
        try:
            converted = await self.channel.to_inbound([_stored(event)])
        except RetryLater as error:
            raise ValueError(f"whatsapp: {error.reason}") from None
        finally:
            self._media.files = {}
        if converted is None:
            raise ValueError("the WhatsApp adapter made no turn of this step")
        return converted

    def delivered(self, outbound: Outbound) -> Delivered:
        from channels.whatsapp import buttons_of

        bodies = self.channel.render(outbound)
        parts: list[str] = []
        rows: dict[str, dict[str, Any]] = {}
        for body in bodies:
            _whatsapp_acceptable(body)
            if body["type"] == "text":
                parts.append(str(body["text"]["body"]))
                continue
            interactive = body["interactive"]
            parts.append(str(interactive["body"]["text"]))
            if interactive["type"] == "list":
                rows |= {row["id"]: row for section in interactive["action"]["sections"] for row in section["rows"]}
        if outbound.buttons and bodies:
            self._rows[str(bodies[-1]["to"])] = rows  # newer buttons replace what was offered before
        return Delivered(tuple(parts), tuple(str(payload) for body in bodies for payload in buttons_of(body)))

    async def aclose(self) -> None:
        await self.channel.stop()


def script_codecs() -> dict[str, ChannelCodec]:
    """A codec for each channel whose adapter is installed, by channel name."""
    codecs: dict[str, ChannelCodec] = {}
    try:
        codecs["telegram"] = TelegramCodec()
    except ImportError:  # python-telegram-bot missing: telegram scripts run against the core only
        pass
    try:
        codecs["whatsapp"] = WhatsAppCodec()
    except ImportError:
        pass
    return codecs


async def close_codecs(codecs: Mapping[str, ChannelCodec]) -> None:
    for codec in codecs.values():
        if isinstance(codec, TelegramCodec | WhatsAppCodec):
            await codec.aclose()


# -- what the platforms would refuse --------------------------------------------------------------
# The adapters are meant to render within these limits; a scripted run checks that they did, as the
# platform would when the request arrived.


def _telegram_acceptable(body: Mapping[str, Any]) -> None:
    from channels.telegram import MAX_CALLBACK_BYTES, MAX_TEXT

    text = str(body.get("text") or "")
    if not text.strip():
        raise ValueError("Telegram refuses an empty message text")
    units = len(text.encode("utf-16-le")) // 2
    if units > MAX_TEXT:
        raise ValueError(f"Telegram refuses a text of {units} UTF-16 units (at most {MAX_TEXT})")
    for row in (body.get("reply_markup") or {}).get("inline_keyboard", []):
        for cell in row:
            data = str(cell.get("callback_data") or "")
            if not 1 <= len(data.encode()) <= MAX_CALLBACK_BYTES:
                raise ValueError(f"Telegram refuses callback data of {len(data.encode())} bytes: {data!r}")
            if not str(cell.get("text") or "").strip():
                raise ValueError(f"Telegram refuses a button without a label ({data!r})")


def _whatsapp_acceptable(body: Mapping[str, Any]) -> None:
    from channels import whatsapp as wa

    if body.get("type") == "text":
        text = str(body["text"]["body"])
        if not text.strip() or len(text) > wa.MAX_TEXT_CHARS:
            raise ValueError(f"Graph refuses a text body of {len(text)} characters (1 to {wa.MAX_TEXT_CHARS})")
        return
    interactive = body["interactive"]
    prompt = str(interactive["body"]["text"])
    if not prompt.strip() or len(prompt) > wa.MAX_INTERACTIVE_BODY_CHARS:
        raise ValueError(f"Graph refuses an interactive body of {len(prompt)} characters")
    action = interactive["action"]
    if interactive["type"] == "button":
        buttons = action["buttons"]
        ids = [b["reply"]["id"] for b in buttons]
        titles = [b["reply"]["title"] for b in buttons]
        if not 1 <= len(buttons) <= wa.MAX_REPLY_BUTTONS:
            raise ValueError(f"Graph refuses {len(buttons)} reply buttons (1 to {wa.MAX_REPLY_BUTTONS})")
        _titled(titles, wa.MAX_BUTTON_TITLE_CHARS, "button title")
    else:
        rows = [row for section in action["sections"] for row in section["rows"]]
        ids = [row["id"] for row in rows]
        if not 1 <= len(rows) <= wa.MAX_LIST_ROWS:
            raise ValueError(f"Graph refuses a list of {len(rows)} rows (1 to {wa.MAX_LIST_ROWS})")
        _titled([row["title"] for row in rows], wa.MAX_ROW_TITLE_CHARS, "row title")
        if any(len(row.get("description", "")) > wa.MAX_ROW_DESCRIPTION_CHARS for row in rows):
            raise ValueError(f"Graph refuses a row description over {wa.MAX_ROW_DESCRIPTION_CHARS} characters")
        if not 1 <= len(str(action["button"])) <= wa.MAX_LIST_BUTTON_CHARS:
            raise ValueError(f"Graph refuses a list button label of {len(str(action['button']))} characters")
    if len(set(ids)) != len(ids) or not all(ids):
        raise ValueError(f"Graph refuses empty or repeated choice ids: {ids}")


def _titled(titles: list[str], limit: int, what: str) -> None:
    for title in titles:
        if not title.strip() or len(title) > limit or "\n" in title:
            raise ValueError(f"Graph refuses the {what} {title!r} (1 to {limit} characters, one line)")
    if len(set(titles)) != len(titles):
        raise ValueError(f"Graph refuses repeated {what}s: {titles}")
