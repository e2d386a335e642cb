"""The one translation of node errors into API refusals (vnode/payments/node_errors.py)."""

from __future__ import annotations

import pytest

from vnode.errors import ApiError, ErrorCode
from vnode.lightning.base import (
    InvoiceRefused,
    NodeError,
    NodeLocked,
    NodeUnreachable,
    PaymentNotFound,
)
from vnode.payments.node_errors import node_refusals


@pytest.mark.parametrize(
    ("raised", "refused", "code"),
    [
        # the node refuses the request itself: the caller's error, as the step names it
        (InvoiceRefused("bad invoice"), ErrorCode.INVALID_INVOICE, ErrorCode.INVALID_INVOICE),
        (InvoiceRefused("no such asset"), ErrorCode.INVALID_ASSET_ID, ErrorCode.INVALID_ASSET_ID),
        # anything else: nothing moved, try again later
        (NodeLocked("locked"), ErrorCode.INVALID_INVOICE, ErrorCode.NODE_UNAVAILABLE),
        (NodeUnreachable("timeout"), ErrorCode.INVALID_REQUEST, ErrorCode.NODE_UNAVAILABLE),
        (PaymentNotFound("gone"), ErrorCode.INVALID_REQUEST, ErrorCode.NODE_UNAVAILABLE),
        (NodeError("odd answer"), ErrorCode.INVALID_ASSET_ID, ErrorCode.NODE_UNAVAILABLE),
    ],
)
def test_node_errors_become_catalogued_refusals(
    raised: NodeError, refused: ErrorCode, code: ErrorCode
) -> None:
    with pytest.raises(ApiError) as caught, node_refusals(refused):
        raise raised
    assert caught.value.code is code
    assert str(raised) in caught.value.message


def test_other_errors_pass_through() -> None:
    with pytest.raises(KeyError), node_refusals(ErrorCode.INVALID_REQUEST):
        raise KeyError("not the node's")


def test_nothing_raised_nothing_refused() -> None:
    with node_refusals(ErrorCode.INVALID_REQUEST):
        answer = 42
    assert answer == 42
