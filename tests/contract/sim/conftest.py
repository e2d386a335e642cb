"""A fresh simulated node per test, served over real HTTP on a free local port."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest

from tests.contract.sim.openapi import RlnSpec, load_spec
from tests.contract.sim.support import ASSET, ASSET_UNITS, Sim
from vnode_sim import SimConfig, SimServer


@pytest.fixture(scope="session")
def spec() -> RlnSpec:
    return load_spec()


def default_config(**overrides: Any) -> SimConfig:
    base = SimConfig(
        rgb_assets={ASSET: ASSET_UNITS},
        # Short, so a test of the timeout fault (and the server stop after it) stays quick.
        request_timeout_hang_s=1.0,
    )
    return replace(base, **overrides)


@pytest.fixture
def make_sim(spec: RlnSpec) -> Iterator[Callable[..., Sim]]:
    started: list[Sim] = []

    def start(**overrides: Any) -> Sim:
        sim = Sim(SimServer(default_config(**overrides)).start(), spec)
        started.append(sim)
        return sim

    yield start
    for sim in started:
        sim.close()
        sim.server.stop()


@pytest.fixture
def sim(make_sim: Callable[..., Sim]) -> Sim:
    return make_sim()
