"""The Telegram channel against the fake Bot API server, driven by the real python-telegram-bot.

Each test runs on its own event loop with a time limit, the fake server started and stopped
inside it.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

import pytest
from PIL import Image

from bot.contracts import CSAT_BUTTONS
from bot.messages import Attachment, Button, Inbound, Outbound
from channels.base import ChannelEvent, RetryLater, Undeliverable
from channels.telegram import MAX_DOWNLOAD, MAX_TEXT, TelegramChannel, buttons_of, script_event, split_text
from tests.fakes.telegram import FakeTelegram

LIMIT = 8.0  # seconds any one test may take, the fake server included
SECRET = "s3cret-Token_for-tests"


def run(coroutine: Coroutine[Any, Any, Any], limit: float = LIMIT) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coroutine, limit)

    return asyncio.run(bounded())


async def eventually(condition: Callable[[], Any], within: float = 4.0) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


def started(tg: FakeTelegram, **kwargs: Any) -> TelegramChannel:
    return TelegramChannel(tg.token, api_base=tg.base_url, **kwargs)


def jpeg(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (180, 120, 90)).save(out, format="JPEG")
    return out.getvalue()


def outbound(chat: int, text: str, *payloads: str, key: str = "ask_resolution") -> Outbound:
    buttons = tuple(Button(payload, payload.title()) for payload in payloads)
    return Outbound(f"telegram:{chat}", key, text, "en", buttons)


# --- start, verify, split -----------------------------------------------------------------------


def test_start_in_webhook_mode_registers_the_webhook_with_its_secret():
    async def body():
        async with FakeTelegram() as tg:
            channel = started(tg, webhook_url="https://shop.example/webhooks/telegram", webhook_secret=SECRET)
            await channel.start()
            assert [call.name for call in tg.requests] == ["getMe", "setWebhook"]
            params = tg.calls("setWebhook")[0].params
            assert params["url"] == "https://shop.example/webhooks/telegram"
            assert params["secret_token"] == SECRET
            assert params["allowed_updates"] == ["message", "callback_query"]
            assert tg.webhook is not None and tg.webhook["secret_token"] == SECRET
            await channel.stop()

    run(body())


def test_start_for_polling_deletes_the_webhook():
    async def body():
        async with FakeTelegram() as tg:
            channel = started(tg)
            await channel.start()
            assert [call.name for call in tg.requests] == ["getMe", "deleteWebhook"]
            assert tg.webhook is None
            await channel.stop()

    run(body())


def test_a_webhook_without_a_secret_is_refused_at_construction():
    with pytest.raises(ValueError, match="SECRET"):
        TelegramChannel("1:" + "a" * 30, webhook_url="https://shop.example/webhooks/telegram")
    with pytest.raises(ValueError, match="SECRET"):
        TelegramChannel("1:" + "a" * 30, webhook_url="https://x.example/h", webhook_secret="has spaces")


def test_verify_takes_the_right_secret_only():
    channel = TelegramChannel("1:" + "a" * 30, webhook_secret=SECRET)
    assert channel.verify({"X-Telegram-Bot-Api-Secret-Token": SECRET}, b"{}")
    assert channel.verify({"x-telegram-bot-api-secret-token": SECRET}, b"{}")  # header names ignore case
    assert not channel.verify({"X-Telegram-Bot-Api-Secret-Token": SECRET + "x"}, b"{}")
    assert not channel.verify({"X-Telegram-Bot-Api-Secret-Token": ""}, b"{}")
    assert not channel.verify({"X-Telegram-Bot-Api-Secret-Token": "ßecret-ünicode"}, b"{}")
    assert not channel.verify({}, b"{}")
    # With no secret configured nothing is accepted, whatever the header says.
    assert not TelegramChannel("1:" + "a" * 30).verify({"X-Telegram-Bot-Api-Secret-Token": ""}, b"{}")


def test_split_keeps_customer_messages_and_presses_and_drops_the_rest():
    async def body():
        async with FakeTelegram() as tg:
            channel = started(tg)
            text = tg.text_update(42, "where is my parcel?")
            (event,) = channel.split(text, 1700000000.5)
            assert event == ChannelEvent(
                "telegram", str(text["update_id"]), "telegram:42", text, group=None, received_at=1700000000.5
            )
            press = tg.callback_update(42, "refund")
            (event,) = channel.split(press, 1.0)
            assert event.event_id == str(press["update_id"]) and event.conversation_id == "telegram:42"
            album = tg.album_updates(42, [b"one", b"two"], caption="broken")
            groups = {event.group for update in album for event in channel.split(update, 1.0)}
            assert groups == {album[0]["message"]["media_group_id"]}
            assert channel.split(tg.document_update(42, b"%PDF-1.7"), 1.0)

            edited = tg.text_update(42, "where is my parcel??")
            edited["edited_message"] = edited.pop("message")
            in_group = tg.text_update(42, "hello all")
            in_group["message"]["chat"] = {"id": -1001234567890, "title": "Shop fans", "type": "supergroup"}
            from_bot = tg.text_update(43, "I am a bot")
            from_bot["message"]["from"]["is_bot"] = True
            channel_post = {
                "update_id": 5,
                "channel_post": {"message_id": 1, "date": 1, "text": "news", "chat": {"id": -100, "type": "channel"}},
            }
            member = {
                "update_id": 6,
                "my_chat_member": {
                    "chat": {"id": 42, "type": "private", "first_name": "C"},
                    "from": tg.user(42),
                    "date": 1,
                    "old_chat_member": {"status": "member", "user": tg.bot_user},
                    "new_chat_member": {"status": "kicked", "user": tg.bot_user, "until_date": 0},
                },
            }
            service = tg.text_update(42, "x")
            del service["message"]["text"]
            service["message"]["pinned_message"] = {"message_id": 1, "date": 0, "chat": service["message"]["chat"]}
            for dropped in (edited, in_group, from_bot, channel_post, member, service, {"update_id": "x"}, {}):
                assert channel.split(dropped, 1.0) == [], dropped

    run(body())


# --- to_inbound ---------------------------------------------------------------------------------


def test_a_text_message_becomes_an_inbound():
    async def body():
        async with FakeTelegram() as tg:
            channel = started(tg)
            await channel.start()
            update = tg.text_update(42, "商品が壊れて届きました", language_code="ja", date=1795000000)
            inbound = await channel.to_inbound(channel.split(update, 1795000001.0))
            assert inbound == Inbound(
                channel="telegram",
                conversation_id="telegram:42",
                user_id="42",
                text="商品が壊れて届きました",
                locale_hint="ja",
                message_id=str(update["update_id"]),
                received_at=datetime.fromtimestamp(1795000000, UTC),
            )
            await channel.stop()

    run(body())


def test_a_button_press_becomes_a_button_and_is_answered():
    async def body():
        async with FakeTelegram() as tg:
            channel = started(tg)
            await channel.start()
            await channel.send(outbound(42, "How should we make it right?", "refund", "replacement"))
            update = tg.callback_update(42, "refund", language_code="es")
            inbound = await channel.to_inbound(channel.split(update, 1.0))
            assert inbound is not None
            assert (inbound.button, inbound.text, inbound.user_id, inbound.locale_hint) == ("refund", "", "42", "es")
            assert list(tg.answered_callbacks) == [update["callback_query"]["id"]]
            # A second try of the same turn (the inbox retries) cannot answer again: the press still counts.
            again = await channel.to_inbound(channel.split(update, 1.0))
            assert again is not None and again.button == "refund"
            await channel.stop()

    run(body())


def test_a_photo_is_fetched_at_its_largest_size():
    async def body():
        async with FakeTelegram() as tg:
            channel = started(tg)
            await channel.start()
            picture = jpeg(640, 480)
            # Sizes out of order: the largest by area is the second, not the last.
            update = tg.photo_update(42, picture, sizes=((320, 240), (1280, 960), (90, 67)), caption="cracked")
            largest = update["message"]["photo"][1]
            inbound = await channel.to_inbound(channel.split(update, 1.0))
            assert inbound is not None and inbound.text == "cracked"
            assert inbound.attachments == (Attachment("photo", picture, "image/jpeg", len(picture)),)
            assert [call.params["file_id"] for call in tg.calls("getFile")] == [largest["file_id"]]

            # A download that fails for now is retried later, not turned into a refused photo.
            tg.fail_next("getFile", status=500)
            with pytest.raises(RetryLater):
                await channel.to_inbound(channel.split(tg.photo_update(42, picture), 1.0))
            await channel.stop()

    run(body())


def test_a_photo_over_the_download_limit_keeps_its_size_and_no_bytes():
    async def body():
        async with FakeTelegram() as tg:
            channel = started(tg)
            await channel.start()
            update = tg.photo_update(42, b"\xff\xd8 small stand-in")
            for size in update["message"]["photo"]:
                size["file_size"] = MAX_DOWNLOAD + 1
            inbound = await channel.to_inbound(channel.split(update, 1.0))
            assert inbound is not None
            assert inbound.attachments == (Attachment("photo", b"", "image/jpeg", MAX_DOWNLOAD + 1),)
            assert tg.calls("getFile") == []
            await channel.stop()

    run(body())


def test_an_image_document_is_a_photo_and_other_documents_are_not_fetched():
    async def body():
        async with FakeTelegram() as tg:
            channel = started(tg)
            await channel.start()
            picture = jpeg(300, 200)
            image = tg.document_update(42, picture, file_name="mug.png", mime_type="image/png")
            inbound = await channel.to_inbound(channel.split(image, 1.0))
            assert inbound is not None
            assert inbound.attachments == (Attachment("photo", picture, "image/png", len(picture), "mug.png"),)

            pdf = tg.document_update(42, b"%PDF-1.7 receipt", caption="my receipt")
            inbound = await channel.to_inbound(channel.split(pdf, 1.0))
            assert inbound is not None and inbound.text == "my receipt"
            assert inbound.attachments == (Attachment("document", b"", "application/pdf", 16, "receipt.pdf"),)
            assert len(tg.calls("getFile")) == 1  # the image only
            await channel.stop()

    run(body())


def test_an_album_is_one_inbound_with_every_photo_and_the_caption():
    async def body():
        async with FakeTelegram() as tg:
            channel = started(tg)
            await channel.start()
            photos = [jpeg(200, 100), jpeg(300, 100), jpeg(400, 100)]
            album = tg.album_updates(42, photos, caption="box and mug", language_code="de")
            events = [event for update in album for event in channel.split(update, 1.0)]
            inbound = await channel.to_inbound(list(reversed(events)))  # order restored by update id
            assert inbound is not None
            assert [attachment.data for attachment in inbound.attachments] == photos
            assert inbound.text == "box and mug" and inbound.locale_hint == "de"
            assert inbound.message_id == ",".join(str(update["update_id"]) for update in album)
            await channel.stop()

    run(body())


# --- render and send ----------------------------------------------------------------------------


def test_render_splits_a_long_text_with_the_keyboard_on_the_last_part():
    paragraph = ("The parcel left our warehouse on Monday. " * 24).strip()  # ~1,000 characters
    text = "\n\n".join([paragraph] * 10)  # ~10,000 characters
    channel = TelegramChannel("1:" + "a" * 30)
    bodies = channel.render(outbound(42, text, "refund", "replacement", "repair"))
    assert len(bodies) == 3
    assert all(len(body["text"]) <= MAX_TEXT for body in bodies)
    assert all(body["text"].endswith("Monday.") for body in bodies)  # cut between paragraphs
    assert "\n\n".join(body["text"] for body in bodies) == text
    assert [body["chat_id"] for body in bodies] == [42, 42, 42]
    assert all("parse_mode" not in body for body in bodies)
    assert ["reply_markup" in body for body in bodies] == [False, False, True]
    assert buttons_of(bodies[-1]) == ["refund", "replacement", "repair"]
    rows = bodies[-1]["reply_markup"]["inline_keyboard"]
    assert [len(row) for row in rows] == [2, 1]
    assert rows[0][0] == {"text": "Refund", "callback_data": "refund"}


def test_render_lays_the_csat_stars_in_one_row_and_keeps_payloads_within_64_bytes():
    channel = TelegramChannel("1:" + "a" * 30)
    (body,) = channel.render(outbound(7, "How did we do?", *CSAT_BUTTONS, key="csat_ask"))
    assert body["reply_markup"]["inline_keyboard"] == [
        [{"text": payload.title(), "callback_data": payload} for payload in CSAT_BUTTONS]
    ]
    (body,) = channel.render(outbound(7, "x", "é" * 40))
    assert len(buttons_of(body)[0].encode()) <= 64
    assert channel.render(outbound(7, "  \n ")) == []
    with pytest.raises(ValueError):
        channel.render(Outbound("whatsapp:+81901234", "greeting", "hi", "en"))


def test_split_text_cuts_at_sentences_then_spaces_and_counts_utf16():
    sentences = "Ceci est une phrase assez longue. " * 10
    parts = split_text(sentences.strip(), limit=100)
    assert all(len(part) <= 100 and part.endswith(".") for part in parts)
    words = "mot " * 60
    assert all(len(part) <= 50 and not part.endswith(" ") for part in split_text(words, limit=50))
    assert split_text("x" * 120, limit=50) == ["x" * 50, "x" * 50, "x" * 20]  # no boundary: a hard cut
    emoji = "📦" * 30  # two UTF-16 units each, as Telegram counts them
    assert [len(part) for part in split_text(emoji, limit=20)] == [10, 10, 10]


def test_send_delivers_every_part_and_returns_the_message_ids():
    async def body():
        async with FakeTelegram() as tg:
            channel = started(tg)
            await channel.start()
            text = "\n\n".join([("Sentence number one. " * 100).strip()] * 3)  # 2,100 characters a paragraph
            sent = await channel.send(outbound(42, text, "done"))
            assert len(sent.platform_ids) == 3 and len(set(sent.platform_ids)) == 3
            assert "\n\n".join(tg.sent(42)) == text
            calls = tg.calls("sendMessage")
            assert all("parse_mode" not in call.params for call in calls)
            assert ["reply_markup" in call.params for call in calls] == [False, False, True]
            assert [m.get("reply_markup") is not None for m in tg.messages(42)] == [False, False, True]
            await channel.stop()

    run(body())


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
def test_send_maps_platform_refusals_to_retry_later_or_undeliverable():
    async def body():
        async with FakeTelegram() as tg:
            channel = started(tg)
            await channel.start()
            tg.fail_next("sendMessage", status=429, retry_after=7)
            with pytest.raises(RetryLater) as later:
                await channel.send(outbound(42, "hello"))
            assert later.value.seconds == 7
            tg.fail_next("sendMessage", status=500)
            with pytest.raises(RetryLater) as later:
                await channel.send(outbound(42, "hello"))
            assert 0 < later.value.seconds <= 10
            tg.block(43)
            with pytest.raises(Undeliverable, match="blocked"):
                await channel.send(outbound(43, "hello"))
            tg.fail_next("sendMessage", status=400, description="Bad Request: chat not found")
            with pytest.raises(Undeliverable, match=r"(?i)chat not found"):
                await channel.send(outbound(44, "hello"))
            assert tg.sent(42) == [] and (await channel.send(outbound(42, "hello"))).platform_ids
            assert tg.sent(42) == ["hello"]
            await channel.stop()

    run(body())


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
def test_a_split_message_stopped_halfway_resumes_after_the_parts_delivered():
    async def body():
        async with FakeTelegram() as tg:
            channel = started(tg)
            await channel.start()
            clock = tg.clock

            def arm_on_second_part() -> float:
                # The fake reads its clock as a request arrives, before answering it: the second
                # sendMessage meets a 429.
                if len(tg.calls("sendMessage")) == 1 and not getattr(arm_on_second_part, "armed", False):
                    arm_on_second_part.armed = True  # type: ignore[attr-defined]
                    tg.fail_next("sendMessage", status=429, retry_after=1)
                return clock()

            tg.clock = arm_on_second_part
            message = outbound(42, "\n\n".join(f"Part {n} of a long answer. " * 150 for n in range(3)))
            with pytest.raises(RetryLater):
                await channel.send(message)
            assert len(tg.sent(42)) == 1
            sent = await channel.send(message)
            assert len(tg.sent(42)) == len(sent.platform_ids) == len(channel.render(message))
            assert len(set(tg.sent(42))) == len(tg.sent(42))  # no part twice
            await channel.stop()

    run(body())


# --- polling ------------------------------------------------------------------------------------


def test_polling_hands_updates_to_the_sink_before_confirming_them():
    async def body():
        async with FakeTelegram(max_poll=0.3) as tg:
            channel = started(tg)
            await channel.start()
            stop = asyncio.Event()
            batches: list[list[ChannelEvent]] = []
            attempts = 0

            async def sink(events: list[ChannelEvent]) -> None:
                nonlocal attempts
                attempts += 1
                if attempts == 1:
                    raise ConnectionError("store down")  # not stored: Telegram must send it again
                batches.append(events)

            first = tg.push_update(tg.text_update(42, "where is SO-10023?"))
            polling = asyncio.create_task(channel.poll(sink, stop))
            await eventually(lambda: batches)
            assert [event.event_id for event in batches[0]] == [str(first["update_id"])]
            assert attempts == 2
            offsets = [call.params.get("offset") for call in tg.calls("getUpdates")]
            assert offsets[:2] == [None, None]  # the failed batch did not move the offset

            second = tg.push_update(tg.callback_update(42, "human"))
            await eventually(lambda: len(batches) == 2)
            assert [event.event_id for event in batches[1]] == [str(second["update_id"])]
            assert str(first["update_id"] + 1) in {str(call.params.get("offset")) for call in tg.calls("getUpdates")}

            # An update python-telegram-bot cannot read is dropped alone; the next one still comes.
            broken = tg.push_update({"update_id": second["update_id"] + 1, "message": {"text": "no chat, no date"}})
            third = tg.push_update(tg.text_update(42, "SO-10023"))
            await eventually(lambda: len(batches) == 3)
            assert [event.event_id for event in batches[2]] == [str(third["update_id"])]
            assert broken["update_id"] < third["update_id"]

            stop.set()
            await asyncio.wait_for(polling, 2.0)
            assert tg.pending_updates == []  # every stored update was confirmed
            await channel.stop()

    run(body())


def test_polling_backs_off_on_errors_and_goes_on():
    async def body():
        async with FakeTelegram(max_poll=5.0) as tg:
            channel = started(tg)
            await channel.start()
            stop = asyncio.Event()
            received: list[ChannelEvent] = []

            async def sink(events: list[ChannelEvent]) -> None:
                received.extend(events)

            tg.fail_next("getUpdates", status=502)
            tg.push_update(tg.text_update(42, "hello"))
            polling = asyncio.create_task(channel.poll(sink, stop))
            await eventually(lambda: received)
            failed = [call for call in tg.calls("getUpdates") if call.status == 502]
            later = [call for call in tg.calls("getUpdates") if call.status == 200]
            assert failed and later and later[0].time - failed[0].time >= 0.4  # waited before asking again

            await eventually(lambda: len(tg.calls("getUpdates")) > len(failed) + len(later))  # a long poll waits
            stopping = time.monotonic()
            stop.set()
            await asyncio.wait_for(polling, 2.0)
            assert time.monotonic() - stopping < 1.0  # not the rest of the long poll
            await channel.stop()

    run(body())


# --- scripted dialogues ---------------------------------------------------------------------------


def test_script_event_round_trips_through_to_inbound():
    async def body():
        media: dict[str, bytes] = {}

        async def from_memory(file_id: str) -> bytes:
            return media[file_id]

        channel = TelegramChannel("1:" + "a" * 30, download=from_memory)  # never started: no network
        now = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)
        picture = jpeg(1200, 900)
        cases = [
            Inbound("telegram", "telegram:1001", "1001", text="SO-10023", locale_hint="ja", received_at=now),
            Inbound("telegram", "telegram:1001", "1001", button="csat:5", locale_hint="ja", received_at=now),
            Inbound(
                "telegram",
                "telegram:1001",
                "1001",
                text="here",
                attachments=(Attachment("photo", picture, "image/jpeg", len(picture), "photo.jpg"),),
                received_at=now,
            ),
            Inbound(
                "telegram",
                "telegram:1001",
                "1001",
                attachments=(Attachment("document", b"%PDF-1.7", "", 8, "invoice.pdf"),),
                received_at=now,
            ),
            Inbound(
                "telegram",
                "telegram:1001",
                "1001",
                attachments=(Attachment("document", picture, "", len(picture), "mug.jpg"),),
                received_at=now,
            ),
        ]
        expected_attachments = [
            (),
            (),
            (Attachment("photo", picture, "image/jpeg", len(picture)),),
            (Attachment("document", b"", "application/pdf", 8, "invoice.pdf"),),
            (Attachment("photo", picture, "image/jpeg", len(picture), "mug.jpg"),),
        ]
        for number, (neutral, attachments) in enumerate(zip(cases, expected_attachments, strict=True), start=1):
            event, files = script_event(neutral, 500 + number)
            media.update(files)
            assert event.event_id == str(500 + number) and event.conversation_id == "telegram:1001"
            inbound = await channel.to_inbound([event])
            assert inbound is not None
            assert (inbound.text, inbound.button, inbound.attachments) == (neutral.text, neutral.button, attachments)
            assert (inbound.user_id, inbound.locale_hint, inbound.received_at) == ("1001", neutral.locale_hint, now)
            assert inbound.message_id == str(500 + number)

        photo_event, _ = script_event(cases[2], 600)
        sizes = photo_event.payload["message"]["photo"]
        assert sizes[-1]["width"] == 1200 and len(sizes) == 3  # thumbnails first, as Telegram sends them

        named, _ = script_event(Inbound("telegram", "telegram:tg-1001", "tg-1001", text="hi"), 700)
        again, _ = script_event(Inbound("telegram", "telegram:tg-1001", "tg-1001", text="hi"), 701)
        assert named.conversation_id == again.conversation_id != "telegram:tg-1001"  # a stable number
        with pytest.raises(ValueError):
            script_event(Inbound("telegram", "telegram:1", "1"), 702)

    run(body())
