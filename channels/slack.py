"""Agents in Slack: a card per handed-off conversation in the agents' channel, its thread as the
conversation with the customer.

    manager listener ─ queued ──────────▶ card (Block Kit) in SLACK_AGENT_CHANNEL, evidence photos in its thread
                     ─ customer_message ▶ the customer's words in the thread (escaped: no mentions, no links)
                     ─ delivery_failed ─▶ a warning in the thread
    Slack ─ Claim / Hand back / Resolve / macro ─▶ manager.agent(...) ─▶ the card is updated (chat.update)
          ─ a thread reply by the owner ─────────▶ manager.agent(reply) ─▶ the customer, through the delivery queue
          ─ a reply starting with SLACK_NOTE_PREFIX stays among the agents

Every move goes through `DialogueManager.agent`: who may claim, reply, hand back or resolve is
decided there (`bot.dialogue.people.refusal`), never here. Only `SLACK_AGENT_IDS` may act at all.

Requests from Slack arrive at `POST /slack/events` (events and interactivity; slack-bolt checks the
signature and refuses timestamps older than five minutes) or over Socket Mode when `SLACK_APP_TOKEN`
is set. Slack retries an event it thinks was not acknowledged: each `event_id` is handled once
(SET NX in the store). What the bot posts to the channel is paced (`SLACK_PACE_SECONDS`, across
processes, through the store) and a 429 is waited out as its `Retry-After` says.

Which card belongs to which conversation is kept in the store: `{conversation}:slack` holds the
card of the conversation's current stay in the queue, `slack:card:{channel}:{ts}` leads from any
card (and so its thread) back to the conversation. Listener events are handled in order by one
task per process; `watch_once` (every few seconds) posts any card that is missing, announces
conversations still unclaimed past their first-response deadline, and posts the customer's rating
once it arrives after a resolution.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from redis.typing import EncodableT, FieldT
from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
from slack_bolt.async_app import AsyncApp
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient
from starlette.requests import Request
from starlette.responses import Response

from bot.config import Settings
from bot.contracts import AgentMove, HandoffState
from bot.dialogue import AgentAction, clean_text
from bot.handoff import QueueEntry
from bot.manager import DialogueManager, conversation_tag
from bot.order import Order
from bot.order_sources import look_up
from bot.state import Conversation

log = logging.getLogger(__name__)

SLACK_API = "https://slack.com/api/"
WATCH_SECONDS = 5.0  # how often missing cards, overdue conversations and ratings are looked for
LAST_MESSAGES = 5  # customer messages shown on a card
EVENT_MEMORY_SECONDS = 24 * 3600  # Slack retries an event for minutes: a day is plenty
CSAT_WAIT_SECONDS = 7 * 24 * 3600  # after that, a rating that never came is not waited for
ACTIONS = ("claim", "handback", "resolve", "macro")
NOT_AN_AGENT = "Only the after-sales agents (SLACK_AGENT_IDS) can act on customer conversations."


class SlackSettingsError(ValueError):
    """The Slack console is half configured: the message names what is missing."""


@dataclass(frozen=True)
class SlackConfig:
    bot_token: str
    signing_secret: str
    channel: str  # the agents' channel id (C… or G…)
    agent_ids: frozenset[str]
    app_token: str | None = None  # Socket Mode instead of the HTTP route
    api_base: str | None = None
    note_prefix: str = "note:"
    escalation_mention: str | None = None  # e.g. "<!subteam^S123>"
    pace_seconds: float = 1.0

    @classmethod
    def from_settings(cls, settings: Settings) -> SlackConfig | None:
        """The console's settings; None when no SLACK_* variable is set; an error naming the
        missing ones when some are."""
        needed = {
            "SLACK_BOT_TOKEN": settings.slack_bot_token,
            "SLACK_AGENT_CHANNEL": settings.slack_agent_channel,
            "SLACK_AGENT_IDS": ",".join(settings.slack_agent_ids),
        }
        if not settings.slack_app_token:  # Socket Mode requests come over the app's own socket, unsigned
            needed["SLACK_SIGNING_SECRET"] = settings.slack_signing_secret
        if not settings.wants_slack:
            return None
        missing = [name for name, value in needed.items() if not value]
        if missing:
            raise SlackSettingsError(
                f"half-configured Slack console: set {', '.join(missing)} too (or none of the SLACK_* variables)"
            )
        return cls(
            bot_token=str(settings.slack_bot_token),
            signing_secret=settings.slack_signing_secret or "",
            channel=str(settings.slack_agent_channel),
            agent_ids=frozenset(settings.slack_agent_ids),
            app_token=settings.slack_app_token,
            api_base=settings.slack_api_base,
            note_prefix=settings.slack_note_prefix,
            escalation_mention=settings.slack_escalation_mention,
            pace_seconds=settings.slack_pace_seconds,
        )


async def start_console(settings: Settings, manager: DialogueManager) -> SlackConsole | None:
    """The Slack console for `aftersales run`, started; None when Slack is not configured."""
    config = SlackConfig.from_settings(settings)
    if config is None:
        return None
    console = SlackConsole(manager, config)
    await console.start()
    return console


# -- text --------------------------------------------------------------------------------------


def escape(text: object) -> str:
    """Text shown as Slack markup: `&`, `<` and `>` escaped, so a customer's `<!channel>`, `<@U…>`
    or `<https://…|label>` is shown as written and never becomes a mention or a link."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def quoted(text: str, limit: int = 2500) -> str:
    """Escaped text as a Slack quote, cut to `limit` characters."""
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return "\n".join("&gt; " + escape(line) for line in (text.splitlines() or [""]))


_SLACK_MARKUP = re.compile(r"<([^<>|]*)(?:\|([^<>]*))?>")


def from_slack(text: str) -> str:
    """An agent's Slack message as the customer should read it: mentions and channel links
    dropped (a label kept), `<url|label>` as `label (url)`, entities unescaped."""

    def plain(match: re.Match[str]) -> str:
        target, label = match.group(1), match.group(2)
        if target.startswith(("@", "#", "!")):
            return label or ""
        if target.startswith("mailto:"):
            return label or target[len("mailto:") :]
        return f"{label} ({target})" if label and label != target else target

    text = _SLACK_MARKUP.sub(plain, text or "")
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&").strip()


def mask_email(email: str) -> str:
    """`sato@example.jp` -> `s***@example.jp`: enough to recognise, not to copy."""
    name, at, domain = email.partition("@")
    return f"{name[:1]}***{at}{domain}" if at else "***"


def mask_phone(phone: str) -> str:
    """`+81 90 1234 5678` -> `•••• 5678`: the last four digits only."""
    digits = re.sub(r"\D", "", phone)
    return f"•••• {digits[-4:]}" if len(digits) >= 4 else "••••"


def _slack_date(moment: datetime) -> str:
    """A time every agent reads in their own time zone (Slack's date formatting)."""
    return f"<!date^{int(moment.timestamp())}^{{date_short_pretty}} {{time}}|{moment.isoformat(timespec='minutes')}>"


def stars(score: int) -> str:
    return "★" * score + "☆" * (5 - score)


# -- the card ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CardView:
    """What a card shows about one conversation."""

    state: Conversation
    entry: QueueEntry | None
    order: Order | None  # the verified order, else None
    owner: str  # a Slack mention of the claiming agent, or their name, or ""
    overdue: bool
    macros: tuple[str, ...]
    csat: int | None = None
    note_prefix: str = "note:"


_HEADERS = {
    HandoffState.QUEUED: "🙋 A customer is waiting for an agent",
    HandoffState.ASSIGNED: "💬 With an agent",
    HandoffState.NONE: "↩️ Handed back to the bot",
    HandoffState.RESOLVED: "✅ Resolved",
}


def card(view: CardView) -> tuple[str, list[dict[str, Any]]]:
    """The card's fallback text and Block Kit blocks."""
    state, handoff, ticket = view.state, view.state.handoff, view.state.ticket
    header = "🚨 Waiting past its first-response deadline" if view.overdue else _HEADERS[HandoffState(handoff.state)]
    priority = "urgent (past its deadline)" if view.overdue else str(handoff.priority or "-")
    deadline = view.entry.deadline if view.entry else None
    if deadline is None and ticket is not None and ticket.sla_deadline:
        deadline = datetime.fromisoformat(ticket.sla_deadline)
    who = {
        HandoffState.QUEUED: "queued, unclaimed",
        HandoffState.ASSIGNED: f"claimed by {view.owner or '?'}",
        HandoffState.NONE: "back with the bot",
        HandoffState.RESOLVED: "resolved",
    }[HandoffState(handoff.state)]
    intent = (ticket.intent if ticket else None) or state.flow_intent or "-"
    reason = handoff.reason or (ticket.reasons[-1].reason if ticket and ticket.reasons else "-")
    rating = f" · CSAT {stars(view.csat)} {view.csat}/5" if view.csat else ""
    fields = [  # (title, mrkdwn): what came from outside is escaped
        ("Customer language", escape(state.language or "-")),
        ("Channel", escape(state.channel)),
        ("Intent", escape(intent)),
        ("Reason", escape(reason)),
        ("Priority", escape(priority)),
        ("SLA deadline", _slack_date(deadline) if deadline else "-"),
        ("State", who),  # names the owner with a mention, or an escaped name
        ("Ticket", escape(ticket.id) + rating if ticket else "-"),
    ]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": header, "emoji": True}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f"*{name}*\n{value}"} for name, value in fields]},
        {"type": "section", "text": {"type": "mrkdwn", "text": _order_text(view)}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _last_messages(state)}},
    ]
    if handoff.state in (HandoffState.QUEUED, HandoffState.ASSIGNED):
        blocks.append({"type": "actions", "block_id": "moves", "elements": _buttons(view)})
    context = (
        f"Conversation `{escape(state.id)}` · reply in this thread to write to the customer; "
        f"a reply starting with `{escape(view.note_prefix)}` stays among agents."
    )
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]})
    text = f"{header}: {escape(intent)} ({escape(state.language or '-')}, {escape(state.channel)}) — {who}"
    return text, blocks


def _order_text(view: CardView) -> str:
    order, number = view.order, view.state.slots.order_number
    if order is None:
        if number:
            return f"*Order {escape(number)}* — not verified: do not disclose anything about it."
        return "_No order number given yet._"
    items = ", ".join(f"{i.get('qty', 1)}× {i.get('name') or i.get('sku') or '?'}" for i in order.items) or "-"
    lines = [
        f"*Order {escape(order.number)}* (verified) · {escape(order.status)} · {escape(order.total)} "
        f"{escape(order.currency)} · ships to {escape(order.market or '-')}",
        escape(items),
        f"{escape(order.carrier or '-')} {escape(order.tracking or '')} · "
        f"delivered {escape(order.delivered_at or '-')}",
        f"e-mail {escape(mask_email(order.email)) if order.email else '-'} · "
        f"phone {escape(mask_phone(order.phone)) if order.phone else '-'}",
    ]
    return "\n".join(lines)


def _last_messages(state: Conversation) -> str:
    said = [line.text for line in state.transcript if line.who == "customer"][-LAST_MESSAGES:]
    if not said:
        return "*Last messages from the customer*\n_none_"
    room = 2800 // len(said)
    return "*Last messages from the customer*\n" + "\n".join(quoted(text, room) for text in said)


def _buttons(view: CardView) -> list[dict[str, Any]]:
    value = view.state.id[:2000]
    elements: list[dict[str, Any]] = []
    if view.state.handoff.state == HandoffState.QUEUED:
        elements.append(_button("claim", "Claim", value, style="primary"))
    else:
        elements.append(_button("handback", "Hand back", value))
    resolve = _button("resolve", "Resolve", value)
    resolve["confirm"] = {
        "title": {"type": "plain_text", "text": "Resolve the case?"},
        "text": {"type": "mrkdwn", "text": "The customer is asked to rate the service; the conversation closes."},
        "confirm": {"type": "plain_text", "text": "Resolve"},
        "deny": {"type": "plain_text", "text": "Cancel"},
    }
    elements.append(resolve)
    if view.macros:
        elements.append(
            {
                "type": "static_select",
                "action_id": "macro",
                "placeholder": {"type": "plain_text", "text": "Send a macro…"},
                "options": [
                    {"text": {"type": "plain_text", "text": name.replace("_", " ")[:75]}, "value": name}
                    for name in view.macros[:100]
                ],
            }
        )
    return elements


def _button(action_id: str, label: str, value: str, style: str | None = None) -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "action_id": action_id,
        "text": {"type": "plain_text", "text": label},
        "value": value,
    }
    if style:
        button["style"] = style
    return button


# -- the console ------------------------------------------------------------------------------


class SlackConsole:
    """The agents' side of the handoff, in a Slack channel. `start()` before use, `stop()` after."""

    def __init__(
        self,
        manager: DialogueManager,
        config: SlackConfig,
        *,
        watch_seconds: float = WATCH_SECONDS,
    ) -> None:
        self.manager = manager
        self.config = config
        self.watch_seconds = watch_seconds
        self.store = manager.store
        self.client = AsyncWebClient(
            token=config.bot_token,
            base_url=config.api_base or SLACK_API,
            retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=3)],
        )
        self.app = AsyncApp(
            client=self.client,
            signing_secret=config.signing_secret,
            logger=log,
            raise_error_for_unhandled_request=False,
        )
        self.app.middleware(self._once)
        self.app.action(re.compile(f"^({'|'.join(ACTIONS)})$"))(self._on_action)
        self.app.event("message")(self._on_message)
        self.handler = AsyncSlackRequestHandler(self.app)
        self.bot_user_id = ""
        self.bot_id = ""
        self._jobs: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._socket: Any = None  # the Socket Mode handler, when SLACK_APP_TOKEN is set

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Check the token and the channel, listen to the manager, start the background work."""
        auth = await self.client.auth_test()
        self.bot_user_id, self.bot_id = str(auth.get("user_id") or ""), str(auth.get("bot_id") or "")
        try:
            info = await self.client.conversations_info(channel=self.config.channel)
            if not (info.get("channel") or {}).get("is_member"):
                log.warning(
                    "the Slack app is not a member of SLACK_AGENT_CHANNEL: invite it, or thread replies go unseen"
                )
        except SlackApiError as error:
            answer = error.response.get("error")
            if answer == "channel_not_found":
                raise SlackSettingsError(f"SLACK_AGENT_CHANNEL {self.config.channel!r}: no such channel") from error
            log.warning("could not check SLACK_AGENT_CHANNEL (%s): channels:read / groups:read missing?", answer)
        self.manager.listeners.append(self.listen)
        self._tasks = [asyncio.create_task(self._work()), asyncio.create_task(self._watch())]
        if self.config.app_token:
            from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

            self._socket = AsyncSocketModeHandler(self.app, self.config.app_token)
            await self._socket.connect_async()
        log.info("Slack console on channel %s (%s)", self.config.channel, "socket mode" if self._socket else "HTTP")

    async def stop(self) -> None:
        """Finish the events already received (briefly), then stop."""
        self._stop.set()
        with contextlib.suppress(ValueError):
            self.manager.listeners.remove(self.listen)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._jobs.join(), 10)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._socket is not None:
            with contextlib.suppress(Exception):
                await self._socket.close_async()
        with contextlib.suppress(Exception):
            if self.client.session is not None:
                await self.client.session.close()

    async def handle(self, request: Request) -> Response:
        """`POST /slack/events`: events and interactivity, verified and dispatched by bolt."""
        return await self.handler.handle(request)

    def listen(self, conversation_id: str, event: dict[str, Any]) -> None:
        """A manager listener: queued for the console's task, so a turn never waits for Slack."""
        self._jobs.put_nowait((conversation_id, dict(event)))

    async def idle(self) -> None:
        """Until every listener event received so far is handled (tests, shutdown)."""
        await self._jobs.join()

    # -- requests from Slack ------------------------------------------------------------------

    async def _once(self, body: dict[str, Any], next: Callable[[], Awaitable[None]]) -> BoltResponse | None:
        """Slack redelivers an event it thinks was not acknowledged (`X-Slack-Retry-Num`): each
        `event_id` is handled once."""
        event_id = body.get("event_id") if isinstance(body, dict) else None
        if event_id:
            key = self.store.key("slack", "event", str(event_id)[:128])
            if not await self.store.redis.set(key, "1", nx=True, ex=EVENT_MEMORY_SECONDS):
                log.info("Slack event %s delivered again: ignored", str(event_id)[:128])
                return BoltResponse(status=200, body="")
        await next()
        return None

    async def _on_action(self, ack: Callable[[], Awaitable[Any]], body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()  # within Slack's 3 seconds; the move itself follows
        try:
            await self.act(body, action)
        except Exception:
            log.exception("Slack action failed")

    async def _on_message(self, event: dict[str, Any]) -> None:
        try:
            await self.thread_reply(event)
        except Exception:
            log.exception("Slack thread reply failed")

    async def act(self, body: dict[str, Any], action: dict[str, Any]) -> None:
        """A button or the macro menu on a card."""
        user = str((body.get("user") or {}).get("id") or "")
        container = body.get("container") or {}
        channel = str(container.get("channel_id") or (body.get("channel") or {}).get("id") or "")
        ts = str(container.get("message_ts") or "")
        if user not in self.config.agent_ids:
            await self._tell(channel, user, NOT_AN_AGENT, ts)
            return
        conversation_id = await self._conversation_of(channel, ts)
        if conversation_id is None:
            await self._tell(channel, user, "This card is no longer linked to a conversation.", ts)
            return
        kind = str(action.get("action_id") or "")
        text = str((action.get("selected_option") or {}).get("value") or "") if kind == "macro" else ""
        name = await self._agent_name(user)
        result = await self.manager.agent(conversation_id, AgentAction(AgentMove(kind), name, text))
        if not result.ok:
            await self._tell(channel, user, await self._explain(conversation_id, name, result.problem), ts)
            return
        await self.refresh(conversation_id)
        current = await self._current_card(conversation_id)
        thread = current.get("ts") or ts
        if kind == "claim":
            await self._say(f"<@{user}> claimed this conversation.", thread)
        elif kind == "handback":
            await self._say(f"<@{user}> handed the conversation back to the bot.", thread)
        elif kind == "resolve":
            await self._say(f"<@{user}> resolved the case. The customer's rating will be posted here.", thread)
            await self._await_rating(conversation_id)
        elif kind == "macro":
            sent = "\n".join(reply.text for reply in result.replies)
            await self._say(f"<@{user}> sent the macro `{escape(text)}`:\n{quoted(sent)}", thread)

    async def thread_reply(self, event: dict[str, Any]) -> None:
        """A message in the agents' channel: a reply in a card's thread goes to the customer when
        its author may reply; anything else is not ours."""
        subtype = event.get("subtype")
        if subtype not in (None, "thread_broadcast", "file_share"):
            return  # edits, deletions, joins, other bots' messages
        user = str(event.get("user") or "")
        if event.get("bot_id") or not user or user == self.bot_user_id:
            return  # the bot's own posts (and other bots'): never relayed, so never a loop
        channel, thread, ts = str(event.get("channel") or ""), event.get("thread_ts"), event.get("ts")
        if channel != self.config.channel or not thread or thread == ts:
            return  # not a reply in a thread
        conversation_id = await self._conversation_of(channel, str(thread))
        if conversation_id is None:
            return  # a thread under some other message
        text = str(event.get("text") or "")
        if text.strip().casefold().startswith(self.config.note_prefix.casefold()):
            return  # an internal note: stays in Slack
        if user not in self.config.agent_ids:
            await self._tell(channel, user, NOT_AN_AGENT + " Your message was not sent to the customer.", str(thread))
            return
        if subtype == "file_share":
            await self._tell(channel, user, "Files are not sent to the customer: only text is.", str(thread))
            return
        plain = from_slack(text)
        if not plain:
            return
        name = await self._agent_name(user)
        result = await self.manager.agent(conversation_id, AgentAction(AgentMove.REPLY, name, plain))
        if not result.ok:
            problem = await self._explain(conversation_id, name, result.problem)
            await self._tell(channel, user, f"{problem} Your message was not sent to the customer.", str(thread))

    async def _explain(self, conversation_id: str, name: str, problem: str) -> str:
        """Why a move was refused, naming the agent who holds the conversation."""
        state = await self.manager.conversation(conversation_id)
        holder = state.handoff.agent if state is not None else None
        if state is not None and state.handoff.state == HandoffState.ASSIGNED and holder and holder != name:
            return f"Not done: {await self._mention(holder)} has claimed this conversation."
        if state is not None and state.handoff.state == HandoffState.QUEUED and "queued" in problem:
            return "Not done: claim the conversation first."
        return f"Not done: {escape(problem)}."

    # -- listener events ----------------------------------------------------------------------

    async def _work(self) -> None:
        while True:
            conversation_id, event = await self._jobs.get()
            try:
                await self._job(conversation_id, event)
            except Exception:
                log.exception("Slack console: %s failed conversation=%s", event.get("type"),
                              conversation_tag(conversation_id))  # fmt: skip
            finally:
                self._jobs.task_done()

    async def _job(self, conversation_id: str, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "queued":
            await self._card(conversation_id)
        elif kind == "customer_message":
            found = await self._card(conversation_id)
            if found:
                await self._say(f"*Customer:*\n{quoted(str(event.get('text') or ''))}", found["ts"])
                await self._photos(conversation_id, found)
                await self.refresh(conversation_id)
        elif kind == "delivery_failed":
            found = await self._current_card(conversation_id)
            if found:
                state = await self.manager.conversation(conversation_id)
                holder = state.handoff.agent if state is not None else None
                who = f"{await self._mention(holder)} " if holder else ""
                reason, text = escape(event.get("reason") or "refused"), str(event.get("text") or "")
                await self._say(f"{who}⚠️ Not delivered to the customer ({reason}):\n{quoted(text)}", found["ts"])
        elif kind == "csat":
            await self._rating(conversation_id)

    # -- cards ----------------------------------------------------------------------------------

    def _card_key(self, conversation_id: str) -> str:
        return self.store.conversation_key(conversation_id, "slack")

    def _ts_key(self, channel: str, ts: str) -> str:
        return self.store.key("slack", "card", channel, ts)

    async def _current_card(self, conversation_id: str) -> dict[str, str]:
        found = await self.store.redis.hgetall(self._card_key(conversation_id))
        return {str(name): str(value) for name, value in found.items()}

    async def _conversation_of(self, channel: str, ts: str) -> str | None:
        if not channel or not ts:
            return None
        found = await self.store.redis.get(self._ts_key(channel, ts))
        return str(found) if found else None

    async def _card(self, conversation_id: str) -> dict[str, str] | None:
        """The card of the conversation's current stay in the queue, posted if it is missing;
        the last card when it is no longer queued; None when it never was."""
        current = await self._current_card(conversation_id)
        entry = await self.manager.queue.get(conversation_id)
        if entry is None or current.get("episode") == entry.enqueued_at.isoformat():
            return current or None  # the usual case, without the lock
        async with self._locked(self.store.conversation_key(conversation_id, "slack", "lock")):
            current = await self._current_card(conversation_id)  # again: another process may have posted it
            entry = await self.manager.queue.get(conversation_id)
            if entry is None or current.get("episode") == entry.enqueued_at.isoformat():
                return current or None
            view = await self._view(conversation_id)
            if view is None:
                return current or None
            text, blocks = card(view)
            posted = await self._post(text=text, blocks=blocks)
            record: dict[FieldT, EncodableT] = {
                "channel": self.config.channel,
                "ts": str(posted["ts"]),
                "episode": entry.enqueued_at.isoformat(),
            }
            current = {str(name): str(value) for name, value in record.items()}
            ttl = self.store.ttl_seconds
            async with self.store.redis.pipeline(transaction=False) as pipe:
                pipe.delete(self._card_key(conversation_id))
                pipe.hset(self._card_key(conversation_id), mapping=record)
                pipe.expire(self._card_key(conversation_id), ttl)
                pipe.set(self._ts_key(current["channel"], current["ts"]), conversation_id, ex=ttl)
                await pipe.execute()
        await self._photos(conversation_id, current)
        return current

    async def refresh(self, conversation_id: str) -> None:
        """Show the conversation's state on its card (chat.update)."""
        current = await self._current_card(conversation_id)
        view = await self._view(conversation_id, current)
        if not current or view is None:
            return
        text, blocks = card(view)
        await self.client.chat_update(channel=current["channel"], ts=current["ts"], text=text, blocks=blocks)

    async def _view(self, conversation_id: str, current: dict[str, str] | None = None) -> CardView | None:
        state = await self.manager.conversation(conversation_id)
        if state is None:
            return None
        entry = await self.manager.queue.get(conversation_id)
        order = None
        if state.slots.verified and state.slots.order_number:
            order = (await look_up(self.manager.orders, state.slots.order_number)).order
        holder = state.handoff.agent
        owner = await self._mention(holder) if holder and state.handoff.state == HandoffState.ASSIGNED else ""
        overdue = entry is not None and entry.state == HandoffState.QUEUED and entry.deadline <= self.manager.clock()
        catalog = self.manager.catalog
        macros = tuple(
            sorted(k[len("macro_") :] for k in catalog.locales[catalog.default].messages if k.startswith("macro_"))
        )
        score = (current or {}).get("csat")
        csat = int(score) if score else None
        return CardView(state, entry, order, owner, overdue, macros, csat, self.config.note_prefix)

    async def _photos(self, conversation_id: str, current: dict[str, str]) -> None:
        """Evidence photos not in the thread yet, uploaded there (files upload v2)."""
        state = await self.manager.conversation(conversation_id)
        if state is None or not state.photo_refs:
            return
        done = self.store.conversation_key(conversation_id, "slack", "photos")
        for number, ref in enumerate(state.photo_refs, 1):
            if await self.store.redis.sismember(done, ref):
                continue
            path = self.manager.evidence.folder / ref
            if not path.is_file():
                continue  # expired with its ticket
            data = await asyncio.to_thread(path.read_bytes)
            await self._pace()
            await self.client.files_upload_v2(
                channel=current["channel"],
                thread_ts=current["ts"],
                content=data,
                filename=f"evidence-{number}.jpg",
                title=f"Evidence photo {number}",
            )
            await self.store.redis.sadd(done, ref)
            await self.store.redis.expire(done, self.store.ttl_seconds)

    # -- the clock ------------------------------------------------------------------------------

    async def _watch(self) -> None:
        while not self._stop.is_set():
            try:
                await self.watch_once()
            except Exception:
                log.exception("Slack console: the watch failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.watch_seconds)

    async def watch_once(self) -> None:
        """Post missing cards; announce conversations unclaimed past their deadline (once per
        stay in the queue); post ratings that arrived."""
        now = self.manager.clock()
        for entry in await self.manager.queue.waiting():
            current = await self._card(entry.conversation_id)
            if current is None or entry.deadline > now:
                continue
            flag = f"escalated:{current.get('episode', '')}"
            if await self.store.redis.hsetnx(self._card_key(entry.conversation_id), flag, "1"):
                await self._escalate(entry, current)
        waiting = await self.store.redis.smembers(self.store.key("slack", "csat_wait"))
        for conversation_id in waiting:
            await self._rating(str(conversation_id))

    async def _escalate(self, entry: QueueEntry, current: dict[str, str]) -> None:
        mention = f"{self.config.escalation_mention} " if self.config.escalation_mention else ""
        text = (
            f"{mention}🚨 Nobody has claimed this conversation and its first-response deadline "
            f"({_slack_date(entry.deadline)}) has passed."
        )
        await self._say(text, current["ts"], broadcast=True)
        await self.refresh(entry.conversation_id)

    async def _await_rating(self, conversation_id: str) -> None:
        state = await self.manager.conversation(conversation_id)
        if state is None or state.ticket is None:
            return
        redis = self.store.redis
        await redis.hset(self._card_key(conversation_id), "csat_ticket", state.ticket.id)
        await redis.sadd(self.store.key("slack", "csat_wait"), conversation_id)
        await redis.expire(self.store.key("slack", "csat_wait"), self.store.ttl_seconds)

    async def _rating(self, conversation_id: str) -> None:
        """The customer's score after a resolution, posted in the thread once."""
        redis, wait = self.store.redis, self.store.key("slack", "csat_wait")
        current = await self._current_card(conversation_id)
        ticket_id = current.get("csat_ticket")
        ticket = await self.manager.tickets.get(ticket_id) if ticket_id else None
        if ticket is None:
            await redis.srem(wait, conversation_id)
            return
        score = ticket.get("csat")
        if score is None:
            resolved = ticket.get("resolved_at")
            age = (self.manager.clock() - datetime.fromisoformat(resolved)).total_seconds() if resolved else 0.0
            if age > CSAT_WAIT_SECONDS:
                await redis.srem(wait, conversation_id)
            return
        if await redis.hsetnx(self._card_key(conversation_id), "csat", str(int(score))):
            await self._say(f"⭐ The customer rated the service {stars(int(score))} {int(score)}/5.", current["ts"])
            await self.refresh(conversation_id)
        await redis.srem(wait, conversation_id)

    # -- agents ---------------------------------------------------------------------------------

    async def _agent_name(self, user_id: str) -> str:
        """The name an agent acts under (the customer reads it in `agent_joined`): their Slack
        display name, unique among agents (another agent's same name gets part of the id)."""
        redis, ttl = self.store.redis, self.store.ttl_seconds
        key = self.store.key("slack", "agent", user_id)
        known = await redis.get(key)
        if known:
            await redis.expire(key, ttl)
            await redis.expire(self.store.key("slack", "agent-name", str(known).casefold()), ttl)
            return str(known)
        shown = ""
        try:
            user = (await self.client.users_info(user=user_id)).get("user") or {}
            profile = user.get("profile") or {}
            shown = profile.get("display_name") or profile.get("real_name") or user.get("real_name") or ""
        except SlackApiError as error:
            log.warning("users.info failed: %s", error.response.get("error"))
        base = clean_text(str(shown))[:40].strip() or user_id
        for name in (base, f"{base} ({user_id[-4:]})", f"{base} ({user_id})"):
            owner = self.store.key("slack", "agent-name", name.casefold())
            if await redis.set(owner, user_id, nx=True, ex=ttl) or await redis.get(owner) == user_id:
                await redis.set(key, name, ex=ttl)
                return name
        return user_id

    async def _mention(self, name: str | None) -> str:
        """`<@U…>` for an agent who acted from Slack, else their name (the terminal console)."""
        if not name:
            return ""
        user_id = await self.store.redis.get(self.store.key("slack", "agent-name", name.casefold()))
        return f"<@{user_id!s}>" if user_id else escape(name)

    # -- writing to Slack -----------------------------------------------------------------------

    async def _pace(self) -> None:
        """About one post a second to the agents' channel, across every process on the store."""
        if self.config.pace_seconds <= 0:
            return
        key = self.store.key("slack", "pace", self.config.channel)
        ms = max(1, int(self.config.pace_seconds * 1000))
        while not await self.store.redis.set(key, "1", nx=True, px=ms):
            wait = await self.store.redis.pttl(key)
            await asyncio.sleep(max(int(wait), 5) / 1000)

    async def _post(self, *, text: str, blocks: list[dict[str, Any]] | None = None, thread: str | None = None,
                    broadcast: bool = False) -> Any:  # fmt: skip
        await self._pace()
        args: dict[str, Any] = {"channel": self.config.channel, "text": text, "unfurl_links": False,
                                "unfurl_media": False}  # fmt: skip
        if blocks is not None:
            args["blocks"] = blocks
        if thread:
            args["thread_ts"] = thread
            if broadcast:
                args["reply_broadcast"] = True
        return await self.client.chat_postMessage(**args)

    async def _say(self, text: str, thread: str, *, broadcast: bool = False) -> None:
        await self._post(text=text, thread=thread, broadcast=broadcast)

    async def _tell(self, channel: str, user: str, text: str, thread: str | None = None) -> None:
        """An ephemeral message: only `user` sees it."""
        try:
            args: dict[str, Any] = {"channel": channel or self.config.channel, "user": user, "text": text}
            if thread:
                args["thread_ts"] = thread
            await self.client.chat_postEphemeral(**args)
        except SlackApiError as error:
            log.warning("could not tell a Slack user why: %s", error.response.get("error"))

    @contextlib.asynccontextmanager
    async def _locked(self, key: str, seconds: float = 30.0) -> AsyncIterator[None]:
        """A short lock in the store (one card per stay in the queue, whichever process posts it)."""
        token = secrets.token_hex(8)
        redis = self.store.redis
        while not await redis.set(key, token, nx=True, px=int(seconds * 1000)):  # noqa: ASYNC110 - held elsewhere
            await asyncio.sleep(0.05)
        try:
            yield
        finally:
            if await redis.get(key) == token:
                await redis.delete(key)
