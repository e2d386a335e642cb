"""Request bodies of the sim's control API (/_sim), typed as strictly as the node's own.

The RGB Lightning Node's own requests and answers are modelled once, in
``vnode.lightning.rln_api``, which the adapter uses too.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StrictBool, StrictInt, StrictStr, model_validator

from vnode.lightning.base import Network
from vnode.lightning.rln_api import U32, U64
from vnode.lightning.rln_api import Model as Body
from vnode_sim.faults import HostileKind, HostileRoute, PaymentFault, routes_of

# ------------------------------------------------------------------ control API (/_sim)


class SimPayRequest(Body):
    invoice: StrictStr
    amt_msat: U64 | None = None
    asset_amount: U64 | None = None


class SimInvoiceRequest(Body):
    amt_msat: U64 | None = None
    asset_id: StrictStr | None = None
    asset_amount: U64 | None = None
    description: StrictStr | None = None
    expiry_sec: U32 = 3600
    # Another network than the node's makes an invoice the node must refuse.
    network: Network | None = None


# Enough for any test (a thousand held payments), small enough to refuse a typo'd exponent.
MAX_FAULT_COUNT = 1_000_000


class SimFaultsRequest(Body):
    """faults.py says what each fault does; absent fields leave the state as it is."""

    routing_fee_msat: U64 | None = None
    locked: StrictBool | None = None
    # null clears a pending fault.
    next_payment: PaymentFault | None = None
    # How many payments (next_payment) or records (hostile) the fault set here applies to.
    count: Annotated[StrictInt, Field(ge=1, le=MAX_FAULT_COUNT)] | None = None
    # Adds one hostile-answer entry; null drops every entry.
    hostile: HostileKind | None = None
    target: StrictStr | None = None
    route: HostileRoute | None = None

    @model_validator(mode="after")
    def _filters_need_their_fault(self) -> SimFaultsRequest:
        given = self.model_fields_set
        if "count" in given and self.next_payment is None and self.hostile is None:
            raise ValueError("count applies to next_payment or hostile; neither is set")
        if ("target" in given or "route" in given) and self.hostile is None:
            raise ValueError("target and route filter a hostile fault; none is set")
        if (
            self.hostile is not None
            and self.route is not None
            and self.route not in routes_of(self.hostile)
        ):
            raise ValueError(f"{self.hostile.value} cannot corrupt the answers of {self.route}")
        return self


class SimReleaseRequest(Body):
    payment_hash: StrictStr
    outcome: Literal["succeed", "fail"]


class SimReleaseAllRequest(Body):
    outcome: Literal["succeed", "fail"]


class SimRgbSendRequest(Body):
    recipient_id: StrictStr | None = None
    invoice: StrictStr | None = None
    asset_id: StrictStr
    amount: U64
