"""WhatsApp Cloud API as a customer channel: signed webhooks in, Graph message bodies out.

    GET  /webhooks/whatsapp -> verify_subscription(query)       Meta's hub.challenge handshake
    POST /webhooks/whatsapp -> verify(headers, raw body) -> split(body) -> [ChannelEvent]
    inbox worker            -> to_inbound(events)                media fetched from Graph with the token
    delivery queue          -> send(outbound)                    POST /{version}/{phone_number_id}/messages

WhatsApp vouches for the sender's phone number, so every Inbound carries it as `verified_phone`.
Phone numbers and message text are never logged: they are the customer's personal data.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import logging
import os
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx

from bot.messages import Attachment, Button, Inbound, Outbound
from channels.base import ChannelEvent, Pacing, RetryLater, Sent, Undeliverable

log = logging.getLogger(__name__)

DEFAULT_API_BASE = "https://graph.facebook.com"
DEFAULT_API_VERSION = "v23.0"
TIMEOUT_SECONDS = 10.0

# Graph's limits on what it accepts (requests over them fail with error 131009 or 100).
MAX_TEXT_CHARS = 4096
MAX_INTERACTIVE_BODY_CHARS = 1024
MAX_REPLY_BUTTONS = 3
MAX_BUTTON_TITLE_CHARS = 20
MAX_LIST_ROWS = 10
MAX_ROW_TITLE_CHARS = 24
MAX_ROW_DESCRIPTION_CHARS = 72
MAX_LIST_BUTTON_CHARS = 20
MAX_MEDIA_BYTES = 10 * 1024 * 1024  # evidence photos are far smaller; the core refuses larger ones anyway

REENGAGEMENT_CODE = 131047
WINDOW_REASON = (
    "outside WhatsApp's 24-hour customer-service window: only a template message can reach this customer now"
)
# Graph reports throttling with HTTP 400 as often as with 429, so the codes count, not only the status:
# API-level call limits (4, 17, 32, 613, 80007), Cloud API throughput (130429), pair rate limit (131056).
_RATE_LIMIT_CODES = frozenset({4, 17, 32, 613, 80007, 130429, 131056})
# Unknown error, temporarily unavailable, something went wrong, service unavailable (x2): Graph says retry.
_TRANSIENT_CODES = frozenset({1, 2, 131000, 131016, 133004})
RATE_LIMIT_RETRY_SECONDS = 6.0  # the pair rate limit's window: one message per 6 s to one user after a burst
SERVER_RETRY_SECONDS = 2.0
MAX_RETRY_AFTER_SECONDS = 3600.0

# Not something the customer wrote to us: answering these would be noise ("I can't read that" to an emoji
# reaction, to "the customer changed number", to a chat merely opened).
_IGNORED_TYPES = frozenset({"reaction", "system", "request_welcome"})
_MEDIA_KINDS = {"image": "photo", "document": "document"}  # fetched; other media are answered as unsupported

# Graph requires a label on a list's button and a body on every interactive message, and an Outbound
# carries neither when its text is too long or empty: these platform words fill in, per language
# (English for any other). (list button label, prompt)
_CHOOSE: dict[str, tuple[str, str]] = {
    "en": ("Choose", "Please choose an option."),
    "zh": ("选择", "请选择一项。"),
    "ja": ("選択", "以下からお選びください。"),
    "ko": ("선택", "아래에서 선택해 주세요."),
    "es": ("Elegir", "Elija una opción."),
    "pt": ("Escolher", "Escolha uma opção."),
    "fr": ("Choisir", "Choisissez une option."),
    "de": ("Auswählen", "Bitte wählen Sie eine Option."),
    "it": ("Scegli", "Scegli un'opzione."),
    "ru": ("Выбрать", "Выберите вариант."),
    "ar": ("اختر", "يرجى اختيار أحد الخيارات."),
    "th": ("เลือก", "โปรดเลือกตัวเลือก"),
}

Download = Callable[[str], Awaitable[tuple[bytes, str]]]


class WhatsAppChannel:
    """`channels.base.Channel` over the WhatsApp Cloud API (Graph), one httpx client for every call.

    Args:
        access_token: the system user's token (bearer) for sends and media.
        phone_number_id: the business number's Graph id; webhooks for other numbers are ignored.
        app_secret: signs webhook POSTs (`X-Hub-Signature-256`).
        verify_token: what Meta's subscription GET must present.
        api_base: Graph's address; unset: `WHATSAPP_API_BASE`, else https://graph.facebook.com.
        api_version: the Graph version in every path.
        download: media by id, instead of Graph (scripted tests): `await download(media_id)` gives
            `(bytes, mime)`.
    """

    name = "whatsapp"
    # Cloud API lets a number send 80 messages/s by default, shared by every process using it (agents'
    # replies, templates, another bot process): 20/s each leaves room. Per user, Meta allows a short
    # burst, then one message every 6 s (error 131056, retried); a turn's two or three replies a second
    # apart stay in order and within the burst.
    pacing = Pacing(per_chat_seconds=1.0, overall_per_second=20.0)
    reply_window_seconds: float | None = 24 * 3600

    def __init__(
        self,
        *,
        access_token: str,
        phone_number_id: str,
        app_secret: str,
        verify_token: str,
        api_base: str | None = None,
        api_version: str = DEFAULT_API_VERSION,
        download: Download | None = None,
    ) -> None:
        self.phone_number_id = phone_number_id
        self.api_base = (api_base or os.environ.get("WHATSAPP_API_BASE") or DEFAULT_API_BASE).rstrip("/")
        self.api_version = api_version
        self._token = access_token
        self._app_secret = app_secret.encode()
        # The key's pads, computed once: a copy per webhook costs a third less than hmac.digest.
        self._signer = hmac.new(self._app_secret, digestmod=hashlib.sha256)
        self._verify_token = verify_token.encode()
        self._download = download
        self._client = self._new_client()
        # Parts of a long message already accepted, so a retry after a later part failed does not send
        # them twice (best effort: kept in this process only, a few minutes).
        self._progress: OrderedDict[str, tuple[float, int, list[str]]] = OrderedDict()
        # httpx logs each request's URL at INFO; media URLs are signed links to a customer's photos.
        httpx_log = logging.getLogger("httpx")
        if httpx_log.level < logging.WARNING:
            httpx_log.setLevel(logging.WARNING)

    def _new_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            timeout=httpx.Timeout(TIMEOUT_SECONDS),
            headers={"Authorization": f"Bearer {self._token}"},
            follow_redirects=False,
        )

    @property
    def messages_url(self) -> str:
        return f"{self.api_base}/{self.api_version}/{self.phone_number_id}/messages"

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Nothing to register: the webhook URL is set in Meta's app dashboard."""
        if self._client.is_closed:
            self._client = self._new_client()

    async def stop(self) -> None:
        await self._client.aclose()

    # --- webhooks ----------------------------------------------------------------------------

    def verify_subscription(self, query: Mapping[str, str]) -> str | None:
        """Meta's subscription GET: `hub.challenge` to echo when the mode is `subscribe` and
        `hub.verify_token` is ours (compared in constant time); None otherwise."""
        if query.get("hub.mode") != "subscribe" or not self._verify_token:
            return None
        given = (query.get("hub.verify_token") or "").encode()
        if not hmac.compare_digest(given, self._verify_token):
            return None
        return query.get("hub.challenge") or None

    def verify(self, headers: Mapping[str, str], body: bytes) -> bool:
        """Whether `X-Hub-Signature-256` is `sha256=` and the HMAC-SHA256 of the raw body with the app secret."""
        if not self._app_secret:
            return False  # an HMAC with an empty key is one anybody can make
        signature = headers.get("x-hub-signature-256") or headers.get("X-Hub-Signature-256")
        if signature is None:  # a plain mapping in another case: look through it (a server's headers are case-free)
            signature = next((value for key, value in headers.items() if key.lower() == "x-hub-signature-256"), None)
        if not signature or not signature.startswith("sha256="):
            return False
        signer = self._signer.copy()
        signer.update(body)
        expected = b"sha256=" + signer.hexdigest().encode()
        return hmac.compare_digest(expected, signature.strip().lower().encode("utf-8", "replace"))

    def split(self, body: Mapping[str, Any], received_at: float) -> list[ChannelEvent]:
        """One event per customer message to our number; statuses, other numbers and reactions dropped."""
        return split_notification(body, self.phone_number_id, received_at)

    # --- inbound -----------------------------------------------------------------------------

    async def to_inbound(self, events: list[ChannelEvent]) -> Inbound | None:
        """One turn from the events (WhatsApp sends one item per message, so usually one event).

        Photos and documents are fetched (Graph media URL, then the bytes, both with the token);
        raises RetryLater when Graph cannot give them right now, so the inbox tries again."""
        if not events:
            return None
        first = events[0]
        sender = str(first.payload.get("message", {}).get("from", ""))
        texts: list[str] = []
        attachments: list[Attachment] = []
        button: str | None = None
        for event in events:
            message = _unwrap(event.payload.get("message") or {})
            kind = str(message.get("type", ""))
            content = _dict(message.get(kind))
            if kind == "text":
                texts.append(str(content.get("body", "")))
            elif kind == "interactive" and content.get("type") in ("button_reply", "list_reply"):
                button = str(_dict(content.get(str(content["type"]))).get("id", "")) or button
            elif kind == "button" and (content.get("payload") or content.get("text")):
                # A template's quick-reply button: its payload, or its text when the template set none.
                if content.get("payload"):
                    button = str(content["payload"])
                else:
                    texts.append(str(content["text"]))
            elif kind in _MEDIA_KINDS and content.get("id"):
                attachments.append(await self._media(str(content["id"]), _MEDIA_KINDS[kind], content))
                if content.get("caption"):
                    texts.append(str(content["caption"]))
            else:
                # Audio, video, stickers, locations, contacts...: no bytes fetched; the core answers
                # an attachment it cannot use as unsupported.
                attachments.append(Attachment(kind=kind or "unsupported", mime=str(content.get("mime_type", ""))))
        return Inbound(
            channel=self.name,
            conversation_id=first.conversation_id,
            user_id=sender,
            text="\n".join(t for t in texts if t),
            attachments=tuple(attachments),
            button=button,
            locale_hint=None,  # WhatsApp says nothing about the user's language
            message_id=first.event_id,
            received_at=_moment(first.payload.get("message", {}).get("timestamp"), first.received_at),
            verified_phone=_e164(sender),
        )

    async def _media(self, media_id: str, kind: str, content: Mapping[str, Any]) -> Attachment:
        filename = str(content.get("filename", ""))
        declared_mime = str(content.get("mime_type", ""))
        if self._download is not None:
            data, mime = await self._download(media_id)
            if len(data) > MAX_MEDIA_BYTES:
                return Attachment(kind, b"", mime, len(data), filename)
            return Attachment(kind, data, mime or declared_mime, len(data), filename)
        response = await self._call("GET", f"{self.api_base}/{self.api_version}/{media_id}")
        info = _json(response)
        url = info.get("url") if response.is_success else None
        if not isinstance(url, str) or not url:
            # Gone or never ours (Graph keeps media 30 days): the core says it is not a usable photo.
            log.warning("whatsapp media unavailable: HTTP %d, code %s", response.status_code, _error_code(info))
            return Attachment(kind, b"", declared_mime, 0, filename)
        mime = str(info.get("mime_type") or declared_mime)
        size = _int(info.get("file_size"))  # Graph writes it as a number or as a string
        if size > MAX_MEDIA_BYTES:
            return Attachment(kind, b"", mime, size, filename)
        fetched, too_large = await self._fetch_bytes(url)
        if too_large:
            return Attachment(kind, b"", mime, max(size, MAX_MEDIA_BYTES + 1), filename)
        if fetched is None:
            return Attachment(kind, b"", mime, size, filename)
        return Attachment(kind, fetched, mime, len(fetched), filename)

    async def _fetch_bytes(self, url: str) -> tuple[bytes | None, bool]:
        """The media bytes (with the token, as Graph requires), stopped past the limit: (data, too large)."""
        try:
            async with self._client.stream("GET", url) as response:
                if not response.is_success:
                    await response.aread()
                    self._raise_if_transient(response, _json(response))
                    log.warning("whatsapp media download refused: HTTP %d", response.status_code)
                    return None, False
                declared = _int(response.headers.get("content-length"))
                if declared > MAX_MEDIA_BYTES:
                    return None, True
                chunks, read = [], 0
                async for chunk in response.aiter_bytes():
                    read += len(chunk)
                    if read > MAX_MEDIA_BYTES:
                        return None, True
                    chunks.append(chunk)
                return b"".join(chunks), False
        except httpx.HTTPError as error:
            raise RetryLater(SERVER_RETRY_SECONDS, f"WhatsApp media unreachable: {type(error).__name__}") from None

    # --- outbound ----------------------------------------------------------------------------

    def render(self, outbound: Outbound) -> list[dict[str, Any]]:
        """Graph message bodies for one message, in order: text (split at 4,096 characters); with
        buttons, reply buttons (up to 3) or a list (more), after the text when it is too long to be
        their body (1,024 characters)."""
        return render_message(recipient(outbound.conversation_id), outbound.text, outbound.buttons, outbound.language)

    async def send(self, outbound: Outbound) -> Sent:
        """Send every part of one message; the wamids of the parts Graph accepted.

        Raises RetryLater (429, 5xx, throttling codes, network) or Undeliverable (131047: outside the
        24-hour window; any other refusal, with Graph's message)."""
        bodies = self.render(outbound)
        key = _progress_key(outbound)
        done, ids = self._resume(key)
        for index in range(done, len(bodies)):
            try:
                response = await self._call("POST", self.messages_url, json=bodies[index])
                info = _json(response)
                if not response.is_success:
                    self._raise_for(response, info)
            except RetryLater:
                if index:
                    self._remember(key, index, ids)
                raise
            except Undeliverable:
                self._progress.pop(key, None)
                raise
            ids += [str(m["id"]) for m in info.get("messages", []) if isinstance(m, dict) and m.get("id")]
        self._progress.pop(key, None)
        return Sent(platform_ids=ids)

    def _resume(self, key: str) -> tuple[int, list[str]]:
        now = time.monotonic()
        for stale in [k for k, (at, _, _) in self._progress.items() if now - at > _PROGRESS_SECONDS]:
            del self._progress[stale]
        _, done, ids = self._progress.get(key, (now, 0, []))
        return done, list(ids)

    def _remember(self, key: str, done: int, ids: list[str]) -> None:
        self._progress[key] = (time.monotonic(), done, list(ids))
        self._progress.move_to_end(key)
        while len(self._progress) > _PROGRESS_ENTRIES:
            self._progress.popitem(last=False)

    # --- HTTP --------------------------------------------------------------------------------

    async def _call(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._client.request(method, url, **kwargs)
        except httpx.HTTPError as error:  # connect, read, timeout...: nothing was (surely) done
            raise RetryLater(SERVER_RETRY_SECONDS, f"WhatsApp unreachable: {type(error).__name__}") from None
        if not response.is_success:
            self._raise_if_transient(response, _json(response))
        return response

    def _raise_if_transient(self, response: httpx.Response, info: Mapping[str, Any]) -> None:
        error = _dict(info.get("error"))
        code = _error_code(info)
        status = response.status_code
        wait = retry_after(response.headers.get("retry-after"))
        if status == 429 or code in _RATE_LIMIT_CODES:
            raise RetryLater(wait or RATE_LIMIT_RETRY_SECONDS, f"WhatsApp rate limit (HTTP {status}, code {code})")
        if status >= 500 or code in _TRANSIENT_CODES or error.get("is_transient") is True:
            raise RetryLater(wait or SERVER_RETRY_SECONDS, f"WhatsApp failed for now (HTTP {status}, code {code})")

    def _raise_for(self, response: httpx.Response, info: Mapping[str, Any]) -> None:
        """A refusal for good (transient ones were raised by `_call`)."""
        code = _error_code(info)
        if code == REENGAGEMENT_CODE:
            raise Undeliverable(WINDOW_REASON)
        error = _dict(info.get("error"))
        message = str(error.get("message") or "no error message")
        details = _dict(error.get("error_data")).get("details")
        if details:
            message += f" ({details})"
        # Graph does not echo the token, but a proxy's error page might: never let it reach a log.
        message = message.replace(self._token, "<token>") if self._token else message
        raise Undeliverable(f"WhatsApp refused the message (HTTP {response.status_code}, code {code}): {message}")


_PROGRESS_SECONDS = 600.0
_PROGRESS_ENTRIES = 1000


# --- webhook bodies (pure) ---------------------------------------------------------------------


def split_notification(body: Mapping[str, Any], phone_number_id: str, received_at: float) -> list[ChannelEvent]:
    """The customer messages to `phone_number_id` in one webhook body, as inbox events.

    One event per `entry[].changes[].value.messages[]` of field `messages`, de-duplicated by wamid;
    its payload is `{"message": <the message>, "profile_name": <the contact's name, when given>}`."""
    if body.get("object") != "whatsapp_business_account":
        return []
    events: list[ChannelEvent] = []
    seen: set[str] = set()
    for entry in _dicts(body.get("entry")):
        for change in _dicts(entry.get("changes")):
            value = change.get("value")
            if change.get("field") != "messages" or not isinstance(value, dict):
                continue
            metadata = _dict(value.get("metadata"))
            if str(metadata.get("phone_number_id", "")) != phone_number_id:
                continue  # another business number on the same app: not ours to answer
            names = {
                str(contact.get("wa_id")): _dict(contact.get("profile")).get("name")
                for contact in _dicts(value.get("contacts"))
            }
            for message in _dicts(value.get("messages")):  # `statuses` are receipts of ours, never read
                sender, wamid = message.get("from"), message.get("id")
                if not isinstance(sender, str) or not sender or not isinstance(wamid, str) or not wamid:
                    continue
                if message.get("type") in _IGNORED_TYPES or wamid in seen:
                    continue
                seen.add(wamid)
                payload: dict[str, Any] = {"message": message}  # the parsed body is ours: no copy needed
                name = names.get(sender)
                if isinstance(name, str) and name:
                    payload["profile_name"] = name
                events.append(
                    ChannelEvent(
                        channel=WhatsAppChannel.name,
                        event_id=wamid,
                        conversation_id=f"whatsapp:{sender}",
                        payload=payload,
                        received_at=received_at,
                    )
                )
    return events


def _unwrap(message: Mapping[str, Any]) -> Mapping[str, Any]:
    """An edited message reads as its new content (a corrected order number counts)."""
    if message.get("type") == "edit" and isinstance(message.get("edit"), dict):
        inner = message["edit"].get("message")
        if isinstance(inner, dict):
            return inner
    return message


# --- rendering (pure) ------------------------------------------------------------------------


def recipient(conversation_id: str) -> str:
    """The `to` of a conversation: `whatsapp:819012345678` -> `819012345678` (a `+` and spaces dropped)."""
    _, _, who = conversation_id.partition(":")
    who = who or conversation_id
    return re.sub(r"\D", "", who) if re.fullmatch(r"[+\d\s().-]+", who) else who


def render_message(to: str, text: str, buttons: Iterable[Button], language: str) -> list[dict[str, Any]]:
    """Graph bodies for `text` with `buttons` to `to` (see `WhatsAppChannel.render`)."""
    unique: dict[str, Button] = {}
    for button in buttons:
        unique.setdefault(button.payload, button)  # Graph refuses repeated ids
    choices = list(unique.values())
    if not choices:
        return [_text_body(to, part) for part in chunks(text, MAX_TEXT_CHARS)]
    head, prompt = _prompt(text, language)
    bodies = [_text_body(to, part) for part in chunks(head, MAX_TEXT_CHARS)]
    if len(choices) <= MAX_REPLY_BUTTONS:
        titles = _titles([b.label or b.payload for b in choices], MAX_BUTTON_TITLE_CHARS)
        action = {
            "buttons": [
                {"type": "reply", "reply": {"id": b.payload, "title": title}}
                for b, title in zip(choices, titles, strict=True)
            ]
        }
        return [*bodies, _interactive(to, "button", prompt, action)]
    # A list holds ten rows; more choices than that (none in the shipped flows) go in further lists.
    label = _choose(language)[0][:MAX_LIST_BUTTON_CHARS]
    for start in range(0, len(choices), MAX_LIST_ROWS):
        group = choices[start : start + MAX_LIST_ROWS]
        titles = _titles([b.label or b.payload for b in group], MAX_ROW_TITLE_CHARS)
        rows = []
        for button, title in zip(group, titles, strict=True):
            row = {"id": button.payload, "title": title}
            full = " ".join((button.label or "").split())
            if full and full != title:  # the whole label still reaches the customer, under the title
                row["description"] = shorten(full, MAX_ROW_DESCRIPTION_CHARS)
            rows.append(row)
        body_text = prompt if start == 0 else _choose(language)[1]
        bodies.append(_interactive(to, "list", body_text, {"button": label, "sections": [{"rows": rows}]}))
    return bodies


def _text_body(to: str, text: str) -> dict[str, Any]:
    return {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": "text",
        "text": {"preview_url": False, "body": text},
    }


def _interactive(to: str, kind: str, body: str, action: dict[str, Any]) -> dict[str, Any]:
    return {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": "interactive",
        "interactive": {"type": kind, "body": {"text": body}, "action": action},
    }


def _choose(language: str) -> tuple[str, str]:
    return _CHOOSE.get(language.split("-")[0].lower(), _CHOOSE["en"])


_SENTENCE_END = re.compile(r"[.!?؟](?:\s+)|[。！？]\s*")


def _prompt(text: str, language: str) -> tuple[str, str]:
    """(text to send first, the buttons' body). The question that goes with the buttons usually ends
    the message, so a text too long for an interactive body keeps its last line (or sentence) there."""
    text = text.strip()
    if not text:
        return "", _choose(language)[1]
    if len(text) <= MAX_INTERACTIVE_BODY_CHARS:
        return "", text
    cuts = [text.rfind("\n") + 1]
    cuts += [m.end() for m in _SENTENCE_END.finditer(text) if m.end() < len(text)][-1:]
    for cut in cuts:
        head, tail = text[:cut].strip(), text[cut:].strip()
        if head and tail and len(tail) <= MAX_INTERACTIVE_BODY_CHARS:
            return head, tail
    return text, _choose(language)[1]


def chunks(text: str, limit: int) -> list[str]:
    """`text` in pieces of at most `limit` characters, cut at a paragraph, line, sentence or word
    when one falls in the piece's second half; empty text gives no piece (Graph refuses empty bodies)."""
    text = text.strip()
    pieces: list[str] = []
    while len(text) > limit:
        window = text[:limit]
        cut = limit
        for separator in ("\n\n", "\n", "。", ". ", " "):
            at = window.rfind(separator)
            if at >= limit // 2:
                cut = at + len(separator)
                break
        piece = text[:cut].rstrip()
        if piece:
            pieces.append(piece)
        text = text[cut:].lstrip()
    if text:
        pieces.append(text)
    return pieces


def shorten(label: str, limit: int) -> str:
    """A label in at most `limit` characters: whole words and an ellipsis when it is longer
    (a word cut only when the first word alone is too long, as in unspaced Japanese or Chinese)."""
    label = " ".join(label.split())  # Graph refuses line breaks in titles
    if len(label) <= limit:
        return label
    cut = label[: limit - 1]
    space = cut.rfind(" ")
    # At a word's end when that keeps half the room; past that a cut word says more than none.
    if label[limit - 1] != " " and space >= limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:-–—/") + "…"


def _titles(labels: list[str], limit: int) -> list[str]:
    """Shortened labels, unique as Graph requires (two long labels may shorten alike)."""
    titles: list[str] = []
    for label in labels:
        title = shorten(label, limit) or "?"
        n = 2
        while title in titles:
            suffix = f" {n}"
            title = shorten(label, limit - len(suffix)) + suffix
            n += 1
        titles.append(title)
    return titles


def buttons_of(body: Mapping[str, Any]) -> list[str]:
    """The payloads a rendered body offers: reply button ids or list row ids (none for text)."""
    interactive = body.get("interactive")
    if body.get("type") != "interactive" or not isinstance(interactive, dict):
        return []
    action = interactive.get("action") or {}
    if interactive.get("type") == "button":
        return [str(b["reply"]["id"]) for b in action.get("buttons", [])]
    if interactive.get("type") == "list":
        return [str(row["id"]) for section in action.get("sections", []) for row in section.get("rows", [])]
    return []


# --- scripted tests ----------------------------------------------------------------------------


def script_event(inbound: Inbound, phone_number_id: str) -> tuple[ChannelEvent, dict[str, tuple[bytes, str]]]:
    """A neutral Inbound (text, button, one photo or document) as the webhook event WhatsApp would
    deliver to `phone_number_id`, and the media it refers to by id (for the channel's `download`).

    The sender is `inbound.user_id` (a phone number); the wamid is derived from the conversation and
    `message_id`, so a repeated message id is a repeated delivery."""
    sender = re.sub(r"\D", "", inbound.user_id)
    if not sender:
        raise ValueError(f"a WhatsApp customer is a phone number, not {inbound.user_id!r}")
    if len(inbound.attachments) > 1:
        raise ValueError("a WhatsApp message carries one attachment")
    seed = f"{inbound.conversation_id}\x00{inbound.message_id}".encode()
    if inbound.message_id is None:
        seed = secrets.token_bytes(16)
    wamid = _wamid(seed)
    moment = inbound.received_at.timestamp() if inbound.received_at else time.time()
    message: dict[str, Any] = {"from": sender, "id": wamid, "timestamp": str(int(moment))}
    media: dict[str, tuple[bytes, str]] = {}
    if inbound.attachments:
        attachment = inbound.attachments[0]
        kind = {"photo": "image", "document": "document"}.get(attachment.kind)
        if kind is None:
            raise ValueError(f"scripted WhatsApp attachments are photos or documents, not {attachment.kind!r}")
        media_id = str(int.from_bytes(hashlib.sha256(wamid.encode()).digest()[:7]))
        mime = attachment.mime or ("image/jpeg" if kind == "image" else "application/octet-stream")
        media[media_id] = (attachment.data, mime)
        content: dict[str, Any] = {
            "mime_type": mime,
            "sha256": base64.b64encode(hashlib.sha256(attachment.data).digest()).decode(),
            "id": media_id,
        }
        if kind == "document":
            content["filename"] = attachment.filename or "document"
        if inbound.text:
            content["caption"] = inbound.text
        message |= {"type": kind, kind: content}
    elif inbound.button is not None:
        reply = {"id": inbound.button, "title": shorten(inbound.button, MAX_BUTTON_TITLE_CHARS)}
        message |= {
            "context": {"from": phone_number_id, "id": _wamid(seed + b"\x00asked")},  # the message with the button
            "type": "interactive",
            "interactive": {"type": "button_reply", "button_reply": reply},
        }
    else:
        message |= {"type": "text", "text": {"body": inbound.text}}
    body = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "0",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {"display_phone_number": "15550000000", "phone_number_id": phone_number_id},
                            "contacts": [{"profile": {"name": "Customer"}, "wa_id": sender}],
                            "messages": [message],
                        },
                    }
                ],
            }
        ],
    }
    (event,) = split_notification(body, phone_number_id, moment)
    return event, media


# --- small readers -----------------------------------------------------------------------------


def _wamid(seed: bytes) -> str:
    """A message id shaped like WhatsApp's (`wamid.` and base64), the same for the same seed."""
    return "wamid." + base64.b64encode(hashlib.sha256(seed).digest()[:30]).decode()


def retry_after(value: str | None) -> float | None:
    """Seconds from a `Retry-After` header (seconds or an HTTP date), within an hour; None when absent."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def _progress_key(outbound: Outbound) -> str:
    parts = [
        outbound.conversation_id,
        outbound.key,
        outbound.text,
        *(f"{b.payload}\x01{b.label}" for b in outbound.buttons),
    ]
    return hashlib.sha256("\x00".join(parts).encode("utf-8", "replace")).hexdigest()


def _e164(sender: str) -> str | None:
    """WhatsApp ids are the number's digits with the country code: the platform vouches for `+` them."""
    return "+" + sender if sender.isdigit() and 6 <= len(sender) <= 15 else None


def _moment(timestamp: Any, fallback: float) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(str(timestamp)), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return datetime.fromtimestamp(fallback, UTC) if fallback else None


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _error_code(info: Mapping[str, Any]) -> int | None:
    error = info.get("error")
    if isinstance(error, dict):
        code = error.get("code")
        return code if isinstance(code, int) else _int(code) or None
    return None


def _int(value: Any) -> int:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return 0


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []
