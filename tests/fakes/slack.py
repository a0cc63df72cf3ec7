"""A fake Slack Web API server, and Events API / interactivity requests signed as Slack signs them.

    async with FakeSlack() as slack:
        client = AsyncWebClient(token=slack.token, base_url=slack.api_base)   # f"{base_url}/api/"
        await client.chat_postMessage(channel=slack.channel_id, text="hello")
        body, headers = slack.event_request(slack.user_message(slack.channel_id, "U0AGENT1", "hi"))

Methods are served at `/api/{method}` (GET or POST; query string, url-encoded form, multipart or
JSON, as slack_sdk sends them), with the bot token in `Authorization: Bearer` (or a `token`
parameter). Answers use Slack's envelope: HTTP 200 with `{"ok": true, ...}` or
`{"ok": false, "error": "channel_not_found"}`; a rate limit is HTTP 429 with `Retry-After`.
Served methods: `auth.test`, `chat.postMessage`, `chat.update`, `chat.postEphemeral`,
`conversations.info`, `users.info`, `files.getUploadURLExternal`, the upload itself
(`POST /upload/{file_id}`, the URL `getUploadURLExternal` gives) and
`files.completeUploadExternal`; and Socket Mode: `apps.connections.open` (with the app-level
token) gives a `ws://` URL on the fake, where `socket_send` pushes envelopes (events, interactivity)
and the app's acknowledgements are recorded. Any other method answers `unknown_method`.

What the fake holds (channels, users, the messages in each channel with their threads, the
ephemeral messages, uploaded files) behaves as Slack does for those methods. Requests the app
receives from Slack are built here (`event_envelope`, `user_message`, `block_action`...) and
signed with the signing secret (`v0=` HMAC-SHA256 of `v0:{timestamp}:{body}`).

Known simplifications: one workspace; any bot may post in any channel of the fake (as with
`chat:write.public`); message text is kept as sent (no mrkdwn parsing, no link unfurling).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import secrets
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import httpx
from slack_sdk.signature import SignatureVerifier
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from tests.fakes._server import Call, ServedApp

DEFAULT_TOKEN = "xoxb-0000000001-0000000002-fakeBotTokenForLocalTests"
DEFAULT_SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
DEFAULT_APP_TOKEN = "xapp-1-A0FAKEAPP-0000000003-fakeAppLevelTokenForSocketMode"
MAX_BLOCKS = 50  # a message holds at most 50 blocks
MAX_SECTION_TEXT = 3000  # a section's text, characters
MAX_TEXT = 40_000  # chat.postMessage truncates longer text; the fake refuses it instead (msg_too_long)


class SlackApiError(Exception):
    """An error answer: `ok: false` with Slack's error code, HTTP 200 unless said otherwise."""

    def __init__(self, error: str, status: int = 200, headers: dict[str, str] | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.status = status
        self.headers = headers or {}


def sign(body: str | bytes, signing_secret: str, timestamp: int | str) -> str:
    """The `X-Slack-Signature` of a request: `v0=` HMAC-SHA256 of `v0:{timestamp}:{body}`."""
    text = body.decode() if isinstance(body, bytes) else body
    signature = SignatureVerifier(signing_secret).generate_signature(timestamp=str(timestamp), body=text)
    assert signature is not None
    return signature


def signed_headers(
    body: str | bytes, signing_secret: str, *, timestamp: int | None = None, content_type: str = "application/json"
) -> dict[str, str]:
    """Headers Slack sends with a request: the timestamp, the signature and the content type."""
    stamp = int(time.time()) if timestamp is None else timestamp
    return {
        "X-Slack-Request-Timestamp": str(stamp),
        "X-Slack-Signature": sign(body, signing_secret, stamp),
        "Content-Type": content_type,
    }


class FakeSlack:
    """The fake server. Use as `async with FakeSlack() as slack:` (starts and stops it).

    Args:
        token: the bot token the fake accepts.
        signing_secret: what `event_request` / `interaction_request` sign with.
        channel_id, channel_name: a public channel that exists from the start (the agents' channel).
        agents: user ids -> display names of people who exist from the start.
    """

    METHODS = (
        "auth.test",
        "chat.postMessage",
        "chat.update",
        "chat.postEphemeral",
        "conversations.info",
        "users.info",
        "files.getUploadURLExternal",
        "files.completeUploadExternal",
        "apps.connections.open",
    )

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        *,
        signing_secret: str = DEFAULT_SIGNING_SECRET,
        app_token: str = DEFAULT_APP_TOKEN,
        team_id: str = "T0FAKETEAM",
        app_id: str = "A0FAKEAPP",
        bot_user_id: str = "U0FAKEBOT",
        bot_id: str = "B0FAKEBOT",
        channel_id: str = "C0AGENTS",
        channel_name: str = "after-sales",
        agents: dict[str, str] | None = None,
    ) -> None:
        self.token = token
        self.signing_secret = signing_secret
        self.app_token = app_token
        self.socket_acks: dict[str, dict[str, Any]] = {}  # envelope id -> what the app answered
        self._sockets: list[asyncio.Queue[dict[str, Any] | None]] = []
        self._acked = asyncio.Condition()
        self.team_id = team_id
        self.app_id = app_id
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.channel_id = channel_id
        self.requests: list[Call] = []
        self.uploads: dict[str, dict[str, Any]] = {}  # file id -> filename, length, data, shared to
        self.clock: Callable[[], float] = time.time
        self._served = ServedApp(self._app())
        self._faults: list[tuple[str, SlackApiError]] = []
        self._channels: dict[str, dict[str, Any]] = {}
        self._users: dict[str, dict[str, Any]] = {}
        self._messages: dict[str, dict[str, dict[str, Any]]] = {}  # channel -> ts -> message
        self._ephemeral: list[dict[str, Any]] = []
        self._ts = itertools.count(1)
        self._event_ids = itertools.count(1)
        self._events_url: str | None = None
        self._deliveries: set[asyncio.Task[Any]] = set()
        self.add_channel(channel_id, channel_name)
        self.add_user(bot_user_id, "aftersales", is_bot=True)
        for user_id, name in (agents or {}).items():
            self.add_user(user_id, name)

    # --- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> FakeSlack:
        await self._served.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for outgoing in self._sockets:
            outgoing.put_nowait(None)  # closes the Socket Mode connection
        for task in list(self._deliveries):
            task.cancel()
        for task in list(self._deliveries):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._served.stop()

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:PORT`."""
        return self._served.base_url

    @property
    def api_base(self) -> str:
        """`{base_url}/api/`, standing for `https://slack.com/api/` (SLACK_API_BASE, slack_sdk's `base_url`)."""
        return f"{self.base_url}/api/"

    # --- what tests do to it -----------------------------------------------------------------

    def add_channel(self, channel_id: str, name: str, *, is_private: bool = False) -> dict[str, Any]:
        channel = {
            "id": channel_id,
            "name": name,
            "is_channel": not is_private,
            "is_group": is_private,
            "is_private": is_private,
            "is_im": False,
            "is_archived": False,
            "is_member": True,
            "created": int(self.clock()),
        }
        self._channels[channel_id] = channel
        self._messages.setdefault(channel_id, {})
        return dict(channel)

    def add_user(self, user_id: str, display_name: str, *, real_name: str | None = None, is_bot: bool = False) -> None:
        self._users[user_id] = {
            "id": user_id,
            "team_id": self.team_id,
            "name": display_name.lower().replace(" ", "."),
            "real_name": real_name or display_name,
            "is_bot": is_bot,
            "deleted": False,
            "tz": "Asia/Shanghai",
            "profile": {"display_name": display_name, "real_name": real_name or display_name},
        }

    def fail_next(
        self, method: str, status: int = 429, retry_after: int | None = None, *, times: int = 1, error: str = ""
    ) -> None:
        """The next `times` calls of `method` fail instead of running.

        429 answers `ratelimited` with `Retry-After: N` (N defaults to 1); another status answers
        that status with `error` (default `internal_error`); status 200 with `error` is Slack's
        usual refusal (`channel_not_found`, ...).
        """
        if status == 429:
            wait = 1 if retry_after is None else retry_after
            fault = SlackApiError(error or "ratelimited", 429, {"Retry-After": str(wait)})
        else:
            fault = SlackApiError(error or "internal_error", status)
        self._faults.extend((method, fault) for _ in range(times))

    def calls(self, method: str | None = None) -> list[Call]:
        """Recorded requests, all or those of one method (the upload POST is named `upload`)."""
        return [call for call in self.requests if method is None or call.name == method]

    def messages(self, channel: str | None = None) -> list[dict[str, Any]]:
        """Top-level messages of a channel as they stand now (after updates), oldest first."""
        found = self._messages.get(channel or self.channel_id, {}).values()
        return [dict(m) for m in found if m.get("thread_ts") in (None, m["ts"])]

    def message(self, ts: str, channel: str | None = None) -> dict[str, Any]:
        return dict(self._messages[channel or self.channel_id][ts])

    def thread(self, ts: str, channel: str | None = None) -> list[dict[str, Any]]:
        """The replies in the thread under message `ts`, oldest first (the parent not included)."""
        found = self._messages.get(channel or self.channel_id, {}).values()
        return [dict(m) for m in found if m.get("thread_ts") == ts and m["ts"] != ts]

    def thread_texts(self, ts: str, channel: str | None = None) -> list[str]:
        return [m.get("text", "") for m in self.thread(ts, channel)]

    def ephemerals(self, user: str | None = None) -> list[dict[str, Any]]:
        """Ephemeral messages (seen only by their user), oldest first."""
        return [dict(m) for m in self._ephemeral if user is None or m["user"] == user]

    def deliver_events_to(self, url: str | None) -> None:
        """Like a real workspace: every message the bot posts comes back as a signed `message`
        event to `url` (the app's request URL), as it does for an app subscribed to the channel."""
        self._events_url = url

    @property
    def events_url(self) -> str:
        """The app's request URL given to `deliver_events_to`."""
        if not self._events_url:
            raise RuntimeError("no events URL: call deliver_events_to first")
        return self._events_url

    async def settle(self, seconds: float = 3.0) -> None:
        """Wait until event deliveries in flight are done."""
        async with asyncio.timeout(seconds):
            while self._deliveries:
                await asyncio.gather(*list(self._deliveries), return_exceptions=True)

    # --- requests from Slack to the app ------------------------------------------------------

    def event_envelope(self, event: dict[str, Any], *, event_id: str | None = None) -> dict[str, Any]:
        """An Events API `event_callback` envelope around `event`."""
        now = int(self.clock())
        return {
            "token": "verification-token-unused",
            "team_id": self.team_id,
            "api_app_id": self.app_id,
            "event": event,
            "type": "event_callback",
            "event_id": event_id or f"Ev{next(self._event_ids):08d}FAKE",
            "event_time": now,
            "authed_users": [self.bot_user_id],  # deprecated by Slack, still required by the wrapper schema
            "authorizations": [
                {"enterprise_id": None, "team_id": self.team_id, "user_id": self.bot_user_id, "is_bot": True}
            ],
            "is_ext_shared_channel": False,
        }

    def user_message(
        self, channel: str, user: str, text: str, *, thread_ts: str | None = None, event_id: str | None = None
    ) -> dict[str, Any]:
        """A person writes in a channel (in a thread with `thread_ts`): the message is added to
        the channel, and its `message` event envelope is returned."""
        ts = self._next_ts()
        message: dict[str, Any] = {"type": "message", "user": user, "text": text, "ts": ts, "team": self.team_id}
        if thread_ts:
            message["thread_ts"] = thread_ts
            message["parent_user_id"] = self._messages.get(channel, {}).get(thread_ts, {}).get("user", "")
        self._messages.setdefault(channel, {})[ts] = dict(message)
        event = {**message, "channel": channel, "event_ts": ts, "channel_type": self._channel_type(channel)}
        return self.event_envelope(event, event_id=event_id)

    def message_changed(self, channel: str, ts: str, new_text: str) -> dict[str, Any]:
        """A person edits a message: the `message_changed` event envelope."""
        old = self._messages[channel][ts]
        new = {**old, "text": new_text, "edited": {"user": old.get("user"), "ts": self._next_ts()}}
        self._messages[channel][ts] = new
        event = {
            "type": "message",
            "subtype": "message_changed",
            "channel": channel,
            "hidden": True,
            "message": new,
            "previous_message": old,
            "ts": self._next_ts(),
            "event_ts": self._next_ts(),
            "channel_type": self._channel_type(channel),
        }
        return self.event_envelope(event)

    def bot_message_event(self, channel: str, ts: str) -> dict[str, Any]:
        """The `message` event Slack sends for a message the bot posted (bot_id set)."""
        message = self._messages[channel][ts]
        event = {**message, "channel": channel, "event_ts": ts, "channel_type": self._channel_type(channel)}
        return self.event_envelope(event)

    def block_action(
        self,
        user: str,
        message_ts: str,
        action_id: str,
        *,
        value: str | None = None,
        selected: str | None = None,
        channel: str | None = None,
    ) -> dict[str, Any]:
        """The interactivity payload of a person pressing a button (`value`) or choosing an option
        of a static select (`selected`) in the bot's message `message_ts`."""
        channel = channel or self.channel_id
        message = self._messages[channel][message_ts]
        block_id = ""
        for block in message.get("blocks") or []:
            for element in block.get("elements") or []:
                if element.get("action_id") == action_id:
                    block_id = block.get("block_id", "")
        action: dict[str, Any] = {"action_id": action_id, "block_id": block_id, "action_ts": self._next_ts()}
        if selected is not None:
            action |= {"type": "static_select", "selected_option": {"text": {"type": "plain_text", "text": selected},
                                                                    "value": selected}}  # fmt: skip
        else:
            action |= {"type": "button", "value": value or "", "text": {"type": "plain_text", "text": action_id}}
        person = self._users.get(user, {"name": user})
        return {
            "type": "block_actions",
            "user": {"id": user, "username": person["name"], "name": person["name"], "team_id": self.team_id},
            "api_app_id": self.app_id,
            "token": "verification-token-unused",
            "container": {"type": "message", "message_ts": message_ts, "channel_id": channel, "is_ephemeral": False},
            "trigger_id": f"{secrets.randbelow(10**12)}.{secrets.token_hex(8)}",
            "team": {"id": self.team_id, "domain": "fake"},
            "enterprise": None,
            "is_enterprise_install": False,
            "channel": {"id": channel, "name": self._channels.get(channel, {}).get("name", "")},
            "message": dict(message),
            "state": {"values": {}},
            "response_url": f"{self.base_url}/respond/{secrets.token_hex(8)}",
            "actions": [action],
        }

    def event_request(
        self, envelope: dict[str, Any], *, timestamp: int | None = None, secret: str | None = None
    ) -> tuple[bytes, dict[str, str]]:
        """Body and headers of the Events API POST carrying `envelope`, signed."""
        body = json.dumps(envelope)
        stamp = int(self.clock()) if timestamp is None else timestamp
        return body.encode(), signed_headers(body, secret or self.signing_secret, timestamp=stamp)

    def interaction_request(
        self, payload: dict[str, Any], *, timestamp: int | None = None, secret: str | None = None
    ) -> tuple[bytes, dict[str, str]]:
        """Body and headers of the interactivity POST (`payload=<json>`, form-encoded), signed."""
        body = urllib.parse.urlencode({"payload": json.dumps(payload)})
        stamp = int(self.clock()) if timestamp is None else timestamp
        headers = signed_headers(
            body, secret or self.signing_secret, timestamp=stamp, content_type="application/x-www-form-urlencoded"
        )
        return body.encode(), headers

    # --- the server --------------------------------------------------------------------------

    def _app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/api/{method}", self._method, methods=["GET", "POST"]),
                Route("/upload/{file_id}", self._upload, methods=["POST"]),
                Route("/respond/{key}", self._respond, methods=["POST"]),
                WebSocketRoute("/link/", self._socket),
            ]
        )

    def _next_ts(self) -> str:
        return f"{int(self.clock())}.{next(self._ts):06d}"

    def _channel_type(self, channel: str) -> str:
        return "group" if self._channels.get(channel, {}).get("is_private") else "channel"

    async def _method(self, request: Request) -> Response:
        method = request.path_params["method"]
        params, encoding = await _params(request)
        token = params.pop("token", None)
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            token = auth[7:].strip()
        call = Call(
            name=method,
            http_method=request.method,
            path=request.url.path,
            params=params,
            raw=dict(params),
            encoding=encoding,
            time=time.monotonic(),
            headers={k.lower(): v for k, v in request.headers.items()},
        )
        self.requests.append(call)
        try:
            fault = next((f for f in self._faults if f[0] == method), None)
            if fault is not None:
                self._faults.remove(fault)
                raise fault[1]
            if method not in self.METHODS:
                raise SlackApiError("unknown_method")
            if not token:
                raise SlackApiError("not_authed")
            if method == "apps.connections.open":
                if token != self.app_token:
                    raise SlackApiError("invalid_auth" if not token.startswith("xoxb-") else "not_allowed_token_type")
            elif token != self.token:
                raise SlackApiError("invalid_auth")
            handler = getattr(self, "_" + method.replace(".", "_"))
            result = handler(params)
            body: dict[str, Any] = {"ok": True, **result}
            call.status, call.response = 200, body
            return JSONResponse(body)
        except SlackApiError as error:
            body = {"ok": False, "error": error.error}
            call.status, call.response = error.status, body
            return JSONResponse(body, status_code=error.status, headers=error.headers)

    async def _upload(self, request: Request) -> Response:
        file_id = request.path_params["file_id"]
        data = await request.body()
        call = Call("upload", "POST", request.url.path, {"file_id": file_id}, {}, "bytes", time.monotonic())
        call.files = {"file": (None, data)}
        self.requests.append(call)
        upload = self.uploads.get(file_id)
        if upload is None or upload.get("data") is not None:
            call.status = 404
            return PlainTextResponse("not found", status_code=404)
        upload["data"] = data
        call.status = 200
        return PlainTextResponse(f"OK - {len(data)}")

    async def _respond(self, request: Request) -> Response:
        body = await request.body()
        self.requests.append(Call("respond", "POST", request.url.path, json.loads(body or b"{}"), {}, "json",
                                  time.monotonic(), status=200))  # fmt: skip
        return PlainTextResponse("ok")

    # --- the methods -------------------------------------------------------------------------

    def _auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": "https://fake-team.slack.com/",
            "team": "Fake Team",
            "user": "aftersales",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _channel(self, params: dict[str, Any], name: str = "channel") -> str:
        channel = str(params.get(name) or "")
        if not channel:
            raise SlackApiError("channel_not_found")
        if channel not in self._channels:
            raise SlackApiError("channel_not_found")
        return channel

    def _content(self, params: dict[str, Any]) -> tuple[str, list[dict[str, Any]] | None]:
        text = params.get("text")
        blocks = params.get("blocks")
        if isinstance(blocks, str):
            try:
                blocks = json.loads(blocks)
            except ValueError as error:
                raise SlackApiError("invalid_blocks_format") from error
        if blocks is not None:
            _check_blocks(blocks)
        if not text and not blocks:
            raise SlackApiError("no_text")
        if text is not None and len(str(text)) > MAX_TEXT:
            raise SlackApiError("msg_too_long")
        return str(text or ""), blocks

    def _post(self, channel: str, text: str, blocks: list[dict[str, Any]] | None, thread_ts: str | None,
              **extra: Any) -> dict[str, Any]:  # fmt: skip
        ts = self._next_ts()
        message: dict[str, Any] = {
            "type": "message",
            "user": self.bot_user_id,
            "bot_id": self.bot_id,
            "app_id": self.app_id,
            "text": text,
            "ts": ts,
            "team": self.team_id,
            **extra,
        }
        if blocks is not None:
            message["blocks"] = blocks
        if thread_ts:
            parent = self._messages[channel].get(thread_ts)
            if parent is None:
                raise SlackApiError("thread_not_found")
            root = parent.get("thread_ts") or thread_ts
            message["thread_ts"] = root
            top = self._messages[channel][root]
            top["thread_ts"] = root
            top["reply_count"] = int(top.get("reply_count", 0)) + 1
        self._messages[channel][ts] = message
        if self._events_url:
            self._deliver(self.bot_message_event(channel, ts))
        return message

    def _chat_postMessage(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(params)
        text, blocks = self._content(params)
        thread_ts = params.get("thread_ts") or None
        message = self._post(channel, text, blocks, str(thread_ts) if thread_ts else None)
        return {"channel": channel, "ts": message["ts"], "message": dict(message)}

    def _chat_update(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(params)
        ts = str(params.get("ts") or "")
        message = self._messages[channel].get(ts)
        if message is None:
            raise SlackApiError("message_not_found")
        if message.get("bot_id") != self.bot_id:
            raise SlackApiError("cant_update_message")
        text, blocks = self._content(params)
        message["text"] = text
        if blocks is not None:
            message["blocks"] = blocks
        message["edited"] = {"user": self.bot_user_id, "ts": self._next_ts()}
        return {"channel": channel, "ts": ts, "text": text, "message": dict(message)}

    def _chat_postEphemeral(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(params)
        user = str(params.get("user") or "")
        if user not in self._users:
            raise SlackApiError("user_not_found")
        text, blocks = self._content(params)
        ts = self._next_ts()
        thread_ts = params.get("thread_ts") or None
        self._ephemeral.append({"channel": channel, "user": user, "text": text, "blocks": blocks,
                                "thread_ts": thread_ts, "ts": ts})  # fmt: skip
        return {"message_ts": ts}

    def _conversations_info(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"channel": dict(self._channels[self._channel(params)])}

    def _users_info(self, params: dict[str, Any]) -> dict[str, Any]:
        user = self._users.get(str(params.get("user") or ""))
        if user is None:
            raise SlackApiError("user_not_found")
        return {"user": json.loads(json.dumps(user))}

    def _files_getUploadURLExternal(self, params: dict[str, Any]) -> dict[str, Any]:
        filename = params.get("filename")
        length = params.get("length")
        if not filename:
            raise SlackApiError("invalid_arguments")
        try:
            size = int(length)  # type: ignore[arg-type]
        except (TypeError, ValueError) as error:
            raise SlackApiError("invalid_arguments") from error
        file_id = "F" + secrets.token_hex(5).upper()
        self.uploads[file_id] = {"id": file_id, "filename": str(filename), "length": size, "data": None,
                                 "shared": None, "title": None}  # fmt: skip
        return {"upload_url": f"{self.base_url}/upload/{file_id}", "file_id": file_id}

    def _files_completeUploadExternal(self, params: dict[str, Any]) -> dict[str, Any]:
        try:
            files = json.loads(params.get("files") or "[]") if isinstance(params.get("files"), str) else params["files"]
        except (KeyError, ValueError) as error:
            raise SlackApiError("invalid_arguments") from error
        if not files:
            raise SlackApiError("invalid_arguments")
        done = []
        for entry in files:
            upload = self.uploads.get(str(entry.get("id")))
            if upload is None or upload["data"] is None:
                raise SlackApiError("file_not_found")
            if len(upload["data"]) != upload["length"]:
                raise SlackApiError("file_upload_size_mismatch")
            upload["title"] = entry.get("title") or upload["filename"]
            done.append({"id": upload["id"], "name": upload["filename"], "title": upload["title"],
                         "size": upload["length"]})  # fmt: skip
        channel_id = params.get("channel_id") or None
        if channel_id:
            channel = self._channel(params, "channel_id")
            thread_ts = params.get("thread_ts") or None
            text = str(params.get("initial_comment") or "")
            message = self._post(channel, text, None, str(thread_ts) if thread_ts else None, files=done,
                                 upload=True)  # fmt: skip
            for entry in done:
                self.uploads[entry["id"]]["shared"] = {"channel": channel, "thread_ts": message.get("thread_ts"),
                                                       "ts": message["ts"]}  # fmt: skip
        return {"files": done}

    def _apps_connections_open(self, params: dict[str, Any]) -> dict[str, Any]:
        ticket = secrets.token_hex(8)
        return {"url": f"ws://127.0.0.1:{self._served.port}/link/?ticket={ticket}&app_id={self.app_id}"}

    # --- Socket Mode -------------------------------------------------------------------------

    @property
    def socket_connected(self) -> bool:
        return bool(self._sockets)

    async def _socket(self, websocket: WebSocket) -> None:
        await websocket.accept()
        outgoing: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._sockets.append(outgoing)
        await websocket.send_json({"type": "hello", "num_connections": len(self._sockets),
                                   "connection_info": {"app_id": self.app_id},
                                   "debug_info": {"host": "fake", "approximate_connection_time": 3600}})  # fmt: skip

        async def receive() -> None:
            with contextlib.suppress(WebSocketDisconnect):
                while True:
                    answer = json.loads(await websocket.receive_text())
                    async with self._acked:
                        self.socket_acks[str(answer.get("envelope_id"))] = answer
                        self._acked.notify_all()
            outgoing.put_nowait(None)  # the app hung up

        reader = asyncio.create_task(receive())
        try:
            while (envelope := await outgoing.get()) is not None:
                await websocket.send_json(envelope)
            await websocket.close()
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            self._sockets.remove(outgoing)
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    async def socket_send(self, payload: dict[str, Any], *, seconds: float = 5.0) -> dict[str, Any]:
        """Push an event envelope (`event_envelope`, ...) or an interactivity payload (`block_action`)
        over the Socket Mode connection, and wait for the app's acknowledgement (returned)."""
        if not self._sockets:
            raise RuntimeError("no Socket Mode connection")
        kind = "events_api" if payload.get("type") == "event_callback" else "interactive"
        envelope_id = secrets.token_hex(12)
        envelope = {
            "envelope_id": envelope_id,
            "type": kind,
            "payload": payload,
            "accepts_response_payload": kind == "interactive",
            "retry_attempt": 0,
            "retry_reason": "",
        }
        self._sockets[-1].put_nowait(envelope)
        async with asyncio.timeout(seconds), self._acked:
            await self._acked.wait_for(lambda: envelope_id in self.socket_acks)
        return self.socket_acks[envelope_id]

    # --- event delivery ----------------------------------------------------------------------

    def _deliver(self, envelope: dict[str, Any]) -> None:
        task = asyncio.get_running_loop().create_task(self.send(envelope))
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)

    async def send(
        self, envelope: dict[str, Any], *, url: str | None = None, retry_num: int | None = None
    ) -> httpx.Response:
        """POST a signed event envelope to the app (`url`, or the one given to `deliver_events_to`);
        `retry_num` adds Slack's retry headers, as when an earlier delivery was not acknowledged."""
        body, headers = self.event_request(envelope)
        if retry_num:
            headers |= {"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": "http_timeout"}
        async with httpx.AsyncClient(timeout=10) as client:
            return await client.post(url or str(self._events_url), content=body, headers=headers)

    async def interact(self, payload: dict[str, Any], *, url: str | None = None) -> httpx.Response:
        """POST a signed interactivity payload (a button press) to the app."""
        body, headers = self.interaction_request(payload)
        async with httpx.AsyncClient(timeout=10) as client:
            return await client.post(url or str(self._events_url), content=body, headers=headers)


async def _params(request: Request) -> tuple[dict[str, Any], str]:
    """The parameters however slack_sdk sent them: query string, then the body (form or JSON)."""
    params: dict[str, Any] = dict(request.query_params)
    encoding = "query" if params else "none"
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if request.method == "POST":
        if kind == "application/json":
            raw = await request.body()
            data = json.loads(raw) if raw else {}
            if isinstance(data, dict):
                params.update(data)
            encoding = "json"
        elif kind == "application/x-www-form-urlencoded":
            params.update(urllib.parse.parse_qsl((await request.body()).decode(), keep_blank_values=True))
            encoding = "form"
        else:  # slack_sdk sends multipart only for the retired files.upload, which the fake does not serve
            raw = await request.body()
            encoding = "other" if raw else encoding
    return params, encoding


def _check_blocks(blocks: Any) -> None:
    """Slack's own limits on Block Kit that a card could break: a list of at most 50 blocks, each
    with a type; section texts at most 3,000 characters; at most 25 elements in an actions block."""
    if not isinstance(blocks, list) or len(blocks) > MAX_BLOCKS:
        raise SlackApiError("invalid_blocks")
    for block in blocks:
        if not isinstance(block, dict) or "type" not in block:
            raise SlackApiError("invalid_blocks")
        text = block.get("text")
        if isinstance(text, dict) and len(str(text.get("text", ""))) > MAX_SECTION_TEXT:
            raise SlackApiError("invalid_blocks")
        for field in block.get("fields") or []:
            if len(str(field.get("text", ""))) > 2000:
                raise SlackApiError("invalid_blocks")
        if block["type"] == "actions" and len(block.get("elements") or []) > 25:
            raise SlackApiError("invalid_blocks")
