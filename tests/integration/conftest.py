"""Fixtures of the integration tests (the app in-process)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from vnode.workers import loops

QUICK_POLL_S = 0.5


@pytest.fixture(scope="session", autouse=True)
def _quick_node_polls() -> Iterator[None]:
    """Apps started in-process from here on check the node and refresh RGB transfers every
    0.5 s instead of every 2 s and 5 s (vnode/workers/loops.py), so a test that waits for a node
    state or an RGB receipt waits a fraction of a second. The periods are not what these tests
    check; `vnode serve` processes (tests/e2e, tests/bot) keep the service's own."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(loops, "NODE_CHECK_S", QUICK_POLL_S)
        patch.setattr(loops, "RGB_REFRESH_S", QUICK_POLL_S)
        yield
