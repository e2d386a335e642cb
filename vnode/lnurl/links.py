"""What vnode hands out for an address, all derived from the public URL (VNODE_PUBLIC_URL) and
the name, deterministically: the address, its LUD-16 URL and LNURL (LUD-01), the payRequest's
metadata (the same string at every request, since the invoice commits to its hash), and the
callback and verify URLs."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from urllib.parse import urlsplit

# LNURL (LUD-01) is bech32 without BOLT 11's length limit: the reader's own encoder, as the
# sim's signer uses it (vnode_sim/bolt11.py), rather than a second copy.
from vnode.lightning.bolt11 import _bech32_encode, _bytes_to_words

WELL_KNOWN_PATH = "/.well-known/lnurlp/"
CALLBACK_PATH = "/lnurlp/{name}/callback"
VERIFY_PATH = "/lnurlp/verify/{payment_hash}"


@dataclass(frozen=True)
class AddressLinks:
    """One address on one public URL."""

    public_url: str  # checked by vnode/domain/public_url.py, no trailing slash
    name: str  # canonical (vnode/lnurl/names.py)

    @property
    def domain(self) -> str:
        """The address's domain: the public URL's host (LUD-16)."""
        host = urlsplit(self.public_url).hostname
        assert host is not None  # the settings refuse a public URL without one
        return host

    @property
    def address(self) -> str:
        return f"{self.name}@{self.domain}"

    @property
    def well_known_url(self) -> str:
        """Where a wallet looks the address up: always at the root of the host (LUD-16), with
        the public URL's scheme and port, whatever path the public URL has."""
        parts = urlsplit(self.public_url)
        return f"{parts.scheme}://{parts.netloc}{WELL_KNOWN_PATH}{self.name}"

    @property
    def lnurl(self) -> str:
        """The LUD-01 LNURL of the well-known URL: bech32, upper-case (for QR codes)."""
        data = self.well_known_url.encode()
        return _bech32_encode("lnurl", _bytes_to_words(data)).upper()

    @property
    def callback_url(self) -> str:
        return self.public_url + CALLBACK_PATH.format(name=self.name)

    @property
    def metadata(self) -> str:
        """LUD-06 metadata with LUD-16's identifier; its SHA-256 is the invoices' `h`. Built with
        fixed separators so that it is byte-identical at every request."""
        entries = [["text/plain", f"Payment to {self.address}"], ["text/identifier", self.address]]
        return json.dumps(entries, separators=(",", ":"), ensure_ascii=True)

    @property
    def description(self) -> str:
        """The metadata's text/plain: what vnode records as such an invoice's description."""
        return f"Payment to {self.address}"

    @property
    def description_hash(self) -> str:
        return hashlib.sha256(self.metadata.encode()).hexdigest()


def verify_url(public_url: str, payment_hash: str) -> str:
    """LUD-21: where a payer asks whether the invoice with this hash is settled."""
    return public_url + VERIFY_PATH.format(payment_hash=payment_hash)
