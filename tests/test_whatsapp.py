"""The WhatsApp adapter against a fake Graph server on 127.0.0.1: webhooks in, messages out.

Each test runs on its own event loop with a time limit, and the fake stops inside it.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any

import pytest

from bot.messages import Attachment, Button, Inbound, Outbound
from channels.base import ChannelEvent, RetryLater, Undeliverable
from channels.whatsapp import (
    MAX_MEDIA_BYTES,
    WINDOW_REASON,
    WhatsAppChannel,
    buttons_of,
    retry_after,
    script_event,
    shorten,
)
from tests.fakes.graph import FakeGraph, sign, verification_query, webhook_request
from tests.fakes.specs import SKIP_REASON, graph_problems, specs_dir

LIMIT = 10.0  # seconds any one test may take, the server included
SECRET = "app-secret-for-tests"
VERIFY = "verify-token-for-tests"
CUSTOMER = "819012345678"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF evidence photo"


def run(coroutine: Coroutine[Any, Any, Any], limit: float = LIMIT) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coroutine, limit)

    return asyncio.run(bounded())


def channel_for(graph: FakeGraph, **overrides: Any) -> WhatsAppChannel:
    settings: dict[str, Any] = {
        "access_token": graph.token,
        "phone_number_id": graph.phone_number_id,
        "app_secret": SECRET,
        "verify_token": VERIFY,
        "api_base": graph.base_url,
        "api_version": graph.version,
    }
    return WhatsAppChannel(**(settings | overrides))


def offline_channel(**overrides: Any) -> WhatsAppChannel:
    """For the pure parts (verify, split, render): no server is ever called."""
    settings: dict[str, Any] = {
        "access_token": "token",
        "phone_number_id": "106540352242922",
        "app_secret": SECRET,
        "verify_token": VERIFY,
        "api_base": "http://127.0.0.1:9",
    }
    return WhatsAppChannel(**(settings | overrides))


def outbound(text: str, *buttons: tuple[str, str], language: str = "en") -> Outbound:
    return Outbound(f"whatsapp:{CUSTOMER}", "ask_resolution", text, language, tuple(Button(p, lb) for p, lb in buttons))


# --- webhook verification ----------------------------------------------------------------------


def test_the_subscription_check_echoes_the_challenge_only_for_our_token():
    channel = offline_channel()
    assert channel.verify_subscription(verification_query(VERIFY, challenge="1158201444")) == "1158201444"
    assert channel.verify_subscription(verification_query("not-ours")) is None
    assert channel.verify_subscription(verification_query(VERIFY, mode="unsubscribe")) is None
    assert channel.verify_subscription({"hub.mode": "subscribe", "hub.challenge": "1"}) is None
    assert channel.verify_subscription({}) is None


def test_a_webhook_is_accepted_only_with_meta_s_signature_over_the_exact_body():
    channel = offline_channel()

    async def body() -> None:
        async with FakeGraph() as graph:
            raw, headers = graph.signed(graph.text_message(CUSTOMER, "hello"), SECRET)
            assert channel.verify(headers, raw)
            assert channel.verify({"x-hub-signature-256": headers["X-Hub-Signature-256"]}, raw)  # any case
            forged = "sha256=" + "0" * 64
            assert not channel.verify({"X-Hub-Signature-256": forged}, raw)
            assert not channel.verify({"Content-Type": "application/json"}, raw)  # missing
            assert not channel.verify({"X-Hub-Signature-256": sign(raw, "another-secret")}, raw)
            changed = raw.replace(b"hello", b"hellp")
            assert len(changed) == len(raw) and changed != raw
            assert not channel.verify(headers, changed)
            assert not channel.verify({"X-Hub-Signature-256": headers["X-Hub-Signature-256"][7:]}, raw)  # no prefix
            assert not channel.verify({"X-Hub-Signature-256": "sha256=é"}, raw)  # malformed
            assert not offline_channel(app_secret="").verify({"X-Hub-Signature-256": sign(raw, "")}, raw)

    run(body())


# --- split: webhook bodies to inbox events -----------------------------------------------------


def test_split_makes_one_json_ready_event_per_customer_message():
    async def body() -> None:
        async with FakeGraph() as graph:
            channel = channel_for(graph)
            text = graph.text_message(CUSTOMER, "商品が壊れて届きました", name="Sato", message_id="wamid.TEXT1")
            (event,) = channel.split(text, 1700000000.5)
            assert event.channel == "whatsapp" and event.event_id == "wamid.TEXT1"
            assert event.conversation_id == f"whatsapp:{CUSTOMER}" and event.group is None
            assert event.received_at == 1700000000.5
            assert event.payload["message"]["text"] == {"body": "商品が壊れて届きました"}
            assert event.payload["profile_name"] == "Sato"
            assert ChannelEvent.from_json(json.loads(json.dumps(event.to_json()))) == event  # the inbox keeps it

            image = graph.image_message(CUSTOMER, JPEG, media_id="4490709327384033", caption="box")
            (event,) = channel.split(image, time.time())
            assert event.payload["message"]["type"] == "image"
            assert event.payload["message"]["image"]["id"] == "4490709327384033"

            kinds = []
            for payload in (
                graph.button_reply(CUSTOMER, "refund", "Refund"),
                graph.list_reply(CUSTOMER, "partial_refund", "Partial refund"),
                graph.template_button(CUSTOMER, "resume", "Continue"),
            ):
                (event,) = channel.split(payload, time.time())
                kinds.append(event.payload["message"]["type"])
            assert kinds == ["interactive", "interactive", "button"]

    run(body())


def test_split_drops_statuses_other_numbers_and_reactions_and_repeats():
    async def body() -> None:
        async with FakeGraph() as graph:
            channel = channel_for(graph)
            assert channel.split(graph.status("wamid.OUT", "delivered", CUSTOMER), time.time()) == []
            assert channel.split(graph.status("wamid.OUT", "failed", CUSTOMER), time.time()) == []

            ours = graph.text_message(CUSTOMER, "hi", message_id="wamid.A")
            other = json.loads(json.dumps(ours))
            other["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] = "999999999"
            assert channel.split(other, time.time()) == []

            # one body, two entries: the same message twice (a retried batch) and a reaction
            reaction = json.loads(json.dumps(ours))
            message = reaction["entry"][0]["changes"][0]["value"]["messages"][0]
            message.update({"id": "wamid.R", "type": "reaction", "reaction": {"message_id": "wamid.X", "emoji": "👍"}})
            del message["text"]
            batch = dict(ours, entry=[*ours["entry"], *ours["entry"], *reaction["entry"]])
            assert [e.event_id for e in channel.split(batch, time.time())] == ["wamid.A"]

            assert channel.split({"object": "page", "entry": ours["entry"]}, time.time()) == []
            assert channel.split({"object": "whatsapp_business_account", "entry": "junk"}, time.time()) == []

    run(body())


# --- to_inbound: events to the core's Inbound --------------------------------------------------


def test_a_text_becomes_an_inbound_the_platform_vouches_for():
    async def body() -> None:
        async with FakeGraph() as graph:
            channel = channel_for(graph)
            payload = graph.text_message(CUSTOMER, "where is SO-10023?", message_id="wamid.T", timestamp=1764000000)
            inbound = await channel.to_inbound(channel.split(payload, time.time()))
            await channel.stop()
        assert inbound == Inbound(
            channel="whatsapp",
            conversation_id=f"whatsapp:{CUSTOMER}",
            user_id=CUSTOMER,
            text="where is SO-10023?",
            message_id="wamid.T",
            received_at=datetime.fromtimestamp(1764000000, UTC),
            verified_phone="+" + CUSTOMER,
            locale_hint=None,
        )

    run(body())


def test_to_inbound_fetches_a_photo_with_the_token():
    async def body() -> None:
        async with FakeGraph() as graph:
            channel = channel_for(graph)
            payload = graph.image_message(CUSTOMER, JPEG, media_id="1037543291543636", caption="the box")
            inbound = await channel.to_inbound(channel.split(payload, time.time()))
            assert inbound is not None
            assert inbound.attachments == (Attachment("photo", JPEG, "image/jpeg", len(JPEG)),)
            assert inbound.text == "the box"
            media, download = graph.calls("media"), graph.calls("download")
            assert [c.status for c in media] == [200] and media[0].path == f"/{graph.version}/1037543291543636"
            assert [c.status for c in download] == [200]
            assert "authorization" in download[0].headers  # the fake answers 401 without the bearer token

            # a media id Graph no longer knows: an attachment without bytes, which the core refuses
            orphan = graph.image_message(CUSTOMER, media_id="404404")
            inbound = await channel.to_inbound(channel.split(orphan, time.time()))
            assert inbound is not None and inbound.attachments[0].data == b""
            await channel.stop()

    run(body())


def test_a_photo_larger_than_the_limit_is_not_downloaded():
    async def body() -> None:
        async with FakeGraph() as graph:
            channel = channel_for(graph)
            huge = b"\xff\xd8" + b"\0" * MAX_MEDIA_BYTES
            payload = graph.image_message(CUSTOMER, huge, media_id="777")
            inbound = await channel.to_inbound(channel.split(payload, time.time()))
            await channel.stop()
            assert inbound is not None
            (attachment,) = inbound.attachments
            assert attachment.data == b"" and attachment.size == len(huge) and attachment.kind == "photo"
            assert graph.calls("download") == []

    run(body())


def test_media_graph_cannot_give_now_is_retried_later():
    async def body() -> None:
        async with FakeGraph() as graph:
            channel = channel_for(graph)
            payload = graph.image_message(CUSTOMER, JPEG)
            events = channel.split(payload, time.time())
            graph.fail_next("media", status=500)
            with pytest.raises(RetryLater):
                await channel.to_inbound(events)
            graph.fail_next("download", status=503)
            with pytest.raises(RetryLater):
                await channel.to_inbound(events)
            inbound = await channel.to_inbound(events)  # the inbox's next attempt
            assert inbound is not None and inbound.attachments[0].data == JPEG
            await channel.stop()

    run(body())


def test_presses_become_button_payloads_and_other_kinds_unsupported_attachments():
    async def body() -> None:
        async with FakeGraph() as graph:
            channel = channel_for(graph)

            async def inbound_of(payload: dict[str, Any]) -> Inbound:
                inbound = await channel.to_inbound(channel.split(payload, time.time()))
                assert inbound is not None
                return inbound

            assert (
                await inbound_of(graph.button_reply(CUSTOMER, "replacement", "Replacement"))
            ).button == "replacement"
            assert (await inbound_of(graph.list_reply(CUSTOMER, "partial_refund", "Partial refund"))).button == (
                "partial_refund"
            )
            template = await inbound_of(graph.template_button(CUSTOMER, "human", "Talk to us"))
            assert template.button == "human" and template.text == ""

            voice = graph.text_message(CUSTOMER, "x")
            message = voice["entry"][0]["changes"][0]["value"]["messages"][0]
            del message["text"]
            message.update(
                {"type": "audio", "audio": {"mime_type": "audio/ogg; codecs=opus", "id": "55", "voice": True}}
            )
            audio = await inbound_of(voice)
            assert audio.attachments == (Attachment("audio", b"", "audio/ogg; codecs=opus"),) and audio.text == ""
            assert graph.calls("media") == []  # never fetched: the core cannot use it
            await channel.stop()

    run(body())


# --- render: Outbound to Graph bodies ----------------------------------------------------------


def test_two_choices_are_reply_buttons():
    (body,) = offline_channel().render(
        outbound("How would you like us to proceed?", ("refund", "Refund"), ("repair", "Repair"))
    )
    assert body["messaging_product"] == "whatsapp" and body["recipient_type"] == "individual"
    assert body["to"] == CUSTOMER and body["type"] == "interactive"
    assert body["interactive"]["type"] == "button"
    assert body["interactive"]["body"] == {"text": "How would you like us to proceed?"}
    assert [b["reply"]["title"] for b in body["interactive"]["action"]["buttons"]] == ["Refund", "Repair"]
    assert buttons_of(body) == ["refund", "repair"]


def test_four_choices_are_a_list_with_a_short_button_label():
    choices = [("replacement", "交換品の送付"), ("refund", "返金"), ("repair", "修理"), ("partial_refund", "一部返金")]
    (body,) = offline_channel().render(
        outbound("どのように対応させていただくのがよろしいでしょうか？", *choices, language="ja")
    )
    interactive = body["interactive"]
    assert interactive["type"] == "list"
    assert interactive["action"]["button"] == "選択" and len(interactive["action"]["button"]) <= 20
    (section,) = interactive["action"]["sections"]
    assert [(r["id"], r["title"]) for r in section["rows"]] == choices
    assert buttons_of(body) == [p for p, _ in choices]


def test_long_labels_are_shortened_at_a_word_and_stay_unique():
    assert shorten("Replacement shipped to me", 20) == "Replacement shipped…"
    assert shorten("Please send a replacement", 20) == "Please send a…"
    assert shorten("Send me a replacement please", 20) == "Send me a replaceme…"
    assert (
        shorten("交換品の送付をお願いしたいのですがよろしいでしょうか", 20) == "交換品の送付をお願いしたいのですがよろ…"
    )
    assert shorten("Refund", 20) == "Refund"
    (body,) = offline_channel().render(
        outbound(
            "Choose",
            ("refund", "A full refund to the original card"),
            ("partial_refund", "A full refund to the original bank"),
            ("human", "Talk\nto a person"),
        )
    )
    titles = [b["reply"]["title"] for b in body["interactive"]["action"]["buttons"]]
    assert all(len(t) <= 20 for t in titles) and len(set(titles)) == 3
    assert titles[0] == "A full refund to…" and titles[2] == "Talk to a person"

    rows = offline_channel().render(outbound("?", *[(f"p{i}", f"A rather long choice number {i}") for i in range(4)]))
    for row in rows[0]["interactive"]["action"]["sections"][0]["rows"]:
        assert len(row["title"]) <= 24 and row["description"].startswith("A rather long choice number")


def test_long_texts_are_split_and_long_prompts_go_before_the_buttons():
    paragraph = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 30
    text = "\n\n".join([paragraph.strip()] * 6)  # about 10,000 characters
    bodies = offline_channel().render(outbound(text))
    assert len(bodies) == 3 and all(b["type"] == "text" for b in bodies)
    assert all(len(b["text"]["body"]) <= 4096 and b["text"]["preview_url"] is False for b in bodies)
    assert " ".join(" ".join(b["text"]["body"].split()) for b in bodies) == " ".join(text.split())

    question = "Which would you like?"
    bodies = offline_channel().render(outbound(paragraph + "\n" + question, ("refund", "Refund"), ("repair", "Repair")))
    assert [b["type"] for b in bodies] == ["text", "interactive"]
    assert bodies[0]["text"]["body"] == paragraph.strip()
    assert bodies[1]["interactive"]["body"]["text"] == question

    bodies = offline_channel().render(outbound("x" * 2000, ("done", "Done")))
    assert bodies[0]["text"]["body"] == "x" * 2000 and bodies[1]["interactive"]["body"]["text"]
    assert offline_channel().render(outbound("")) == []


# --- send ---------------------------------------------------------------------------------------


def test_send_posts_what_render_makes_and_graph_accepts_it():
    async def body() -> None:
        async with FakeGraph() as graph:
            channel = channel_for(graph)
            await channel.start()
            messages = [
                outbound("Hello"),
                outbound("Proceed?", ("refund", "Refund"), ("repair", "Send it for repair please")),
                outbound("?", *[(f"choice{i}", f"Choice number {i} with a long label") for i in range(5)]),
                outbound("word " * 1200, ("done", "Done")),
            ]
            sent = [await channel.send(message) for message in messages]
            await channel.stop()
            assert [len(s.platform_ids) for s in sent] == [1, 1, 1, 3]
            assert all(i.startswith("wamid.") for s in sent for i in s.platform_ids)
            assert graph.sent(CUSTOMER) == [b for m in messages for b in channel.render(m)]
            assert [c.status for c in graph.calls("messages")] == [200] * 6

    run(body())


def test_throttling_and_server_errors_are_retried_later():
    async def body() -> None:
        async with FakeGraph() as graph:
            channel = channel_for(graph)
            graph.fail_next("messages", status=429)
            with pytest.raises(RetryLater) as limited:
                await channel.send(outbound("Hello"))
            assert limited.value.seconds > 0
            graph.fail_next("messages", status=500)
            with pytest.raises(RetryLater):
                await channel.send(outbound("Hello"))
            graph.fail_next("messages", status=400, code=131056, message="(#131056) Pair rate limit hit")
            with pytest.raises(RetryLater):
                await channel.send(outbound("Hello"))
            assert len((await channel.send(outbound("Hello"))).platform_ids) == 1
            await channel.stop()
        assert retry_after("7") == 7.0 and retry_after(None) is None and retry_after("soon") is None
        assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past: now

    run(body())


def test_a_retry_resumes_a_long_message_after_the_parts_already_sent():
    async def body() -> None:
        async with FakeGraph() as graph:
            channel = channel_for(graph)
            requests = 0

            def clock() -> float:
                # The fake reads its clock once as it records each request: the second part fails.
                nonlocal requests
                requests += 1
                if requests == 2:
                    graph.fail_next("messages", status=503)
                return time.time()

            graph.clock = clock
            message = outbound("word " * 1200, ("done", "Done"))  # two texts and the buttons
            with pytest.raises(RetryLater):
                await channel.send(message)
            sent = await channel.send(message)
            await channel.stop()
            assert len(sent.platform_ids) == 3
            assert graph.sent(CUSTOMER) == channel.render(message)  # no part twice

    run(body())


def test_outside_the_24_hour_window_the_message_is_undeliverable():
    async def body() -> None:
        async with FakeGraph() as graph:
            channel = channel_for(graph)
            graph.close_window(CUSTOMER)
            with pytest.raises(Undeliverable) as refused:
                await channel.send(outbound("Are you still there?"))
            assert refused.value.reason == WINDOW_REASON
            graph.text_message(CUSTOMER, "yes!")  # the customer writes: the window opens again
            assert len((await channel.send(outbound("Great"))).platform_ids) == 1
            await channel.stop()

    run(body())


def test_a_refused_token_is_undeliverable_and_the_reason_does_not_show_it():
    async def body() -> None:
        async with FakeGraph() as graph:
            channel = channel_for(graph, access_token="EAAGwrongTokenThatMustNotLeak")
            with pytest.raises(Undeliverable) as refused:
                await channel.send(outbound("Hello"))
            await channel.stop()
            assert "HTTP 401" in refused.value.reason and "code 190" in refused.value.reason
            assert "EAAGwrongTokenThatMustNotLeak" not in refused.value.reason

    run(body())


def test_an_unreachable_graph_is_retried_later():
    with socket.socket() as sock:  # a port nobody listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    async def body() -> None:
        channel = offline_channel(api_base=f"http://127.0.0.1:{port}")
        with pytest.raises(RetryLater) as error:
            await channel.send(outbound("Hello"))
        await channel.stop()
        assert "unreachable" in error.value.reason

    run(body())


# --- scripted tests -----------------------------------------------------------------------------


def test_script_events_round_trip_to_the_same_inbound():
    now = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)
    base = Inbound("whatsapp", "whatsapp:+81 90 1234 5678", "+81 90 1234 5678", received_at=now)
    cases = [
        Inbound(**{**_fields(base), "text": "商品が壊れて届きました", "message_id": "1"}),
        Inbound(**{**_fields(base), "button": "done", "message_id": "2"}),
        Inbound(
            **{**_fields(base), "attachments": (Attachment("photo", JPEG, "image/jpeg", len(JPEG)),), "message_id": "3"}
        ),
        Inbound(
            **{
                **_fields(base),
                "attachments": (Attachment("document", b"%PDF-1.4", "application/pdf", 8, "invoice.pdf"),),
                "message_id": "4",
            }
        ),
    ]

    async def body() -> list[Inbound | None]:
        media: dict[str, tuple[bytes, str]] = {}

        async def download(media_id: str) -> tuple[bytes, str]:
            return media[media_id]

        channel = offline_channel(download=download)
        out = []
        for inbound in cases:
            event, files = script_event(inbound, "106540352242922")
            media |= files
            # what the webhook route would store: the event survives JSON, and split makes the same one
            event = ChannelEvent.from_json(json.loads(json.dumps(event.to_json())))
            out.append(await channel.to_inbound([event]))
        await channel.stop()
        return out

    results = run(body())
    for case, result in zip(cases, results, strict=True):
        assert result is not None
        assert result.conversation_id == f"whatsapp:{CUSTOMER}" and result.user_id == CUSTOMER
        assert result.verified_phone == "+" + CUSTOMER and result.received_at == now
        assert (result.text, result.button, result.attachments) == (case.text, case.button, case.attachments)
        assert result.message_id and result.message_id.startswith("wamid.")
    assert len({r.message_id for r in results if r}) == 4
    again, _ = script_event(cases[0], "106540352242922")
    assert again.event_id == results[0].message_id  # a repeated step id is a repeated delivery

    with pytest.raises(ValueError):
        script_event(Inbound("whatsapp", "whatsapp:alice", "alice", text="hi"), "1")


def test_script_events_pass_split_for_their_number_only():
    event, _ = script_event(Inbound("whatsapp", f"whatsapp:{CUSTOMER}", CUSTOMER, text="hi", message_id="9"), "42")
    payload = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "0", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "1", "phone_number_id": "42"},
            "messages": [event.payload["message"]],
        }}]}],
    }  # fmt: skip
    raw, headers = webhook_request(payload, SECRET)
    assert offline_channel(phone_number_id="42").verify(headers, raw)
    (again,) = offline_channel(phone_number_id="42").split(json.loads(raw), event.received_at)
    assert again.event_id == event.event_id and again.payload["message"] == event.payload["message"]
    assert offline_channel(phone_number_id="43").split(json.loads(raw), event.received_at) == []


def _fields(inbound: Inbound) -> dict[str, Any]:
    return {name: getattr(inbound, name) for name in Inbound.__slots__}


def test_the_adapter_s_requests_conform_to_the_cloud_api_spec():
    folder = specs_dir()
    if folder is None:
        pytest.skip(SKIP_REASON)

    async def traffic() -> FakeGraph:
        async with FakeGraph() as graph:
            channel = channel_for(graph)
            for message in (
                outbound("Hello"),
                outbound("Proceed?", ("refund", "Refund"), ("repair", "Repair")),
                outbound("?", *[(f"choice{i}", f"Choice number {i} with a long label") for i in range(5)]),
                outbound("word " * 1200, ("done", "Done")),
            ):
                await channel.send(message)
            await channel.to_inbound(channel.split(graph.image_message(CUSTOMER, JPEG), time.time()))
            graph.close_window(CUSTOMER)
            with pytest.raises(Undeliverable):
                await channel.send(outbound("late"))
            await channel.stop()
            return graph

    graph = run(traffic())
    assert graph_problems(graph.requests, folder) == []
