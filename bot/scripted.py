"""Scripted dialogue tests: one YAML file, one conversation, run against the real core and store.

The format is fixed by DESIGN.md ("Scripted dialogue tests"). Shops use it to test their own
flows and wording: `aftersales test PATH...`; pytest collects tests/dialogues/**/*.yml too.

A script's `channel` may have a `ChannelCodec` (given by whoever runs the scripts: the codecs live
in `channels.scripted`, and `bot/` never imports `channels/`). Then every customer step goes out as
the platform's own event and comes back through the adapter's parsing, and every reply is rendered
as the platform's request bodies: the checks see what the adapter made of the step and what the
customer would really get. A channel without a codec runs against the core only.
"""

from __future__ import annotations

import io
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import yaml
from PIL import Image

from bot.app import Brain
from bot.contracts import AgentMove
from bot.dialogue import AgentAction
from bot.manager import DialogueManager
from bot.messages import Attachment, Inbound, Outbound
from bot.order import Order
from bot.order_sources import StaticOrders
from bot.store import Store
from bot.yamlfile import read_yaml

SCRIPT_KEYS = {"name", "now", "channel", "customer", "orders", "steps"}
CUSTOMER_KEYS = {"id", "locale_hint"}
STEP_KEYS = {"customer", "agent", "wait", "expect", "locale_hint"}
CUSTOMER_INPUT_KEYS = {"button", "photo", "document", "text"}
PHOTO_KEYS = {"width", "height", "file", "bytes", "content"}
AGENT_KEYS = {"claim", "resolve", "handback", "macro"}
EXPECT_KEYS = {"says", "says_not", "language", "intent", "slots", "ticket", "handoff", "customer_receives"}
CHANNELS = {"console", "telegram", "whatsapp"}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


class ScriptError(ValueError):
    """The script itself is malformed (as opposed to the bot failing it)."""


@dataclass(frozen=True, slots=True)
class Delivered:
    """One reply as a platform delivers it: the texts the customer reads, one per platform message
    (a long text split in parts, a button prompt), and the button payloads offered, in order."""

    parts: tuple[str, ...]
    buttons: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        return "".join(self.parts)


class ChannelCodec(Protocol):
    """A channel adapter's two conversions, for running scripts through them."""

    async def inbound(self, inbound: Inbound) -> Inbound:
        """A neutral customer step as the platform would send it (its webhook event, its media),
        read back by the adapter. The result's conversation id is the adapter's, which the rest of
        the script then uses. Raises ValueError when the platform cannot carry the step."""
        ...

    def delivered(self, outbound: Outbound) -> Delivered:
        """A reply rendered to the platform's request bodies, and what the customer gets of them.
        Raises ValueError when the adapter cannot render it."""
        ...


@dataclass
class Script:
    path: Path
    name: str
    now: datetime | None
    channel: str
    customer_id: str
    locale_hint: str | None
    orders: list[Order]
    steps: list[dict[str, Any]]


@dataclass
class ScriptResult:
    script: str
    path: Path
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures


def parse_duration(text: str) -> timedelta:
    match = _DURATION.match(str(text))
    if not match:
        raise ScriptError(f"bad duration {text!r}: use e.g. 90s, 30m, 2h, 3d")
    return timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})


def _check_keys(where: str, value: Any, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ScriptError(f"{where}: expected a mapping, got {type(value).__name__}")
    unknown = set(value) - allowed
    if unknown:
        raise ScriptError(f"{where}: unknown keys {sorted(unknown)} (allowed: {sorted(allowed)})")
    return value


def load_script(path: Path) -> Script:
    """Parse and check a script; every key of the format is known, anything else is an error."""
    try:
        data = read_yaml(path)
    except (OSError, yaml.YAMLError) as error:
        raise ScriptError(f"{path}: cannot read: {error}") from None
    data = _check_keys(str(path), data, SCRIPT_KEYS)
    if not data.get("name"):
        raise ScriptError(f"{path}: 'name' is required")
    channel = data.get("channel", "console")
    if channel not in CHANNELS:
        raise ScriptError(f"{path}: channel must be one of {sorted(CHANNELS)}")
    customer = _check_keys(f"{path}: customer", data.get("customer") or {}, CUSTOMER_KEYS)
    now = data.get("now")
    if now is not None:
        now = now if isinstance(now, datetime) else datetime.fromisoformat(str(now))
        now = now if now.tzinfo else now.replace(tzinfo=UTC)
    try:
        orders = [Order.from_dict(o) for o in data.get("orders") or []]
    except (KeyError, ValueError, TypeError) as error:
        raise ScriptError(f"{path}: bad order fixture: {error}") from None
    steps = data.get("steps")
    if not isinstance(steps, list) or not steps:
        raise ScriptError(f"{path}: 'steps' must be a non-empty list")
    for n, step in enumerate(steps, 1):
        _check_step(f"{path}: step {n}", step)
    return Script(
        path=path,
        name=str(data["name"]),
        now=now,
        channel=channel,
        customer_id=str(customer.get("id") or "customer-1"),
        locale_hint=customer.get("locale_hint"),
        orders=orders,
        steps=steps,
    )


def _check_step(where: str, step: Any) -> None:
    step = _check_keys(where, step, STEP_KEYS)
    actions = [k for k in ("customer", "agent", "wait") if k in step]
    if len(actions) != 1:
        raise ScriptError(f"{where}: a step has exactly one of customer, agent, wait")
    if "locale_hint" in step and "customer" not in step:
        raise ScriptError(f"{where}: locale_hint goes with a customer step")
    customer = step.get("customer")
    if isinstance(customer, dict):
        _check_keys(f"{where}: customer", customer, CUSTOMER_INPUT_KEYS)
        for kind in ("photo", "document"):
            if kind in customer:
                _check_keys(f"{where}: {kind}", customer[kind], PHOTO_KEYS)
    elif "customer" in step and not isinstance(customer, str | int | float):
        raise ScriptError(f"{where}: customer is a text or a mapping")
    agent = step.get("agent")
    if isinstance(agent, dict):
        _check_keys(f"{where}: agent", agent, AGENT_KEYS)
        if len(agent) != 1:
            raise ScriptError(f"{where}: an agent step does one thing")
    if "wait" in step:
        parse_duration(step["wait"])
    if "expect" in step:
        expect = _check_keys(f"{where}: expect", step["expect"] or {}, EXPECT_KEYS)
        for name in ("says", "says_not"):
            if name in expect and not isinstance(expect[name], list):
                raise ScriptError(f"{where}: {name} is a list of catalog keys")
        for name in ("slots", "handoff"):
            if name in expect and not isinstance(expect[name], dict):
                raise ScriptError(f"{where}: {name} is a mapping")
        if "ticket" in expect and expect["ticket"] is not None and not isinstance(expect["ticket"], dict):
            raise ScriptError(f"{where}: ticket is a mapping or null")


class _ScriptClock:
    def __init__(self, start: datetime | None) -> None:
        self.fixed = start
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return (self.fixed or datetime.now(UTC)) + self.offset


class ScriptRunner:
    """Runs scripts against one store server; each script gets its own key space."""

    def __init__(
        self, brain: Brain, store: Store, evidence_dir: Path, codecs: Mapping[str, ChannelCodec] | None = None
    ) -> None:
        """`codecs` by channel name: scripts of those channels run through the adapter's conversions."""
        self.brain = brain
        self.store = store
        self.evidence_dir = evidence_dir
        self.codecs: Mapping[str, ChannelCodec] = dict(codecs or {})

    async def run_path(self, path: Path) -> ScriptResult:
        try:
            script = load_script(path)
        except ScriptError as error:
            return ScriptResult(path.stem, path, [f"invalid script: {error}"])
        return await self.run(script)

    async def run(self, script: Script) -> ScriptResult:
        from bot.evidence import EvidenceStore

        unknown = _unknown_keys(script, set(self.brain.catalog.locale(self.brain.catalog.default).messages))
        if unknown:
            return ScriptResult(script.name, script.path, [f"invalid script: {p}" for p in unknown])
        clock = _ScriptClock(script.now)
        max_bytes, max_pixels = self.brain.dialogue.policy.evidence_limits
        manager = DialogueManager(
            dialogue=self.brain.dialogue,
            renderer=self.brain.renderer,
            store=self.store.with_prefix(f"as:script:{secrets.token_hex(6)}:"),
            orders=StaticOrders(script.orders),
            evidence=EvidenceStore(self.evidence_dir, max_bytes=max_bytes, max_pixels=max_pixels),
            clock=clock,
        )
        codec = self.codecs.get(script.channel)
        # Through an adapter, the platform's conversation id (e.g. Telegram's numeric chat id) once
        # the first customer step has been converted.
        conversation_id = f"{script.channel}:{script.customer_id}"
        result = ScriptResult(script.name, script.path)
        hint = script.locale_hint
        for n, step in enumerate(script.steps, 1):
            intent: str | None = None
            replies: list[Outbound] = []
            if "wait" in step:
                clock.offset += parse_duration(step["wait"])
                await manager.tick()
            elif "customer" in step:
                hint = step.get("locale_hint", hint)
                inbound = self._inbound(script, conversation_id, step["customer"], hint, clock(), n)
                if codec is not None:
                    try:
                        inbound = await codec.inbound(inbound)
                    except ValueError as error:
                        result.failures.append(f"step {n}: {script.channel} cannot carry this step: {error}")
                        break
                    conversation_id = inbound.conversation_id
                turn = await manager.handle_turn(inbound)
                replies, intent = turn.replies, turn.intent
            else:
                action = _agent_action(step["agent"])
                outcome = await manager.agent(conversation_id, action)
                if not outcome.ok:
                    result.failures.append(f"step {n}: agent {action.kind} refused: {outcome.problem}")
                    break
                replies = outcome.replies
            problems: list[str] = []
            delivered: list[Delivered] | None = None
            if codec is not None:
                delivered, problems = _delivered(codec, replies)
            problems += await _check(manager, conversation_id, step.get("expect") or {}, replies, intent, delivered)
            if problems:
                shown = "; ".join(f"{r.key}: {r.text!r}" for r in replies) or "(no replies)"
                result.failures.append(f"step {n}: " + "; ".join(problems) + f"\n    bot replied: {shown}")
                break  # later steps depend on this one: stop at the first failure
        return result

    def _inbound(
        self, script: Script, conversation_id: str, spec: Any, hint: str | None, now: datetime, n: int
    ) -> Inbound:
        text, button, attachments = "", None, []
        if isinstance(spec, dict):
            text = str(spec.get("text") or "")
            button = spec.get("button")
            for kind in ("photo", "document"):
                if kind in spec:
                    attachments.append(_attachment(kind, spec[kind], script.path.parent))
        else:
            text = str(spec)
        return Inbound(
            channel=script.channel,
            conversation_id=conversation_id,
            user_id=script.customer_id,
            text=text,
            attachments=tuple(attachments),
            button=str(button) if button is not None else None,
            locale_hint=hint,
            message_id=f"{n}",
            received_at=now,
            verified_phone=script.customer_id if script.channel == "whatsapp" else None,
        )


def _unknown_keys(script: Script, known: set[str]) -> list[str]:
    """`says` and `says_not` must name catalog keys that exist: a misspelt key would make
    `says_not` pass forever."""
    known = known | {"agent_message"}
    problems = []
    for n, step in enumerate(script.steps, 1):
        expect = step.get("expect") or {}
        for name in ("says", "says_not"):
            problems += [
                f"step {n}: {name} names no catalog key {key!r}" for key in expect.get(name, []) if key not in known
            ]
    return problems


def _attachment(kind: str, spec: dict[str, Any], folder: Path) -> Attachment:
    if "file" in spec:
        data = (folder / spec["file"]).read_bytes()
        return Attachment(kind, data, "", len(data), Path(spec["file"]).name)
    if "bytes" in spec:
        size = int(spec["bytes"])
        data = (b"not an image at all " * (size // 20 + 1))[:size]
        return Attachment(kind, data, "image/jpeg", size, "upload.jpg")
    width, height = int(spec.get("width", 800)), int(spec.get("height", 600))
    out = io.BytesIO()
    Image.new("RGB", (width, height), (180, 120, 90)).save(out, format="JPEG")
    data = out.getvalue()
    return Attachment(kind, data, "image/jpeg", len(data), "photo.jpg")


def _agent_action(spec: Any) -> AgentAction:
    agent = "Agent"
    if isinstance(spec, str):
        return AgentAction(AgentMove.REPLY, agent, spec)
    ((kind, value),) = spec.items()
    if kind == AgentMove.MACRO:
        return AgentAction(AgentMove.MACRO, agent, str(value))
    return AgentAction(AgentMove(kind), agent)


def _delivered(codec: ChannelCodec, replies: list[Outbound]) -> tuple[list[Delivered], list[str]]:
    """Every reply rendered through the adapter, and what did not reach the customer intact: a
    reply the adapter cannot render, or buttons that are not all offered as the core made them
    (a Telegram payload cut to 64 bytes, a choice lost from a WhatsApp list)."""
    delivered, problems = [], []
    for reply in replies:
        try:
            shown = codec.delivered(reply)
        except ValueError as error:
            problems.append(f"{reply.key}: not deliverable: {error}")
            delivered.append(Delivered(()))
            continue
        delivered.append(shown)
        offered = list(dict.fromkeys(str(b.payload) for b in reply.buttons))  # one button per payload
        if list(shown.buttons) != offered:
            problems.append(f"{reply.key}: buttons {offered} were delivered as {list(shown.buttons)}")
        elif reply.text.strip() and not shown.parts:
            problems.append(f"{reply.key}: delivered no text")
    return delivered, problems


def _receives(expected: str, reply: Outbound, delivered: Delivered | None) -> bool:
    """Whether the customer got exactly `expected` in this reply. Through an adapter: the platform
    messages laid end to end, where only whitespace at the cuts between parts may differ."""
    if delivered is None:
        return expected == reply.text
    if not delivered.parts:
        return False
    pattern = r"\s*".join(re.escape(part.strip()) for part in delivered.parts)
    return re.fullmatch(pattern, expected.strip()) is not None


async def _check(
    manager: DialogueManager,
    conversation_id: str,
    expect: dict[str, Any],
    replies: list[Outbound],
    intent: str | None,
    delivered: list[Delivered] | None = None,
) -> list[str]:
    problems = []
    keys = [r.key for r in replies]
    if "says" in expect and not _in_order(expect["says"], keys):
        problems.append(f"says: expected {expect['says']} in order, got {keys}")
    if "says_not" in expect:
        unwanted = [k for k in expect["says_not"] if k in keys]
        if unwanted:
            problems.append(f"says_not: got {unwanted}")
    if "customer_receives" in expect:
        wanted = str(expect["customer_receives"])
        shown = delivered if delivered is not None else [None] * len(replies)
        if not any(_receives(wanted, r, d) for r, d in zip(replies, shown, strict=True)):
            got = f"; delivered: {[_short(d.text) for d in delivered]!r}" if delivered is not None else ""
            problems.append(f"customer_receives: {wanted!r} was not delivered{got}")
    if "intent" in expect and intent != expect["intent"]:
        problems.append(f"intent: expected {expect['intent']}, got {intent}")
    conversation = await manager.conversation(conversation_id)
    state = conversation.dump() if conversation else {}
    if "language" in expect and state.get("language") != expect["language"]:
        problems.append(f"language: expected {expect['language']}, got {state.get('language')}")
    problems += _fields("slots", expect.get("slots"), state.get("slots") or {})
    problems += _fields("handoff", expect.get("handoff"), state.get("handoff") or {})
    if "ticket" in expect:
        ticket_id = (state.get("ticket") or {}).get("id")
        ticket = await manager.tickets.get(ticket_id) if ticket_id else None
        if expect["ticket"] is None:
            if ticket is not None:
                problems.append(f"ticket: expected none, got {ticket['id']}")
        elif ticket is None:
            problems.append("ticket: expected a ticket, none exists")
        else:
            problems += _fields("ticket", expect["ticket"], ticket)
    return problems


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _fields(what: str, expected: dict[str, Any] | None, actual: dict[str, Any]) -> list[str]:
    if not expected:
        return []
    problems = []
    for name, value in expected.items():
        got = actual.get(name)
        if not _same(value, got):
            problems.append(f"{what}.{name}: expected {value!r}, got {got!r}")
    return problems


def _same(expected: Any, actual: Any) -> bool:
    if isinstance(expected, str) and actual is not None and not isinstance(actual, str):
        return expected == str(actual)
    return bool(expected == actual)


def _in_order(wanted: list[str], keys: list[str]) -> bool:
    position = iter(keys)
    return all(any(k == w for k in position) for w in wanted)
