"""Driving the simulated node's control API, and ledger checks shared by payment tests."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx

from vnode.ledger.audit import run_audit
from vnode.tls import tls_context


class SimControl:
    """The /_sim control API of a running simulated RGB Lightning Node."""

    def __init__(self, url: str) -> None:
        self.url = url

    async def _post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.url, timeout=30, verify=tls_context()) as client:
            return await client.post(path, json={k: v for k, v in body.items() if v is not None})

    async def invoice(
        self,
        amt_msat: int | None = None,
        *,
        asset_id: str | None = None,
        asset_amount: int | None = None,
        expiry_sec: int | None = None,
    ) -> str:
        """An invoice of an outside payee that the node can pay."""
        response = await self._post(
            "/_sim/invoice",
            {
                "amt_msat": amt_msat,
                "asset_id": asset_id,
                "asset_amount": asset_amount,
                "expiry_sec": expiry_sec,
            },
        )
        assert response.status_code == 200, response.text
        return str(response.json()["invoice"])

    async def pay(
        self, invoice: str, amt_msat: int | None = None, asset_amount: int | None = None
    ) -> httpx.Response:
        """An outside payer pays one of the node's invoices."""
        return await self._post(
            "/_sim/pay", {"invoice": invoice, "amt_msat": amt_msat, "asset_amount": asset_amount}
        )

    async def faults(self, **faults: Any) -> None:
        response = await self._post("/_sim/faults", faults)
        assert response.status_code == 200, response.text

    async def release(self, payment_hash: str, outcome: str) -> None:
        response = await self._post(
            "/_sim/release", {"payment_hash": payment_hash, "outcome": outcome}
        )
        assert response.status_code == 200, response.text

    async def release_all(self, outcome: str) -> int:
        """Finish every held payment the same way; returns how many were released."""
        response = await self._post("/_sim/release_all", {"outcome": outcome})
        assert response.status_code == 200, response.text
        return int(response.json()["released"])

    async def rgbsend(self, recipient_id: str, asset_id: str, amount: int) -> None:
        response = await self._post(
            "/_sim/rgbsend", {"recipient_id": recipient_id, "asset_id": asset_id, "amount": amount}
        )
        assert response.status_code == 200, response.text

    async def state(self) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=self.url) as client:
            result: dict[str, Any] = (await client.get("/_sim/state")).json()
            return result


async def assert_audit_clean(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        report = await run_audit(conn)
    finally:
        await conn.close()
    assert report.clean, report.differences
