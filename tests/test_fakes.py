"""The platform fakes behave like Telegram and WhatsApp Cloud API when the real clients drive them.

python-telegram-bot and httpx talk to the fakes over real HTTP on 127.0.0.1. Each test runs on
its own event loop with a time limit, and the servers are stopped inside it.
"""

from __future__ import annotations

import asyncio
import datetime as dtm
import hashlib
import hmac
import json
import time
import warnings
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx
import pytest
import telegram
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.ext import ApplicationBuilder, CallbackQueryHandler, ContextTypes, MessageHandler, filters

from tests.fakes.graph import FakeGraph, sign, verification_query, webhook_request
from tests.fakes.specs import SKIP_REASON, GraphSpec, TelegramSpec, graph_problems, specs_dir, telegram_problems
from tests.fakes.telegram import FakeTelegram

LIMIT = 15.0  # seconds any one test may take, servers included


def run(coroutine: Coroutine[Any, Any, Any], limit: float = LIMIT) -> Any:
    """Run a test body on a fresh loop, bounded in time (the fakes stop inside it)."""

    async def bounded() -> Any:
        return await asyncio.wait_for(coroutine, limit)

    return asyncio.run(bounded())


async def eventually(condition: Callable[[], Any], within: float = 3.0) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


def seconds(value: int | dtm.timedelta) -> float:
    return value.total_seconds() if isinstance(value, dtm.timedelta) else float(value)


def keyboard(*pairs: tuple[str, str]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup([[InlineKeyboardButton(label, callback_data=data) for label, data in pairs]])


def whatsapp_text(to: str, body: str) -> dict[str, Any]:
    return {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": "text",
        "text": {"preview_url": False, "body": body},
    }


def whatsapp_buttons(to: str, body: str, buttons: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": "interactive",
        "interactive": {
            "type": "button",
            "body": {"text": body},
            "action": {"buttons": [{"type": "reply", "reply": {"id": i, "title": t}} for i, t in buttons]},
        },
    }


def whatsapp_list(to: str, body: str, rows: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": "interactive",
        "interactive": {
            "type": "list",
            "body": {"text": body},
            "action": {
                "button": "Choose",
                "sections": [{"title": "Options", "rows": [{"id": i, "title": t} for i, t in rows]}],
            },
        },
    }


def whatsapp_template(to: str, name: str, payload: str) -> dict[str, Any]:
    return {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": "template",
        "template": {
            "name": name,
            "language": {"policy": "deterministic", "code": "en"},
            "components": [
                {"type": "body", "parameters": [{"type": "text", "text": "SO-10023"}]},
                {
                    "type": "button",
                    "sub_type": "quick_reply",
                    "index": "0",
                    "parameters": [{"type": "payload", "payload": payload}],
                },
            ],
        },
    }


# --- Telegram, driven by python-telegram-bot ------------------------------------------------


def test_ptb_bot_sends_edits_answers_and_downloads():
    async def body():
        async with FakeTelegram() as tg, telegram.Bot(tg.token, **tg.bot_kwargs) as bot:
            me = await bot.get_me()
            assert me.is_bot and me.id == tg.bot_id and me.username == tg.bot_user["username"]

            sent = await bot.send_message(42, "Which do you prefer?", reply_markup=keyboard(("Refund", "refund")))
            assert isinstance(sent, telegram.Message) and sent.chat.id == 42 and sent.from_user.id == tg.bot_id
            assert sent.reply_markup.inline_keyboard[0][0].callback_data == "refund"
            assert tg.sent(42) == ["Which do you prefer?"]
            call = tg.calls("sendMessage")[-1]
            assert call.params["chat_id"] == 42  # typed, though PTB sent a form string
            assert call.params["reply_markup"] == {"inline_keyboard": [[{"text": "Refund", "callback_data": "refund"}]]}
            assert call.encoding == "form" and call.time > 0

            # The customer presses the button: the query carries the bot's message and must be answered once.
            update = Update.de_json(tg.callback_update(42, "refund", language_code="es"), bot)
            query = update.callback_query
            assert query.data == "refund" and query.message.message_id == sent.message_id
            assert query.from_user.language_code == "es"
            assert await bot.answer_callback_query(query.id, text="OK")
            with pytest.raises(telegram.error.BadRequest, match=r"(?i)query is too old"):
                await bot.answer_callback_query(query.id)

            edited = await bot.edit_message_reply_markup(42, sent.message_id, reply_markup=None)
            assert edited.reply_markup is None and tg.messages(42)[0].get("reply_markup") is None
            with pytest.raises(telegram.error.BadRequest, match=r"(?i)message is not modified"):
                await bot.edit_message_reply_markup(42, sent.message_id, reply_markup=None)
            edited = await bot.edit_message_text("Refund chosen", 42, sent.message_id)
            assert edited.text == "Refund chosen" and tg.messages(42)[0]["text"] == "Refund chosen"
            with pytest.raises(telegram.error.BadRequest, match=r"(?i)message to edit not found"):
                await bot.edit_message_text("x", 42, 9999)
            assert await bot.send_chat_action(42, "typing")

            photo = tg.photo_update(42, b"\xff\xd8 a photo", caption="broken mug", language_code="ja")
            largest = max(photo["message"]["photo"], key=lambda size: size["width"] * size["height"])
            file = await bot.get_file(largest["file_id"])
            assert file.file_size == len(b"\xff\xd8 a photo") and file.file_path.startswith(tg.base_file_url)
            assert bytes(await file.download_as_bytearray()) == b"\xff\xd8 a photo"
            document = tg.document_update(42, b"%PDF-1.7", file_name="invoice.pdf")
            file = await bot.get_file(document["message"]["document"]["file_id"])
            assert bytes(await file.download_as_bytearray()) == b"%PDF-1.7"
            with pytest.raises(telegram.error.BadRequest, match=r"(?i)invalid file_id"):
                await bot.get_file("no-such-file")

    run(body())


def test_ptb_maps_the_fakes_errors_as_for_telegram():
    async def body():
        async with FakeTelegram() as tg, telegram.Bot(tg.token, **tg.bot_kwargs) as bot:
            tg.fail_next("sendMessage", status=429, retry_after=3)
            with pytest.raises(telegram.error.RetryAfter) as caught, warnings.catch_warnings():
                warnings.simplefilter("ignore")
                await bot.send_message(42, "hello")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                assert seconds(caught.value.retry_after) == 3
            assert tg.calls("sendMessage")[-1].response == {
                "ok": False,
                "error_code": 429,
                "description": "Too Many Requests: retry after 3",
                "parameters": {"retry_after": 3},
            }
            tg.fail_next("sendMessage", status=500)
            with pytest.raises(telegram.error.NetworkError) as failed:
                await bot.send_message(42, "hello")
            assert isinstance(failed.value, telegram.error.TelegramError)
            assert await bot.send_message(42, "hello")  # faults are used up: the next call goes
            assert tg.sent(42) == ["hello"]  # failed calls are recorded, but not as sent

            tg.block(43)
            with pytest.raises(telegram.error.Forbidden, match=r"(?i)blocked"):
                await bot.send_message(43, "anyone there?")
            with pytest.raises(telegram.error.BadRequest, match=r"(?i)BUTTON_DATA_INVALID"):
                await bot.send_message(42, "x", reply_markup=keyboard(("long", "x" * 65)))
            with pytest.raises(telegram.error.BadRequest, match=r"(?i)message text is empty"):
                await bot.send_message(42, " ")

            wrong = f"{tg.bot_id}:AAH-this-is-not-the-right-token_99"
            async with httpx.AsyncClient() as client:
                answer = await client.post(f"{tg.base_url}/bot{wrong}/getMe")
                assert answer.status_code == 401
                assert answer.json() == {"ok": False, "error_code": 401, "description": "Unauthorized"}
                answer = await client.get(f"{tg.base_url}/bot{tg.token}/noSuchMethod")
                assert answer.status_code == 404 and answer.json()["ok"] is False
            with pytest.raises(telegram.error.InvalidToken):
                async with telegram.Bot(wrong, **tg.bot_kwargs):
                    pass

    run(body())


def test_get_updates_long_polls_briefly_and_confirms_with_offset():
    async def body():
        async with FakeTelegram(max_poll=0.5) as tg, telegram.Bot(tg.token, **tg.bot_kwargs) as bot:
            started = time.monotonic()
            assert await bot.get_updates(timeout=30) == ()
            assert time.monotonic() - started < 2  # capped at max_poll, whatever timeout asks

            async def later() -> None:
                await asyncio.sleep(0.1)
                tg.push_update(tg.text_update(7, "商品が壊れて届きました", language_code="ja"))

            pushing = asyncio.create_task(later())
            started = time.monotonic()
            updates = await bot.get_updates(timeout=30)
            await pushing
            assert time.monotonic() - started < 0.45 and len(updates) == 1  # woken by the push
            message = updates[0].message
            assert message.text == "商品が壊れて届きました" and message.from_user.language_code == "ja"
            assert message.chat.type == "private" and message.chat.id == 7

            album = tg.push_updates(tg.album_updates(7, [b"one", b"two", b"three"], caption="evidence"))
            updates = await bot.get_updates(offset=updates[-1].update_id + 1, timeout=1)
            assert [u.update_id for u in updates] == [u["update_id"] for u in album]
            groups = {u.message.media_group_id for u in updates}
            assert len(groups) == 1 and None not in groups
            assert [u.message.caption for u in updates] == ["evidence", None, None]
            assert all(len(u.message.photo) == 4 for u in updates)

            tg.push_update(tg.text_update(7, "/start"))
            later_updates = await bot.get_updates(offset=updates[-1].update_id + 1, timeout=1)
            assert [u.message.text for u in later_updates] == ["/start"]
            assert later_updates[0].message.entities[0].type == "bot_command"
            assert len(tg.pending_updates) == 1  # not confirmed until an offset passes it

    run(body())


def test_a_ptb_application_polls_replies_and_answers_callbacks():
    async def body():
        async with FakeTelegram(max_poll=0.3) as tg:
            application = ApplicationBuilder().token(tg.token).base_url(tg.bot_kwargs["base_url"])
            application = application.base_file_url(tg.base_file_url).build()

            async def echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
                await update.message.reply_text(f"echo ({update.effective_user.language_code}): {update.message.text}")

            async def pressed(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
                await update.callback_query.answer()
                await update.callback_query.edit_message_text(f"chosen: {update.callback_query.data}")

            application.add_handler(MessageHandler(filters.TEXT, echo))
            application.add_handler(CallbackQueryHandler(pressed))
            async with application:
                await application.start()
                await application.updater.start_polling(poll_interval=0.0, timeout=dtm.timedelta(seconds=1))
                tg.push_update(tg.text_update(9, "hola", language_code="es"))
                await eventually(lambda: tg.sent(9))
                assert tg.sent(9) == ["echo (es): hola"]
                await application.bot.send_message(9, "Pick one", reply_markup=keyboard(("Yes", "yes"), ("No", "no")))
                tg.push_update(tg.callback_update(9, "no"))
                await eventually(lambda: tg.answered_callbacks)
                await eventually(lambda: tg.messages(9)[-1]["text"] == "chosen: no")
                await application.updater.stop()
                await application.stop()
            methods = {call.name for call in tg.requests}
            assert {"getMe", "deleteWebhook", "getUpdates", "sendMessage", "answerCallbackQuery"} <= methods

    run(body())


def test_webhook_deliveries_carry_the_secret_and_are_retried():
    received: list[tuple[str | None, dict[str, Any]]] = []

    async def route(request: Request) -> Response:
        received.append((request.headers.get("x-telegram-bot-api-secret-token"), await request.json()))
        return Response(status_code=500 if len(received) == 1 else 200)

    receiver = Starlette(routes=[Route("/webhooks/telegram", route, methods=["POST"])])

    async def body():
        transport = httpx.ASGITransport(app=receiver)
        async with FakeTelegram(webhook_transport=transport) as tg, telegram.Bot(tg.token, **tg.bot_kwargs) as bot:
            assert await bot.set_webhook("https://bot.example/webhooks/telegram", secret_token="s3cret-Token_1")
            assert tg.webhook["url"] == "https://bot.example/webhooks/telegram"
            with pytest.raises(telegram.error.Conflict, match=r"(?i)webhook is active"):
                await bot.get_updates()
            update = tg.push_update(tg.text_update(5, "where is my parcel?"))
            await tg.settle()
            assert [secret for secret, _ in received] == ["s3cret-Token_1", "s3cret-Token_1"]
            assert [payload["update_id"] for _, payload in received] == [update["update_id"]] * 2
            assert [d.get("status") for d in tg.webhook_deliveries] == [500, 200]
            info = await bot.get_webhook_info()
            assert info.url == "https://bot.example/webhooks/telegram" and "500" in info.last_error_message
            with pytest.raises(telegram.error.BadRequest, match=r"(?i)secret token"):
                await bot.set_webhook("https://bot.example/webhooks/telegram", secret_token="not allowed!")
            assert await bot.delete_webhook()
            tg.push_update(tg.text_update(5, "hello?"))
            assert [u.message.text for u in await bot.get_updates(timeout=0)] == ["hello?"]

    run(body())


# --- WhatsApp Cloud API, driven by httpx ----------------------------------------------------


def test_graph_accepts_sends_as_the_cloud_api_does():
    async def body():
        async with (
            FakeGraph() as graph,
            httpx.AsyncClient(base_url=graph.base_url, headers=graph.auth_headers) as client,
        ):
            answer = await client.post(graph.messages_path, json=whatsapp_text("+81 90-1234-5678", "こんにちは"))
            assert answer.status_code == 200
            reply = answer.json()
            assert reply["messaging_product"] == "whatsapp"
            assert reply["contacts"] == [{"input": "+81 90-1234-5678", "wa_id": "819012345678"}]
            assert reply["messages"][0]["id"].startswith("wamid.")

            buttons = whatsapp_buttons("819012345678", "How can we help?", [("refund", "Refund"), ("repair", "Repair")])
            assert (await client.post(graph.messages_path, json=buttons)).status_code == 200
            listing = whatsapp_list("819012345678", "Pick", [("r1", "Replacement"), ("r2", "Refund")])
            assert (await client.post(graph.messages_path, json=listing)).status_code == 200
            graph.add_media("4490709327384033", b"\x89PNG...", "image/png")
            by_id = {
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": "819012345678",
                "type": "image",
                "image": {"id": "4490709327384033", "caption": "return label"},
            }
            assert (await client.post(graph.messages_path, json=by_id)).status_code == 200
            by_link = dict(by_id, image={"link": "https://shop.example/label.png"})
            assert (await client.post(graph.messages_path, json=by_link)).status_code == 200
            read = {"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.HBgLMTIz"}
            answer = await client.post(graph.messages_path, json=read | {"typing_indicator": {"type": "text"}})
            assert answer.json() == {"success": True} and graph.read_receipts == ["wamid.HBgLMTIz"]
            assert len(graph.sent("+81 90 1234 5678")) == 5
            assert graph.texts("819012345678") == ["こんにちは", "How can we help?", "Pick", "return label", ""]

            too_many = whatsapp_buttons("819012345678", "?", [("a", "A"), ("b", "B"), ("c", "C"), ("d", "D")])
            answer = await client.post(graph.messages_path, json=too_many)
            assert answer.status_code == 400 and answer.json()["error"]["code"] == 131009
            long_title = whatsapp_buttons("819012345678", "?", [("a", "A title longer than twenty")])
            assert (await client.post(graph.messages_path, json=long_title)).json()["error"]["code"] == 131009
            unknown_media = dict(by_id, image={"id": "nope"})
            assert (await client.post(graph.messages_path, json=unknown_media)).status_code == 400

            other_number = f"/{graph.version}/999999/messages"
            error = (await client.post(other_number, json=whatsapp_text("1", "x"))).json()["error"]
            assert error["code"] == 100 and error["error_subcode"] == 33
            assert len(graph.sent("819012345678")) == 5  # refused sends are recorded, not sent

        # the token is checked first: a wrong one answers Graph's error object with 401
        async with FakeGraph() as graph, httpx.AsyncClient(base_url=graph.base_url) as client:
            text = whatsapp_text("15551234567", "hi")
            answer = await client.post(graph.messages_path, json=text, headers={"Authorization": "Bearer wrong"})
            assert answer.status_code == 401
            error = answer.json()["error"]
            assert error["code"] == 190 and error["type"] == "OAuthException"
            assert set(error) >= {"message", "type", "code", "fbtrace_id"}
            assert (await client.post(graph.messages_path, json=text)).status_code == 401
            assert graph.sent("15551234567") == []

    run(body())


def test_graph_media_url_needs_the_token_and_expires():
    async def body():
        async with FakeGraph() as graph, httpx.AsyncClient(headers=graph.auth_headers) as client:
            photo = b"\xff\xd8\xff\xe0 evidence"
            graph.add_media("1037543291543636", photo, "image/jpeg")
            answer = await client.get(f"{graph.base_url}/{graph.version}/1037543291543636")
            assert answer.status_code == 200
            media = answer.json()
            assert media["id"] == "1037543291543636" and media["mime_type"] == "image/jpeg"
            assert media["sha256"] == hashlib.sha256(photo).hexdigest() and int(media["file_size"]) == len(photo)
            assert media["url"].startswith(f"{graph.base_url}/media-download/1037543291543636")

            download = await client.get(media["url"])
            assert download.status_code == 200 and download.content == photo
            assert download.headers["content-type"] == "image/jpeg"
            async with httpx.AsyncClient() as anonymous:
                assert (await anonymous.get(media["url"])).status_code == 401
                unauthorised = await anonymous.get(f"{graph.base_url}/{graph.version}/1037543291543636")
                assert unauthorised.status_code == 401 and "error" in unauthorised.json()

            missing = await client.get(f"{graph.base_url}/{graph.version}/404404")
            assert missing.status_code == 400 and missing.json()["error"]["error_subcode"] == 33
            now = time.time()
            graph.clock = lambda: now + graph.media_url_ttl + 1
            assert (await client.get(media["url"])).status_code == 404  # 5 minutes later: fetch a new URL

            graph.fail_next("media", status=500)
            assert (await client.get(f"{graph.base_url}/{graph.version}/1037543291543636")).status_code == 500
            assert (await client.get(f"{graph.base_url}/{graph.version}/1037543291543636")).status_code == 200

    run(body())


def test_graph_refuses_free_form_messages_outside_the_24_hour_window():
    async def body():
        async with (
            FakeGraph() as graph,
            httpx.AsyncClient(base_url=graph.base_url, headers=graph.auth_headers) as client,
        ):
            assert (
                await client.post(graph.messages_path, json=whatsapp_text("34600111222", "hola"))
            ).status_code == 200
            graph.close_window("34600111222")
            answer = await client.post(graph.messages_path, json=whatsapp_text("34600111222", "¿sigue ahí?"))
            assert answer.status_code == 400
            error = answer.json()["error"]
            assert error["code"] == 131047 and "24 hours" in error["error_data"]["details"]
            template = whatsapp_template("34600111222", "order_update", "resume")
            answer = await client.post(graph.messages_path, json=template)
            assert answer.status_code == 200 and answer.json()["messages"][0]["message_status"] == "accepted"

            graph.template_button("34600111222", "resume", "Continue")  # the customer answers: window open
            assert (
                await client.post(graph.messages_path, json=whatsapp_text("34600111222", "¡hola!"))
            ).status_code == 200
            assert graph.texts("34600111222") == ["hola", "template:order_update", "¡hola!"]

            # The other way Cloud API reports it: accepted, then a failed status by webhook.
            graph.close_window("34600111222", deliver="status")
            answer = await client.post(graph.messages_path, json=whatsapp_text("34600111222", "late"))
            assert answer.status_code == 200
            wamid = answer.json()["messages"][0]["id"]
            (status,) = graph.status_events[-1]["entry"][0]["changes"][0]["value"]["statuses"]
            assert status["id"] == wamid and status["status"] == "failed" and status["errors"][0]["code"] == 131047

        async with FakeGraph(strict_window=True) as graph:
            assert not graph.window_open("4915112345678")
            graph.text_message("4915112345678", "Hallo")
            assert graph.window_open("4915112345678")

    run(body())


def test_graph_fault_injection():
    async def body():
        async with (
            FakeGraph() as graph,
            httpx.AsyncClient(base_url=graph.base_url, headers=graph.auth_headers) as client,
        ):
            graph.fail_next("messages", status=429)
            graph.fail_next("messages", status=500)
            limited = await client.post(graph.messages_path, json=whatsapp_text("15551234567", "a"))
            assert limited.status_code == 429 and limited.json()["error"]["code"] == 130429
            broken = await client.post(graph.messages_path, json=whatsapp_text("15551234567", "b"))
            assert broken.status_code == 500 and broken.json()["error"]["code"] == 131000
            assert (await client.post(graph.messages_path, json=whatsapp_text("15551234567", "c"))).status_code == 200
            assert graph.texts("15551234567") == ["c"]
            assert [call.status for call in graph.calls("messages")] == [429, 500, 200]

    run(body())


def test_webhook_bodies_are_signed_and_shaped_like_meta_s():
    graph = FakeGraph(phone_number_id="1122334455667", display_phone_number="972123456789")
    payload = graph.text_message("972987654321", "Body Text", name="Test Name")
    body, headers = webhook_request(payload, "app-secret")
    expected = hmac.new(b"app-secret", body, hashlib.sha256).hexdigest()
    assert headers["X-Hub-Signature-256"] == f"sha256={expected}" == sign(body, "app-secret")
    assert graph.signed(payload, "app-secret") == (body, headers)
    assert json.loads(body) == payload

    value = payload["entry"][0]["changes"][0]["value"]
    assert payload["object"] == "whatsapp_business_account" and payload["entry"][0]["changes"][0]["field"] == "messages"
    assert value["metadata"] == {"display_phone_number": "972123456789", "phone_number_id": "1122334455667"}
    assert value["contacts"] == [{"profile": {"name": "Test Name"}, "wa_id": "972987654321"}]
    (message,) = value["messages"]
    assert message["type"] == "text" and message["text"] == {"body": "Body Text"} and message["from"] == "972987654321"
    assert message["id"].startswith("wamid.") and message["timestamp"].isdigit()

    image = graph.image_message("972987654321", b"jpeg bytes", caption="cracked")
    (message,) = image["entry"][0]["changes"][0]["value"]["messages"]
    assert message["image"]["caption"] == "cracked" and message["image"]["sha256"]  # registered: fetchable
    button = graph.button_reply("972987654321", "refund", "Refund")["entry"][0]["changes"][0]["value"]["messages"][0]
    assert button["interactive"] == {"type": "button_reply", "button_reply": {"id": "refund", "title": "Refund"}}
    assert button["context"]["id"].startswith("wamid.")
    row = graph.list_reply("972987654321", "r2", "Refund")["entry"][0]["changes"][0]["value"]["messages"][0]
    assert row["interactive"]["list_reply"] == {"id": "r2", "title": "Refund"}
    quick = graph.template_button("972987654321", "resume", "Continue")["entry"][0]["changes"][0]["value"]
    assert quick["messages"][0]["type"] == "button" and quick["messages"][0]["button"] == {
        "payload": "resume",
        "text": "Continue",
    }
    delivered = graph.status("wamid.X", "delivered", "972987654321")["entry"][0]["changes"][0]["value"]
    assert "messages" not in delivered and delivered["statuses"][0]["status"] == "delivered"
    assert verification_query("verify-me", "42") == {
        "hub.mode": "subscribe",
        "hub.verify_token": "verify-me",
        "hub.challenge": "42",
    }


# --- conformance with the platform specs (SPECS_DIR) ----------------------------------------


def _specs() -> Path:
    folder = specs_dir()
    if folder is None:
        pytest.skip(SKIP_REASON)
    return folder


def _paths(value: Any, prefix: str = "") -> set[str]:
    """Every key path of a JSON value (list items collapsed to [])."""
    if isinstance(value, dict):
        out = set()
        for key, item in value.items():
            out |= {f"{prefix}.{key}"} | _paths(item, f"{prefix}.{key}")
        return out
    if isinstance(value, list):
        return set().union(*(_paths(item, f"{prefix}[]") for item in value)) if value else set()
    return set()


def test_recorded_requests_and_answers_conform_to_the_specs():
    folder = _specs()

    async def telegram_traffic() -> FakeTelegram:
        async with FakeTelegram(max_poll=0.2) as tg, telegram.Bot(tg.token, **tg.bot_kwargs) as bot:
            await bot.get_me()
            await bot.delete_webhook(drop_pending_updates=False)
            tg.push_updates([tg.text_update(1, "hi", language_code="pt"), *tg.album_updates(1, [b"a", b"b"])])
            updates = await bot.get_updates(offset=0, limit=100, timeout=1, allowed_updates=["message"])
            await bot.get_updates(offset=updates[-1].update_id + 1, timeout=0)
            sent = await bot.send_message(1, "Olá", reply_markup=keyboard(("Sim", "yes")), parse_mode="HTML")
            await bot.edit_message_text("Olá!", 1, sent.message_id, reply_markup=keyboard(("Não", "no")))
            await bot.edit_message_reply_markup(1, sent.message_id, reply_markup=None)
            query = tg.callback_update(1, "yes")
            await bot.answer_callback_query(query["callback_query"]["id"])
            await bot.send_chat_action(1, "typing")
            file = await bot.get_file(updates[-1].message.photo[-1].file_id)
            await file.download_as_bytearray()
            await bot.set_webhook("https://bot.example/tg", secret_token="abc", allowed_updates=["message"])
            await bot.get_webhook_info()
            await bot.delete_webhook()
            tg.fail_next("sendMessage", 429, retry_after=1)
            with pytest.raises(telegram.error.RetryAfter), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                await bot.send_message(1, "x")
            return tg

    tg = run(telegram_traffic())
    assert telegram_problems(tg.requests, folder) == []
    spec = TelegramSpec.load(folder)
    for update in (
        tg.text_update(1, "/start"),
        tg.photo_update(1, b"p", caption="c", media_group_id="1"),
        tg.document_update(1, b"d"),
        tg.callback_update(1, "yes"),
    ):
        assert spec.check_object(update, "Update") == []

    async def graph_traffic() -> FakeGraph:
        async with (
            FakeGraph() as graph,
            httpx.AsyncClient(base_url=graph.base_url, headers=graph.auth_headers) as client,
        ):
            graph.add_media("123", b"img", "image/jpeg")
            image = {
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": "15551234567",
                "type": "image",
                "image": {"id": "123"},
            }
            for body in (
                whatsapp_text("15551234567", "hello"),
                whatsapp_buttons("15551234567", "Choose", [("a", "A"), ("b", "B"), ("c", "C")]),
                whatsapp_list("15551234567", "Choose", [("r1", "One"), ("r2", "Two")]),
                image,
                dict(image, image={"link": "https://shop.example/x.jpg"}),
                whatsapp_template("15551234567", "order_update", "resume"),
                {"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.HBgLMTIz"},
            ):
                assert (await client.post(graph.messages_path, json=body)).status_code == 200
            await client.get(f"/{graph.version}/123")
            graph.close_window("15551234567")
            await client.post(graph.messages_path, json=whatsapp_text("15551234567", "late"))  # error object
            return graph

    graph = run(graph_traffic())
    assert graph_problems(graph.requests, folder) == []
    assert GraphSpec.load(folder).version == graph.version

    # The webhook builders invent no field the samples lack.
    samples = folder / "whatsapp" / "webhook-samples"
    message_samples = json.loads((samples / "message.json").read_text())
    button_samples = json.loads((samples / "callback_button.json").read_text())
    list_samples = json.loads((samples / "callback_selection.json").read_text())
    status_samples = json.loads((samples / "message_status.json").read_text())
    built = FakeGraph()
    pairs = [
        (built.text_message("972987654321", "Body Text"), message_samples["text"]),
        (built.image_message("972987654321", b"x"), message_samples["image"]),
        (built.button_reply("972987654321", "id", "title"), button_samples["button"]),
        (built.template_button("972987654321", "payload", "text"), button_samples["quick_reply"]),
        (built.list_reply("972987654321", "id", "title"), list_samples["callback"]),
        (built.status("wamid.X", "sent", "972987654321"), status_samples["sent"]),
        (built.status("wamid.X", "delivered", "972987654321"), status_samples["delivered"]),
        (built.status("wamid.X", "failed", "972987654321"), status_samples["failed"]),
    ]
    for ours, sample in pairs:
        assert _paths(ours) - _paths(sample) == set()
        assert _paths(ours) >= _paths(sample) - {p for p in _paths(sample) if "user_id" in p}


def test_the_spec_checks_catch_nonconforming_requests():
    folder = _specs()

    async def traffic() -> tuple[FakeTelegram, FakeGraph]:
        async with FakeTelegram() as tg, FakeGraph() as graph, httpx.AsyncClient() as client:
            api = f"{tg.base_url}/bot{tg.token}"
            await client.post(f"{api}/sendMessage", json={"chat_id": 1, "txt": "typo", "disable_notification": "yes"})
            await client.post(f"{api}/sendMessage", data={"chat_id": "1", "text": "hi", "message_thread_id": "seven"})
            await client.post(f"{api}/sendMessage", json={"chat_id": 1, "text": "x", "reply_markup": {"inline": []}})
            await client.post(f"{api}/sendMesage", json={"chat_id": 1, "text": "x"})
            no_type = {"messaging_product": "whatsapp", "to": "1555", "text": {"body": "hi"}}
            four = whatsapp_buttons("1555", "?", [("a", "A"), ("b", "B"), ("c", "C"), ("d", "D")])
            for body in (no_type, four):
                await client.post(graph.messages_url, json=body, headers=graph.auth_headers)
            return tg, graph

    tg, graph = run(traffic())
    problems = "\n".join(telegram_problems(tg.requests, folder))
    assert "'txt' is not a parameter of sendMessage" in problems
    assert "required parameter 'text' is missing" in problems
    assert "sendMessage.disable_notification: expected Boolean" in problems
    assert "sendMessage.message_thread_id: expected Integer" in problems
    assert "sendMessage.reply_markup" in problems
    assert "sendMesage: not a method" in problems
    problems = "\n".join(graph_problems(graph.requests, folder))
    assert "required property 'recipient_type' is missing" in problems
    assert "discriminator 'type' is missing" in problems
    assert "4 items, at most 3 allowed" in problems
