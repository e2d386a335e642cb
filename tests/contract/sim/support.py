"""Clients for a simulated node under test: RLN calls checked against the spec, /_sim calls."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx

from tests.contract.sim.openapi import RlnSpec
from vnode_sim import SimServer, make_asset_id

ASSET = make_asset_id("tests/sim/usdt")
ASSET_UNITS = 1_000
RGB_MIN_MSAT = 3_000_000
POLL_DEADLINE_S = 5.0

T = TypeVar("T")


def poll(read: Callable[[], T], done: Callable[[T], bool], *, what: str) -> T:
    """Read until ``done`` holds or the deadline passes (the sim settles in the background)."""
    deadline = time.monotonic() + POLL_DEADLINE_S
    while True:
        value = read()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}; last: {value!r}")
        time.sleep(0.005)


def sha256_hex(hex_text: str) -> str:
    return hashlib.sha256(bytes.fromhex(hex_text)).hexdigest()


class Rln:
    """The RLN REST API of the sim; every request and answer is checked against the spec."""

    def __init__(self, url: str, spec: RlnSpec) -> None:
        self.http = httpx.Client(base_url=url, timeout=5.0)
        self.spec = spec

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        timeout: float | None = None,
        body_is_valid: bool = True,
    ) -> httpx.Response:
        if body_is_valid:
            self.spec.check_request(method, path, body)
        else:  # a deliberately broken body: the spec must refuse it too
            assert self.spec.request_errors(method, path, body), body
        kwargs: dict[str, Any] = {} if body is None else {"json": body}
        if timeout is not None:
            kwargs["timeout"] = timeout
        response = self.http.request(method, path, **kwargs)
        self.spec.check_response(method, path, response.status_code, response.json())
        return response

    def ok(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        response = self.call(method, path, body)
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer

    def refused(
        self, method: str, path: str, body: Any, status: int, name: str, **kw: Any
    ) -> dict[str, Any]:
        response = self.call(method, path, body, **kw)
        assert (response.status_code, response.json()["name"]) == (status, name), response.text
        answer: dict[str, Any] = response.json()
        return answer

    # shorthands for the calls most tests make

    def invoice(self, **body: Any) -> str:
        body.setdefault("expiry_sec", 3600)
        invoice: str = self.ok("POST", "/lninvoice", body)["invoice"]
        return invoice

    def decode(self, invoice: str) -> dict[str, Any]:
        return self.ok("POST", "/decodelninvoice", {"invoice": invoice})

    def send(self, invoice: str, **body: Any) -> dict[str, Any]:
        return self.ok("POST", "/sendpayment", {"invoice": invoice, **body})

    def payment(self, payment_hash: str) -> dict[str, Any]:
        payment: dict[str, Any] = self.ok("POST", "/getpayment", {"payment_hash": payment_hash})[
            "payment"
        ]
        return payment

    def wait_payment(self, payment_hash: str, status: str) -> dict[str, Any]:
        return poll(
            lambda: self.payment(payment_hash),
            lambda p: p["status"] == status,
            what=f"payment {payment_hash[:8]} {status}",
        )

    def invoice_status(self, invoice: str) -> str:
        status: str = self.ok("POST", "/invoicestatus", {"invoice": invoice})["status"]
        return status

    def channel(self, asset_id: str | None = None) -> dict[str, Any]:
        channels = self.ok("GET", "/listchannels")["channels"]
        (channel,) = [c for c in channels if c["asset_id"] == asset_id]
        found: dict[str, Any] = channel
        return found


class Control:
    """The sim's control API (not part of the RLN spec)."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url + "/_sim", timeout=5.0)

    def post(self, path: str, body: dict[str, Any], status: int = 200) -> dict[str, Any]:
        response = self.http.post(path, json=body)
        assert response.status_code == status, response.text
        answer: dict[str, Any] = response.json()
        if status != 200:
            assert set(answer) == {"error", "code", "name"} and answer["code"] == status
        return answer

    def outside_invoice(self, **body: Any) -> tuple[str, str]:
        answer = self.post("/invoice", body)
        return answer["invoice"], answer["payment_hash"]

    def pay(self, invoice: str, **body: Any) -> dict[str, Any]:
        return self.post("/pay", {"invoice": invoice, **body})

    def pay_refused(self, invoice: str, name: str, **body: Any) -> dict[str, Any]:
        answer = self.post("/pay", {"invoice": invoice, **body}, status=400)
        assert answer["name"] == name, answer
        return answer

    def faults(self, **body: Any) -> dict[str, Any]:
        return self.post("/faults", body)

    def state(self) -> dict[str, Any]:
        answer: dict[str, Any] = self.http.get("/state").json()
        return answer


class Sim:
    def __init__(self, server: SimServer, spec: RlnSpec) -> None:
        self.server = server
        self.rln = Rln(server.url, spec)
        self.ctl = Control(server.url)

    @property
    def pubkey(self) -> str:
        return self.server.node.pubkey

    def close(self) -> None:
        self.rln.http.close()
        self.ctl.http.close()
