"""`aftersales run`: one ASGI app (Starlette on uvicorn) for the customer channels.

    POST /webhooks/telegram   verified by the secret token, kept in the inbox, then 200
    GET  /webhooks/whatsapp   Meta's subscription check
    POST /webhooks/whatsapp   verified by X-Hub-Signature-256 over the raw body, kept, then 200
    POST /slack/events        the agents' Slack console (events and interactivity), when SLACK_* are set
    GET  /healthz             the process is up
    GET  /readyz              the store answers and the channels started
    GET  /metrics             counters in the Prometheus text format

Beside the routes, in the same process: the inbox's splitter (kept webhooks into events, when this
process holds its lease) and workers (turns), the delivery loop, Telegram long polling when no
webhook URL is set, and the SLA clock (`tick`). SIGTERM stops taking new work, lets turns in
flight finish, hands the inbox shards and the splitter back and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from bot.app import App
from bot.config import Settings
from bot.manager import DialogueManager, conversation_tag
from bot.messages import Outbound
from bot.store import StoreError
from channels.base import Channel, ChannelEvent
from channels.delivery import Delivery, FailureReport, note_inbound
from channels.inbox import Entry, Inbox, Raw, heartbeat

if TYPE_CHECKING:
    from channels.slack import SlackConsole

log = logging.getLogger(__name__)

ALBUM_WAIT = 1.0  # seconds an album's first photo waits for the others (Telegram sends no end marker)
MAX_BODY = 1024 * 1024  # webhook bodies larger than this are refused (platforms send far less)
TICK_SECONDS = 30.0
MAX_ATTEMPTS = 5  # a turn that fails this often is set aside (kept in failed_turns), not retried forever


class ChannelSettingsError(ValueError):
    """A channel is half configured: the message names the missing variable."""


def channels_from(settings: Settings) -> dict[str, Channel]:
    """The channels whose variables are set; a half-set channel is an error naming what is missing."""
    found: dict[str, Channel] = {}
    telegram = {"TELEGRAM_BOT_TOKEN": settings.telegram_bot_token}
    if settings.telegram_webhook_url:
        telegram["TELEGRAM_WEBHOOK_SECRET"] = settings.telegram_webhook_secret
    if any(telegram.values()) or settings.telegram_webhook_url or settings.telegram_webhook_secret:
        _require(telegram)
        from channels.telegram import TelegramChannel

        found["telegram"] = TelegramChannel(
            str(settings.telegram_bot_token),
            api_base=settings.telegram_api_base,
            webhook_url=settings.telegram_webhook_url,
            webhook_secret=settings.telegram_webhook_secret,
        )
    whatsapp = {
        "WHATSAPP_ACCESS_TOKEN": settings.whatsapp_access_token,
        "WHATSAPP_PHONE_NUMBER_ID": settings.whatsapp_phone_number_id,
        "WHATSAPP_APP_SECRET": settings.whatsapp_app_secret,
        "WHATSAPP_VERIFY_TOKEN": settings.whatsapp_verify_token,
    }
    if any(whatsapp.values()):
        _require(whatsapp)
        from channels.whatsapp import WhatsAppChannel

        found["whatsapp"] = WhatsAppChannel(
            access_token=str(settings.whatsapp_access_token),
            phone_number_id=str(settings.whatsapp_phone_number_id),
            app_secret=str(settings.whatsapp_app_secret),
            verify_token=str(settings.whatsapp_verify_token),
            api_base=settings.whatsapp_api_base,
        )
    return found


def _require(variables: dict[str, str | None]) -> None:
    missing = [name for name, value in variables.items() if not value]
    if missing:
        raise ChannelSettingsError(f"half-configured channel: set {', '.join(missing)} too (or none of its variables)")


@dataclass
class Runtime:
    """What the app runs, shared by the routes and the background loops."""

    settings: Settings
    channels: dict[str, Channel]
    app: App | None = None
    manager: DialogueManager | None = None
    inbox: Inbox | None = None
    delivery: Delivery | None = None
    slack: SlackConsole | None = None  # the agents' Slack console, when SLACK_* are set
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    ready: bool = False
    in_flight: int = 0
    counters: dict[str, int] = field(
        default_factory=lambda: {"webhooks": 0, "events": 0, "duplicates": 0, "unsplit": 0, "turns": 0}
    )
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


def build(settings: Settings, channels: dict[str, Channel] | None = None, app: App | None = None) -> Starlette:
    """The ASGI app; `channels` and `app` may be given (tests point them at local fakes)."""
    runtime = Runtime(settings, channels_from(settings) if channels is None else channels)
    runtime.app = app

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await _start(runtime)
        try:
            yield
        finally:
            await _stop(runtime)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    routes = [  # the router tries them in order: the busiest first
        Route("/webhooks/whatsapp", _Webhook(runtime, "whatsapp"), methods=["POST"]),
        Route("/webhooks/telegram", _Webhook(runtime, "telegram"), methods=["POST"]),
        Route("/slack/events", partial(_slack, runtime), methods=["POST"]),
        Route("/webhooks/whatsapp", partial(_whatsapp_get, runtime), methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", partial(_readyz, runtime), methods=["GET"]),
        Route("/metrics", partial(_metrics, runtime), methods=["GET"]),
    ]
    starlette = Starlette(routes=routes, lifespan=lifespan)
    starlette.state.runtime = runtime
    return starlette


# -- the routes ------------------------------------------------------------------------------


_WEBHOOK_HEADERS = frozenset({b"content-length", b"x-hub-signature-256", b"x-telegram-bot-api-secret-token"})


class _Webhook:
    """A platform's webhook as a plain ASGI endpoint: the busiest route skips building Request and
    Response objects (about a fifth of its cost); what it does is `_accept`."""

    def __init__(self, runtime: Runtime, name: str) -> None:
        self.runtime = runtime
        self.name = name

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Only the headers a webhook is judged by are decoded (ASGI gives names in lower case).
        headers = {key.decode(): value.decode("latin-1") for key, value in scope["headers"] if key in _WEBHOOK_HEADERS}
        body = await _body(headers, receive)
        status, text = (413, "too large") if body is None else await _accept(self.runtime, self.name, headers, body)
        content = text.encode()
        start = {"type": "http.response.start", "status": status}
        start["headers"] = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"%d" % len(content))]
        await send(start)
        await send({"type": "http.response.body", "body": content})


async def _accept(runtime: Runtime, name: str, headers: Mapping[str, str], body: bytes) -> tuple[int, str]:
    """Verify a webhook over its raw body, keep it in the inbox, and only then say 200. The body is
    split into events later, by the splitter (`_split`): the door does as little as it can."""
    channel = runtime.channels.get(name)
    if channel is None or runtime.inbox is None:
        return 404, "not found"
    if not channel.verify(headers, body):
        return 403, "forbidden"  # nothing is stored
    # Signed, so the platform's: kept as it is, parsed by the splitter (which sets aside what it
    # cannot read, rather than have the platform send it again for days). It must be UTF-8, which
    # the store's client reads it back as (JSON is).
    try:
        body.decode()
    except UnicodeDecodeError:
        return 400, "not utf-8"
    runtime.counters["webhooks"] += 1
    try:
        await runtime.inbox.keep(name, body, time.time())
    except StoreError:
        return 503, "store unavailable"  # the platform retries
    return 200, "ok"


async def _body(headers: Mapping[str, str], receive: Receive) -> bytes | None:
    """The request body, or None past MAX_BODY (declared or counted)."""
    declared = headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY):
        return None
    message = await receive()
    if message["type"] == "http.request" and not message.get("more_body", False):  # one chunk: most webhooks
        body: bytes = message.get("body", b"")
        return body if len(body) <= MAX_BODY else None
    chunks, size = [], 0
    while True:
        if message["type"] != "http.request":
            return None  # the client went away
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
        message = await receive()


async def _whatsapp_get(runtime: Runtime, request: Request) -> Response:
    channel = runtime.channels.get("whatsapp")
    if channel is None:
        return PlainTextResponse("not found", status_code=404)
    challenge = channel.verify_subscription(request.query_params)  # type: ignore[attr-defined]
    if challenge is None:
        return PlainTextResponse("forbidden", status_code=403)
    return PlainTextResponse(challenge)


async def _readyz(runtime: Runtime, request: Request) -> Response:
    store_ok = False
    if runtime.app is not None and runtime.app.store is not None:
        try:
            store_ok = bool(await runtime.app.store.redis.ping())
        except Exception:
            store_ok = False
    ready = runtime.ready and store_ok and not runtime.stop.is_set()
    body = {"ready": ready, "store": store_ok, "channels": sorted(runtime.channels), "started": runtime.ready}
    return JSONResponse(body, status_code=200 if ready else 503)


async def _metrics(runtime: Runtime, request: Request) -> Response:
    lines = [f"aftersales_{name}_total {value}" for name, value in runtime.counters.items()]
    if runtime.delivery is not None:
        counters = runtime.delivery.counters
        lines += [
            f"aftersales_deliveries_sent_total {counters.sent}",
            f"aftersales_deliveries_retried_total {counters.retried}",
            f"aftersales_deliveries_failed_total {counters.failed}",
        ]
    lines.append(f"aftersales_turns_in_flight {runtime.in_flight}")
    if runtime.inbox is not None:
        with contextlib.suppress(StoreError):  # the store down: /readyz says so; these lines wait
            kept, events = await runtime.inbox.waiting()
            lines += [f"aftersales_inbox_kept {kept}", f"aftersales_inbox_events {events}"]
    return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")


async def _slack(runtime: Runtime, request: Request) -> Response:
    """Slack's events and interactivity (bolt checks the signature)."""
    if runtime.slack is None:
        return PlainTextResponse("not found", status_code=404)
    return await runtime.slack.handle(request)


# -- the background work -------------------------------------------------------------------------


async def _start(runtime: Runtime) -> None:
    if runtime.app is None:
        runtime.app = App(runtime.settings)
    runtime.manager = manager = await runtime.app.start()
    manager.deliver_replies = True  # a turn's replies are queued for delivery with its save
    runtime.inbox = Inbox(manager.store, channels=runtime.channels)
    runtime.delivery = Delivery(manager.store, manager.outbox, runtime.channels, report=_reporter(runtime))
    manager.outbox.on_post = runtime.delivery.wake.set
    for channel in runtime.channels.values():
        await channel.start()
    if runtime.settings.wants_slack:
        from channels.slack import start_console

        runtime.slack = await start_console(runtime.settings, manager)
    spawn = runtime.tasks.append
    spawn(asyncio.create_task(_workers(runtime)))
    spawn(asyncio.create_task(runtime.delivery.run(runtime.stop)))
    spawn(asyncio.create_task(_clock(runtime)))
    poll = getattr(runtime.channels.get("telegram"), "poll", None)
    if poll is not None and not runtime.settings.telegram_webhook_url:
        spawn(asyncio.create_task(poll(runtime.inbox.append, runtime.stop)))
    # A webhook allocates many short-lived objects that reference counting frees at once; collecting
    # the young generation every 700 allocations only burns CPU (a quarter of the route's time).
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    runtime.ready = True
    log.info("serving channels: %s", ", ".join(runtime.channels) or "none (set TELEGRAM_* or WHATSAPP_*)")


async def _stop(runtime: Runtime) -> None:
    """Stop taking work, let turns in flight finish, give the inbox shards back."""
    runtime.ready = False
    runtime.stop.set()
    if runtime.tasks:
        await asyncio.wait(runtime.tasks, timeout=30)
    if runtime.inbox is not None:
        with contextlib.suppress(StoreError):
            await runtime.inbox.release()
    for channel in runtime.channels.values():
        with contextlib.suppress(Exception):
            await channel.stop()
    if runtime.slack is not None:
        with contextlib.suppress(Exception):
            await runtime.slack.stop()
    if runtime.app is not None:
        await runtime.app.stop()


def _reporter(runtime: Runtime) -> FailureReport:
    """Who hears of a message the platform refused for good: the transcript and the listeners."""

    async def report(outbound: Outbound, reason: str) -> None:
        if runtime.manager is not None:
            await runtime.manager.delivery_failed(outbound, reason)

    return report


async def _clock(runtime: Runtime) -> None:
    """The SLA clock: queued conversations past their deadline become urgent; old photos expire."""
    while not runtime.stop.is_set():
        try:
            assert runtime.manager is not None
            await runtime.manager.tick()
        except Exception:
            log.exception("tick failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(runtime.stop.wait(), TICK_SECONDS)


async def _workers(runtime: Runtime) -> None:
    """Lease inbox shards (a fair share among live workers) and run one reader per shard; for each
    channel whose splitter's lease this worker holds, split that channel's kept webhooks."""
    assert runtime.inbox is not None and runtime.app is not None and runtime.app.store is not None
    inbox, store = runtime.inbox, runtime.app.store
    readers: dict[int, asyncio.Task[None]] = {}
    splitters: dict[str, asyncio.Task[None]] = {}
    while not runtime.stop.is_set():
        try:
            live = await heartbeat(store, inbox.worker_id)
            shards = await inbox.lease(live)
        except StoreError as error:
            log.warning("inbox cannot reach the store: %s", error)
            shards = []
        for shard in shards:
            if shard in inbox.leaving:
                if shard not in readers or readers[shard].done():
                    await inbox.hand_over(shard)  # no turn in hand: let it go at once
            elif shard not in readers or readers[shard].done():
                readers[shard] = asyncio.create_task(_read_shard(runtime, shard))
        for channel in inbox.splits:
            if channel not in splitters or splitters[channel].done():
                splitters[channel] = asyncio.create_task(_split(runtime, channel))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(runtime.stop.wait(), 2.0)
    running = [*readers.values(), *splitters.values()]
    if running:
        await asyncio.wait(running, timeout=30)


async def _split(runtime: Runtime, channel: str) -> None:
    """A channel's splitter: its kept webhooks onto the shards, for as long as this worker holds its lease."""
    assert runtime.inbox is not None
    while not runtime.stop.is_set() and channel in runtime.inbox.splits:
        try:
            await split_kept(runtime, channel, block_ms=500)
        except StoreError as error:
            log.warning("inbox split failed: %s", error)
            await asyncio.sleep(1.0)
        except Exception:  # e.g. the stream's key overwritten by hand: said each time, not lost in a task
            log.exception("the %s splitter failed; trying again", channel)
            await asyncio.sleep(1.0)


async def split_kept(runtime: Runtime, channel: str, *, block_ms: int) -> int:
    """One batch of a channel's kept webhooks, in the order they came, split into events on the shards;
    returns how many webhooks. A splitter that dies between the two leaves its webhooks pending:
    the next one splits them again, and the shards' de-duplication drops what was already there."""
    assert runtime.inbox is not None
    raws = await runtime.inbox.read_raw(channel, block_ms=block_ms)
    events: list[ChannelEvent] = []
    aside: list[Raw] = []
    for raw in raws:
        split = _events_of(runtime, raw)
        if split is None:
            aside.append(raw)
        else:
            events += split
    added = await runtime.inbox.append(events)
    await runtime.inbox.set_aside(aside)
    await runtime.inbox.ack_raw(channel, raws)
    runtime.counters["events"] += added
    runtime.counters["duplicates"] += len(events) - added
    return len(raws)


def _events_of(runtime: Runtime, raw: Raw) -> list[ChannelEvent] | None:
    """A kept webhook's events; None when it cannot be split (not a JSON object, or the adapter
    fails on it): it is logged, counted and set aside, or it would hold up every conversation
    behind it. (Only the channels this process serves are split here: see `Inbox.channels`.)"""
    try:
        payload = orjson.loads(raw.body)
    except orjson.JSONDecodeError:
        payload = None
    if not isinstance(payload, dict):
        log.warning("a kept %s webhook (%s) was set aside: not a JSON object", raw.channel, raw.entry_id)
        runtime.counters["unsplit"] += 1
        return None
    try:
        return runtime.channels[raw.channel].split(payload, raw.received_at)
    except Exception:
        log.exception("a kept %s webhook (%s) could not be split: set aside", raw.channel, raw.entry_id)
        runtime.counters["unsplit"] += 1
        return None


async def _read_shard(runtime: Runtime, shard: int) -> None:
    """One shard's entries, in order: a conversation's messages are never handled out of order."""
    assert runtime.inbox is not None
    inbox = runtime.inbox
    attempts: dict[str, int] = {}
    while not runtime.stop.is_set() and inbox.holds(shard):
        try:
            entries = await inbox.read(shard, block_ms=500)
        except StoreError as error:
            log.warning("inbox read failed: %s", error)
            await asyncio.sleep(1.0)
            continue
        while entries and not runtime.stop.is_set() and inbox.holds(shard):  # leaving: its next reader goes on
            turn, entries = await _next_turn(runtime, shard, entries)
            key = turn[0].entry_id
            try:
                await _handle(runtime, turn)
            except Exception:
                attempts[key] = attempts.get(key, 0) + 1
                log.exception("turn from the inbox failed (attempt %d)", attempts[key])
                if attempts[key] < MAX_ATTEMPTS and turn[0].deliveries < MAX_ATTEMPTS:
                    await asyncio.sleep(min(5.0, 0.2 * 2 ** attempts[key]))
                    break  # read again: the same entries come back first, order kept
            attempts.pop(key, None)
            await inbox.ack(turn)
    with contextlib.suppress(StoreError):
        await inbox.hand_over(shard)  # between turns: the shard's next reader cannot overtake this one


async def _next_turn(runtime: Runtime, shard: int, entries: list[Entry]) -> tuple[list[Entry], list[Entry]]:
    """The first entry, with the rest of its album (waiting briefly for photos still on their way)."""
    first, rest = entries[0], entries[1:]
    group = first.event.group
    if not group:
        return [first], rest
    assert runtime.inbox is not None
    deadline = first.event.received_at + ALBUM_WAIT
    while time.time() < deadline and not runtime.stop.is_set():
        wait_ms = max(1, int((deadline - time.time()) * 1000))
        more = await runtime.inbox.read(shard, block_ms=wait_ms, fresh=True)
        known = {e.entry_id for e in rest} | {first.entry_id}
        rest += [e for e in more if e.entry_id not in known]
    same = [e for e in rest if e.event.group == group and e.event.conversation_id == first.event.conversation_id]
    return [first, *same], [e for e in rest if e not in same]


async def _handle(runtime: Runtime, turn: list[Entry]) -> None:
    assert runtime.manager is not None
    events: list[ChannelEvent] = [entry.event for entry in turn]
    channel = runtime.channels[events[0].channel]
    runtime.in_flight += 1
    try:
        inbound = await channel.to_inbound(events)
        if inbound is None:
            return
        await note_inbound(runtime.manager.store, inbound.conversation_id, events[0].received_at or time.time())
        result = await runtime.manager.handle_turn(inbound)
        runtime.counters["turns"] += 1
        log.debug(
            "turn done conversation=%s replies=%d", conversation_tag(inbound.conversation_id), len(result.replies)
        )
    finally:
        runtime.in_flight -= 1
