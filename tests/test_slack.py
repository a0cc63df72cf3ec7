"""Agents in Slack: the console (channels/slack.py) against a local fake of the Slack Web API,
with a real embedded Valkey and the real dialogue manager; requests from Slack are signed as
Slack signs them."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient
from starlette.applications import Starlette
from starlette.routing import Route

from bot.config import Settings
from bot.manager import DialogueManager
from channels.slack import SlackConfig, SlackConsole, SlackSettingsError
from tests.conftest import run_async
from tests.factories import NOW, message, order, photo
from tests.fakes._server import ServedApp
from tests.fakes.slack import FakeSlack
from tests.fakes.specs import SKIP_REASON, specs_dir
from tests.fakes.telegram import FakeTelegram
from tests.test_server import serving, settings_for

MEI, KENJI, STRANGER = "U0AGENT1", "U0AGENT2", "U0OUTSIDER"
AGENTS = {MEI: "Mei", KENJI: "Kenji", STRANGER: "Someone Else"}
MUG = {"sku": "MUG-01", "name": "Ceramic mug", "qty": 2, "price": 6400}


def run(coroutine):  # type: ignore[no-untyped-def]
    return run_async(asyncio.wait_for(coroutine, 60))


# -- the fake itself ------------------------------------------------------------------------------


def test_the_fake_speaks_the_web_api_as_slack_sdk_calls_it():
    async def body() -> None:
        async with FakeSlack(agents=AGENTS) as slack:
            client = AsyncWebClient(token=slack.token, base_url=slack.api_base)
            assert (await client.auth_test())["bot_id"] == slack.bot_id
            card = await client.chat_postMessage(channel=slack.channel_id, text="card", blocks=[{"type": "divider"}])
            await client.chat_postMessage(channel=slack.channel_id, text="in the thread", thread_ts=card["ts"])
            await client.chat_update(channel=slack.channel_id, ts=card["ts"], text="card, updated")
            await client.chat_postEphemeral(channel=slack.channel_id, user=MEI, text="only for Mei")
            assert (await client.users_info(user=MEI))["user"]["profile"]["display_name"] == "Mei"
            assert (await client.conversations_info(channel=slack.channel_id))["channel"]["is_member"]
            upload = await client.files_upload_v2(
                channel=slack.channel_id, thread_ts=card["ts"], content=b"\xff\xd8jpeg", filename="p.jpg", title="p"
            )
            assert upload["files"][0]["id"] in slack.uploads
            assert slack.messages()[0]["text"] == "card, updated"
            assert slack.thread_texts(card["ts"]) == ["in the thread", ""]  # the photo is the thread's second reply
            assert slack.thread(card["ts"])[1]["files"][0]["size"] == 6
            assert [e["text"] for e in slack.ephemerals(MEI)] == ["only for Mei"]
            wrong = AsyncWebClient(token="xoxb-wrong", base_url=slack.api_base)
            try:
                await wrong.auth_test()
                raise AssertionError("a wrong token was accepted")
            except Exception as error:
                assert "invalid_auth" in str(error)

    run(body())


def test_the_fake_rate_limits_with_retry_after_and_slack_sdk_waits_it_out():
    async def body() -> None:
        async with FakeSlack() as slack:
            client = AsyncWebClient(
                token=slack.token, base_url=slack.api_base, retry_handlers=[AsyncRateLimitErrorRetryHandler()]
            )
            slack.fail_next("chat.postMessage", status=429, retry_after=1)
            started = time.monotonic()
            await client.chat_postMessage(channel=slack.channel_id, text="hello")
            assert time.monotonic() - started >= 1.0
            assert [c.status for c in slack.calls("chat.postMessage")] == [429, 200]
            assert slack.calls("chat.postMessage")[0].response == {"ok": False, "error": "ratelimited"}

    run(body())


def test_requests_from_the_fake_are_signed_as_slack_signs_them():
    slack = FakeSlack()
    body, headers = slack.event_request(slack.event_envelope({"type": "app_mention", "text": "hi"}))
    verifier = SignatureVerifier(slack.signing_secret)
    assert verifier.is_valid(body, headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"])
    assert headers["X-Slack-Signature"].startswith("v0=")
    form, form_headers = slack.interaction_request({"type": "block_actions", "actions": []})
    assert form.startswith(b"payload=")
    assert verifier.is_valid(form, form_headers["X-Slack-Request-Timestamp"], form_headers["X-Slack-Signature"])
    _, forged = slack.event_request({"type": "event_callback"}, secret="not-the-secret")
    assert not verifier.is_valid(body, forged["X-Slack-Request-Timestamp"], forged["X-Slack-Signature"])


# -- the console, with the real manager and store -------------------------------------------------


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@contextlib.asynccontextmanager
async def console_for(manager: DialogueManager, slack: FakeSlack, **overrides: Any) -> AsyncIterator[SlackConsole]:
    """The console on the fake, its route served on a free port that the fake delivers events to."""
    config = SlackConfig(
        bot_token=slack.token,
        signing_secret=slack.signing_secret,
        channel=slack.channel_id,
        agent_ids=frozenset({MEI, KENJI}),
        api_base=slack.api_base,
        **{"pace_seconds": 0.05, **overrides},
    )
    console = SlackConsole(manager, config, watch_seconds=3600)  # tests run the watch themselves
    await console.start()
    served = ServedApp(Starlette(routes=[Route("/slack/events", console.handle, methods=["POST"])]))
    await served.start()
    slack.deliver_events_to(f"{served.base_url}/slack/events")  # the bot's own posts come back, as in Slack
    try:
        yield console
    finally:
        await slack.settle()
        await served.stop()
        await console.stop()


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


async def queued(manager: DialogueManager, console: SlackConsole, slack: FakeSlack, text: str = "") -> str:
    """A customer asks for a person; returns the ts of the card that appears."""
    await manager.handle(message(text or "I want to talk to a human", received_at=manager.clock()))
    await console.idle()
    cards = await until(lambda: slack.messages())
    return str(cards[-1]["ts"])


async def press(slack: FakeSlack, user: str, card_ts: str, action: str, **kw: Any) -> int:
    return (await slack.interact(slack.block_action(user, card_ts, action, value="console:c1", **kw))).status_code


async def write(slack: FakeSlack, user: str, card_ts: str, text: str, **kw: Any) -> int:
    envelope = slack.user_message(slack.channel_id, user, text, thread_ts=card_ts)
    return (await slack.send(envelope, **kw)).status_code


def agent_lines(state: Any) -> list[str]:
    return [line.text for line in state.transcript if line.who == "agent"]


def test_a_queued_conversation_gets_a_card_with_what_the_agent_needs(make_manager, run, tmp_path):
    manager = make_manager([order(items=[MUG])], clock=Clock(NOW))

    async def body() -> None:
        async with FakeSlack(agents=AGENTS) as slack, console_for(manager, slack) as console:
            await manager.handle(message("my mug arrived broken SO-10023", received_at=NOW))
            await manager.handle(message("sato@example.jp", received_at=NOW))
            await manager.handle(message(attachments=(photo(),), received_at=NOW))
            card_ts = await queued(manager, console, slack, "I want to talk to a human")
            shown = json.dumps(slack.message(card_ts)["blocks"], ensure_ascii=False)
            for fact in ("damaged_item", "customer_request", "console", "SO-10023", "2× Ceramic mug", "Japan Post",
                         "s***@example.jp", "•••• 5678", "my mug arrived broken", "<!date^"):  # fmt: skip
                assert fact in shown, fact
            summary = next(b["text"]["text"] for b in slack.message(card_ts)["blocks"] if "(verified)" in str(b))
            assert "sato@example.jp" not in summary and "1234 5678" not in summary  # e-mail and phone masked
            actions = next(b for b in slack.message(card_ts)["blocks"] if b["type"] == "actions")["elements"]
            assert [e["action_id"] for e in actions] == ["claim", "resolve", "macro"]
            assert {o["value"] for o in actions[2]["options"]} >= {"refund_approved", "replacement_sent"}
            photos = await until(lambda: [u for u in slack.uploads.values() if u["shared"]])
            assert photos[0]["shared"]["thread_ts"] == card_ts and photos[0]["data"][:2] == b"\xff\xd8"
            assert [c.name for c in slack.calls()].count("files.completeUploadExternal") == 1

    run(body())


def test_forged_and_stale_signatures_are_refused_and_change_nothing(make_manager, run):
    manager = make_manager(clock=Clock(NOW))

    async def body() -> None:
        async with FakeSlack(agents=AGENTS) as slack, console_for(manager, slack) as console:
            card_ts = await queued(manager, console, slack)
            url = slack.events_url
            payload = slack.block_action(MEI, card_ts, "claim", value="console:c1")
            async with httpx.AsyncClient() as client:
                forged_body, forged_headers = slack.interaction_request(payload, secret="a guess")
                forged = await client.post(url, content=forged_body, headers=forged_headers)
                stale_body, stale_headers = slack.interaction_request(payload, timestamp=int(time.time()) - 600)
                stale = await client.post(url, content=stale_body, headers=stale_headers)
                unsigned = await client.post(
                    url, content=stale_body, headers={"Content-Type": stale_headers["Content-Type"]}
                )
                envelope = slack.user_message(slack.channel_id, MEI, "hello", thread_ts=card_ts)
                event_body, event_headers = slack.event_request(envelope, secret="guess")
                forged_event = await client.post(url, content=event_body, headers=event_headers)
            assert {forged.status_code, stale.status_code, unsigned.status_code, forged_event.status_code} == {401}
            await asyncio.sleep(0.5)
            state = await manager.conversation("console:c1")
            assert state.handoff.state == "queued" and not agent_lines(state)
            assert not slack.calls("chat.update")

    run(body())


def test_two_agents_claim_at_once_one_owns_it_and_the_other_is_told_who(make_manager, run):
    manager = make_manager(clock=Clock(NOW))

    async def body() -> None:
        async with FakeSlack(agents=AGENTS) as slack, console_for(manager, slack) as console:
            card_ts = await queued(manager, console, slack)
            statuses = await asyncio.gather(press(slack, MEI, card_ts, "claim"), press(slack, KENJI, card_ts, "claim"))
            assert list(statuses) == [200, 200]
            told = await until(lambda: slack.ephemerals())
            state = await manager.conversation("console:c1")
            owner = {"Mei": MEI, "Kenji": KENJI}[state.handoff.agent]
            loser = KENJI if owner == MEI else MEI
            assert state.handoff.state == "assigned"
            assert [(e["user"], e["text"]) for e in told] == [
                (loser, f"Not done: <@{owner}> has claimed this conversation.")
            ]
            await until(lambda: any("claimed" in t for t in slack.thread_texts(card_ts)))
            assert sum("claimed this conversation" in t for t in slack.thread_texts(card_ts)) == 1
            updated = json.dumps(slack.message(card_ts)["blocks"])
            assert f"claimed by <@{owner}>" in updated and '"action_id": "claim"' not in updated
            assert slack.calls("chat.update")

    run(body())


def test_a_note_stays_in_slack_and_a_reply_reaches_the_customer(make_manager, run):
    manager = make_manager(clock=Clock(NOW))

    async def body() -> None:
        async with FakeSlack(agents=AGENTS) as slack, console_for(manager, slack) as console:
            card_ts = await queued(manager, console, slack)
            await press(slack, MEI, card_ts, "claim")
            await until(lambda: manager.conversation("console:c1"), 5)
            await until(_assigned(manager))
            assert await write(slack, MEI, card_ts, "note: sounds like the second complaint this week") == 200
            assert await write(slack, MEI, card_ts, "NOTE: do not promise a refund") == 200
            assert (
                await write(
                    slack, MEI, card_ts, "Hello, Mei here &amp; happy to help: <https://shop.example/faq|our FAQ>"
                )
                == 200
            )
            state = await until(_with_agent_lines(manager, 1))
            assert agent_lines(state) == ["Hello, Mei here & happy to help: our FAQ (https://shop.example/faq)"]
            outbox = [o.text for o in await manager.collect("console:c1")]
            assert all("note" not in text.lower() for text in outbox)
            assert not slack.ephemerals()

    run(body())


def _assigned(manager: DialogueManager) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        state = await manager.conversation("console:c1")
        return state is not None and state.handoff.state == "assigned"

    return check


def _with_agent_lines(manager: DialogueManager, count: int) -> Callable[[], Awaitable[Any]]:
    async def check() -> Any:
        state = await manager.conversation("console:c1")
        return state if state is not None and len(agent_lines(state)) >= count else None

    return check


def test_customer_text_is_escaped_in_slack(make_manager, run):
    manager = make_manager(clock=Clock(NOW))

    async def body() -> None:
        async with FakeSlack(agents=AGENTS) as slack, console_for(manager, slack) as console:
            card_ts = await queued(manager, console, slack)
            nasty = "<!channel> <!here> see <https://evil.example|your bank> & ask <@U0AGENT1> in <#C0AGENTS>"
            await manager.handle(message(nasty, received_at=NOW))
            await console.idle()
            relayed = await until(lambda: [t for t in slack.thread_texts(card_ts) if "evil" in t])
            assert (
                "&lt;!channel&gt; &lt;!here&gt; see &lt;https://evil.example|your bank&gt; &amp; ask &lt;@U0AGENT1&gt;"
                in relayed[0]
            )
            everything = json.dumps([slack.messages(), [slack.thread(card_ts)]])
            for live in ("<!channel>", "<!here>", "<https://evil", "<@U0AGENT1>", "<#C0AGENTS>"):
                assert live not in everything

    run(body())


def test_only_the_owner_replies_and_only_agents_act(make_manager, run):
    manager = make_manager(clock=Clock(NOW))

    async def body() -> None:
        async with FakeSlack(agents=AGENTS) as slack, console_for(manager, slack) as console:
            card_ts = await queued(manager, console, slack)
            await press(slack, STRANGER, card_ts, "claim")
            await until(lambda: slack.ephemerals(STRANGER))
            assert (await manager.conversation("console:c1")).handoff.state == "queued"
            await write(slack, MEI, card_ts, "Hello before claiming")
            await until(lambda: slack.ephemerals(MEI))
            assert "claim the conversation first" in slack.ephemerals(MEI)[0]["text"]
            await press(slack, MEI, card_ts, "claim")
            await until(_assigned(manager))
            await write(slack, KENJI, card_ts, "Kenji here, let me help")
            await write(slack, STRANGER, card_ts, "me too")
            await press(slack, KENJI, card_ts, "resolve")
            await until(lambda: len(slack.ephemerals(KENJI)) == 2 and len(slack.ephemerals(STRANGER)) == 2)
            assert all(f"<@{MEI}> has claimed this conversation" in e["text"] for e in slack.ephemerals(KENJI))
            assert all("SLACK_AGENT_IDS" in e["text"] for e in slack.ephemerals(STRANGER))
            state = await manager.conversation("console:c1")
            assert state.handoff.state == "assigned" and state.handoff.agent == "Mei" and not agent_lines(state)

    run(body())


def test_a_macro_from_the_menu_reaches_the_customer_and_a_refused_delivery_is_reported(make_manager, run):
    manager = make_manager([order(items=[MUG])], clock=Clock(NOW))

    async def body() -> None:
        async with FakeSlack(agents=AGENTS) as slack, console_for(manager, slack) as console:
            await manager.handle(message("where is SO-10023", received_at=NOW))
            await manager.handle(message("sato@example.jp", received_at=NOW))
            card_ts = await queued(manager, console, slack)
            await press(slack, MEI, card_ts, "claim")
            await until(_assigned(manager))
            await press(slack, MEI, card_ts, "macro", selected="replacement_sent")
            sent = await until(lambda: [t for t in slack.thread_texts(card_ts) if "macro" in t])
            assert "`replacement_sent`" in sent[0] and "SO-10023" in sent[0]
            outbox = await manager.collect("console:c1")
            assert any(o.key == "macro_replacement_sent" for o in outbox)
            await press(slack, MEI, card_ts, "macro", selected="no_such_macro")
            told = await until(lambda: slack.ephemerals(MEI))
            assert "no macro named" in told[0]["text"]
            await manager.delivery_failed(outbox[-1], "the customer blocked the bot")
            await console.idle()
            warned = [t for t in slack.thread_texts(card_ts) if "Not delivered" in t]
            assert warned and warned[0].startswith(f"<@{MEI}> ") and "blocked the bot" in warned[0]

    run(body())


def test_a_half_configured_slack_console_names_what_is_missing(tmp_path):
    settings = settings_for(tmp_path, SLACK_BOT_TOKEN="xoxb-1", SLACK_AGENT_IDS="U1")
    with pytest.raises(SlackSettingsError, match="SLACK_AGENT_CHANNEL, SLACK_SIGNING_SECRET"):
        SlackConfig.from_settings(settings)
    socket = settings_for(tmp_path, SLACK_BOT_TOKEN="xoxb-1", SLACK_AGENT_IDS="U1, U2", SLACK_AGENT_CHANNEL="C1",
                          SLACK_APP_TOKEN="xapp-1")  # fmt: skip
    config = SlackConfig.from_settings(socket)  # Socket Mode needs no signing secret
    assert config is not None and config.agent_ids == {"U1", "U2"} and config.note_prefix == "note:"
    assert SlackConfig.from_settings(settings_for(tmp_path)) is None


def test_a_redelivered_event_is_handled_once_and_edits_and_bot_posts_are_ignored(make_manager, run):
    manager = make_manager(clock=Clock(NOW))

    async def body() -> None:
        async with FakeSlack(agents=AGENTS) as slack, console_for(manager, slack) as console:
            card_ts = await queued(manager, console, slack)
            await press(slack, MEI, card_ts, "claim")
            await until(_assigned(manager))
            envelope = slack.user_message(slack.channel_id, MEI, "Only once, please", thread_ts=card_ts)
            for retry in (None, 1, 2):  # Slack retries when it thinks the first delivery timed out
                assert (await slack.send(envelope, retry_num=retry)).status_code == 200
            await slack.send(slack.message_changed(slack.channel_id, slack.thread(card_ts)[-1]["ts"], "edited"))
            await slack.send(slack.bot_message_event(slack.channel_id, card_ts))
            await asyncio.sleep(0.5)
            await slack.settle()
            assert agent_lines(await manager.conversation("console:c1")) == ["Only once, please"]
            assert not slack.ephemerals()

    run(body())


def test_an_unclaimed_conversation_past_its_deadline_is_announced_once(make_manager, run):
    clock = Clock(NOW)
    manager = make_manager(clock=clock)

    async def body() -> None:
        async with (
            FakeSlack(agents=AGENTS) as slack,
            console_for(manager, slack, escalation_mention="<!subteam^S123>") as console,
        ):
            card_ts = await queued(manager, console, slack)
            await console.watch_once()
            assert not any("deadline" in t for t in slack.thread_texts(card_ts))
            clock.now = NOW + timedelta(hours=3)
            await console.watch_once()
            await console.watch_once()
            announced = [m for m in slack.thread(card_ts) if "deadline" in m["text"]]
            assert len(announced) == 1 and announced[0]["text"].startswith("<!subteam^S123> ")
            assert slack.calls("chat.postMessage")[-1].params.get("reply_broadcast") is True
            assert "past its first-response deadline" in json.dumps(slack.message(card_ts)["blocks"])

    run(body())


def test_a_missing_card_is_posted_by_the_watch_and_a_429_is_waited_out(make_manager, run):
    manager = make_manager(clock=Clock(NOW))

    async def body() -> None:
        async with FakeSlack(agents=AGENTS) as slack, console_for(manager, slack) as console:
            manager.listeners.remove(console.listen)  # as if the process died before posting the card
            await manager.handle(message("I want to talk to a human", received_at=NOW))
            manager.listeners.append(console.listen)
            assert not slack.messages()
            slack.fail_next("chat.postMessage", status=429, retry_after=1)
            started = time.monotonic()
            await console.watch_once()
            await console.watch_once()  # the card exists now: not posted twice
            assert len(slack.messages()) == 1 and time.monotonic() - started >= 1.0
            assert [c.status for c in slack.calls("chat.postMessage")] == [429, 200]

    run(body())


def test_posts_to_the_channel_are_paced(make_manager, run):
    manager = make_manager(clock=Clock(NOW))

    async def body() -> None:
        async with FakeSlack(agents=AGENTS) as slack, console_for(manager, slack, pace_seconds=0.3) as console:
            await queued(manager, console, slack)
            for n in range(3):
                await manager.handle(message(f"still there? {n}", received_at=NOW))
            await console.idle()
            times = [c.time for c in slack.calls("chat.postMessage")]
            assert len(times) == 4 and all(b - a >= 0.28 for a, b in itertools.pairwise(times))

    run(body())


# -- end to end: a Telegram customer, agents in Slack, the real server ------------------------------


def _relay_settings(tmp_path: Path, tg: FakeTelegram, slack: FakeSlack) -> Settings:
    return settings_for(
        tmp_path,
        TELEGRAM_BOT_TOKEN=tg.token,
        TELEGRAM_API_BASE=tg.base_url,
        SLACK_BOT_TOKEN=slack.token,
        SLACK_SIGNING_SECRET=slack.signing_secret,
        SLACK_API_BASE=slack.api_base,
        SLACK_AGENT_CHANNEL=slack.channel_id,
        SLACK_AGENT_IDS=f"{MEI}, {KENJI}",
        SLACK_PACE_SECONDS="0.05",
    )


async def _card_for_a_person(tg: FakeTelegram, slack: FakeSlack, chat: int) -> str:
    tg.push_update(tg.text_update(chat, "I want to talk to a real person"))
    cards = await until(lambda: slack.messages())
    return str(cards[-1]["ts"])


async def _claim_and_talk(tg: FakeTelegram, slack: FakeSlack, chat: int, card_ts: str) -> None:
    await slack.interact(slack.block_action(MEI, card_ts, "claim", value=f"telegram:{chat}"))
    await until(lambda: any("Mei from our support team" in text for text in tg.sent(chat)))
    await slack.send(slack.user_message(slack.channel_id, MEI, "note: VIP customer", thread_ts=card_ts))
    await slack.send(slack.user_message(slack.channel_id, MEI, "Hi, Mei here. How can I help?", thread_ts=card_ts))
    await until(lambda: "Hi, Mei here. How can I help?" in tg.sent(chat))
    assert all("VIP" not in text for text in tg.sent(chat))
    tg.push_update(tg.text_update(chat, "My parcel SO-10023 is late <b>again</b>"))
    await until(lambda: any("late &lt;b&gt;again&lt;/b&gt;" in t for t in slack.thread_texts(card_ts)))


def test_a_telegram_customer_talks_to_an_agent_in_slack_who_hands_back(tmp_path):
    async def body() -> None:
        async with FakeTelegram() as tg, FakeSlack(agents=AGENTS) as slack:
            async with serving(_relay_settings(tmp_path, tg, slack)) as (base, _):
                slack.deliver_events_to(f"{base}/slack/events")
                card_ts = await _card_for_a_person(tg, slack, 31)
                await _claim_and_talk(tg, slack, 31, card_ts)
                await slack.interact(slack.block_action(MEI, card_ts, "handback", value="telegram:31"))
                await until(lambda: any("handed the conversation back" in t for t in tg.sent(31)))
                before = len(tg.sent(31))
                tg.push_update(tg.text_update(31, "where is my order SO-10023?"))
                await until(lambda: len(tg.sent(31)) > before)
                assert "SO-10023" in tg.sent(31)[-1]  # the bot asks for verification again: it is talking
                assert "Handed back to the bot" in json.dumps(slack.message(card_ts)["blocks"], ensure_ascii=False)
                assert not slack.ephemerals()

    run_async(asyncio.wait_for(body(), 90))


def test_a_telegram_customer_rates_the_service_after_an_agent_in_slack_resolves(tmp_path):
    async def body() -> None:
        async with FakeTelegram() as tg, FakeSlack(agents=AGENTS) as slack:
            async with serving(_relay_settings(tmp_path, tg, slack)) as (base, runtime):
                slack.deliver_events_to(f"{base}/slack/events")
                card_ts = await _card_for_a_person(tg, slack, 32)
                await _claim_and_talk(tg, slack, 32, card_ts)
                await slack.interact(slack.block_action(MEI, card_ts, "resolve", value="telegram:32"))
                await until(lambda: tg.messages(32) and "reply_markup" in tg.messages(32)[-1])  # the CSAT buttons
                tg.push_update(tg.callback_update(32, "csat:4"))
                await until(lambda: runtime.manager.conversation("telegram:32"))

                async def rated() -> bool:
                    await runtime.slack.watch_once()
                    return any("rated the service ★★★★☆ 4/5" in t for t in slack.thread_texts(card_ts))

                await until(rated)
                assert "CSAT ★★★★☆ 4/5" in json.dumps(slack.message(card_ts)["blocks"], ensure_ascii=False)

    run_async(asyncio.wait_for(body(), 90))


def test_start_refuses_an_unknown_agents_channel_and_tolerates_a_missing_read_scope(make_manager, run):
    manager = make_manager(clock=Clock(NOW))

    async def body() -> None:
        async with FakeSlack(agents=AGENTS) as slack:
            config = SlackConfig(
                slack.token, slack.signing_secret, "C0NOSUCH", frozenset({MEI}), api_base=slack.api_base
            )
            with pytest.raises(SlackSettingsError, match="C0NOSUCH"):
                await SlackConsole(manager, config).start()
            slack.fail_next("conversations.info", status=200, error="missing_scope")
            console = SlackConsole(manager, SlackConfig(slack.token, slack.signing_secret, slack.channel_id,
                                                        frozenset({MEI}), api_base=slack.api_base))  # fmt: skip
            await console.start()
            assert console.bot_user_id == slack.bot_user_id and console.listen in manager.listeners
            await console.stop()
            assert console.listen not in manager.listeners

    run(body())


def test_socket_mode_takes_button_presses_and_thread_replies_over_the_socket(make_manager, run):
    manager = make_manager(clock=Clock(NOW))

    async def body() -> None:
        async with FakeSlack(agents=AGENTS) as slack:
            config = SlackConfig(slack.token, "", slack.channel_id, frozenset({MEI}), app_token=slack.app_token,
                                 api_base=slack.api_base, pace_seconds=0.05)  # fmt: skip
            console = SlackConsole(manager, config, watch_seconds=3600)
            await console.start()
            try:
                await until(lambda: slack.socket_connected)
                card_ts = await queued(manager, console, slack)
                ack = await slack.socket_send(slack.block_action(MEI, card_ts, "claim", value="console:c1"))
                assert set(ack) >= {"envelope_id"}
                await until(_assigned(manager))
                reply = slack.user_message(slack.channel_id, MEI, "Hello over the socket", thread_ts=card_ts)
                await slack.socket_send(reply)
                await slack.socket_send(reply)  # a redelivery over the socket is handled once too
                state = await until(_with_agent_lines(manager, 1))
                await asyncio.sleep(0.3)
                assert agent_lines(await manager.conversation("console:c1")) == ["Hello over the socket"]
                assert state.handoff.agent == "Mei"
                assert slack.calls("apps.connections.open")[0].status == 200
            finally:
                await console.stop()
            await until(lambda: not slack.socket_connected)

    run(body())


def test_two_processes_post_one_card_for_a_waiting_conversation(make_manager, run):
    manager = make_manager(clock=Clock(NOW))

    async def body() -> None:
        async with FakeSlack(agents=AGENTS) as slack:
            config = SlackConfig(slack.token, slack.signing_secret, slack.channel_id, frozenset({MEI}),
                                 api_base=slack.api_base, pace_seconds=0.05)  # fmt: skip
            first, second = SlackConsole(manager, config), SlackConsole(manager, config)  # two servers, one store
            await manager.handle(message("I want to talk to a human", received_at=NOW))  # nobody listened
            await asyncio.gather(first.watch_once(), second.watch_once(), first.watch_once())
            assert len(slack.messages()) == 1

    run(body())


# -- conformance with the Slack specs (SPECS_DIR) ---------------------------------------------------

# Methods newer than slack_web_openapi_v2.json (files upload v2, Socket Mode): only the fake checks them.
NEWER_THAN_THE_SPEC = frozenset({"files.getUploadURLExternal", "files.completeUploadExternal", "apps.connections.open"})
# slack_sdk adds `team_id` to every call of a client made for one workspace (bolt's per-request client
# calls auth.test with it): Slack reads it for org-wide apps and ignores it otherwise.
CLIENT_DEFAULTS = frozenset({"team_id"})


def slack_problems(calls: list[Any], folder: Path) -> list[str]:
    """Each Web API call names a method of the spec, sends only its parameters and all the required ones."""
    spec = json.loads((folder / "slack" / "slack_web_openapi_v2.json").read_text(encoding="utf-8"))
    problems = []
    for call in calls:
        if call.name in ("upload", "respond") or call.name in NEWER_THAN_THE_SPEC:
            continue
        path = spec["paths"].get(f"/{call.name}")
        if path is None:
            problems.append(f"{call.name}: no such method in the spec")
            continue
        parameters = {p["name"]: p for operation in path.values() for p in operation.get("parameters", [])}
        sent = [name for name in call.params if name not in CLIENT_DEFAULTS]
        problems += [f"{call.name}: {name} is not a parameter" for name in sent if name not in parameters]
        for name, parameter in parameters.items():
            if parameter.get("required") and name != "token" and name not in call.params:
                problems.append(f"{call.name}: required {name} missing")
        if not call.headers.get("authorization", "").startswith("Bearer "):
            problems.append(f"{call.name}: no bearer token")
    return problems


def envelope_problems(envelope: dict[str, Any], folder: Path) -> list[str]:
    schema = json.loads((folder / "slack" / "slack_common_event_wrapper_schema.json").read_text(encoding="utf-8"))
    missing = [f"envelope: {name} missing" for name in schema["required"] if name not in envelope]
    event_schema = schema["properties"]["event"]
    return missing + [f"event: {name} missing" for name in event_schema["required"] if name not in envelope["event"]]


def test_the_console_s_calls_and_the_fake_s_events_conform_to_the_slack_specs(make_manager, run):
    folder = specs_dir()
    if folder is None:
        pytest.skip(SKIP_REASON)
    manager = make_manager([order(items=[MUG])], clock=Clock(NOW))

    async def traffic() -> tuple[list[Any], list[dict[str, Any]]]:
        async with FakeSlack(agents=AGENTS) as slack, console_for(manager, slack) as console:
            await manager.handle(message("my mug arrived broken SO-10023", received_at=NOW))
            await manager.handle(message("sato@example.jp", received_at=NOW))
            await manager.handle(message(attachments=(photo(),), received_at=NOW))
            card_ts = await queued(manager, console, slack)
            await until(lambda: slack.uploads)
            await press(slack, STRANGER, card_ts, "claim")
            await press(slack, MEI, card_ts, "claim")
            await until(_assigned(manager))
            reply = slack.user_message(slack.channel_id, MEI, "Hello", thread_ts=card_ts)
            await slack.send(reply)
            await press(slack, MEI, card_ts, "macro", selected="replacement_sent")
            await press(slack, MEI, card_ts, "resolve")
            await until(lambda: any("resolved the case" in t for t in slack.thread_texts(card_ts)))
            await slack.settle()
            return slack.requests, [reply, slack.message_changed(slack.channel_id, reply["event"]["ts"], "x")]

    calls, envelopes = run(traffic())
    assert {c.name for c in calls} >= {"auth.test", "chat.postMessage", "chat.update", "chat.postEphemeral",
                                       "conversations.info", "users.info", "files.completeUploadExternal"}  # fmt: skip
    assert slack_problems(calls, folder) == []
    assert [p for envelope in envelopes for p in envelope_problems(envelope, folder)] == []
