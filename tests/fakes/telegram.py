"""A fake Telegram Bot API server for channel-adapter tests.

    async with FakeTelegram() as tg:
        bot = telegram.Bot(tg.token, base_url=f"{tg.base_url}/bot", base_file_url=tg.base_file_url)
        tg.push_update(tg.text_update(42, "hello", language_code="ja"))
        ...
        assert tg.sent(42) == ["..."]

Methods are served at `/bot{token}/{method}` (GET or POST; JSON, url-encoded form, multipart or
query string, as python-telegram-bot and others send them), files at
`/file/bot{token}/{file_path}`. Answers use the Bot API envelope (`{"ok": true, "result": ...}`,
or `{"ok": false, "error_code": ..., "description": ...}` with the HTTP status of the same
number) and Bot API-shaped objects. What the fake holds (chats, the bot's messages and their
edits, files, callback queries, the webhook) behaves as Telegram does for the methods listed in
`METHODS`; any other method answers 404 as Telegram does for an unknown method.

Known simplifications: any chat id is accepted (no "chat not found" unless `block` says so);
`parse_mode` is checked but the text is kept as sent (no entities are computed); webhook URLs may
be plain `http://` on any port (Telegram requires HTTPS on 443, 80, 88 or 8443).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.parser
import email.policy
import json
import re
import secrets
import time
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes._server import Call, ServedApp

DEFAULT_TOKEN = "7000000001:AAH-fake-token-for-local-tests_0123456"
TOKEN_SHAPE = re.compile(r"^\d+:[A-Za-z0-9_-]{20,}$")
MAX_DOWNLOAD = 20 * 1024 * 1024  # bots download at most 20 MB through getFile
CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)
PARSE_MODES = frozenset({"HTML", "Markdown", "MarkdownV2"})
# Fields whose Bot API type is String in the methods below: a form value for them is kept as the
# string it is; other form values are JSON (numbers, booleans, objects), as Telegram reads them.
_STRING_FIELDS = frozenset(
    {
        "business_connection_id",
        "text",
        "parse_mode",
        "message_effect_id",
        "inline_message_id",
        "callback_query_id",
        "url",
        "ip_address",
        "secret_token",
        "action",
        "file_id",
        "caption",
        "language_code",
        "photo",
        "document",
    }
)
_CHAT_ID_FIELDS = frozenset({"chat_id", "from_chat_id"})
_INLINE_BUTTON_ACTIONS = (
    "url",
    "callback_data",
    "web_app",
    "login_url",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "copy_text",
    "callback_game",
    "pay",
)


class TelegramApiError(Exception):
    """An error answer: raised inside a method handler, turned into the Bot API envelope."""

    def __init__(self, status: int, description: str, parameters: dict[str, Any] | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": False, "error_code": self.status, "description": self.description}
        if self.parameters:
            body["parameters"] = self.parameters
        return body


def _bad(description: str) -> TelegramApiError:
    return TelegramApiError(400, f"Bad Request: {description}")


def _random_file_id(prefix: str = "AgACAgIAAxkBAAI") -> str:
    return prefix + secrets.token_urlsafe(36)


class FakeTelegram:
    """The fake server. Use as `async with FakeTelegram() as tg:` (starts and stops it).

    Args:
        token: the bot token the fake accepts (the bot's id is its number before the colon).
        username, first_name: the bot user `getMe` returns.
        max_poll: the longest a `getUpdates` long poll waits, in seconds, whatever `timeout` asks.
        webhook_transport: an httpx transport for webhook deliveries (e.g.
            `httpx.ASGITransport(app)` to deliver into an app that is not listening on a port);
            by default deliveries go over the network to the URL given to `setWebhook`.
        webhook_retry_delays: the pauses between delivery attempts of one update after a non-2xx
            answer or a connection error (Telegram retries too; tests want it quick).
    """

    METHODS = (
        "getMe",
        "getUpdates",
        "setWebhook",
        "deleteWebhook",
        "getWebhookInfo",
        "sendMessage",
        "editMessageText",
        "editMessageReplyMarkup",
        "deleteMessage",
        "answerCallbackQuery",
        "sendChatAction",
        "sendPhoto",
        "sendDocument",
        "getFile",
        "setMyCommands",
        "deleteMyCommands",
        "getMyCommands",
        "logOut",
        "close",
    )

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        *,
        username: str = "aftersales_test_bot",
        first_name: str = "Aftersales Test Bot",
        max_poll: float = 1.0,
        webhook_transport: httpx.AsyncBaseTransport | None = None,
        webhook_retry_delays: Sequence[float] = (0.05, 0.2, 0.5),
    ) -> None:
        if not TOKEN_SHAPE.match(token):
            raise ValueError("a bot token looks like '<digits>:<at least 20 letters, digits, - or _>'")
        self.token = token
        self.bot_id = int(token.split(":", 1)[0])
        self.bot_user: dict[str, Any] = {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": first_name,
            "username": username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }
        self.max_poll = max_poll
        self.requests: list[Call] = []
        self.answered_callbacks: dict[str, dict[str, Any]] = {}
        self.webhook_deliveries: list[dict[str, Any]] = []
        self.clock: Callable[[], float] = time.time
        self._webhook_transport = webhook_transport
        self._webhook_retry_delays = tuple(webhook_retry_delays)
        self._served = ServedApp(self._app())
        self._queue: list[dict[str, Any]] = []
        self._next_update_id = 100_000_001
        self._allowed_updates: list[str] = []
        self._new_update = asyncio.Event()
        self._closing = asyncio.Event()
        self._poller: asyncio.Future[None] | None = None
        self._webhook: dict[str, Any] | None = None
        self._webhook_error: tuple[int, str] | None = None
        self._deliveries: set[asyncio.Task[None]] = set()
        self._delivering: list[int] = []
        self._faults: list[tuple[str, TelegramApiError]] = []
        self._files: dict[str, dict[str, Any]] = {}
        self._file_bytes: dict[str, bytes] = {}
        self._chats: dict[int, dict[str, Any]] = {}
        self._users: dict[int, dict[str, Any]] = {}
        self._next_message_id: dict[int, int] = {}
        self._bot_messages: dict[int, dict[int, dict[str, Any]]] = {}
        self._callbacks: set[str] = set()
        self._blocked: set[int] = set()
        self._commands: list[Any] = []

    # --- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> FakeTelegram:
        await self._served.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._closing.set()
        for task in list(self._deliveries):
            task.cancel()
        for task in list(self._deliveries):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._served.stop()

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:PORT`, standing for `https://api.telegram.org` (TELEGRAM_API_BASE)."""
        return self._served.base_url

    @property
    def base_file_url(self) -> str:
        """`{base_url}/file/bot`: python-telegram-bot's `base_file_url` (it appends the token)."""
        return f"{self.base_url}/file/bot"

    @property
    def bot_kwargs(self) -> dict[str, str]:
        """`telegram.Bot(tg.token, **tg.bot_kwargs)` or `ApplicationBuilder().token(...).base_url(...)`."""
        return {"base_url": f"{self.base_url}/bot", "base_file_url": self.base_file_url}

    # --- what tests do to it -----------------------------------------------------------------

    def push_update(self, update: dict[str, Any]) -> dict[str, Any]:
        """Queue an update for `getUpdates`, or deliver it to the webhook when one is set.

        An update without `update_id` gets the next one. Returns the update.
        """
        if "update_id" not in update:
            update["update_id"] = self._next_update_id
        self._next_update_id = max(self._next_update_id, int(update["update_id"]) + 1)
        if self._webhook is not None:
            task = asyncio.get_running_loop().create_task(self._deliver(update))
            self._deliveries.add(task)
            task.add_done_callback(self._deliveries.discard)
        else:
            self._queue.append(update)
            self._new_update.set()
        return update

    def push_updates(self, updates: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        return [self.push_update(update) for update in updates]

    @property
    def pending_updates(self) -> list[dict[str, Any]]:
        """Updates queued and not yet confirmed by a `getUpdates` offset."""
        return list(self._queue)

    async def settle(self, seconds: float = 3.0) -> None:
        """Wait (at most `seconds`) until every webhook delivery in flight has succeeded or given up."""
        async with asyncio.timeout(seconds):
            while self._deliveries:
                await asyncio.gather(*list(self._deliveries), return_exceptions=True)

    def add_file(
        self,
        file_id: str,
        data: bytes,
        *,
        file_path: str | None = None,
        file_unique_id: str | None = None,
    ) -> dict[str, Any]:
        """Make `file_id` known to `getFile`; returns the File object `getFile` will give."""
        number = len(self._files) + 1
        path = file_path or f"documents/file_{number}"
        self._files[file_id] = {
            "file_id": file_id,
            "file_unique_id": file_unique_id or f"AQAD{secrets.token_urlsafe(9)}",
            "file_size": len(data),
            "file_path": path,
        }
        self._file_bytes[path] = data
        return dict(self._files[file_id])

    def fail_next(
        self,
        method: str,
        status: int = 429,
        retry_after: int | None = None,
        *,
        times: int = 1,
        description: str | None = None,
    ) -> None:
        """The next `times` calls of `method` fail with `status` instead of running.

        429 answers `Too Many Requests: retry after N` with `parameters.retry_after` (N defaults
        to 5); other statuses answer Telegram's usual description for them.
        """
        if status == 429:
            wait = 5 if retry_after is None else retry_after
            error = TelegramApiError(
                429, description or f"Too Many Requests: retry after {wait}", {"retry_after": wait}
            )
        else:
            default = {
                400: "Bad Request",
                401: "Unauthorized",
                403: "Forbidden",
                404: "Not Found",
                409: "Conflict",
                500: "Internal Server Error",
                502: "Bad Gateway",
            }.get(status, "Error")
            params = {"retry_after": retry_after} if retry_after is not None else None
            error = TelegramApiError(status, description or default, params)
        self._faults.extend((method, error) for _ in range(times))

    def block(self, chat_id: int) -> None:
        """The user blocked the bot: sends to that chat answer 403 as Telegram does."""
        self._blocked.add(int(chat_id))

    def unblock(self, chat_id: int) -> None:
        self._blocked.discard(int(chat_id))

    def calls(self, method: str | None = None) -> list[Call]:
        """Recorded requests, all or those of one method."""
        return [call for call in self.requests if method is None or call.name == method]

    def sent(self, chat_id: int | str) -> list[str]:
        """The texts of successful `sendMessage` calls to `chat_id`, in order."""
        return [
            call.params["text"]
            for call in self.requests
            if call.name == "sendMessage" and call.status == 200 and str(call.params.get("chat_id")) == str(chat_id)
        ]

    def messages(self, chat_id: int) -> list[dict[str, Any]]:
        """The bot's messages in a chat as they stand now (after edits, without deleted ones)."""
        return [dict(message) for message in self._bot_messages.get(int(chat_id), {}).values()]

    @property
    def webhook(self) -> dict[str, Any] | None:
        """The webhook set by `setWebhook` (url, secret_token, ...), or None."""
        return None if self._webhook is None else dict(self._webhook)

    # --- building updates --------------------------------------------------------------------

    def user(
        self,
        user_id: int,
        *,
        first_name: str = "Customer",
        last_name: str | None = None,
        username: str | None = None,
        language_code: str | None = "en",
        is_premium: bool | None = None,
    ) -> dict[str, Any]:
        """A User object (and remembered as that user)."""
        user: dict[str, Any] = {"id": int(user_id), "is_bot": False, "first_name": first_name}
        if last_name:
            user["last_name"] = last_name
        if username:
            user["username"] = username
        if language_code:
            user["language_code"] = language_code
        if is_premium is not None:
            user["is_premium"] = is_premium
        self._users[int(user_id)] = user
        return dict(user)

    def _private_chat(self, user: dict[str, Any]) -> dict[str, Any]:
        chat: dict[str, Any] = {"id": user["id"], "first_name": user["first_name"], "type": "private"}
        if "last_name" in user:
            chat["last_name"] = user["last_name"]
        if "username" in user:
            chat["username"] = user["username"]
        self._chats[user["id"]] = chat
        return dict(chat)

    def _chat(self, chat_id: int) -> dict[str, Any]:
        if chat_id in self._chats:
            return dict(self._chats[chat_id])
        if chat_id < 0:
            chat = {
                "id": chat_id,
                "title": f"Group {chat_id}",
                "type": "supergroup" if chat_id < -(10**12) else "group",
            }
        else:
            chat = {"id": chat_id, "first_name": "Customer", "type": "private"}
        self._chats[chat_id] = chat
        return dict(chat)

    def _message_id(self, chat_id: int) -> int:
        number = self._next_message_id.get(chat_id, 1)
        self._next_message_id[chat_id] = number + 1
        return number

    def _incoming(
        self,
        chat_id: int,
        *,
        language_code: str | None,
        first_name: str,
        username: str | None,
        date: int | None,
        reply_to_message_id: int | None,
    ) -> dict[str, Any]:
        user = self._users.get(int(chat_id))
        if user is None or user.get("language_code") != language_code or user["first_name"] != first_name:
            user = self.user(chat_id, first_name=first_name, username=username, language_code=language_code)
        message: dict[str, Any] = {
            "message_id": self._message_id(int(chat_id)),
            "from": dict(user),
            "chat": self._private_chat(user),
            "date": int(self.clock()) if date is None else date,
        }
        if reply_to_message_id is not None:
            replied = self._bot_messages.get(int(chat_id), {}).get(reply_to_message_id)
            message["reply_to_message"] = (
                dict(replied)
                if replied
                else {"message_id": reply_to_message_id, "chat": message["chat"], "date": message["date"]}
            )
        return message

    def text_update(
        self,
        chat_id: int,
        text: str,
        *,
        language_code: str | None = "en",
        first_name: str = "Customer",
        username: str | None = None,
        date: int | None = None,
        reply_to_message_id: int | None = None,
    ) -> dict[str, Any]:
        """An update with a private text message from user `chat_id` (commands get an entity)."""
        message = self._incoming(
            chat_id,
            language_code=language_code,
            first_name=first_name,
            username=username,
            date=date,
            reply_to_message_id=reply_to_message_id,
        )
        message["text"] = text
        command = re.match(r"/[A-Za-z0-9_]+(@[A-Za-z0-9_]+)?", text)
        if command:
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command.group(0))}]
        return {"update_id": self._take_update_id(), "message": message}

    def photo_sizes(
        self, data: bytes, sizes: Sequence[tuple[int, int]] = ((90, 67), (320, 240), (800, 600), (1280, 960))
    ) -> list[dict[str, Any]]:
        """A PhotoSize list (smallest first, as Telegram sends it), each size a file `getFile` serves.

        Every size serves `data` (the fake does not resize); `file_size` is `len(data)`.
        """
        photo = []
        for width, height in sizes:
            file_id = _random_file_id()
            known = self.add_file(file_id, data, file_path=f"photos/file_{len(self._files)}.jpg")
            photo.append(
                {
                    "file_id": file_id,
                    "file_unique_id": known["file_unique_id"],
                    "file_size": len(data),
                    "width": width,
                    "height": height,
                }
            )
        return photo

    def photo_update(
        self,
        chat_id: int,
        data: bytes,
        *,
        sizes: Sequence[tuple[int, int]] = ((90, 67), (320, 240), (800, 600), (1280, 960)),
        caption: str | None = None,
        media_group_id: str | None = None,
        language_code: str | None = "en",
        first_name: str = "Customer",
        date: int | None = None,
    ) -> dict[str, Any]:
        """An update with a photo message: `photo` is a PhotoSize list whose files serve `data`."""
        message = self._incoming(
            chat_id,
            language_code=language_code,
            first_name=first_name,
            username=None,
            date=date,
            reply_to_message_id=None,
        )
        if media_group_id is not None:
            message["media_group_id"] = media_group_id
        message["photo"] = self.photo_sizes(data, sizes)
        if caption is not None:
            message["caption"] = caption
        return {"update_id": self._take_update_id(), "message": message}

    def album_updates(
        self,
        chat_id: int,
        photos: Sequence[bytes],
        *,
        caption: str | None = None,
        media_group_id: str | None = None,
        language_code: str | None = "en",
        first_name: str = "Customer",
    ) -> list[dict[str, Any]]:
        """Several photo updates sharing one `media_group_id` (the caption rides on the first),
        as Telegram sends an album: separate updates, no end marker."""
        group = media_group_id or str(13_000_000_000_000_000 + secrets.randbelow(10**15))
        date = int(self.clock())
        return [
            self.photo_update(
                chat_id,
                data,
                caption=caption if index == 0 else None,
                media_group_id=group,
                language_code=language_code,
                first_name=first_name,
                date=date,
            )
            for index, data in enumerate(photos)
        ]

    def document_update(
        self,
        chat_id: int,
        data: bytes,
        *,
        file_name: str = "receipt.pdf",
        mime_type: str = "application/pdf",
        caption: str | None = None,
        language_code: str | None = "en",
        first_name: str = "Customer",
        date: int | None = None,
    ) -> dict[str, Any]:
        """An update with a document message whose file `getFile` serves."""
        message = self._incoming(
            chat_id,
            language_code=language_code,
            first_name=first_name,
            username=None,
            date=date,
            reply_to_message_id=None,
        )
        file_id = _random_file_id("BQACAgIAAxkBAAI")
        known = self.add_file(file_id, data, file_path=f"documents/file_{len(self._files)}{_extension(file_name)}")
        message["document"] = {
            "file_name": file_name,
            "mime_type": mime_type,
            "file_id": file_id,
            "file_unique_id": known["file_unique_id"],
            "file_size": len(data),
        }
        if caption is not None:
            message["caption"] = caption
        return {"update_id": self._take_update_id(), "message": message}

    def callback_update(
        self,
        chat_id: int,
        data: str,
        *,
        message_id: int | None = None,
        language_code: str | None = "en",
        first_name: str = "Customer",
    ) -> dict[str, Any]:
        """An update with a callback query: the user pressed an inline button carrying `data`.

        `message` is the bot's message with that keyboard: `message_id`, or else the latest of the
        bot's messages in the chat with an inline keyboard (a message is made up when there is none).
        The query id is one `answerCallbackQuery` accepts once.
        """
        user = self._users.get(int(chat_id))
        if user is None or user.get("language_code") != language_code or user["first_name"] != first_name:
            user = self.user(chat_id, first_name=first_name, language_code=language_code)
        chat = self._private_chat(user)
        ours = self._bot_messages.get(int(chat_id), {})
        if message_id is None:
            with_keyboard = [m for m in ours.values() if "reply_markup" in m]
            message = dict(with_keyboard[-1]) if with_keyboard else None
        else:
            message = dict(ours[message_id]) if message_id in ours else None
        if message is None:
            message = {
                "message_id": message_id or self._message_id(int(chat_id)),
                "from": dict(self.bot_user),
                "chat": chat,
                "date": int(self.clock()) - 5,
                "text": "…",
                "reply_markup": {"inline_keyboard": [[{"text": data, "callback_data": data}]]},
            }
        query_id = str(secrets.randbelow(9 * 10**18) + 10**18)
        self._callbacks.add(query_id)
        query = {
            "id": query_id,
            "from": dict(user),
            "message": message,
            "chat_instance": str(-(secrets.randbelow(9 * 10**18) + 10**18)),
            "data": data,
        }
        return {"update_id": self._take_update_id(), "callback_query": query}

    def _take_update_id(self) -> int:
        number = self._next_update_id
        self._next_update_id += 1
        return number

    # --- the HTTP side -----------------------------------------------------------------------

    def _app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/bot{token}/{method}", self._method_endpoint, methods=["GET", "POST"]),
                Route("/file/bot{token}/{file_path:path}", self._file_endpoint, methods=["GET"]),
            ]
        )

    async def _method_endpoint(self, request: Request) -> Response:
        token = request.path_params["token"]
        method = request.path_params["method"]
        call = Call(
            name=method,
            http_method=request.method,
            path=request.url.path.replace(token, "<token>"),
            params={},
            raw={},
            encoding="none",
            time=self.clock(),
            headers={k: v for k, v in request.headers.items() if k.lower() not in ("authorization",)},
        )
        self.requests.append(call)
        try:
            await _read_params(request, call)
            result = await self._answer(token, method, call)
            body: dict[str, Any] = {"ok": True, "result": result}
            call.status = 200
        except TelegramApiError as error:
            body = error.body()
            call.status = error.status
        call.response = body
        return JSONResponse(body, status_code=call.status)

    async def _answer(self, token: str, method: str, call: Call) -> Any:
        if not TOKEN_SHAPE.match(token):
            raise TelegramApiError(404, "Not Found")
        if token != self.token:
            raise TelegramApiError(401, "Unauthorized")
        handler = _HANDLERS.get(method.lower())
        if handler is None:
            raise TelegramApiError(404, "Not Found")
        call.name = handler.__name__.removeprefix("_m_")
        for index, (name, error) in enumerate(self._faults):
            if name.lower() == method.lower():
                del self._faults[index]
                raise error
        return await handler(self, call.params, call)

    async def _file_endpoint(self, request: Request) -> Response:
        token = request.path_params["token"]
        file_path = request.path_params["file_path"]
        call = Call(
            name="file",
            http_method="GET",
            path=request.url.path.replace(token, "<token>"),
            params={"file_path": file_path},
            raw={"file_path": file_path},
            encoding="none",
            time=self.clock(),
        )
        self.requests.append(call)
        if not TOKEN_SHAPE.match(token) or token != self.token:
            call.status = 401
            return JSONResponse({"ok": False, "error_code": 401, "description": "Unauthorized"}, status_code=401)
        data = self._file_bytes.get(file_path)
        if data is None:
            call.status = 404
            return JSONResponse({"ok": False, "error_code": 404, "description": "Not Found"}, status_code=404)
        call.status = 200
        return Response(data, media_type="application/octet-stream")

    # --- webhook delivery --------------------------------------------------------------------

    async def _deliver(self, update: dict[str, Any]) -> None:
        hook = self._webhook
        if hook is None:
            return
        headers = {"Content-Type": "application/json"}
        if hook.get("secret_token"):
            headers["X-Telegram-Bot-Api-Secret-Token"] = hook["secret_token"]
        body = json.dumps(update, ensure_ascii=False).encode()
        self._delivering.append(update["update_id"])
        try:
            async with httpx.AsyncClient(transport=self._webhook_transport, timeout=5.0) as client:
                for attempt, delay in enumerate((0.0, *self._webhook_retry_delays), start=1):
                    if delay:
                        await asyncio.sleep(delay)
                    record: dict[str, Any] = {"update_id": update["update_id"], "attempt": attempt, "url": hook["url"]}
                    try:
                        response = await client.post(hook["url"], content=body, headers=headers)
                    except httpx.HTTPError as error:
                        record["error"] = f"{type(error).__name__}: {error}"
                        self._webhook_error = (int(self.clock()), f"Connection failed: {error}")
                        self.webhook_deliveries.append(record)
                        continue
                    record["status"] = response.status_code
                    self.webhook_deliveries.append(record)
                    if 200 <= response.status_code < 300:
                        return
                    self._webhook_error = (
                        int(self.clock()),
                        f"Wrong response from the webhook: {response.status_code} {response.reason_phrase}",
                    )
        finally:
            self._delivering.remove(update["update_id"])

    # --- method handlers (named _m_<method>; looked up case-insensitively, as Telegram does) --

    async def _m_getMe(self, params: dict[str, Any], call: Call) -> Any:
        return dict(self.bot_user)

    async def _m_getUpdates(self, params: dict[str, Any], call: Call) -> Any:
        if self._webhook is not None:
            raise TelegramApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        offset = _int(params.get("offset", 0), "offset")
        limit = min(max(_int(params.get("limit", 100), "limit"), 1), 100)
        timeout = max(_number(params.get("timeout", 0), "timeout"), 0.0)
        if "allowed_updates" in params:
            allowed = params["allowed_updates"]
            if not isinstance(allowed, list):
                raise _bad("can't parse allowed updates")
            self._allowed_updates = [str(kind) for kind in allowed]
        if offset > 0:
            self._queue = [u for u in self._queue if u["update_id"] >= offset]
        elif offset < 0:
            self._queue = self._queue[offset:]
        # A newer getUpdates ends a waiting one, as Telegram does.
        if self._poller is not None and not self._poller.done():
            self._poller.set_exception(
                TelegramApiError(
                    409,
                    "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running",
                )
            )
        deadline = asyncio.get_running_loop().time() + min(timeout, self.max_poll)
        while True:
            ready = [u for u in self._queue if self._wanted(u)][:limit]
            remaining = deadline - asyncio.get_running_loop().time()
            if ready or remaining <= 0 or self._closing.is_set():
                return ready
            self._new_update.clear()
            poller: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._poller = poller
            waits = [
                asyncio.ensure_future(self._new_update.wait()),
                asyncio.ensure_future(self._closing.wait()),
                poller,
            ]
            try:
                done, _ = await asyncio.wait(waits, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waits[:2]:
                    waiter.cancel()
                if self._poller is poller:
                    self._poller = None
            if poller in done:
                poller.result()  # raises the Conflict

    def _wanted(self, update: dict[str, Any]) -> bool:
        kinds = [key for key in update if key != "update_id"]
        if not self._allowed_updates:
            return not any(kind in ("chat_member", "message_reaction", "message_reaction_count") for kind in kinds)
        return any(kind in self._allowed_updates for kind in kinds)

    async def _m_setWebhook(self, params: dict[str, Any], call: Call) -> Any:
        url = params.get("url")
        if url is None:
            raise _bad('parameter "url" is required')
        if not isinstance(url, str):
            raise _bad("bad webhook: invalid URL")
        if _truthy(params.get("drop_pending_updates")):
            self._queue.clear()
        if url == "":
            self._webhook = None
            return True
        if not re.match(r"^https?://[^/\s]+", url):
            raise _bad("bad webhook: Failed to resolve host: Name or service not known")
        secret = params.get("secret_token")
        if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", str(secret)):
            raise _bad("secret token contains unallowed characters")
        max_connections = _int(params.get("max_connections", 40), "max_connections")
        if not 1 <= max_connections <= 100:
            raise _bad("bad webhook: max_connections must be between 1 and 100")
        self._webhook = {"url": url, "secret_token": secret, "max_connections": max_connections}
        if "allowed_updates" in params and isinstance(params["allowed_updates"], list):
            self._allowed_updates = [str(kind) for kind in params["allowed_updates"]]
        if "ip_address" in params:
            self._webhook["ip_address"] = params["ip_address"]
        self._webhook_error = None
        # Updates that waited for getUpdates now go to the webhook.
        waiting, self._queue = self._queue, []
        for update in waiting:
            self.push_update(update)
        return True

    async def _m_deleteWebhook(self, params: dict[str, Any], call: Call) -> Any:
        self._webhook = None
        if _truthy(params.get("drop_pending_updates")):
            self._queue.clear()
        return True

    async def _m_getWebhookInfo(self, params: dict[str, Any], call: Call) -> Any:
        hook = self._webhook
        if hook is None:
            return {"url": "", "has_custom_certificate": False, "pending_update_count": len(self._queue)}
        info: dict[str, Any] = {
            "url": hook["url"],
            "has_custom_certificate": False,
            "pending_update_count": len(self._delivering),
            "max_connections": hook["max_connections"],
        }
        if "ip_address" in hook:
            info["ip_address"] = hook["ip_address"]
        if self._allowed_updates:
            info["allowed_updates"] = list(self._allowed_updates)
        if self._webhook_error:
            info["last_error_date"], info["last_error_message"] = self._webhook_error
        return info

    def _target_chat(self, params: dict[str, Any]) -> int:
        if "chat_id" not in params or params["chat_id"] in ("", None):
            raise _bad("chat_id is empty")
        chat_id = params["chat_id"]
        if isinstance(chat_id, str) and not re.fullmatch(r"-?\d+", chat_id):
            raise _bad("chat not found")
        number = int(chat_id)
        if number in self._blocked:
            raise TelegramApiError(403, "Forbidden: bot was blocked by the user")
        return number

    def _check_text(self, params: dict[str, Any], key: str = "text", limit: int = 4096) -> str:
        text = params.get(key)
        if text is None or (isinstance(text, str) and not text.strip()):
            raise _bad("message text is empty")
        text = str(text)
        if len(text) > limit:
            raise _bad("message is too long")
        mode = params.get("parse_mode")
        if mode not in (None, "") and mode not in PARSE_MODES:
            raise _bad(f'unsupported parse_mode "{mode}"')
        return text

    def _new_message(self, chat_id: int, extra: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        message: dict[str, Any] = {
            "message_id": self._message_id(chat_id),
            "from": dict(self.bot_user),
            "chat": self._chat(chat_id),
            "date": int(self.clock()),
            **extra,
        }
        markup = params.get("reply_markup")
        if markup is not None:
            markup = _check_markup(markup)
            if "inline_keyboard" in markup:
                message["reply_markup"] = markup
        reply = params.get("reply_parameters")
        if isinstance(reply, dict) and "message_id" in reply:
            message["reply_to_message"] = {
                "message_id": reply["message_id"],
                "chat": message["chat"],
                "date": message["date"],
            }
        self._bot_messages.setdefault(chat_id, {})[message["message_id"]] = message
        return dict(message)

    async def _m_sendMessage(self, params: dict[str, Any], call: Call) -> Any:
        chat_id = self._target_chat(params)
        text = self._check_text(params)
        return self._new_message(chat_id, {"text": text}, params)

    def _upload(self, params: dict[str, Any], call: Call, key: str) -> tuple[str | None, bytes | str]:
        value = params.get(key)
        if key in call.files:
            return call.files[key]
        if isinstance(value, str) and value.startswith("attach://"):
            part = value.removeprefix("attach://")
            if part not in call.files:
                raise _bad(f"wrong file identifier/HTTP URL specified: no file part {part!r}")
            return call.files[part]
        if isinstance(value, str) and value:
            if value in self._files or value.startswith(("http://", "https://")):
                return None, value
            raise _bad("wrong file identifier/HTTP URL specified")
        raise _bad(f"there is no {key} in the request")

    async def _m_sendPhoto(self, params: dict[str, Any], call: Call) -> Any:
        chat_id = self._target_chat(params)
        _, content = self._upload(params, call, "photo")
        data = content if isinstance(content, bytes) else self._bytes_of(content)
        extra: dict[str, Any] = {"photo": self.photo_sizes(data, ((90, 90), (320, 320), (800, 800)))}
        if params.get("caption"):
            extra["caption"] = self._check_text(params, "caption", 1024)
        return self._new_message(chat_id, extra, params)

    async def _m_sendDocument(self, params: dict[str, Any], call: Call) -> Any:
        chat_id = self._target_chat(params)
        filename, content = self._upload(params, call, "document")
        data = content if isinstance(content, bytes) else self._bytes_of(content)
        file_id = _random_file_id("BQACAgIAAxkBAAI")
        name = filename or "document"
        known = self.add_file(file_id, data, file_path=f"documents/file_{len(self._files)}{_extension(name)}")
        extra: dict[str, Any] = {
            "document": {
                "file_name": name,
                "mime_type": "application/octet-stream",
                "file_id": file_id,
                "file_unique_id": known["file_unique_id"],
                "file_size": len(data),
            }
        }
        if params.get("caption"):
            extra["caption"] = self._check_text(params, "caption", 1024)
        return self._new_message(chat_id, extra, params)

    def _bytes_of(self, file_id_or_url: str) -> bytes:
        known = self._files.get(file_id_or_url)
        return self._file_bytes.get(known["file_path"], b"") if known else b""

    def _edited(self, params: dict[str, Any]) -> dict[str, Any] | None:
        if params.get("inline_message_id"):
            return None
        chat_id = self._target_chat(params)
        if "message_id" not in params:
            raise _bad("message identifier is not specified")
        message = self._bot_messages.get(chat_id, {}).get(_int(params["message_id"], "message_id"))
        if message is None:
            raise _bad("message to edit not found")
        return message

    async def _m_editMessageText(self, params: dict[str, Any], call: Call) -> Any:
        text = self._check_text(params)
        message = self._edited(params)
        if message is None:
            return True
        if "text" not in message:
            raise _bad("there is no text in the message to edit")
        markup = _check_markup(params["reply_markup"]) if params.get("reply_markup") is not None else None
        if message["text"] == text and message.get("reply_markup") == markup:
            raise _bad(
                "message is not modified: specified new message content and reply markup are exactly the same "
                "as a current content and reply markup of the message"
            )
        message["text"] = text
        _set_markup(message, markup)
        message["edit_date"] = int(self.clock())
        return dict(message)

    async def _m_editMessageReplyMarkup(self, params: dict[str, Any], call: Call) -> Any:
        message = self._edited(params)
        if message is None:
            return True
        markup = _check_markup(params["reply_markup"]) if params.get("reply_markup") is not None else None
        if message.get("reply_markup") == markup:
            raise _bad(
                "message is not modified: specified new message content and reply markup are exactly the same "
                "as a current content and reply markup of the message"
            )
        _set_markup(message, markup)
        message["edit_date"] = int(self.clock())
        return dict(message)

    async def _m_deleteMessage(self, params: dict[str, Any], call: Call) -> Any:
        chat_id = self._target_chat(params)
        if self._bot_messages.get(chat_id, {}).pop(_int(params.get("message_id", 0), "message_id"), None) is None:
            raise _bad("message to delete not found")
        return True

    async def _m_answerCallbackQuery(self, params: dict[str, Any], call: Call) -> Any:
        query_id = str(params.get("callback_query_id") or "")
        if not query_id:
            raise _bad("QUERY_ID_INVALID")
        if query_id not in self._callbacks or query_id in self.answered_callbacks:
            raise _bad("query is too old and response timeout expired or query ID is invalid")
        if len(str(params.get("text") or "")) > 200:
            raise _bad("MESSAGE_TOO_LONG")
        self.answered_callbacks[query_id] = dict(params)
        return True

    async def _m_sendChatAction(self, params: dict[str, Any], call: Call) -> Any:
        self._target_chat(params)
        if params.get("action") not in CHAT_ACTIONS:
            raise _bad("wrong parameter action in request")
        return True

    async def _m_getFile(self, params: dict[str, Any], call: Call) -> Any:
        file_id = params.get("file_id")
        if not file_id:
            raise _bad("file_id is empty")
        known = self._files.get(str(file_id))
        if known is None:
            raise _bad("invalid file_id")
        if known["file_size"] > MAX_DOWNLOAD:
            raise _bad("file is too big")
        return dict(known)

    async def _m_setMyCommands(self, params: dict[str, Any], call: Call) -> Any:
        commands = params.get("commands")
        if not isinstance(commands, list):
            raise _bad("can't parse commands JSON object")
        self._commands = commands
        return True

    async def _m_deleteMyCommands(self, params: dict[str, Any], call: Call) -> Any:
        self._commands = []
        return True

    async def _m_getMyCommands(self, params: dict[str, Any], call: Call) -> Any:
        return list(self._commands)

    async def _m_logOut(self, params: dict[str, Any], call: Call) -> Any:
        return True

    async def _m_close(self, params: dict[str, Any], call: Call) -> Any:
        return True


_HANDLERS = {
    name.removeprefix("_m_").lower(): getattr(FakeTelegram, name)
    for name in dir(FakeTelegram)
    if name.startswith("_m_")
}
assert set(_HANDLERS) == {method.lower() for method in FakeTelegram.METHODS}


async def _read_params(request: Request, call: Call) -> None:
    """Parameters from the query string and the body (JSON, url-encoded or multipart)."""
    raw: dict[str, Any] = dict(request.query_params)
    encoding = "query" if raw else "none"
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if request.method == "POST":
        if content_type == "application/json":
            body = await request.body()
            if body:
                try:
                    parsed = json.loads(body)
                except ValueError as error:
                    raise _bad("can't parse JSON object") from error
                if not isinstance(parsed, dict):
                    raise _bad("can't parse JSON object")
                raw.update(parsed)
                encoding = "json"
        elif content_type == "application/x-www-form-urlencoded":
            body = (await request.body()).decode("utf-8", errors="replace")
            raw.update(urllib.parse.parse_qsl(body, keep_blank_values=True))
            encoding = "form"
        elif content_type == "multipart/form-data":
            fields, call.files = _parse_multipart(request.headers["content-type"], await request.body())
            raw.update(fields)
            encoding = "multipart"
    call.raw = raw
    call.encoding = encoding
    if encoding == "json":
        call.params = dict(raw)
    else:
        call.params = {key: _form_value(key, value) for key, value in raw.items()}


def _parse_multipart(content_type: str, body: bytes) -> tuple[dict[str, str], dict[str, tuple[str | None, bytes]]]:
    """multipart/form-data fields and files (the standard library's MIME parser; no extra dependency)."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    if not message.is_multipart():
        raise _bad("can't parse multipart/form-data body")
    fields: dict[str, str] = {}
    files: dict[str, tuple[str | None, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        filename = part.get_filename()
        if filename is not None:
            files[name] = (filename, data)
        else:
            fields[name] = data.decode(part.get_content_charset() or "utf-8", errors="replace")
    return fields, files


def _form_value(key: str, value: str) -> Any:
    if key in _STRING_FIELDS:
        return value
    if key in _CHAT_ID_FIELDS:
        return int(value) if re.fullmatch(r"-?\d+", value) else value
    try:
        return json.loads(value)
    except ValueError:
        return value


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise _bad(f"invalid {name} specified")
    try:
        return int(value)
    except (TypeError, ValueError) as error:
        raise _bad(f"invalid {name} specified") from error


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool):
        raise _bad(f"invalid {name} specified")
    try:
        return float(value)
    except (TypeError, ValueError) as error:
        raise _bad(f"invalid {name} specified") from error


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() in ("true", "1"))


def _extension(name: str) -> str:
    match = re.search(r"\.[A-Za-z0-9]{1,8}$", name)
    return match.group(0) if match else ""


def _check_markup(markup: Any) -> dict[str, Any]:
    """A reply_markup as Telegram checks it; inline keyboards in detail."""
    if not isinstance(markup, dict):
        raise _bad("can't parse reply keyboard markup JSON object")
    if "inline_keyboard" in markup:
        rows = markup["inline_keyboard"]
        if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
            raise _bad("can't parse inline keyboard button: InlineKeyboardMarkup must be an Array of Arrays")
        for row in rows:
            for button in row:
                if not isinstance(button, dict) or not isinstance(button.get("text"), str):
                    raise _bad("can't parse inline keyboard button: Text must be a String")
                actions = [key for key in _INLINE_BUTTON_ACTIONS if key in button]
                if not actions:
                    raise _bad("text buttons are unallowed in the inline keyboard")
                if len(actions) > 1:
                    raise _bad("can't parse inline keyboard button: exactly one of the optional fields must be used")
                if "callback_data" in button:
                    data = button["callback_data"]
                    if not isinstance(data, str) or not 1 <= len(data.encode()) <= 64:
                        raise _bad("BUTTON_DATA_INVALID")
        return markup
    if "keyboard" in markup or "remove_keyboard" in markup or "force_reply" in markup:
        return markup
    raise _bad("can't parse reply keyboard markup JSON object")


def _set_markup(message: dict[str, Any], markup: dict[str, Any] | None) -> None:
    if markup is not None and "inline_keyboard" in markup and markup["inline_keyboard"]:
        message["reply_markup"] = markup
    else:
        message.pop("reply_markup", None)
