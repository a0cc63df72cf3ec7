"""The store side of verification: failed proofs counted per order number and per sender, a
conversation's streak of order-system outages, and the one-time codes that let an order's owner
past a lock (made here, mailed, kept only as a salted hash).

`bot.dialogue.steps.verify` decides; the manager asks this module for what the step needs to
know (`facts`), then hands it the step's effects: `send_codes` mails codes (before the turn is
saved, so a mail failure can still change the answer), `stage` queues the counters with the turn.

Keys: `vfail:<order>` (canonical number, across conversations), `vfail_sender:<hash of channel
and user id>` (no phone number in a key name), `unlock_sent:<order>` (codes mailed in the lock
period), and in the conversation's own slot `outages` and `unlock:<order>` (a hash: salt,
digest, expires_at, attempts).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta

from redis.asyncio.client import Pipeline

from bot.dialogue.outcome import (
    CountFailedVerification,
    CountLookupOutage,
    CountUnlockAttempt,
    DropUnlockCode,
    Effect,
    ForgetLookupOutages,
    ProofFacts,
    SendUnlockCode,
    UnlockCode,
    VerificationEffect,
)
from bot.mailer import Mailer, MailError
from bot.order import canonical_order_number
from bot.policy import Policy
from bot.proofs import CODE_DIGITS, code_digest, sender_of
from bot.render import Renderer
from bot.state import Conversation
from bot.store import Store, store_errors
from bot.values import Minutes, Value

log = logging.getLogger(__name__)

OUTAGE_STREAK_SECONDS = 3600  # outages further apart than this are not "in a row"


class Lockouts:
    def __init__(self, store: Store, policy: Policy, renderer: Renderer, mailer: Mailer | None = None) -> None:
        self.store = store
        self.policy = policy
        self.renderer = renderer
        self.mailer = mailer

    # -- what the step needs to know ------------------------------------------------------------

    async def facts(self, state: Conversation, number: str | None) -> ProofFacts:
        """The counters and the pending code around this conversation, its user and order number."""
        can_mail = self.mailer is not None
        if not number:
            return ProofFacts(can_mail_codes=can_mail)
        order = canonical_order_number(number)
        conversation = state.id
        with store_errors():
            async with self.store.redis.pipeline(transaction=False) as pipe:
                pipe.get(self._order_key(order))
                pipe.get(self._sender_key(state.channel, state.user_id))
                pipe.get(self._outages_key(conversation))
                pipe.hgetall(self._code_key(conversation, order))
                pipe.get(self._sent_key(order))
                order_failures, sender_failures, outages, code, sent = await pipe.execute()
        return ProofFacts(
            order_failures=int(order_failures or 0),
            sender_failures=int(sender_failures or 0),
            lookup_outages=int(outages or 0),
            unlock=_code(code),
            codes_sent=int(sent or 0),
            can_mail_codes=can_mail,
        )

    # -- what the step asked for ----------------------------------------------------------------

    async def send_codes(self, effects: Sequence[Effect], writes: Pipeline, now: datetime) -> bool:
        """Mail the codes the step asked for and queue them (hashed) with the turn's writes.
        False when one could not be sent: the turn then answers as if the bot could not mail."""
        for effect in effects:
            if isinstance(effect, SendUnlockCode) and not await self._send_code(effect, writes, now):
                return False
        return True

    def stage(self, writes: Pipeline, effect: VerificationEffect, state: Conversation) -> None:
        """Queue a counter or code change with the turn's writes (committed when it is saved)."""
        lock_seconds = self.policy.verification_lock_seconds
        if isinstance(effect, CountFailedVerification):
            order = canonical_order_number(effect.order_number)
            for key in (self._order_key(order), self._sender_key(state.channel, state.user_id)):
                writes.incr(key)
                writes.expire(key, lock_seconds)
        elif isinstance(effect, CountLookupOutage):
            key = self._outages_key(effect.conversation_id)
            writes.incr(key)
            writes.expire(key, OUTAGE_STREAK_SECONDS)
        elif isinstance(effect, ForgetLookupOutages):
            writes.delete(self._outages_key(effect.conversation_id))
        elif isinstance(effect, CountUnlockAttempt):
            writes.hset(self._code_key(effect.conversation_id, effect.order_number), "attempts", effect.attempts)
        elif isinstance(effect, DropUnlockCode):
            writes.delete(self._code_key(effect.conversation_id, effect.order_number))
        # SendUnlockCode: done by send_codes, before the turn's writes are committed

    async def _send_code(self, effect: SendUnlockCode, writes: Pipeline, now: datetime) -> bool:
        if self.mailer is None:
            return False
        code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
        minutes = self.policy.unlock_code_minutes
        subject = self.renderer.text(effect.language, "unlock_code_mail_subject")
        values: dict[str, Value] = {"code": code, "minutes": Minutes(minutes)}
        body = self.renderer.text(effect.language, "unlock_code_mail_body", values)
        try:
            if effect.email:
                await self.mailer.send(effect.email, subject, body)
            else:
                # No such order (or no address on it): the same motions without a message, so the
                # answer comes about as fast (and fails as a mail failure would) as for an existing one.
                await self.mailer.rehearse(subject, body)
        except MailError as error:
            log.warning("unlock code not sent, a person takes over: %s", error)
            return False
        salt = secrets.token_hex(16)
        key = self._code_key(effect.conversation_id, effect.order_number)
        expires_at = (now + timedelta(minutes=minutes)).isoformat()
        writes.hset(key, mapping={"salt": salt, "digest": code_digest(code, salt), "expires_at": expires_at})
        writes.hset(key, "attempts", 0)
        writes.expire(key, self.policy.verification_lock_seconds)
        sent = self._sent_key(effect.order_number)
        writes.incr(sent)
        writes.expire(sent, self.policy.verification_lock_seconds)
        return True

    # -- keys -----------------------------------------------------------------------------------

    def _order_key(self, order: str) -> str:
        return self.store.key("vfail", order)

    def _sender_key(self, channel: str, user_id: str) -> str:
        digest = hashlib.blake2s(sender_of(channel, user_id).encode(), digest_size=12).hexdigest()
        return self.store.key("vfail_sender", digest)

    def _sent_key(self, order: str) -> str:
        return self.store.key("unlock_sent", order)

    def _outages_key(self, conversation_id: str) -> str:
        return self.store.conversation_key(conversation_id, "outages")

    def _code_key(self, conversation_id: str, order: str) -> str:
        return self.store.conversation_key(conversation_id, "unlock", order)


def _code(fields: dict[str, str]) -> UnlockCode | None:
    try:
        return UnlockCode(
            salt=fields["salt"],
            digest=fields["digest"],
            expires_at=datetime.fromisoformat(fields["expires_at"]),
            attempts=int(fields.get("attempts") or 0),
        )
    except (KeyError, ValueError):
        return None  # none kept (or a half-written one: it never works)
