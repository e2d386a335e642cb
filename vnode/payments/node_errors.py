"""What a node's error means to the API caller, decided in one place (review pair D33).

A refusal of the request itself (InvoiceRefused: a bad invoice, an asset it does not hold) is
the caller's error, with the code the calling step names. Any other NodeError (locked,
unreachable, an unreadable answer) means nothing moved and the caller may try again later:
503 node_unavailable. Only for calls that move nothing; sending a payment has its own table
(send.PaymentSender._send), where an error after sending is an unknown outcome, not a refusal.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from vnode.errors import ApiError, ErrorCode
from vnode.lightning.base import InvoiceRefused, NodeError


@contextmanager
def node_refusals(refused: ErrorCode) -> Iterator[None]:
    try:
        yield
    except InvoiceRefused as exc:
        raise ApiError(refused, f"the node refused it: {exc}") from None
    except NodeError as exc:
        raise ApiError(ErrorCode.NODE_UNAVAILABLE, str(exc)) from None
