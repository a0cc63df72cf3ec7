"""Orders: numbers found anywhere, ownership proofs, and the three providers."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bot.config import shipped_folder
from bot.order import OrderNumbers
from bot.order_sources import HttpOrders, OrderApiError, StaticOrders
from tests.factories import order


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
