"""Agents in Slack: the console (channels/slack.py) against a local fake of the Slack Web API,
with a real embedded Valkey and the real dialogue manager; requests from Slack are signed as
Slack signs them."""

from __future__ import annotations

import asyncio
import time

from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from tests.conftest import run_async
from tests.fakes.slack import FakeSlack

MEI, KENJI, STRANGER = "U0AGENT1", "U0AGENT2", "U0OUTSIDER"
AGENTS = {MEI: "Mei", KENJI: "Kenji", STRANGER: "Someone Else"}


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
