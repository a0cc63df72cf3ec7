"""The Telegram channel: Bot API updates in, plain-text messages with inline keyboards out.

python-telegram-bot is the transport only (`telegram.Bot` for the calls, `Update.de_json` for
parsing); no Application, handlers or persistence: the server's durable inbox and delivery queue
do that work. Updates arrive by webhook (`TELEGRAM_WEBHOOK_URL` set, verified by the secret
token) or by long polling (`poll`), and both give the same events.

`script_event` and `buttons_of` let scripted dialogues run through this adapter: a neutral
Inbound becomes a realistic update (and its media), and a rendered body gives back its buttons.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import logging
import mimetypes
import os
import re
import time
import warnings
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import telegram
from telegram import CallbackQuery, Chat, InlineKeyboardButton, InlineKeyboardMarkup, Message, Update
from telegram.error import BadRequest, ChatMigrated, Forbidden, NetworkError, RetryAfter, TelegramError, TimedOut
from telegram.warnings import PTBDeprecationWarning

from bot.contracts import CSAT_PREFIX
from bot.manager import conversation_tag
from bot.messages import Attachment, Button, Inbound, Outbound
from channels.base import ChannelEvent, Pacing, RetryLater, Sent, Undeliverable

log = logging.getLogger(__name__)

T = TypeVar("T")

NAME = "telegram"
DEFAULT_API_BASE = "https://api.telegram.org"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
ALLOWED_UPDATES = ("message", "callback_query")
MAX_TEXT = 4096  # UTF-16 code units per message, as Telegram counts them
MAX_CALLBACK_BYTES = 64
MAX_DOWNLOAD = 20 * 1024 * 1024  # bots download at most 20 MB through getFile
ROW_WIDTH = 2  # labels in other languages are long: two buttons a row stay readable on a phone
POLL_TIMEOUT = 25  # seconds a getUpdates long poll may wait on Telegram's side
READ_MARGIN = 10  # seconds more for the answer to a long poll to arrive
NETWORK_RETRY = 3.0  # seconds before sending again after a timeout, a 5xx or a lost connection
OTHER_RETRY = 30.0  # an unexpected refusal (bad token, conflict): not the message's fault, try much later
MAX_BACKOFF = 30.0
_SECRET_SHAPE = re.compile(r"[A-Za-z0-9_-]{1,256}")  # what setWebhook accepts as secret_token
# Media the core cannot use: passed on as attachments without bytes, so the customer gets an answer
# ("send a photo") rather than silence. `animation` first: Telegram also fills `document` for GIFs.
_OTHER_MEDIA = ("animation", "video", "video_note", "voice", "audio", "sticker")
_SENTENCE_END = re.compile(r"[.!?…](?=\s)|[。！？]")
_PARTIAL_KEPT = 256  # outbounds remembered as half sent (see `send`)


class TelegramChannel:
    """`channels.base.Channel` for Telegram (private chats with customers)."""

    name = NAME
    pacing = Pacing(per_chat_seconds=1.0, overall_per_second=30.0)
    reply_window_seconds: float | None = None  # a bot may write to a private chat at any time

    def __init__(
        self,
        token: str,
        *,
        api_base: str | None = None,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        download: Callable[[str], Awaitable[bytes]] | None = None,
    ) -> None:
        """`api_base` defaults to TELEGRAM_API_BASE, then https://api.telegram.org. `download`
        (file_id -> bytes) replaces getFile and the file download: scripted tests serve media from
        memory with it."""
        if webhook_url and not webhook_secret:
            raise ValueError("TELEGRAM_WEBHOOK_URL needs TELEGRAM_WEBHOOK_SECRET: no webhook without a secret")
        if webhook_secret is not None and not _SECRET_SHAPE.fullmatch(webhook_secret):
            raise ValueError("TELEGRAM_WEBHOOK_SECRET: 1-256 characters, only A-Z, a-z, 0-9, _ and -")
        base = (api_base or os.environ.get("TELEGRAM_API_BASE") or DEFAULT_API_BASE).rstrip("/")
        self.bot = telegram.Bot(token, base_url=f"{base}/bot", base_file_url=f"{base}/file/bot")
        self._webhook_url = webhook_url
        self._secret = webhook_secret
        self._download = download
        self._started = False
        self._partial: dict[Outbound, list[str]] = {}
        # httpx logs every request's URL at INFO, and Bot API URLs hold the bot token.
        logging.getLogger("httpx").setLevel(logging.WARNING)

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """getMe (a wrong token fails here), then register the webhook or clear it for polling."""
        await self.bot.initialize()
        if self._webhook_url:
            await self.bot.set_webhook(
                self._webhook_url, secret_token=self._secret, allowed_updates=list(ALLOWED_UPDATES)
            )
        else:
            await self.bot.delete_webhook()  # getUpdates answers 409 while a webhook is set
        self._started = True

    async def stop(self) -> None:
        self._started = False
        await self.bot.shutdown()

    # -- receiving ----------------------------------------------------------------------------

    def verify(self, headers: Mapping[str, str], body: bytes) -> bool:
        """Telegram sends the secret given to setWebhook in a header; without a secret configured
        nothing is accepted (anyone could post updates)."""
        if not self._secret:
            return False
        given = _header(headers, SECRET_HEADER)
        if given is None:
            return False
        return hmac.compare_digest(given.encode("utf-8", "replace"), self._secret.encode())

    def split(self, body: Mapping[str, Any], received_at: float) -> list[ChannelEvent]:
        """A webhook body is one update: one event when it is a customer's message or button press."""
        return _events(body, received_at)

    async def poll(self, sink: Callable[[list[ChannelEvent]], Awaitable[object]], stop: asyncio.Event) -> None:
        """Long polling until `stop` is set. Each batch goes to `sink` (the durable inbox) before
        the offset moves past it: an update is confirmed to Telegram only once it is stored, and a
        sink that fails gets the same updates again."""
        offset: int | None = None
        failures = 0
        while not stop.is_set():
            try:
                updates = await _unless_stopped(self._updates(offset, POLL_TIMEOUT), stop)
            except Exception as error:
                failures += 1
                delay = _poll_delay(error, failures)
                log.warning("telegram polling failed (%s), again in %.1fs", _describe(error), delay)
                await _pause(delay, stop)
                continue
            if updates is None:
                break
            events = [event for update in updates for event in _events(update, time.time())]
            try:
                if events:
                    await sink(events)
            except Exception as error:
                failures += 1
                delay = _backoff(failures)
                log.warning("polled updates not stored (%s), asking again in %.1fs", type(error).__name__, delay)
                await _pause(delay, stop)
                continue
            failures = 0
            ids = [update["update_id"] for update in updates if isinstance(update.get("update_id"), int)]
            if ids:
                offset = max(ids) + 1
        if offset is not None:
            # Telegram forgets updates only when asked for later ones: confirm, so a restart does not
            # fetch the last batch again (the inbox would drop it as duplicates anyway).
            try:
                await self._updates(offset, 0, limit=1)
            except TelegramError as error:
                log.info("could not confirm the last polled updates (%s)", _describe(error))

    async def _updates(self, offset: int | None, wait: int, limit: int = 100) -> list[dict[str, Any]]:
        """getUpdates as raw JSON, the same dicts a webhook gets. Bot.get_updates parses the whole
        batch at once: one update it cannot read would fail every poll (and be logged in full)."""
        params: dict[str, Any] = {"timeout": wait, "limit": limit, "allowed_updates": list(ALLOWED_UPDATES)}
        if offset is not None:
            params["offset"] = offset
        # Lower case: Bot API method names ignore case, and do_api_request warns for the names PTB
        # has a method of its own for.
        result = await self.bot.do_api_request("getupdates", api_kwargs=params, read_timeout=wait + READ_MARGIN)
        if not isinstance(result, list):
            raise TelegramError("getUpdates did not answer a list")
        return [update for update in result if isinstance(update, dict)]

    async def to_inbound(self, events: list[ChannelEvent]) -> Inbound | None:
        """One turn from one conversation's events (an album: all photos, the caption as text).
        Fetches photos; answers button presses. Raises RetryLater when a download fails for now."""
        parsed = [(event, update) for event in sorted(events, key=_event_order) if (update := _parse(event.payload))]
        if not parsed:
            return None
        texts: list[str] = []
        button: str | None = None
        user: telegram.User | None = None
        when: datetime | None = None
        messages: list[Message] = []
        queries: list[str] = []
        for _, update in parsed:
            if update.callback_query is not None:
                query = update.callback_query
                button = button if button is not None else query.data
                user = user or query.from_user
                queries.append(query.id)
            elif update.message is not None:
                message = update.message
                user = user or message.from_user
                when = when or message.date
                text = message.text or message.caption
                if text:
                    texts.append(text)
                messages.append(message)
        # The button's spinner stops once answered: before the turn, which may take a moment.
        await asyncio.gather(*(self._answer(query_id) for query_id in queries))
        fetched = await asyncio.gather(*(self._attachment(message) for message in messages))
        attachments = tuple(attachment for attachment in fetched if attachment is not None)
        first = parsed[0][0]
        if when is None:
            when = datetime.fromtimestamp(first.received_at, UTC) if first.received_at else datetime.now(UTC)
        return Inbound(
            channel=NAME,
            conversation_id=first.conversation_id,
            user_id=str(user.id) if user is not None else first.conversation_id.removeprefix(f"{NAME}:"),
            text="\n".join(texts),
            attachments=attachments,
            button=button,
            locale_hint=user.language_code if user is not None else None,
            message_id=",".join(event.event_id for event, _ in parsed),
            received_at=when,
        )

    async def _answer(self, query_id: str) -> None:
        # A channel never started (scripted runs) has no connection to answer with.
        if not self._started:
            return
        try:
            await self.bot.answer_callback_query(query_id)
        except TelegramError as error:  # best effort: an old query cannot be answered, the press still counts
            log.info("callback query not answered (%s)", _describe(error))

    async def _attachment(self, message: Message) -> Attachment | None:
        if message.photo:
            largest = max(message.photo, key=lambda size: size.width * size.height)
            return await self._fetched("photo", largest.file_id, largest.file_size, "image/jpeg", "")
        for kind in _OTHER_MEDIA:
            media = getattr(message, kind)
            if media is not None:
                return Attachment(kind, mime=getattr(media, "mime_type", None) or "", size=media.file_size or 0)
        document = message.document
        if document is None:
            return None
        mime, filename = document.mime_type or "", document.file_name or ""
        if mime.lower().startswith("image/"):  # a photo sent "as a file": uncompressed, still a photo
            return await self._fetched("photo", document.file_id, document.file_size, mime, filename)
        return Attachment("document", mime=mime, size=document.file_size or 0, filename=filename)

    async def _fetched(self, kind: str, file_id: str, declared: int | None, mime: str, filename: str) -> Attachment:
        """The file's bytes; over the 20 MB download limit, only its size (the core refuses it)."""
        if declared and declared > MAX_DOWNLOAD:
            return Attachment(kind, mime=mime, size=declared, filename=filename)
        try:
            data = await (self._download or self._get_file)(file_id)
        except BadRequest as error:  # gone or too big: nothing to fetch later either
            too_big = "too big" in error.message.lower()
            size = max(declared or 0, MAX_DOWNLOAD + 1) if too_big else declared or 0
            log.info("file not downloadable (%s)", error.message)
            return Attachment(kind, mime=mime, size=size, filename=filename)
        except TelegramError as error:
            raise _delivery_error(error) from error
        return Attachment(kind, data, mime, len(data), filename)

    async def _get_file(self, file_id: str) -> bytes:
        file = await self.bot.get_file(file_id)
        return bytes(await file.download_as_bytearray())

    # -- sending ------------------------------------------------------------------------------

    def render(self, outbound: Outbound) -> list[dict[str, Any]]:
        """sendMessage bodies: plain text (no parse_mode: nobody's text is read as markup), split
        under 4,096 characters at a paragraph, sentence or space; the keyboard on the last part."""
        chat_id = chat_id_of(outbound.conversation_id)
        bodies: list[dict[str, Any]] = [{"chat_id": chat_id, "text": part} for part in split_text(outbound.text)]
        if not bodies:
            log.warning("nothing to send: empty text conversation=%s key=%s", _tag(outbound), outbound.key)
            return []
        keyboard = _keyboard(outbound.buttons)
        if keyboard is not None:
            bodies[-1]["reply_markup"] = keyboard
        return bodies

    async def send(self, outbound: Outbound) -> Sent:
        """Send every part; the platform's message ids. A text split in parts that fails halfway
        resumes after the parts already delivered when the same outbound is sent again."""
        try:
            bodies = self.render(outbound)
        except ValueError as error:
            raise Undeliverable(str(error)) from error
        ids = self._partial.pop(outbound, [])
        for body in bodies[len(ids) :]:
            markup = body.get("reply_markup")
            try:
                message = await self.bot.send_message(
                    chat_id=body["chat_id"],
                    text=body["text"],
                    reply_markup=_markup(markup) if markup is not None else None,
                )
            except TelegramError as error:
                failure = _delivery_error(error)
                if ids and isinstance(failure, RetryLater):
                    self._remember_partial(outbound, ids)
                raise failure from error
            ids.append(str(message.message_id))
        return Sent(ids)

    def _remember_partial(self, outbound: Outbound, ids: list[str]) -> None:
        self._partial[outbound] = ids
        while len(self._partial) > _PARTIAL_KEPT:  # bounded: a message never retried is forgotten
            del self._partial[next(iter(self._partial))]


# -- events ---------------------------------------------------------------------------------------


def _events(body: Mapping[str, Any], received_at: float) -> list[ChannelEvent]:
    update = _parse(body)
    if update is None:
        return []
    conversation: int | None = None
    group: str | None = None
    if update.message is not None:
        message = update.message
        if _from_customer(message) and _has_content(message):
            conversation, group = message.chat.id, message.media_group_id
    elif update.callback_query is not None:
        conversation = _callback_chat(update.callback_query)
    # Anything else (edited messages, channel posts, membership changes...) is not a customer turn.
    if conversation is None:
        return []
    return [
        ChannelEvent(
            channel=NAME,
            event_id=str(update.update_id),
            conversation_id=f"{NAME}:{conversation}",
            payload=dict(body),
            group=group,
            received_at=received_at,
        )
    ]


def _parse(body: Mapping[str, Any]) -> Update | None:
    try:
        return Update.de_json(dict(body), None)
    except Exception as error:  # a malformed body is dropped, and its content never logged
        log.warning("telegram update not understood (%s)", type(error).__name__)
        return None


def _from_customer(message: Message) -> bool:
    # The bot serves customers one to one: in a group others would read order details and proofs.
    # Another bot is never a customer (and answering one could start an endless exchange).
    sender = message.from_user
    return message.chat.type == Chat.PRIVATE and sender is not None and not sender.is_bot


def _has_content(message: Message) -> bool:
    if message.text or message.photo or message.document:
        return True
    return any(getattr(message, kind) is not None for kind in _OTHER_MEDIA)


def _callback_chat(query: CallbackQuery) -> int | None:
    # Only presses on our keyboards in private chats; inline-mode buttons (no message) are not ours.
    if query.data is None or query.from_user.is_bot or query.message is None:
        return None
    if query.message.chat.type != Chat.PRIVATE:
        return None
    return query.message.chat.id


def _event_order(event: ChannelEvent) -> int:
    return int(event.event_id) if event.event_id.isdigit() else 0


# -- rendering ------------------------------------------------------------------------------------


def chat_id_of(conversation_id: str) -> int:
    """`telegram:12345` -> 12345; ValueError for anything else."""
    prefix, _, rest = conversation_id.partition(":")
    if prefix != NAME or not re.fullmatch(r"-?\d+", rest):
        raise ValueError("not a Telegram conversation id")
    return int(rest)


def split_text(text: str, limit: int = MAX_TEXT) -> list[str]:
    """Parts of at most `limit` UTF-16 units, cut at the last paragraph, line, sentence or space
    in the second half of a part (a hard cut only when there is none). Blank text: no parts."""
    parts: list[str] = []
    rest = text
    while _units(rest) > limit:
        window = rest[: _fitting(rest, limit)]
        cut = _boundary(window)
        part, rest = window[:cut].rstrip(), rest[cut:].lstrip()
        if part:
            parts.append(part)
    if rest.strip():
        parts.append(rest.rstrip())
    return parts


def _units(text: str) -> int:
    return len(text) + sum(1 for char in text if ord(char) > 0xFFFF)


def _fitting(text: str, limit: int) -> int:
    """How many characters of `text` fit in `limit` UTF-16 units."""
    used = 0
    for index, char in enumerate(text):
        used += 2 if ord(char) > 0xFFFF else 1
        if used > limit:
            return index
    return len(text)


def _boundary(window: str) -> int:
    floor = len(window) // 2  # an earlier cut would make needlessly many parts
    for separator in ("\n\n", "\n"):
        at = window.rfind(separator)
        if at >= floor:
            return at + len(separator)
    ends = [match.end() for match in _SENTENCE_END.finditer(window, floor)]
    if ends:
        return ends[-1]
    spaces = [match.end() for match in re.finditer(r"\s", window[floor:])]
    if spaces:
        return floor + spaces[-1]
    return len(window)


def _keyboard(buttons: tuple[Button, ...]) -> dict[str, Any] | None:
    cells = []
    for button in buttons:
        data = _callback_data(button.payload)
        if data:
            cells.append({"text": button.label or button.payload, "callback_data": data})
    if not cells:
        return None
    # The five CSAT stars read as one scale: one row (Telegram allows 8 buttons a row).
    width = len(cells) if all(cell["callback_data"].startswith(CSAT_PREFIX) for cell in cells) else ROW_WIDTH
    return {"inline_keyboard": [cells[start : start + width] for start in range(0, len(cells), width)]}


def _callback_data(payload: str) -> str:
    raw = payload.encode()
    if len(raw) <= MAX_CALLBACK_BYTES:
        return payload
    # Telegram refuses the whole message for one payload over 64 bytes: cut it (our payloads are short).
    log.warning("button payload over %d bytes cut", MAX_CALLBACK_BYTES)
    return raw[:MAX_CALLBACK_BYTES].decode("utf-8", "ignore")


def _markup(keyboard: Mapping[str, Any]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [
            [InlineKeyboardButton(cell["text"], callback_data=cell["callback_data"]) for cell in row]
            for row in keyboard["inline_keyboard"]
        ]
    )


def buttons_of(body: Mapping[str, Any]) -> list[str]:
    """The callback payloads of a rendered sendMessage body, row by row."""
    markup = body.get("reply_markup") or {}
    return [
        cell["callback_data"] for row in markup.get("inline_keyboard", []) for cell in row if "callback_data" in cell
    ]


# -- errors -------------------------------------------------------------------------------------


def _delivery_error(error: TelegramError) -> RetryLater | Undeliverable:
    # Order matters: BadRequest and TimedOut are NetworkErrors in python-telegram-bot.
    if isinstance(error, RetryAfter):
        return RetryLater(_retry_seconds(error), "telegram: too many requests")
    if isinstance(error, Forbidden | BadRequest | ChatMigrated):
        return Undeliverable(f"telegram: {error.message}")  # blocked, chat not found...: final
    if isinstance(error, TimedOut):
        return RetryLater(NETWORK_RETRY, "telegram: timed out")
    if isinstance(error, NetworkError):
        return RetryLater(NETWORK_RETRY, f"telegram: {error.message}")
    return RetryLater(OTHER_RETRY, f"telegram: {_describe(error)}")


def _retry_seconds(error: RetryAfter) -> float:
    with warnings.catch_warnings():  # PTB 22 warns that the int form will become a timedelta
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = error.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def _describe(error: BaseException) -> str:
    # Telegram's descriptions carry no customer data; other exceptions might, so only their type.
    if isinstance(error, TelegramError):
        return f"{type(error).__name__}: {error.message}"
    return type(error).__name__


def _poll_delay(error: Exception, failures: int) -> float:
    if isinstance(error, RetryAfter):
        return _retry_seconds(error)
    return _backoff(failures)


def _backoff(failures: int) -> float:
    return min(MAX_BACKOFF, 0.5 * 2 ** min(failures, 10))


async def _unless_stopped(work: Coroutine[Any, Any, T], stop: asyncio.Event) -> T | None:
    """`work`'s result, or None when `stop` is set first (the work is then cancelled)."""
    task = asyncio.ensure_future(work)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait((task, stopping), return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()  # the poller itself is cancelled: leave no request behind
        raise
    finally:
        stopping.cancel()
    if not task.done():
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        except Exception as error:  # the request failed while being dropped: nothing to report
            log.debug("poll ended with %s", type(error).__name__)
        return None
    return task.result()


async def _pause(seconds: float, stop: asyncio.Event) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        pass


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()  # a plain dict is case-sensitive; HTTP header names are not
    return next((v for k, v in headers.items() if k.lower() == lowered), None)


def _tag(outbound: Outbound) -> str:
    return conversation_tag(outbound.conversation_id)


# -- scripted dialogues ---------------------------------------------------------------------------


def script_event(inbound: Inbound, update_id: int) -> tuple[ChannelEvent, dict[str, bytes]]:
    """A realistically shaped update for a neutral Inbound (text, button, one photo or one
    document, locale hint), and the media bytes by file_id for `TelegramChannel(download=...)`.

    Telegram ids are numbers: a numeric `user_id` is kept, any other becomes a stable number, so
    take the conversation id from the returned event. One update carries one file.
    """
    if len(inbound.attachments) > 1:
        raise ValueError("one Telegram message carries one photo or document (an album is several updates)")
    user_number = _user_number(inbound.user_id)
    sent_at = inbound.received_at or datetime.now(UTC)
    date = int(sent_at.timestamp())
    user: dict[str, Any] = {"id": user_number, "is_bot": False, "first_name": "Customer"}
    if inbound.locale_hint:
        user["language_code"] = inbound.locale_hint
    chat = {"id": user_number, "first_name": "Customer", "type": "private"}
    media: dict[str, bytes] = {}
    update: dict[str, Any] = {"update_id": update_id}
    if inbound.button is not None:
        update["callback_query"] = {
            "id": str(10**18 + update_id),
            "from": user,
            "message": {
                "message_id": update_id,
                "from": {"id": 1, "is_bot": True, "first_name": "Shop", "username": "shop_bot"},
                "chat": chat,
                "date": date,
                "text": "…",
                "reply_markup": {"inline_keyboard": [[{"text": inbound.button, "callback_data": inbound.button}]]},
            },
            "chat_instance": str(-(10**18) - user_number),
            "data": inbound.button,
        }
    else:
        message: dict[str, Any] = {"message_id": update_id, "from": user, "chat": chat, "date": date}
        text_field = "caption" if inbound.attachments else "text"
        if inbound.text:
            message[text_field] = inbound.text
        elif not inbound.attachments:
            raise ValueError("an Inbound with no text, button or attachment is no Telegram message")
        for attachment in inbound.attachments:
            message.update(_scripted_file(attachment, update_id, media))
        update["message"] = message
    events = _events(update, float(date))
    assert len(events) == 1, "a scripted update is a customer's message"
    return events[0], media


def _user_number(user_id: str) -> int:
    if user_id.isdigit():
        return int(user_id)
    return 10**9 + int.from_bytes(hashlib.blake2s(user_id.encode(), digest_size=5).digest())


def _scripted_file(attachment: Attachment, update_id: int, media: dict[str, bytes]) -> dict[str, Any]:
    size = max(attachment.size, len(attachment.data))
    if attachment.kind == "photo":
        width, height = _dimensions(attachment.data)
        sizes = [(w, h) for w, h in (_scaled(width, height, 90), _scaled(width, height, 320)) if w < width]
        photo: list[dict[str, Any]] = []
        for index, (w, h) in enumerate([*sizes, (width, height)]):
            file_id = f"AgACAgIAAxkBAAI{update_id}p{index}"
            photo.append({"file_id": file_id, "file_unique_id": f"AQAD{update_id}p{index}", "width": w, "height": h})
        photo[-1]["file_size"] = size
        for smaller in photo[:-1]:
            smaller["file_size"] = max(1, size * smaller["width"] * smaller["height"] // (width * height))
        media[photo[-1]["file_id"]] = attachment.data  # only the largest: taking another would fail loudly
        return {"photo": photo}
    if attachment.kind == "document":
        filename = attachment.filename or "file"
        mime = attachment.mime or mimetypes.guess_type(filename)[0] or "application/octet-stream"
        file_id = f"BQACAgIAAxkBAAI{update_id}d"
        media[file_id] = attachment.data
        document = {
            "file_name": filename,
            "mime_type": mime,
            "file_id": file_id,
            "file_unique_id": f"AQAD{update_id}d",
            "file_size": size,
        }
        return {"document": document}
    raise ValueError(f"no scripted Telegram shape for a {attachment.kind!r} attachment")


def _dimensions(data: bytes) -> tuple[int, int]:
    from PIL import Image, UnidentifiedImageError  # only scripted runs need it

    try:
        with Image.open(io.BytesIO(data)) as image:  # reads the header only
            return image.size
    except (UnidentifiedImageError, OSError, ValueError):
        return 1280, 960  # not an image: Telegram would not have made a photo of it, but scripts test that


def _scaled(width: int, height: int, side: int) -> tuple[int, int]:
    ratio = side / max(width, height)
    return max(1, round(width * ratio)), max(1, round(height * ratio))
