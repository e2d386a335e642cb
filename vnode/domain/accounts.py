"""The ledger's system accounts: the outside world and the operator, as accounts, so that every
movement balances. Users' accounts are their ids (> 0); these are negative.

The ids are declared here for Python, and in SQL by `vnode_account(name)`
(vnode/db/functions/00_helpers.sql), which every money function uses; the rows of the
system_accounts table hold the same. tests/integration/db/test_catalog.py checks the three agree.
"""

from __future__ import annotations

from enum import IntEnum


class SystemAccount(IntEnum):
    OPERATOR_FUNDING = -1  # credits and debits made by the operator (admin API, CLI)
    LIGHTNING_INBOUND = -2  # payments received by the master node
    LIGHTNING_OUTBOUND = -3  # payments sent by the master node
    ROUTING_FEES = -4  # routing fees paid by the master node and charged to users
    OPERATOR_LOSS = -5  # money the operator lost (success after refund, fee above limit)
    PAYMENTS_IN_FLIGHT = -6  # reserves of outgoing payments not yet final
    RGB_ONCHAIN_INBOUND = -7  # RGB assets received on-chain by the master node

    @property
    def account_name(self) -> str:
        """The name in system_accounts and in `vnode_account(name)`: operator_funding, ..."""
        return self.name.lower()
