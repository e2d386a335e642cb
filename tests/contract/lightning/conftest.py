"""One scripted RGB Lightning Node (real HTTP on 127.0.0.1) shared by the contract tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.contract.lightning.server import ScriptedNode, serve


@pytest.fixture(scope="session")
def scripted_node() -> Iterator[tuple[ScriptedNode, str]]:
    node = ScriptedNode()
    with serve(node) as url:
        yield node, url
