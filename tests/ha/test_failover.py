"""The short version of `make ha` (docs/RELIABILITY.md): the mixed load on two `vnode serve`
processes whose database is HAProxy in front of a 3-node Patroni cluster; the primary crashed
(Patroni, postmaster and backends at once) early, rejoined as a replica, then a planned
switchover. Every answer of unknown outcome must be resolved by a replay, the ledger exactly
as the client was told, the audit clean on the primary and on every replica, and the outages
within the issue's limits."""

from __future__ import annotations

import pytest

from harness.ha import HACluster
from proving.ha import FailoverOptions, WriteProbe, ha_options, run_ha
from proving.session import REQUIRED_OPS

# About 90 s: the cluster (15 s), the load (55 s, a crash outage of about 20 s in it), the
# settling and the audits.
pytestmark = pytest.mark.timeout(240)


async def test_failover_under_load(ha_cluster: HACluster) -> None:
    options = ha_options(duration_s=55, rate=30, users=30, seed=15, settle_timeout_s=60)
    failover = FailoverOptions(crash_at_s=8, switchover_at_s=38)
    result = await run_ha(options, failover, cluster=ha_cluster)
    figures = result.failover
    assert 0 < figures["crash_write_outage_s"] <= failover.max_crash_outage_s, figures
    assert 0 < figures["switchover_write_outage_s"] <= failover.max_switchover_outage_s
    assert 0 < figures["old_primary_streaming_after_s"] <= failover.max_rejoin_s
    assert figures["replicas"] == figures["replicas_audited_clean"] == 2
    assert result.kills == 1 and result.faults == {"primary crash": 1, "switchover": 1}
    assert not result.server_errors, result.server_errors  # only unknown outcomes
    assert result.audit_clean, result.audit_verdict
    assert result.settled and not result.problems, result.problems
    facts = result.facts
    assert facts["transfers_unknown"] == 0
    assert facts["transfers_accepted"] == facts["journal_transfers"] > 0
    succeeded = {o.op: o.ok for o in result.ops}
    assert all(succeeded.get(op) for op in REQUIRED_OPS), succeeded
    assert result.passed, result.reasons


def test_write_outage_is_the_longest_gap_between_successful_writes() -> None:
    probe = WriteProbe("unused")
    probe.results = [
        (0.9, 1.0, True),
        (1.9, 2.1, True),  # in flight at the event (2.0): its commit came back
        (2.2, 2.5, False),
        (2.6, 9.0, False),
        (9.1, 9.3, True),
        (9.4, 9.6, True),
    ]
    assert probe.outage_s(2.0, 2.05) == 7.2  # 2.1 -> 9.3
    assert probe.outage_s(9.35, 9.36) == 0.3  # 9.3 -> 9.6, the first started after the end
    assert probe.outage_s(9.5, 9.7) is None  # nothing started since the end
    assert probe.written_since(9.35) and not probe.written_since(9.5)
