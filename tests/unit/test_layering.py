"""The service never imports the simulated node, and neither the service nor the sim imports
the harness (the process helpers of tests/, bench/ and proving/).

`vnode_sim` (the simulated RGB Lightning Node) is a sibling package of `vnode`. The sim may use
`vnode` (the BOLT 11 reader `vnode.lightning.bolt11`, the RLN wire models
`vnode.lightning.rln_api` and `Network` from `vnode.lightning.base`), never the other way
round: `vnode serve` with no node configured runs the sim as a separate process (`vnode/lightning/
sim_process.py`), and the one import of `vnode_sim` inside `vnode/` is lazy, in the body of the
`vnode sim serve` command (`vnode/cli.py`), which only that process runs. `harness/` imports
`vnode` to run it; nothing under `vnode/` or `vnode_sim/` imports `harness`, lazily or not.
"""

from __future__ import annotations

import functools
import json
import pkgutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import vnode

# Imports every module under vnode/ (or vnode_sim/) in a fresh interpreter, then reports what
# got loaded.
_PROBE = """
import importlib, json, pkgutil, sys
import {package} as root
names = sorted(m.name for m in pkgutil.walk_packages(root.__path__, "{package}."))
for name in names:
    importlib.import_module(name)
loaded = {{m.split(".")[0] for m in sys.modules}}
print(json.dumps({{"imported": names, "sim": sorted(m for m in sys.modules
                                                  if m.split(".")[0] == "vnode_sim"),
                  "harness": "harness" in loaded}}))
"""


@functools.cache  # one fresh interpreter per package for the whole module
def _probe(package: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE.format(package=package)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=Path(vnode.__file__).parent.parent,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


def test_no_module_of_vnode_imports_the_sim() -> None:
    report = _probe("vnode")
    expected = {m.name for m in pkgutil.walk_packages(vnode.__path__, "vnode.")}
    assert set(report["imported"]) == expected and "vnode.cli" in expected
    assert report["sim"] == [], f"vnode/ imports the sim at module level: {report['sim']}"


def test_the_sim_is_not_inside_vnode() -> None:
    assert not (Path(vnode.__file__).parent / "lightning" / "sim").exists()


def test_neither_vnode_nor_the_sim_imports_the_harness() -> None:
    assert not _probe("vnode")["harness"], "importing vnode/ loads harness/"
    assert not _probe("vnode_sim")["harness"], "importing vnode_sim/ loads harness/"
    # Not even lazily, inside a function: no source line names it.
    for package in ("vnode", "vnode_sim"):
        root = Path(vnode.__file__).parent.parent / package
        for path in root.rglob("*.py"):
            for line in path.read_text().splitlines():
                words = line.split()
                assert not (
                    words[:1] in (["import"], ["from"])
                    and len(words) > 1
                    and words[1].split(".")[0] == "harness"
                ), f"{path}: {line.strip()}"
