"""The HA cluster of harness/ha.py (etcd, three Patroni nodes, HAProxy): started for a test,
stopped after it, and nothing of it may be left running."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness.ha import HACluster, processes_under


@pytest.fixture
def ha_cluster() -> Iterator[HACluster]:
    cluster = HACluster()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
    left = processes_under(cluster.root)
    assert not left, f"the HA cluster left processes running: {left}"
