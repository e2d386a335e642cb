"""Backends by name: rln and sim are the same adapter; anything else is refused by name."""

from __future__ import annotations

import pytest

from tests.contract.lightning.invoices import NODE_PUBKEY
from tests.contract.lightning.rln_cases import node_info_answer
from tests.contract.lightning.server import Exchange, ScriptedNode
from vnode.lightning.base import Network, NodeInfo
from vnode.lightning.registry import BACKENDS, create_backend
from vnode.lightning.rln import RlnBackend


def test_known_backends() -> None:
    assert sorted(BACKENDS) == ["rln", "sim"]


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"'lnd'.*rln, sim"):
        create_backend("lnd", rln_url="http://127.0.0.1:1", rln_token=None, timeout_s=1)


@pytest.mark.parametrize("name", ["rln", "sim"])
def test_url_is_required(name: str) -> None:
    with pytest.raises(ValueError, match="URL"):
        create_backend(name, rln_url=None, rln_token=None, timeout_s=1)


@pytest.mark.parametrize(("name", "simulated"), [("rln", False), ("sim", True)])
async def test_rln_and_sim_speak_the_rln_api(
    name: str, simulated: bool, scripted_node: tuple[ScriptedNode, str]
) -> None:
    node, url = scripted_node
    node.load(
        (
            Exchange("GET", "/nodeinfo", answer=node_info_answer()),
            Exchange("GET", "/networkinfo", answer={"network": "Regtest", "height": 1}),
        ),
        "tok",
    )
    backend = create_backend(name, rln_url=url, rln_token="tok", timeout_s=2)
    try:
        assert isinstance(backend, RlnBackend)
        assert backend.name == "rln"
        assert await backend.node_info() == NodeInfo(NODE_PUBKEY, Network.REGTEST, simulated)
    finally:
        await backend.close()
    assert node.mismatches == []
