"""What one inbound message may hold, enforced before any work is done on it.

A message over these limits is cut down to size here (extra attachments dropped, an over-long
button payload or message id replaced), so no later step (regexes, language detection, the
store) ever sees unbounded input. Text longer than the shop's `max_input_chars` is refused by
the dialogue with `input_rejected`; it is cut here first, so a 1 MB message costs microseconds.
"""

from __future__ import annotations

import dataclasses
import hashlib

from bot.messages import Inbound

MAX_BUTTON_CHARS = 64  # longer than any payload the bot sends: such a button is unknown
MAX_MESSAGE_ID_CHARS = 128  # platform ids are far shorter; a longer one is hashed to this size
MAX_ATTACHMENTS = 10  # per message; an album larger than this keeps its first ten
TEXT_SLACK = 2  # text is cut at this many times max_input_chars (still rejected as too long)


def admit(inbound: Inbound, max_input_chars: int) -> Inbound:
    """The same message, within the limits above, its text valid Unicode."""
    changes: dict[str, object] = {}
    cut = max_input_chars * TEXT_SLACK + 1
    text = valid_unicode(inbound.text[:cut])
    if text != inbound.text:
        changes["text"] = text
    for name in ("button", "message_id", "locale_hint", "user_id", "conversation_id"):
        value = getattr(inbound, name)
        if value is not None and valid_unicode(value) != value:
            changes[name] = valid_unicode(value)
    inbound = dataclasses.replace(inbound, **changes) if changes else inbound  # type: ignore[arg-type]
    changes = {}
    if inbound.button is not None and len(inbound.button) > MAX_BUTTON_CHARS:
        changes["button"] = "?"  # unknown to every step: answered with button_expired
    if inbound.message_id is not None and len(inbound.message_id) > MAX_MESSAGE_ID_CHARS:
        changes["message_id"] = hashlib.blake2s(inbound.message_id.encode("utf-8", "replace")).hexdigest()
    if len(inbound.attachments) > MAX_ATTACHMENTS:
        changes["attachments"] = inbound.attachments[:MAX_ATTACHMENTS]
    return dataclasses.replace(inbound, **changes) if changes else inbound  # type: ignore[arg-type]


def valid_unicode(text: str) -> str:
    """Lone surrogates (from undecodable bytes) become U+FFFD; paired ones become their character."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text
