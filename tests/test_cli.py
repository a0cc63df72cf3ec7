"""The `aftersales` command as a shop would run it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bot.app import uses_sample_orders
from bot.config import Settings

HERE = Path(__file__).parent


def aftersales(
    *args: str, stdin: str = "", cwd: Path | None = None, data: Path | None = None, **variables: str
) -> subprocess.CompletedProcess[str]:
    """Run the command in a clean environment: none of the caller's AFTERSALES_* settings or
    REDIS_URL, except the test session's model cache (tests/conftest.py), plus `variables`."""
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL" and not k.startswith("AFTERSALES_")}
    env["AFTERSALES_CACHE"] = os.environ["AFTERSALES_CACHE"]
    env["PYTHONPATH"] = str(HERE.parent)  # the checkout under test, whatever the working directory
    if data is not None:
        env["AFTERSALES_DATA"] = str(data)
    env.update(variables)
    return subprocess.run(
        [sys.executable, "-m", "channels.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=cwd,
    )


def test_classify_reads_json_lines_and_writes_language_and_intent():
    lines = [
        {"text": "商品が壊れて届きました"},
        {"text": "quiero devolver esto"},
        {"text": "SO-10023", "locale_hint": "de"},
        {"nope": 1},
    ]
    done = aftersales("classify", stdin="\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n")
    assert done.returncode == 0, done.stderr
    out = [json.loads(line) for line in done.stdout.splitlines()]
    assert (out[0]["language"], out[0]["intent"]) == ("ja", "damaged_item")
    assert (out[1]["language"], out[1]["intent"]) == ("es", "return_item")
    assert out[2]["language"] == "de"
    assert set(out[0]) == {"text", "language", "intent", "confidence"}
    assert "error" in out[3]


def test_test_command_reports_each_script_and_a_closing_line(tmp_path):
    good = tmp_path / "good.yml"
    good.write_text("name: greets\nsteps:\n  - customer: hello\n    expect: {says: [greeting]}\n", encoding="utf-8")
    bad = tmp_path / "bad.yml"
    bad.write_text("name: wrong expectation\nsteps:\n  - customer: hello\n    expect: {says: [csat_ask]}\n")
    done = aftersales("test", str(tmp_path))
    assert done.returncode == 1
    assert "PASS" in done.stdout and "FAIL" in done.stdout
    assert "expected ['csat_ask']" in done.stdout and "greeting:" in done.stdout  # expected vs actual, key and text
    assert done.stdout.strip().splitlines()[-1] == "1 passed, 1 failed"


def test_unknown_keys_in_a_script_are_errors(tmp_path):
    script = tmp_path / "typo.yml"
    script.write_text("name: typo\nsteps:\n  - customer: hello\n    expcet: {says: [greeting]}\n")
    done = aftersales("test", str(script))
    assert done.returncode == 1
    assert "unknown keys ['expcet']" in done.stdout


def test_the_shipped_scripted_dialogues_pass_through_the_cli():
    done = aftersales("test", str(HERE / "dialogues" / "core"))
    assert done.returncode == 0, done.stdout
    assert done.stdout.strip().splitlines()[-1].endswith(" 0 failed")


def test_tickets_list_and_show_read_what_a_chat_created(tmp_path):
    said = "I want to speak to a real person\n/quit\n"
    chat = aftersales("chat", "--user", "ticket-test", stdin=said, cwd=tmp_path, data=tmp_path)
    assert chat.returncode == 0, chat.stderr
    listing = aftersales("tickets", "list", cwd=tmp_path, data=tmp_path)
    assert listing.returncode == 0, listing.stderr
    ticket_id = listing.stdout.split()[0]
    assert ticket_id.startswith("AS-") and "escalated" in listing.stdout
    shown = aftersales("tickets", "show", ticket_id, cwd=tmp_path, data=tmp_path)
    assert "customer_request" in shown.stdout and "I want to speak to a real person" in shown.stdout
    assert aftersales("tickets", "show", "AS-0000-NOPE0", cwd=tmp_path, data=tmp_path).returncode == 1


def test_chat_says_first_when_it_uses_the_sample_orders(tmp_path):
    chat = aftersales("chat", "--user", "sample-test", stdin="/quit\n", cwd=tmp_path, data=tmp_path)
    assert chat.returncode == 0, chat.stderr
    first = chat.stdout.splitlines()[0]
    assert first.startswith("Using the sample orders (dialogues/sample_orders.yml)")
    assert "SO-10023" in first and "sato@example.jp" in first and "AFTERSALES_ORDERS" in first


def test_chat_with_the_shops_own_orders_starts_with_the_help_line(tmp_path):
    orders = tmp_path / "orders.yml"
    orders.write_text("orders:\n  - {number: SO-77777, email: a@example.com}\n", encoding="utf-8")
    chat = aftersales(
        "chat", "--user", "own-test", stdin="/quit\n", cwd=tmp_path, data=tmp_path, AFTERSALES_ORDERS=str(orders)
    )
    assert chat.returncode == 0, chat.stderr
    assert chat.stdout.splitlines()[0].startswith("Type a message.")
    assert "sample" not in chat.stdout


def test_only_a_shop_without_orders_file_or_api_uses_the_sample_orders():
    assert uses_sample_orders(Settings())
    assert not uses_sample_orders(Settings(orders_file=Path("shop-orders.yml")))
    assert not uses_sample_orders(Settings(orders_url="https://shop.example/api/orders/{number}"))
