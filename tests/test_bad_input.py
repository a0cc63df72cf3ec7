"""Bad input gets a clear answer and loses nothing."""

from __future__ import annotations

import logging

from tests.factories import NOW, message, photo


def keys(replies):
    return [r.key for r in replies]


def test_too_long_text_is_rejected_and_the_conversation_goes_on(make_manager, run):
    manager = make_manager()
    assert keys(run(manager.handle(message("where is my parcel " * 200, received_at=NOW)))) == ["input_rejected"]
    assert "ask_order_number" in keys(run(manager.handle(message("where is my parcel?", received_at=NOW))))


def test_control_characters_are_stripped_not_fatal(make_manager, run):
    manager = make_manager()
    replies = run(manager.handle(message("where\x00 is my\x1b parcel\u200b?", received_at=NOW)))
    assert "ask_order_number" in keys(replies)


def test_emoji_only_gets_a_friendly_question(make_manager, run):
    manager = make_manager()
    assert keys(run(manager.handle(message("👍🙂", received_at=NOW)))) == ["how_can_i_help"]


def test_a_photo_without_caption_outside_a_photo_step_is_answered(make_manager, run):
    manager = make_manager()
    assert keys(run(manager.handle(message(attachments=(photo(),), received_at=NOW)))) == ["photo_not_expected"]


def test_an_unknown_button_payload_is_answered(make_manager, run):
    manager = make_manager()
    replies = run(manager.handle(message(button="launch_rocket", received_at=NOW)))
    assert keys(replies)[0] == "button_expired"


def test_logs_carry_no_message_text_or_personal_data(make_manager, run, caplog):
    manager = make_manager()
    with caplog.at_level(logging.DEBUG):
        run(manager.handle(message("my email is secret.person@example.com and SO-55555", received_at=NOW)))
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert caplog.records, "a turn logs something; otherwise this test would search nothing"
    assert "secret.person" not in logged and "SO-55555" not in logged


def test_lone_surrogates_and_bytes_that_are_not_utf8_are_cleaned_not_fatal(make_manager, run):
    """What an undecodable byte becomes in Python (a lone surrogate) is replaced, in every field."""
    manager = make_manager()
    replies = run(manager.handle(message("hello \ud800 there", message_id="\udcff1")))
    assert [r.key for r in replies] == ["greeting"]
    replies = run(manager.handle(message("", button="\udcff" * 3, message_id="2")))
    assert [r.key for r in replies] == ["button_expired", "how_can_i_help"]


def test_a_megabyte_message_is_refused_without_work_on_it(make_manager, run):
    """Cut to size before anything reads it: the refusal costs what a short message costs."""
    manager = make_manager()
    replies = run(manager.handle(message("a" * 1_000_000 + " SO-10023 sato@example.jp")))
    assert [r.key for r in replies] == ["input_rejected"]
    state = run(manager.conversation("console:c1"))
    assert state.slots.order_number is None and len(state.transcript) <= 2


def test_oversized_buttons_ids_and_albums_are_bounded(make_manager, run):
    manager = make_manager()
    run(manager.handle(message("", button="x" * 1_000_000, message_id="y" * 1_000_000)))
    state = run(manager.conversation("console:c1"))
    assert len(state.seen[-1]) <= 128
    assert all(len(line.text) < 200 for line in state.transcript)


def test_a_failing_turn_apologises_keeps_the_message_and_frees_the_conversation(make_manager, run, store):
    """An order source that crashes (a shop's bug) must not show a traceback or lock anyone out."""

    class Broken:
        async def get(self, number):
            raise RuntimeError("boom")

    manager = make_manager()
    manager.orders = Broken()
    replies = run(manager.handle(message("where is my parcel SO-10023")))
    assert [r.key for r in replies] == ["internal_error"]
    kept = run(store.redis.xrange(store.key("failed_turns")))
    assert "SO-10023" in kept[-1][1]["message"]
    manager.orders = make_manager().orders  # the shop fixes it: the same conversation goes on at once
    assert [r.key for r in run(manager.handle(message("hello")))] == ["greeting"]
