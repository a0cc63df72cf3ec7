"""A locked order can be unlocked by its owner with a one-time code mailed to the order's address.

A real SMTP server (aiosmtpd) on 127.0.0.1 receives the mail; the code is read out of it the way
a customer would read it.
"""

from __future__ import annotations

import email
import email.policy
import re
import socket
from datetime import timedelta

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from bot.config import Settings
from bot.evidence import EvidenceStore
from bot.mailer import Mailer, SmtpServer, mailer_from
from bot.manager import DialogueManager
from bot.order_sources import StaticOrders
from tests.factories import NOW, message, order
from tests.shop_api import closed_port

WRONG = ("a@x.com", "b@x.com", "c@x.com")


class Inbox:
    """What the SMTP server received: one entry per message, and sessions without one."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], email.message.EmailMessage]] = []
        self.sessions = 0

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        self.sessions += 1
        session.host_name = hostname
        return responses

    async def handle_DATA(self, server, session, envelope):
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append((list(envelope.rcpt_tos), parsed))
        return "250 OK"

    def code(self, n: int = -1) -> str:
        body = self.messages[n][1].get_body().get_content()
        return re.search(r"\b(\d{6})\b", body).group(1)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def smtp():
    inbox = Inbox()
    port = _free_port()

    def authenticate(server, session, envelope, mechanism, auth_data):
        return AuthResult(success=(auth_data.login, auth_data.password) == (b"bot", b"p@ss:word"))

    controller = Controller(inbox, hostname="127.0.0.1", port=port, authenticator=authenticate, auth_require_tls=False)
    controller.start()
    inbox.url = f"smtp://bot:p%40ss%3Aword@127.0.0.1:{port}"
    yield inbox
    controller.stop()


@pytest.fixture
def mailing_manager(brain, store, tmp_path):
    def make(orders, url, clock=None):
        mailer = Mailer(SmtpServer.from_url(url), "Shop <service@shop.example>", timeout=2)
        max_bytes, max_pixels = brain.dialogue.policy.evidence_limits
        return DialogueManager(
            dialogue=brain.dialogue,
            renderer=brain.renderer,
            store=store,
            orders=StaticOrders(orders),
            evidence=EvidenceStore(tmp_path / "evidence", max_bytes=max_bytes, max_pixels=max_pixels),
            mailer=mailer,
            **({"clock": clock} if clock else {}),
        )

    return make


def _keys(replies):
    return [r.key for r in replies]


def _lock(run, manager, conversation="console:c1", number="SO-10023", at=NOW):
    run(manager.handle(message(f"where is {number}", conversation=conversation, received_at=at)))
    replies = []
    for guess in WRONG:
        replies = run(manager.handle(message(guess, conversation=conversation, received_at=at)))
    return replies


def test_the_lock_mails_a_code_and_the_owner_types_it(mailing_manager, smtp, run):
    manager = mailing_manager([order()], smtp.url)
    replies = _lock(run, manager)
    assert _keys(replies) == ["unlock_code_sent"]
    assert "sato@" not in replies[0].text and "example.jp" not in replies[0].text  # no address, not even masked
    assert [to for to, _ in smtp.messages] == [["sato@example.jp"]]
    mail = smtp.messages[0][1]
    assert mail["From"] == "Shop <service@shop.example>" and "10 minutes" in mail.get_body().get_content()
    replies = run(manager.handle(message(f"the code is {smtp.code()}", received_at=NOW + timedelta(minutes=3))))
    assert "order_status" in _keys(replies)
    state = run(manager.conversation("console:c1"))
    assert state.slots.verified and state.handoff.state == "none"


def test_the_code_is_mailed_in_the_customers_language(mailing_manager, smtp, run):
    manager = mailing_manager([order()], smtp.url)
    run(manager.handle(message("注文 SO-10023 はどこですか", locale_hint="ja", received_at=NOW)))
    for guess in WRONG:
        replies = run(manager.handle(message(guess, received_at=NOW)))
    assert _keys(replies) == ["unlock_code_sent"] and replies[0].language == "ja"
    assert "コード" in smtp.messages[0][1].get_body().get_content()


def test_the_code_is_kept_hashed_only(mailing_manager, smtp, run, store):
    manager = mailing_manager([order()], smtp.url)
    _lock(run, manager)
    kept = run(store.redis.hgetall(store.conversation_key("console:c1", "unlock", "SO10023")))
    assert set(kept) == {"salt", "digest", "expires_at", "attempts"}
    assert smtp.code() not in "".join(kept.values())


def test_wrong_codes_are_limited_then_a_person_takes_over(mailing_manager, smtp, run):
    manager = mailing_manager([order()], smtp.url)
    _lock(run, manager)
    right = smtp.code()
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    replies = run(manager.handle(message(wrong, received_at=NOW)))
    assert _keys(replies) == ["unlock_code_wrong"] and replies[0].text.endswith("(2 attempts left).")
    assert _keys(run(manager.handle(message("123", received_at=NOW)))) == ["unlock_code_wrong"]  # digits: a try
    replies = run(manager.handle(message(wrong, received_at=NOW)))  # the third wrong one
    assert "verification_locked" in _keys(replies)
    state = run(manager.conversation("console:c1"))
    assert not state.slots.verified and state.handoff.reason == "verification_locked"
    replies = run(manager.handle(message(right, received_at=NOW)))  # with a person now; the code is gone
    assert "order_status" not in _keys(replies)


def test_a_message_without_digits_asks_for_the_code_again_without_using_a_try(mailing_manager, smtp, run):
    manager = mailing_manager([order()], smtp.url)
    _lock(run, manager)
    replies = run(manager.handle(message("I have not received any email", received_at=NOW)))
    assert "unlock_code_ask" in _keys(replies)
    assert [b.payload for b in replies[-1].buttons] == ["human"]
    assert "order_status" in _keys(run(manager.handle(message(smtp.code(), received_at=NOW))))


def test_an_expired_code_does_not_work(mailing_manager, smtp, run):
    manager = mailing_manager([order()], smtp.url)
    _lock(run, manager)
    replies = run(manager.handle(message(smtp.code(), received_at=NOW + timedelta(minutes=11))))
    assert "verification_locked" in _keys(replies) and "order_status" not in _keys(replies)
    assert not run(manager.conversation("console:c1")).slots.verified


def test_a_code_works_once(mailing_manager, smtp, run, store):
    manager = mailing_manager([order()], smtp.url)
    _lock(run, manager, conversation="console:first")
    used = smtp.code()
    run(manager.handle(message(used, conversation="console:first", received_at=NOW)))
    assert run(manager.conversation("console:first")).slots.verified
    assert run(store.redis.exists(store.conversation_key("console:first", "unlock", "SO10023"))) == 0
    # The order is still locked: a new conversation gets a new code, and the used one is worthless there.
    run(manager.handle(message("where is SO-10023", conversation="console:second", received_at=NOW)))
    replies = run(manager.handle(message("x@x.com", conversation="console:second", received_at=NOW)))
    assert _keys(replies) == ["unlock_code_sent"] and len(smtp.messages) == 2
    if smtp.code() != used:  # one chance in a million that the new code is the same six digits
        replies = run(manager.handle(message(used, conversation="console:second", received_at=NOW)))
        assert _keys(replies) == ["unlock_code_wrong"]


def test_an_unknown_number_gets_the_same_answer_and_no_mail(mailing_manager, smtp, run):
    manager = mailing_manager([order()], smtp.url)
    unknown = _lock(run, manager, conversation="console:u", number="SO-99999")
    known = _lock(run, manager, conversation="console:k", number="SO-10023")
    assert [(r.key, r.text) for r in unknown] == [(r.key, r.text) for r in known]
    assert [to for to, _ in smtp.messages] == [["sato@example.jp"]]  # one mail: the real order's
    assert smtp.sessions == 2  # but the server was spoken to both times, so both took as long


def test_codes_per_order_are_limited(mailing_manager, smtp, run):
    manager = mailing_manager([order()], smtp.url)
    assert _keys(_lock(run, manager, conversation="console:c0")) == ["unlock_code_sent"]
    for n in range(1, 4):  # the order is locked now: the first guess of each new conversation meets the lock
        conversation = f"console:c{n}"
        run(manager.handle(message("where is SO-10023", conversation=conversation, received_at=NOW)))
        replies = run(manager.handle(message("x@x.com", conversation=conversation, received_at=NOW)))
        assert _keys(replies)[-1] == ("unlock_code_sent" if n < 3 else "handoff_queued")
    assert len(smtp.messages) == 3  # policy verification.unlock_codes


def test_a_mail_server_that_cannot_be_reached_hands_off_as_before(mailing_manager, run, caplog):
    manager = mailing_manager([order()], f"smtp://127.0.0.1:{closed_port()}")
    replies = _lock(run, manager)
    assert "verification_locked" in _keys(replies) and "unlock_code_sent" not in _keys(replies)
    assert run(manager.conversation("console:c1")).handoff.reason == "verification_locked"
    assert any("unlock code not sent" in r.getMessage() for r in caplog.records)


def test_without_smtp_the_lock_hands_off(make_manager, run):
    manager = make_manager([order()])
    replies = _lock(run, manager)
    assert "verification_locked" in _keys(replies) and "unlock_code_sent" not in _keys(replies)


# -- settings ----------------------------------------------------------------------------------------


def test_smtp_urls_are_read_with_their_options():
    server = SmtpServer.from_url("smtp://bot:p%40ss@mail.example:587?starttls=true")
    assert (server.host, server.port, server.username, server.password) == ("mail.example", 587, "bot", "p@ss")
    assert server.start_tls is True and server.use_tls is False
    assert SmtpServer.from_url("smtp://mail.example").start_tls is None  # when the server offers it
    assert SmtpServer.from_url("smtp://mail.example?starttls=false").start_tls is False
    tls = SmtpServer.from_url("smtps://mail.example")
    assert tls.port == 465 and tls.use_tls and "p@ss" not in repr(server)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://bot:secret@mail.example", "smtp://"),
        ("smtp://bot:secret@:25", "no host"),
        ("smtp://bot:secret@mail.example?tls=1", "unknown options"),
        ("smtp://bot:secret@mail.example:99999", "port"),
    ],
)
def test_a_bad_smtp_url_is_a_configuration_problem_that_never_shows_the_password(url, problem):
    settings = Settings.from_env({"SMTP_URL": url, "AFTERSALES_MAIL_FROM": "service@shop.example"})
    messages = [p.message for p in settings.problems]
    assert any(problem in m for m in messages) and not any("secret" in m for m in messages)


def test_smtp_needs_a_sender():
    settings = Settings.from_env({"SMTP_URL": "smtp://mail.example"})
    assert any("AFTERSALES_MAIL_FROM" in p.message for p in settings.problems)
    assert mailer_from(settings) is None
    settings = Settings.from_env({"SMTP_URL": "smtp://mail.example", "AFTERSALES_MAIL_FROM": "s@shop.example"})
    assert settings.problems == () and mailer_from(settings) is not None
    assert "mail.example" not in repr(settings)  # the URL may hold a password: never in a repr
