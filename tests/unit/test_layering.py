"""The service never imports the simulated node.

`vnode_sim` (the simulated RGB Lightning Node) is a sibling package of `vnode`. The sim may use
`vnode` (it decodes invoices with `vnode.lightning.bolt11`), never the other way round: `vnode
serve` with no node configured runs the sim as a separate process (`vnode/lightning/
sim_process.py`), and the one import of `vnode_sim` inside `vnode/` is lazy, in the body of the
`vnode sim serve` command (`vnode/cli.py`), which only that process runs.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import vnode

# Imports every module under vnode/ in a fresh interpreter, then reports what got loaded.
_PROBE = """
import importlib, json, pkgutil, sys
import vnode
names = sorted(m.name for m in pkgutil.walk_packages(vnode.__path__, "vnode."))
for name in names:
    importlib.import_module(name)
print(json.dumps({"imported": names,
                  "sim": sorted(m for m in sys.modules if m.split(".")[0] == "vnode_sim")}))
"""


def test_no_module_of_vnode_imports_the_sim() -> None:
    done = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                          timeout=120, check=False, cwd=Path(vnode.__file__).parent.parent)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    expected = {m.name for m in pkgutil.walk_packages(vnode.__path__, "vnode.")}
    assert set(report["imported"]) == expected and "vnode.cli" in expected
    assert report["sim"] == [], f"vnode/ imports the sim at module level: {report['sim']}"


def test_the_sim_is_not_inside_vnode() -> None:
    assert not (Path(vnode.__file__).parent / "lightning" / "sim").exists()
