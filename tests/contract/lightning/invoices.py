"""Real BOLT 11 invoices for the contract fixtures: regtest, signed with throwaway keys."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from coincurve import PrivateKey

from vnode_sim import bolt11

# 2026-01-01T00:00:00Z: the fixtures' "now" and the invoices' creation time.
NOW = 1_767_225_600


def _key(label: str) -> bytes:
    return hashlib.sha256(f"vnode contract fixture key: {label}".encode()).digest()


NODE_KEY = _key("our node")  # throwaway: never holds money
OUTSIDE_KEY = _key("somebody else's node")
NODE_PUBKEY = PrivateKey(NODE_KEY).public_key.format(compressed=True).hex()
OUTSIDE_PUBKEY = PrivateKey(OUTSIDE_KEY).public_key.format(compressed=True).hex()


@dataclass(frozen=True)
class FixtureInvoice:
    text: str
    payment_hash: str
    preimage: str
    amount_msat: int | None
    timestamp: int
    expiry_s: int
    payee_pubkey: str
    payment_secret: str

    @property
    def expires_at(self) -> int:
        return self.timestamp + self.expiry_s


def make_invoice(
    label: str,
    *,
    amount_msat: int | None,
    key: bytes = OUTSIDE_KEY,
    expiry_s: int = 3600,
    description: str = "vnode contract test",
    description_hash: str | None = None,
) -> FixtureInvoice:
    """A signed invoice; with `description_hash` it commits that `h` instead of a `d`."""
    preimage = hashlib.sha256(f"preimage {label}".encode()).digest()
    secret = hashlib.sha256(f"secret {label}".encode()).digest()
    payment_hash = hashlib.sha256(preimage).hexdigest()
    text = bolt11.encode(
        network=bolt11.Network.REGTEST,
        amount_msat=amount_msat,
        payment_hash=payment_hash,
        payment_secret=secret,
        timestamp=NOW,
        private_key=key,
        description=None if description_hash else description,
        description_hash=description_hash,
        expiry_s=expiry_s,
    )
    return FixtureInvoice(
        text=text,
        payment_hash=payment_hash,
        preimage=preimage.hex(),
        amount_msat=amount_msat,
        timestamp=NOW,
        expiry_s=expiry_s,
        payee_pubkey=PrivateKey(key).public_key.format(compressed=True).hex(),
        payment_secret=secret.hex(),
    )
