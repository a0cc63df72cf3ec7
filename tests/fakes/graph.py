"""A fake WhatsApp Cloud API (Graph) server, and webhook bodies as Meta sends them.

    async with FakeGraph() as graph:
        async with httpx.AsyncClient(base_url=graph.base_url, headers=graph.auth_headers) as client:
            await client.post(graph.messages_path, json={...})
        body, headers = graph.signed(graph.text_message("15551234567", "hello"), app_secret)

Served: `POST /{version}/{phone_number_id}/messages` (send; or, with `"status": "read"`, mark a
received message read with an optional typing indicator), `GET /{version}/{media_id}` (media
URL and facts), `GET /media-download/{media_id}` (the bytes, bearer token required, URL valid
for `media_url_ttl` seconds). Errors use Graph's error object
`{"error": {"message", "type", "code", "error_subcode"?, "error_data"?, "fbtrace_id"}}`.

Only JSON request bodies are read (Graph also takes form bodies; the adapters send JSON).
The send checks are Graph's own limits (three reply buttons, 20-character titles, ten list
rows...); the spec's schema is checked separately by `tests.fakes.specs`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes._server import Call, ServedApp

DEFAULT_TOKEN = "EAAGfakeAccessTokenForLocalTests0123456789"
WINDOW_SECONDS = 24 * 3600
SEND_TYPES = frozenset(
    {
        *("text", "image", "audio", "document", "video", "sticker"),
        *("location", "contacts", "interactive", "template", "reaction"),
    }
)
INTERACTIVE_TYPES = frozenset(
    {
        *("button", "list", "product", "product_list", "flow", "catalog_message"),
        *("cta_url", "location_request_message", "call_permission_request"),
    }
)
MEDIA_KINDS = ("image", "audio", "document", "video", "sticker")
# What the fake answers by default for an injected fault: (Graph error code, message, extra fields).
_FAULTS: dict[int, tuple[int, str, dict[str, Any]]] = {
    400: (100, "(#100) Invalid parameter", {}),
    401: (190, "Invalid OAuth access token - Cannot parse access token", {}),
    403: (10, "(#10) Application does not have permission for this action", {}),
    404: (100, "Unsupported get request.", {"error_subcode": 33}),
    429: (
        130429,
        "(#130429) Rate limit hit",
        {"error_data": {"messaging_product": "whatsapp", "details": "Cloud API message throughput has been reached."}},
    ),
    500: (
        131000,
        "(#131000) Something went wrong",
        {"error_data": {"messaging_product": "whatsapp", "details": "Something went wrong. Please try again later."}},
    ),
    503: (2, "(#2) Service temporarily unavailable", {"is_transient": True}),
}
_REENGAGEMENT_DETAILS = (
    "Message failed to send because more than 24 hours have passed since the customer last replied to this number."
)


class GraphApiError(Exception):
    """An error answer, turned into Graph's error object with `status`."""

    def __init__(self, status: int, code: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"message": self.message, "type": "OAuthException", "code": self.code}
        error.update(self.extra)
        error["fbtrace_id"] = "A" + secrets.token_urlsafe(16)
        return {"error": error}


def _param_error(message: str, details: str | None = None, code: int = 100) -> GraphApiError:
    extra: dict[str, Any] = {}
    if details:
        extra["error_data"] = {"messaging_product": "whatsapp", "details": details}
    return GraphApiError(400, code, message, **extra)


def _invalid(details: str) -> GraphApiError:
    return _param_error("(#131009) Parameter value is not valid", details, code=131009)


def wa_id_of(number: str) -> str:
    """A phone number as WhatsApp ids write it: digits only (`+1 555-0100` -> `15550100`)."""
    return re.sub(r"\D", "", number)


def new_wamid() -> str:
    """A message id shaped like WhatsApp's (`wamid.` and base64)."""
    return "wamid." + base64.b64encode(b"\x1c\x18\x0b" + secrets.token_bytes(30)).decode()


def sign(body: bytes, app_secret: str) -> str:
    """The `X-Hub-Signature-256` value Meta puts on a webhook POST: `sha256=<hex HMAC-SHA256>`."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def webhook_request(payload: dict[str, Any], app_secret: str) -> tuple[bytes, dict[str, str]]:
    """The raw body and headers of a webhook POST carrying `payload`, signed with `app_secret`."""
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    return body, {"Content-Type": "application/json", "X-Hub-Signature-256": sign(body, app_secret)}


def verification_query(verify_token: str, challenge: str = "1158201444", mode: str = "subscribe") -> dict[str, str]:
    """The query string of Meta's webhook verification GET (the route must echo `hub.challenge`)."""
    return {"hub.mode": mode, "hub.verify_token": verify_token, "hub.challenge": challenge}


def notification(
    value: dict[str, Any], *, phone_number_id: str, display_phone_number: str, waba_id: str
) -> dict[str, Any]:
    """The envelope of a webhook notification around one change `value` (messages or statuses)."""
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": waba_id,
                "changes": [
                    {
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": display_phone_number,
                                "phone_number_id": phone_number_id,
                            },
                            **value,
                        },
                        "field": "messages",
                    }
                ],
            }
        ],
    }


class FakeGraph:
    """The fake server. Use as `async with FakeGraph() as graph:` (starts and stops it).

    Args:
        token: the access token (bearer) the fake accepts.
        version: the Graph version in the paths it serves (others answer Graph's unknown-path error).
        phone_number_id, display_phone_number, waba_id: the business number and account.
        strict_window: False (default) treats a number the fake has not seen as inside the 24-hour
            window; True requires an inbound message (built with this fake) in the last 24 hours.
        media_url_ttl: seconds a media URL stays valid (Graph: 5 minutes).
    """

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        *,
        version: str = "v23.0",
        phone_number_id: str = "106540352242922",
        display_phone_number: str = "15550783881",
        waba_id: str = "102290129340398",
        strict_window: bool = False,
        media_url_ttl: float = 300.0,
    ) -> None:
        self.token = token
        self.version = version
        self.phone_number_id = phone_number_id
        self.display_phone_number = display_phone_number
        self.waba_id = waba_id
        self.strict_window = strict_window
        self.media_url_ttl = media_url_ttl
        self.requests: list[Call] = []
        self.status_events: list[dict[str, Any]] = []
        self.read_receipts: list[str] = []
        self.clock: Callable[[], float] = time.time
        self._served = ServedApp(self._app())
        self._media: dict[str, dict[str, Any]] = {}
        self._last_inbound: dict[str, float] = {}
        self._closed: dict[str, str] = {}
        self._faults: list[tuple[str, GraphApiError]] = []
        self._outbound: dict[str, dict[str, Any]] = {}

    # --- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> FakeGraph:
        await self._served.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._served.stop()

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:PORT`, standing for `https://graph.facebook.com` (WHATSAPP_API_BASE)."""
        return self._served.base_url

    @property
    def messages_path(self) -> str:
        return f"/{self.version}/{self.phone_number_id}/messages"

    @property
    def messages_url(self) -> str:
        return self.base_url + self.messages_path

    @property
    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    # --- what tests do to it -----------------------------------------------------------------

    def add_media(
        self, media_id: str, data: bytes, mime_type: str = "image/jpeg", *, sha256: str | None = None
    ) -> dict[str, Any]:
        """Make `media_id` known: `GET /{version}/{media_id}` describes it, its URL serves `data`."""
        self._media[media_id] = {
            "data": data,
            "mime_type": mime_type,
            "sha256": sha256 or hashlib.sha256(data).hexdigest(),
            "file_size": len(data),
        }
        return {"id": media_id, "mime_type": mime_type, "sha256": self._media[media_id]["sha256"]}

    def fail_next(
        self,
        path_kind: str,
        status: int = 429,
        *,
        times: int = 1,
        code: int | None = None,
        message: str | None = None,
    ) -> None:
        """The next `times` requests of `path_kind` fail with `status` and Graph's error object.

        Path kinds: `messages` (send), `media` (GET media URL), `download` (the media bytes).
        Defaults per status: 429 -> code 130429 "Rate limit hit", 500 -> 131000 "Something went
        wrong", 503 -> 2 (transient), 400 -> 100, 401 -> 190; `code` and `message` override.
        """
        if path_kind not in ("messages", "media", "download"):
            raise ValueError("path_kind is one of: messages, media, download")
        default_code, default_message, extra = _FAULTS.get(status, (1, "An unknown error has occurred.", {}))
        error = GraphApiError(status, code or default_code, message or default_message, **extra)
        self._faults.extend((path_kind, error) for _ in range(times))

    def close_window(self, wa_id: str, *, deliver: str = "error") -> None:
        """More than 24 hours since the customer's last message: free-form sends are refused.

        `deliver="error"`: the send answers HTTP 400 with Graph error 131047 ("Re-engagement
        message"). `deliver="status"`: the send is accepted (200, a wamid) and the failure comes
        the other way Cloud API reports it: a `failed` status with error 131047, added to
        `status_events` as a webhook payload ready for `signed`. Templates go either way.
        An inbound message built with this fake (`text_message`...) opens the window again.
        """
        if deliver not in ("error", "status"):
            raise ValueError("deliver is 'error' or 'status'")
        number = wa_id_of(wa_id)
        self._closed[number] = deliver
        self._last_inbound[number] = self.clock() - WINDOW_SECONDS - 3600

    def open_window(self, wa_id: str) -> None:
        """The customer just wrote (what building an inbound message does)."""
        number = wa_id_of(wa_id)
        self._closed.pop(number, None)
        self._last_inbound[number] = self.clock()

    def window_open(self, wa_id: str) -> bool:
        number = wa_id_of(wa_id)
        last = self._last_inbound.get(number)
        if last is None:
            return not self.strict_window
        return self.clock() - last < WINDOW_SECONDS

    def calls(self, path_kind: str | None = None) -> list[Call]:
        """Recorded requests, all or those of one path kind."""
        return [call for call in self.requests if path_kind is None or call.name == path_kind]

    def sent(self, to: str) -> list[dict[str, Any]]:
        """The bodies of messages accepted (HTTP 200) for `to` (compared as digits), in order."""
        number = wa_id_of(to)
        return [
            call.params
            for call in self.requests
            if call.name == "messages" and call.status == 200 and wa_id_of(str(call.params.get("to", ""))) == number
        ]

    def texts(self, to: str) -> list[str]:
        """What the customer reads from accepted sends: text bodies, interactive body texts,
        image captions, and `template:<name>` for templates."""
        out = []
        for body in self.sent(to):
            kind = body.get("type", "text")
            if kind == "text":
                out.append(body["text"]["body"])
            elif kind == "interactive":
                out.append(body["interactive"].get("body", {}).get("text", ""))
            elif kind == "template":
                out.append(f"template:{body['template']['name']}")
            elif kind in MEDIA_KINDS:
                out.append(body[kind].get("caption", ""))
        return out

    # --- webhook payloads (inbound messages open the 24-hour window) -------------------------

    def signed(self, payload: dict[str, Any], app_secret: str) -> tuple[bytes, dict[str, str]]:
        """Body and headers of the webhook POST (same as module-level `webhook_request`)."""
        return webhook_request(payload, app_secret)

    def _notification(self, value: dict[str, Any]) -> dict[str, Any]:
        return notification(
            value,
            phone_number_id=self.phone_number_id,
            display_phone_number=self.display_phone_number,
            waba_id=self.waba_id,
        )

    def _inbound(
        self,
        wa_id: str,
        kind: str,
        content: dict[str, Any],
        *,
        name: str,
        message_id: str | None,
        timestamp: int | None,
        context_id: str | None,
        reopen: bool,
    ) -> dict[str, Any]:
        number = wa_id_of(wa_id)
        message: dict[str, Any] = {}
        if context_id is not None:
            message["context"] = {"from": self.display_phone_number, "id": context_id}
        message.update(
            {
                "from": number,
                "id": message_id or new_wamid(),
                "timestamp": str(int(self.clock()) if timestamp is None else timestamp),
                "type": kind,
                kind: content,
            }
        )
        if reopen:
            self.open_window(number)
        return self._notification({"contacts": [{"profile": {"name": name}, "wa_id": number}], "messages": [message]})

    def text_message(
        self,
        wa_id: str,
        text: str,
        *,
        name: str = "Customer",
        message_id: str | None = None,
        timestamp: int | None = None,
        context_id: str | None = None,
        reopen: bool = True,
    ) -> dict[str, Any]:
        """A notification with one inbound text message from `wa_id`."""
        return self._inbound(
            wa_id,
            "text",
            {"body": text},
            name=name,
            message_id=message_id,
            timestamp=timestamp,
            context_id=context_id,
            reopen=reopen,
        )

    def image_message(
        self,
        wa_id: str,
        data: bytes | None = None,
        *,
        media_id: str | None = None,
        mime_type: str = "image/jpeg",
        caption: str | None = None,
        name: str = "Customer",
        message_id: str | None = None,
        timestamp: int | None = None,
        reopen: bool = True,
    ) -> dict[str, Any]:
        """A notification with one inbound image. With `data`, the media id is registered so the
        adapter can fetch it; without, `media_id` must already be known (or the fetch fails)."""
        media = media_id or str(1_000_000_000_000_000 + secrets.randbelow(9 * 10**15))
        if data is not None:
            self.add_media(media, data, mime_type)
        known = self._media.get(media)
        image: dict[str, Any] = {
            "mime_type": mime_type,
            "sha256": base64.b64encode(hashlib.sha256(known["data"]).digest()).decode() if known else "",
            "id": media,
        }
        if caption is not None:
            image["caption"] = caption
        return self._inbound(
            wa_id,
            "image",
            image,
            name=name,
            message_id=message_id,
            timestamp=timestamp,
            context_id=None,
            reopen=reopen,
        )

    def button_reply(
        self,
        wa_id: str,
        button_id: str,
        title: str,
        *,
        context_id: str | None = None,
        name: str = "Customer",
        message_id: str | None = None,
        timestamp: int | None = None,
        reopen: bool = True,
    ) -> dict[str, Any]:
        """The customer pressed a reply button of an interactive message (`context_id`: its wamid;
        by default the latest interactive message the fake accepted for that number)."""
        return self._inbound(
            wa_id,
            "interactive",
            {"type": "button_reply", "button_reply": {"id": button_id, "title": title}},
            name=name,
            message_id=message_id,
            timestamp=timestamp,
            context_id=context_id or self._latest_sent(wa_id, "interactive") or new_wamid(),
            reopen=reopen,
        )

    def list_reply(
        self,
        wa_id: str,
        row_id: str,
        title: str,
        *,
        description: str | None = None,
        context_id: str | None = None,
        name: str = "Customer",
        message_id: str | None = None,
        timestamp: int | None = None,
        reopen: bool = True,
    ) -> dict[str, Any]:
        """The customer chose a row of a list message."""
        reply: dict[str, Any] = {"id": row_id, "title": title}
        if description is not None:
            reply["description"] = description
        return self._inbound(
            wa_id,
            "interactive",
            {"type": "list_reply", "list_reply": reply},
            name=name,
            message_id=message_id,
            timestamp=timestamp,
            context_id=context_id or self._latest_sent(wa_id, "interactive") or new_wamid(),
            reopen=reopen,
        )

    def template_button(
        self,
        wa_id: str,
        payload: str,
        text: str,
        *,
        context_id: str | None = None,
        name: str = "Customer",
        message_id: str | None = None,
        timestamp: int | None = None,
        reopen: bool = True,
    ) -> dict[str, Any]:
        """The customer pressed a quick-reply button of a template message (type `button`)."""
        return self._inbound(
            wa_id,
            "button",
            {"payload": payload, "text": text},
            name=name,
            message_id=message_id,
            timestamp=timestamp,
            context_id=context_id or self._latest_sent(wa_id, "template") or new_wamid(),
            reopen=reopen,
        )

    def status(
        self,
        message_id: str,
        status: str,
        recipient_id: str,
        *,
        timestamp: int | None = None,
        errors: list[dict[str, Any]] | None = None,
        category: str = "service",
        name: str = "Customer",
    ) -> dict[str, Any]:
        """A notification with one status (`sent`, `delivered`, `read`, `failed`) of a message we
        sent. `failed` statuses carry `errors` (Graph's error entries); the others pricing. Like
        Meta's, it also carries `contacts` (the recipient), though it holds no message."""
        entry: dict[str, Any] = {
            "id": message_id,
            "status": status,
            "timestamp": str(int(self.clock()) if timestamp is None else timestamp),
            "recipient_id": wa_id_of(recipient_id),
        }
        if status == "failed":
            entry["errors"] = errors or [
                {
                    "code": 131000,
                    "title": "Something went wrong",
                    "message": "Something went wrong",
                    "error_data": {"details": "Message failed to send because of an unknown error."},
                    "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
                }
            ]
        else:
            conversation: dict[str, Any] = {"id": secrets.token_hex(16), "origin": {"type": category}}
            if status == "sent":
                conversation["expiration_timestamp"] = str(int(self.clock()) + WINDOW_SECONDS)
            entry["conversation"] = conversation
            entry["pricing"] = {"billable": True, "pricing_model": "CBP", "category": category}
        contact = {"profile": {"name": name}, "wa_id": wa_id_of(recipient_id)}
        return self._notification({"contacts": [contact], "statuses": [entry]})

    def _latest_sent(self, wa_id: str, kind: str) -> str | None:
        number = wa_id_of(wa_id)
        for wamid, body in reversed(self._outbound.items()):
            if body.get("type") == kind and wa_id_of(str(body.get("to", ""))) == number:
                return wamid
        return None

    # --- the HTTP side -----------------------------------------------------------------------

    def _app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/media-download/{media_id}", self._download_endpoint, methods=["GET"]),
                Route("/{version}/{node}/messages", self._messages_endpoint, methods=["POST"]),
                Route("/{version}/{node}", self._node_endpoint, methods=["GET"]),
                Route("/{rest:path}", self._unknown_endpoint, methods=["GET", "POST", "DELETE"]),
            ]
        )

    def _record(self, request: Request, name: str, params: dict[str, Any], encoding: str) -> Call:
        call = Call(
            name=name,
            http_method=request.method,
            path=request.url.path,
            params=params,
            raw=params,
            encoding=encoding,
            time=self.clock(),
            headers={k: ("<redacted>" if k.lower() == "authorization" else v) for k, v in request.headers.items()},
        )
        self.requests.append(call)
        return call

    def _authorise(self, request: Request) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if not header:
            raise GraphApiError(
                401, 2500, "An active access token must be used to query information about the current user."
            )
        if scheme.lower() != "bearer" or token.strip() != self.token:
            raise GraphApiError(401, 190, "Invalid OAuth access token - Cannot parse access token")

    def _fault(self, kind: str) -> None:
        for index, (name, error) in enumerate(self._faults):
            if name == kind:
                del self._faults[index]
                raise error

    def _check_version(self, version: str, path: str) -> None:
        if version != self.version:
            raise GraphApiError(400, 2500, f"Unknown path components: {path}")

    @staticmethod
    def _answer(call: Call, body: Any, status: int = 200) -> JSONResponse:
        call.status = status
        call.response = body
        return JSONResponse(body, status_code=status)

    async def _messages_endpoint(self, request: Request) -> Response:
        raw = await request.body()
        try:
            params = json.loads(raw) if raw else {}
            encoding = "json"
        except ValueError:
            params, encoding = {"_body": raw.decode(errors="replace")}, "invalid"
        if not isinstance(params, dict):
            params, encoding = {"_body": params}, "invalid"
        call = self._record(request, "messages", params, encoding)
        try:
            self._authorise(request)
            self._check_version(request.path_params["version"], request.url.path)
            node = request.path_params["node"]
            if node != self.phone_number_id:
                raise GraphApiError(
                    400,
                    100,
                    f"Unsupported post request. Object with ID '{node}' does not exist, cannot be loaded due to "
                    "missing permissions, or does not support this operation. Please read the Graph API "
                    "documentation at https://developers.facebook.com/docs/graph-api",
                    error_subcode=33,
                )
            if encoding != "json":
                raise _param_error("(#100) Invalid parameter", "The request body must be a JSON object.")
            self._fault("messages")
            body = self._send(params)
        except GraphApiError as error:
            return self._answer(call, error.body(), error.status)
        return self._answer(call, body)

    def _send(self, params: dict[str, Any]) -> dict[str, Any]:
        if params.get("messaging_product") != "whatsapp":
            raise _param_error("(#100) The parameter messaging_product is required.")
        if "status" in params:
            return self._read_receipt(params)
        to = params.get("to")
        if not isinstance(to, str) or not wa_id_of(to):
            raise _param_error("(#100) The parameter to is required.")
        kind = params.get("type", "text")
        if kind not in SEND_TYPES:
            kinds = ", ".join(sorted(SEND_TYPES))
            raise _param_error(f'(#100) Param type must be one of {{{kinds}}} - got "{kind}".')
        if kind not in params or not isinstance(params[kind], dict | list):
            raise _param_error(f"(#100) The parameter {kind} is required.")
        recipient_type = params.get("recipient_type", "individual")
        if recipient_type not in ("individual", "group"):
            raise _param_error("(#100) Param recipient_type must be one of {INDIVIDUAL, GROUP}")
        if kind == "text":
            _check_text(params["text"])
        elif kind == "interactive":
            _check_interactive(params["interactive"])
        elif kind in MEDIA_KINDS:
            self._check_media(params[kind])
        elif kind == "template":
            _check_template(params["template"])
        number = wa_id_of(to)
        deliver = self._closed.get(number, "error")
        late = kind != "template" and not self.window_open(number)
        if late and deliver == "error":
            raise GraphApiError(
                400,
                131047,
                "(#131047) Re-engagement message",
                error_data={"messaging_product": "whatsapp", "details": _REENGAGEMENT_DETAILS},
            )
        wamid = new_wamid()
        self._outbound[wamid] = params
        message: dict[str, Any] = {"id": wamid}
        if kind == "template":
            message["message_status"] = "accepted"
        if late:
            self.status_events.append(
                self.status(
                    wamid,
                    "failed",
                    number,
                    errors=[
                        {
                            "code": 131047,
                            "title": "Re-engagement message",
                            "message": "Re-engagement message",
                            "error_data": {"details": _REENGAGEMENT_DETAILS},
                            "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
                        }
                    ],
                )
            )
        return {"messaging_product": "whatsapp", "contacts": [{"input": to, "wa_id": number}], "messages": [message]}

    def _read_receipt(self, params: dict[str, Any]) -> dict[str, Any]:
        """Mark an inbound message read (and show a typing indicator): not a message, no window."""
        if params["status"] != "read":
            raise _param_error("(#100) Param status must be one of {READ}")
        message_id = params.get("message_id")
        if not isinstance(message_id, str) or not message_id.startswith("wamid."):
            raise _param_error("(#100) The parameter message_id is required.")
        indicator = params.get("typing_indicator")
        if indicator is not None and indicator != {"type": "text"}:
            raise _param_error("(#100) Invalid parameter", 'typing_indicator must be {"type": "text"}.')
        self.read_receipts.append(message_id)
        return {"success": True}

    def _check_media(self, media: dict[str, Any]) -> None:
        has_id, has_link = "id" in media, "link" in media
        if has_id == has_link:
            raise _param_error("(#100) Invalid parameter", "Exactly one of id or link must be given for media.")
        if has_id and str(media["id"]) not in self._media:
            raise _param_error("(#131053) Media upload error", "Unknown media id.", code=131053)
        if has_link and not re.match(r"^https?://", str(media["link"])):
            raise _param_error("(#100) Invalid parameter", "The media link must be an http(s) URL.")
        if len(str(media.get("caption", ""))) > 1024:
            raise _invalid("Media caption is too long. Max length: 1024")

    async def _node_endpoint(self, request: Request) -> Response:
        node = request.path_params["node"]
        call = self._record(request, "media", dict(request.query_params) | {"media_id": node}, "query")
        try:
            self._authorise(request)
            self._check_version(request.path_params["version"], request.url.path)
            media = self._media.get(node)
            wanted_number = request.query_params.get("phone_number_id")
            if media is None or (wanted_number is not None and wanted_number != self.phone_number_id):
                raise GraphApiError(
                    400,
                    100,
                    f"Unsupported get request. Object with ID '{node}' does not exist, cannot be loaded due to "
                    "missing permissions, or does not support this operation. Please read the Graph API "
                    "documentation at https://developers.facebook.com/docs/graph-api",
                    error_subcode=33,
                )
            self._fault("media")
        except GraphApiError as error:
            return self._answer(call, error.body(), error.status)
        expires = int(self.clock() + self.media_url_ttl)
        url = f"{self.base_url}/media-download/{node}?ext={expires}&hash={secrets.token_urlsafe(12)}"
        return self._answer(
            call,
            {
                "messaging_product": "whatsapp",
                "url": url,
                "mime_type": media["mime_type"],
                "sha256": media["sha256"],
                # The v23.0 spec types file_size as a string ('303833'); adapters should accept both.
                "file_size": str(media["file_size"]),
                "id": node,
            },
        )

    async def _download_endpoint(self, request: Request) -> Response:
        media_id = request.path_params["media_id"]
        call = self._record(request, "download", dict(request.query_params) | {"media_id": media_id}, "query")
        try:
            self._authorise(request)
            media = self._media.get(media_id)
            if media is None:
                raise GraphApiError(404, 100, "(#100) Invalid media")
            expires = request.query_params.get("ext", "")
            if not expires.isdigit() or int(expires) < self.clock():
                raise GraphApiError(404, 100, "URL signature expired")
            self._fault("download")
        except GraphApiError as error:
            return self._answer(call, error.body(), error.status)
        call.status = 200
        call.response = f"<{len(media['data'])} bytes>"
        return Response(media["data"], media_type=media["mime_type"])

    async def _unknown_endpoint(self, request: Request) -> Response:
        call = self._record(request, "unknown", dict(request.query_params), "query")
        error = GraphApiError(400, 2500, f"Unknown path components: {request.url.path}")
        return self._answer(call, error.body(), error.status)


def _check_text(text: dict[str, Any]) -> None:
    body = text.get("body")
    if not isinstance(body, str) or not body:
        raise _param_error("(#100) The parameter text['body'] is required.")
    if len(body) > 4096:
        raise _param_error("(#100) Param text['body'] must be at most 4096 characters long.")


def _check_interactive(interactive: dict[str, Any]) -> None:
    kind = interactive.get("type")
    action = interactive.get("action")
    if kind not in INTERACTIVE_TYPES:
        raise _param_error("(#100) The parameter interactive['type'] is required.")
    if not isinstance(action, dict):
        raise _param_error("(#100) The parameter interactive['action'] is required.")
    body = interactive.get("body")
    if kind in ("button", "list"):
        if not isinstance(body, dict) or not isinstance(body.get("text"), str) or not body["text"]:
            raise _param_error("(#100) The parameter interactive['body']['text'] is required.")
        if len(body["text"]) > 1024:
            raise _invalid("Body text is too long. Max length: 1024")
    footer = interactive.get("footer")
    if isinstance(footer, dict) and len(str(footer.get("text", ""))) > 60:
        raise _invalid("Footer text is too long. Max length: 60")
    header = interactive.get("header")
    if isinstance(header, dict) and header.get("type") == "text" and len(str(header.get("text", ""))) > 60:
        raise _invalid("Header text is too long. Max length: 60")
    if kind == "button":
        buttons = action.get("buttons")
        if not isinstance(buttons, list) or not 1 <= len(buttons) <= 3:
            raise _invalid("Buttons count should be between 1 and 3")
        seen: set[tuple[str, str]] = set()
        for button in buttons:
            reply = button.get("reply") if isinstance(button, dict) else None
            if not isinstance(button, dict) or button.get("type") != "reply" or not isinstance(reply, dict):
                raise _param_error("(#100) Invalid parameter", "Each button must be {type: reply, reply: {id, title}}.")
            title, button_id = reply.get("title"), reply.get("id")
            if not isinstance(title, str) or not 1 <= len(title) <= 20:
                raise _invalid("Button title length invalid. Min length: 1, Max length: 20")
            if not isinstance(button_id, str) or not 1 <= len(button_id) <= 256:
                raise _invalid("Button id length invalid. Min length: 1, Max length: 256")
            if ("id", button_id) in seen or ("title", title) in seen:
                raise _invalid("Button title and id must be unique.")
            seen.update({("id", button_id), ("title", title)})
    elif kind == "list":
        button = action.get("button")
        if not isinstance(button, str) or not 1 <= len(button) <= 20:
            raise _invalid("Button label length invalid. Min length: 1, Max length: 20")
        sections = action.get("sections")
        if not isinstance(sections, list) or not 1 <= len(sections) <= 10:
            raise _invalid("Sections count should be between 1 and 10")
        rows = [row for section in sections if isinstance(section, dict) for row in section.get("rows", [])]
        if not 1 <= len(rows) <= 10:
            raise _invalid("Total row count exceed max allowed count: 10")
        if len(sections) > 1 and any(not isinstance(s, dict) or not s.get("title") for s in sections):
            raise _invalid("Section title is required when there is more than one section.")
        ids = set()
        for row in rows:
            if not isinstance(row, dict) or not isinstance(row.get("id"), str) or not isinstance(row.get("title"), str):
                raise _param_error("(#100) Invalid parameter", "Each row must have an id and a title.")
            if not 1 <= len(row["id"]) <= 200:
                raise _invalid("Row id length invalid. Max length: 200")
            if not 1 <= len(row["title"]) <= 24:
                raise _invalid("Row title length invalid. Min length: 1, Max length: 24")
            if len(str(row.get("description", ""))) > 72:
                raise _invalid("Row description length invalid. Max length: 72")
            if row["id"] in ids:
                raise _invalid("Row ids must be unique.")
            ids.add(row["id"])


def _check_template(template: dict[str, Any]) -> None:
    if not isinstance(template.get("name"), str) or not template["name"]:
        raise _param_error("(#100) The parameter template['name'] is required.")
    language = template.get("language")
    if not isinstance(language, dict) or not isinstance(language.get("code"), str):
        raise _param_error("(#100) The parameter template['language']['code'] is required.")
