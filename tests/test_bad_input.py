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
