"""Node-wide routes: info, channels, balances, assets, and the lock."""

from __future__ import annotations

from collections.abc import Callable

from tests.contract.sim.support import ASSET, ASSET_UNITS, Sim

UNLOCK = {
    "password": "any",
    "ldk_chain_sync": {"mode": "TransactionSync", "config": {"indexer_url": "127.0.0.1:50001"}},
    "indexer_url": "127.0.0.1:50001",
    "announce_addresses": [],
}


def test_node_and_network_info(sim: Sim) -> None:
    info = sim.rln.ok("GET", "/nodeinfo")
    assert info["pubkey"] == sim.pubkey == sim.ctl.state()["node_pubkey"]
    assert info["rgb_htlc_min_msat"] == 3_000_000
    assert sim.rln.ok("GET", "/networkinfo")["network"] == "Regtest"


def test_channels_one_per_asset_plus_btc(sim: Sim) -> None:
    channels = sim.rln.ok("GET", "/listchannels")["channels"]
    assert [c["asset_id"] for c in channels] == [None, ASSET]
    btc, rgb = channels
    assert btc["outbound_balance_msat"] == 10**12 and btc["asset_local_amount"] is None
    assert (rgb["asset_local_amount"], rgb["asset_remote_amount"]) == (ASSET_UNITS, ASSET_UNITS)
    assert all(c["is_usable"] and c["ready"] for c in channels)


def test_balances_and_assets(sim: Sim) -> None:
    btc = sim.rln.ok("POST", "/btcbalance", {"skip_sync": True})
    assert btc["vanilla"]["spendable"] > 0
    asset = sim.rln.ok("POST", "/assetbalance", {"asset_id": ASSET})
    assert (asset["offchain_outbound"], asset["settled"]) == (ASSET_UNITS, 0)
    assets = sim.rln.ok("POST", "/listassets", {"filter_asset_schemas": ["Nia"]})
    assert [a["asset_id"] for a in assets["nia"]] == [ASSET] and assets["cfa"] is None
    sim.rln.refused("POST", "/assetbalance", {"asset_id": "nope"}, 400, "InvalidAssetID")


def test_locked_node_refuses_everything_but_unlock(sim: Sim) -> None:
    invoice = sim.rln.invoice(amt_msat=1_000)
    assert sim.rln.ok("POST", "/lock") == {}
    for method, path, body in (
        ("GET", "/nodeinfo", None),
        ("GET", "/listpayments", None),
        ("GET", "/listchannels", None),
        ("POST", "/lninvoice", {"expiry_sec": 60}),
        ("POST", "/sendpayment", {"invoice": invoice}),
        ("POST", "/getpayment", {"payment_hash": "ab" * 32}),
        ("POST", "/invoicestatus", {"invoice": invoice}),
        ("POST", "/refreshtransfers", {"filter": [], "skip_sync": False}),
        ("POST", "/lock", None),
    ):
        sim.rln.refused(method, path, body, 403, "LockedNode")
    # The node decodes invoices without looking at its lock.
    assert sim.rln.decode(invoice)["amt_msat"] == 1_000
    assert sim.ctl.state()["locked"] is True  # the control API still answers

    assert sim.rln.ok("POST", "/unlock", UNLOCK) == {}
    assert sim.rln.ok("GET", "/nodeinfo")["pubkey"] == sim.pubkey
    sim.rln.refused("POST", "/unlock", UNLOCK, 403, "AlreadyUnlocked")


def test_lock_through_the_control_api_and_password(make_sim: Callable[..., Sim]) -> None:
    sim: Sim = make_sim(password="secret")
    assert sim.ctl.faults(locked=True)["locked"] is True
    sim.rln.refused("GET", "/nodeinfo", None, 403, "LockedNode")
    sim.rln.refused("POST", "/unlock", UNLOCK, 401, "WrongPassword")
    sim.rln.ok("POST", "/unlock", UNLOCK | {"password": "secret"})
    assert sim.ctl.http.get("/faults").json()["locked"] is False
