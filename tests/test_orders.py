"""Orders: numbers found anywhere, ownership proofs, and the three providers."""

from __future__ import annotations

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bot.config import Settings, shipped_folder
from bot.order import OrderNumbers, canonical_order_number, same_order_number
from bot.order_sources import HttpOrders, Lookup, OrderApiError, StaticOrders, look_up
from tests.factories import order
from tests.shop_api import serve_shop


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("where is SO-10023?", "SO-10023"),
        ("order so10023 please", "SO10023"),
        ("注文番号はSO-10023です", "SO-10023"),
        ("mi pedido #100234 no llegó", "100234"),
        ("114-1234567-1234567", "114-1234567-1234567"),
        ("my email is sato10023@example.jp", None),
        ("call me on +81 90 1234 5678", None),
        ("postcode 150-0001", None),
        ("I want 2 mugs", None),
    ],
)
def test_order_numbers_are_found_anywhere_and_normalised(text, number):
    assert OrderNumbers().find(text) == number


@pytest.mark.parametrize(
    ("proof", "ok"),
    [
        ("SATO@example.JP", True),
        ("090-1234-5678", True),  # national format, same last digits
        ("+81 90 1234 5678", True),
        ("1500001", True),
        ("150 0001", True),
        ("sato@example.com", False),
        ("234 5678", False),  # too few digits to prove anything
        ("9999 5678", False),
        ("", False),
    ],
)
def test_ownership_is_proved_by_email_phone_or_postcode(proof, ok):
    assert order().proves_ownership(proof) is ok


def test_the_sample_order_file_ships_and_loads(run):
    orders = StaticOrders.from_file(shipped_folder("dialogues") / "sample_orders.yml")
    assert run(orders.get("so-10023")).email == "sato@example.jp"
    assert run(orders.get("#100234")).refund.state == "issued"


class _ShopApi(BaseHTTPRequestHandler):
    """A stand-in for a shop's order API, on loopback."""

    def do_GET(self):
        if self.headers.get("Authorization") != "Bearer shop-key":
            self.send_response(401)
            self.end_headers()
            return
        if self.path == "/orders/SO-10023":
            body = json.dumps({"number": "SO-10023", "email": "sato@example.jp", "status": "shipped"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)
        elif self.path == "/orders/SO-50000":
            self.send_response(503)
            self.end_headers()
        elif self.path == "/orders/SO-60000":
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"<html>not json</html>")
        else:
            self.send_response(404)
            self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def shop_api():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ShopApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_http_provider_fetches_orders_with_the_auth_header(shop_api, run):
    api = HttpOrders(shop_api + "/orders/{number}", auth_header="Authorization: Bearer shop-key")
    found = run(api.get("SO-10023"))
    assert (found.number, found.status) == ("SO-10023", "shipped")
    assert run(api.get("SO-99999")) is None


def test_http_provider_reports_failures_clearly(shop_api, run):
    api = HttpOrders(shop_api + "/orders/{number}", auth_header="Authorization: Bearer shop-key")
    with pytest.raises(OrderApiError, match="HTTP 503"):
        run(api.get("SO-50000"))
    with pytest.raises(OrderApiError, match="not an order"):
        run(api.get("SO-60000"))
    wrong_key = HttpOrders(shop_api + "/orders/{number}", auth_header="Authorization: Bearer nope")
    with pytest.raises(OrderApiError, match="HTTP 401"):
        run(wrong_key.get("SO-10023"))
    nowhere = HttpOrders("http://127.0.0.1:9/orders/{number}", timeout=0.5)
    with pytest.raises(OrderApiError, match="unreachable"):
        run(nowhere.get("SO-10023"))


def test_http_provider_needs_a_number_placeholder():
    with pytest.raises(ValueError, match="number"):
        HttpOrders("https://shop.example/orders")


# -- numbers and proofs as keyboards type them -------------------------------------------------


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("ＳＯ－１００２３はどこですか", "SO-10023"),  # full-width from a Japanese input method
        ("订单号 ＳＯ－10023", "SO-10023"),
        ("ｓｏ１００２３", "SO10023"),
        ("SO‐10023", "SO-10023"),  # U+2010 hyphen
        ("SO–10023", "SO-10023"),  # en dash
        ("SOー10023", "SO-10023"),  # katakana prolonged sound mark typed for a dash
        ("رقم الطلب SO-١٠٠٢٣", "SO-10023"),  # Arabic-Indic digits
        ("＃１００２３４", "100234"),
        ("メールアドレスを教えて", None),  # ー inside a word stays a letter
    ],
)
def test_order_numbers_are_folded_before_they_are_found(text, number):
    assert OrderNumbers().find(text) == number


def test_order_numbers_compare_by_their_canonical_form():
    assert canonical_order_number("so10023") == canonical_order_number("ＳＯ－１００２３") == "SO10023"
    assert same_order_number("so10023", "SO-10023")
    assert not same_order_number("SO-10023", "SO-10024") and not same_order_number(None, "SO-10023")


def test_a_number_with_a_space_is_read_only_where_a_number_was_asked_for():
    numbers = OrderNumbers()
    assert numbers.find("tel 0901234567") is None  # in any message: not an order
    assert numbers.find_loose("SO 10023") == "SO-10023"  # answering "what is your order number?"
    assert numbers.find_loose("so_10023") == "SO-10023"


def test_static_orders_find_a_number_typed_without_its_dash_or_full_width(run):
    orders = StaticOrders([order()])
    assert run(orders.get("so10023")).number == "SO-10023"
    assert run(orders.get("ＳＯ－１００２３")).number == "SO-10023"
    assert run(orders.get("SO-10024")) is None


@pytest.mark.parametrize(
    "proof",
    [
        "ＳＡＴＯ＠ＥＸＡＭＰＬＥ．ＪＰ",
        "１５０－０００１",
        "１５０ー０００１",
        "０９０－１２３４－５６７８",
        "+٨١ ٩٠ ١٢٣٤ ٥٦٧٨",
    ],
)
def test_proofs_are_folded_too(proof):
    assert order().proves_ownership(proof)


def test_a_phone_longer_than_any_phone_proves_nothing():
    assert not order().proves_ownership("1234567890123456789 81 90 1234 5678")


# -- the order API: three outcomes, one timeout, a short cache, no numbers in the logs ------------


@pytest.fixture
def shop():
    with serve_shop([{"number": "SO-10023", "email": "sato@example.jp", "status": "shipped"}]) as api:
        yield api, api.url


def test_a_number_typed_without_its_dash_is_found_through_the_api(shop, run):
    api, url = shop
    found = run(HttpOrders(url).get("so10023"))
    assert found is not None and found.number == "SO-10023"
    assert sorted(api.hits) == ["/orders/SO-10023", "/orders/SO10023"]  # every spelling, asked at once


def test_an_answer_is_kept_briefly_so_a_retry_does_not_ask_again(shop, run):
    api, url = shop
    now = [1000.0]
    orders = HttpOrders(url, cache_seconds=60, clock=lambda: now[0])
    assert run(orders.get("SO-10023")).number == "SO-10023"
    asked = len(api.hits)
    now[0] += 5
    assert run(orders.get("so-10023")).number == "SO-10023"  # the same number, seconds later
    assert run(orders.get("SO-99999")) is None
    assert run(orders.get("SO-99999")) is None  # "no such order" is kept too, so both cost the same
    assert len(api.hits) == asked + 2
    now[0] += 61
    run(orders.get("SO-10023"))
    assert len(api.hits) == asked + 4  # expired: asked again


def test_an_outage_is_never_kept(shop, run):
    api, url = shop
    orders = HttpOrders(url)
    api.mode = 500
    with pytest.raises(OrderApiError, match="HTTP 500"):
        run(orders.get("SO-10023"))
    api.mode = None
    assert run(orders.get("SO-10023")).number == "SO-10023"  # the next try asks again, and finds it


@pytest.mark.parametrize(("mode", "reason"), [(429, "HTTP 429"), (502, "HTTP 502"), ("garbled", "not an order")])
def test_overload_errors_and_garbled_answers_are_outages_not_unknown_orders(shop, run, mode, reason):
    api, url = shop
    api.mode = mode
    with pytest.raises(OrderApiError, match=reason):
        run(HttpOrders(url).get("SO-10023"))


def test_a_slow_api_gives_up_within_the_timeout(shop, run):
    api, url = shop
    api.mode = "slow"
    started = time.perf_counter()
    with pytest.raises(OrderApiError, match="in time"):
        run(HttpOrders(url, timeout=0.3).get("SO-10023"))
    assert time.perf_counter() - started < 1.0


def test_an_answer_about_another_order_is_an_outage(shop, run):
    api, url = shop
    api.orders["SO-70000"] = {"number": "SO-10023"}
    with pytest.raises(OrderApiError, match="another order"):
        run(HttpOrders(url).get("SO-70000"))


def test_lookups_are_cut_off_at_two_and_a_half_seconds_by_default():
    assert Settings().orders_timeout == 2.5
    assert Settings.from_env({}).orders_timeout == 2.5


def test_httpx_never_logs_order_urls(shop, run, caplog):
    api, url = shop
    caplog.set_level(logging.DEBUG)
    orders = HttpOrders(url)
    run(orders.get("SO-10023"))
    api.mode = 503
    with pytest.raises(OrderApiError):
        run(orders.get("SO-20000"))
    logged = "\n".join(record.getMessage() for record in caplog.records if record.levelno >= logging.INFO)
    assert "10023" not in logged and "20000" not in logged


def test_look_up_has_three_outcomes(shop, run):
    api, url = shop
    orders = HttpOrders(url)
    assert run(look_up(orders, "SO-10023")).order.number == "SO-10023"
    assert run(look_up(orders, "SO-99999")) == Lookup(None, unavailable=False)
    api.mode = 500
    assert run(look_up(orders, "SO-55555")) == Lookup(None, unavailable=True)
    assert run(look_up(orders, None)) == Lookup()
