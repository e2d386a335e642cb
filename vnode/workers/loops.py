"""The background workers of one vnode process, each safe to run in several processes at once
(every step ends in an idempotent database function that re-checks under row locks)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg

from vnode.keys import Signer
from vnode.lightning.base import LightningBackend
from vnode.lightning.monitor import NodeMonitor, NodeState
from vnode.metrics import Metrics
from vnode.payments.receive import InvoiceWatcher, RgbTransferWatcher
from vnode.payments.resolve import recheck_failed_once, reconcile_once
from vnode.proofs.publish import publish_when_due
from vnode.settings import Settings
from vnode.workers.supervisor import Pass, Supervisor

LATE_SUCCESS_CHECK_S = 30.0
RGB_REFRESH_S = 5.0
NODE_CHECK_S = 2.0
# How often the proofs publisher asks whether an epoch is due (at most its interval).
PROOFS_CHECK_S = 60.0
# The workers that move or release money: /readyz reports "degraded" when one of them has not
# completed a pass for Settings.money_worker_stale_s (docs/SECURITY.md).
MONEY_WORKERS = (
    "payment-reconciler",
    "late-success-check",
    "invoice-watcher",
    "rgb-transfer-watcher",
)


def start_workers(
    supervisor: Supervisor,
    pool: asyncpg.Pool,
    backend: LightningBackend,
    monitor: NodeMonitor,
    settings: Settings,
    metrics: Metrics,
    signer: Signer,
) -> None:
    invoices = InvoiceWatcher(pool, backend, metrics)
    rgb = RgbTransferWatcher(pool, backend, metrics)
    skew = settings.stale_failure_skew_s

    def when_ready(step: Callable[[], Awaitable[object]]) -> Callable[[], Awaitable[object]]:
        async def run() -> object:
            # A locked or unreachable node is the monitor's to report; no point asking it.
            if monitor.status.state is not NodeState.READY:
                return Pass.SKIPPED
            return await step()

        return run

    supervisor.every("node-monitor", NODE_CHECK_S, monitor.check)
    supervisor.every(
        "payment-reconciler",
        settings.reconcile_interval_s,
        when_ready(lambda: reconcile_once(pool, backend, stale_skew_s=skew, metrics=metrics)),
    )
    supervisor.every(
        "late-success-check",
        LATE_SUCCESS_CHECK_S,
        when_ready(lambda: recheck_failed_once(pool, backend, metrics=metrics)),
    )
    supervisor.every("invoice-watcher", settings.watch_interval_s, when_ready(invoices.poll_once))
    supervisor.every("rgb-transfer-watcher", RGB_REFRESH_S, when_ready(rgb.poll_once))
    if settings.proofs_interval_s > 0:  # 0: only `vnode proofs publish` (docs/PROOFS.md)
        interval_s, retention_s = settings.proofs_interval_s, settings.proofs_retention_s
        supervisor.every(
            "proofs-publisher",
            min(PROOFS_CHECK_S, interval_s),
            lambda: publish_when_due(pool, signer, interval_s, retention_s),
        )
