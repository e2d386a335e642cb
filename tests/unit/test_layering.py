"""The service never imports the simulated node, and neither the service nor the sim imports
the harness (the process helpers of tests/, bench/ and proving/).

`vnode_sim` (the simulated RGB Lightning Node) is a sibling package of `vnode`. The sim may use
`vnode` (the BOLT 11 reader `vnode.lightning.bolt11`, the RLN wire models
`vnode.lightning.rln_api` and `Network` from `vnode.lightning.base`), never the other way
round: `vnode serve` with no node configured runs the sim as a separate process (`vnode/lightning/
sim_process.py`), and the one import of `vnode_sim` inside `vnode/` is lazy, in the body of the
`vnode sim serve` command (`vnode/cli.py`), which only that process runs. `harness/` imports
`vnode` to run it; nothing under `vnode/` or `vnode_sim/` imports `harness`, lazily or not.

The import graph is read from the source (every `import` a module runs when it is loaded:
module level and class bodies, not function bodies or `if TYPE_CHECKING:` blocks) rather than by
importing every module in fresh interpreters, which took 9-17 s of the fast suite (aiogram alone
is 7 s). Nothing in `vnode/` or `vnode_sim/` imports by computed name (`importlib`), which the
last test keeps so.
"""

from __future__ import annotations

import ast
import functools
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import vnode

ROOT = Path(vnode.__file__).parent.parent
OURS = ("vnode", "vnode_sim", "harness")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _sources(package: str) -> Iterator[tuple[str, Path]]:
    for path in sorted((ROOT / package).rglob("*.py")):
        yield _module_name(path), path


def _runs_at_import(body: Iterable[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    """The import statements of `body` that run when the module is loaded."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If):
            type_checking = isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
            if not type_checking:
                yield from _runs_at_import(node.body)
            yield from _runs_at_import(node.orelse)
        elif isinstance(node, ast.Try):
            yield from _runs_at_import(node.body)
            for handler in node.handlers:
                yield from _runs_at_import(handler.body)
            yield from _runs_at_import(node.orelse)
            yield from _runs_at_import(node.finalbody)
        elif isinstance(node, ast.With | ast.ClassDef):
            yield from _runs_at_import(node.body)


def _imported(module: str, path: Path, *, everywhere: bool = False) -> set[str]:
    """Modules (and names, which may be submodules) that `module` imports when loaded, or
    anywhere in its source if `everywhere`."""
    tree = ast.parse(path.read_text(), str(path))
    statements = (
        [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]
        if everywhere
        else _runs_at_import(tree.body)
    )
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in statements:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
            continue
        base = node.module or ""
        if node.level:
            anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join([*anchor, base] if base else anchor)
        found.add(base)
        found |= {f"{base}.{alias.name}" for alias in node.names}
    return found


@functools.cache
def _graph() -> dict[str, frozenset[str]]:
    """Each of our modules -> the modules of ours it loads directly (parents included: loading
    a.b.c runs a/__init__ and a/b/__init__ first)."""
    known = {name: path for package in OURS for name, path in _sources(package)}
    graph: dict[str, frozenset[str]] = {}
    for name, path in known.items():
        loads: set[str] = set()
        for target in _imported(name, path):
            parts = target.split(".")
            loads |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)} & known.keys()
        graph[name] = frozenset(loads - {name})
    return graph


def _loaded_by_importing(package: str) -> set[str]:
    """Every module of ours that importing each module of `package` loads."""
    return _loaded_by([name for name, _ in _sources(package)])


def _loaded_by(modules: Iterable[str]) -> set[str]:
    """`modules` and every module of ours that importing them loads."""
    graph = _graph()
    seen: set[str] = set()
    todo = list(modules)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(graph.get(name, ()))
    return seen


def test_the_graph_sees_what_python_sees() -> None:
    """The reader resolves absolute, relative and submodule imports and skips TYPE_CHECKING."""
    graph = _graph()
    assert "vnode.lightning.base" in graph["vnode.lightning.bolt11"]
    assert "vnode.lightning.bolt11" not in graph["vnode.lightning.base"]  # TYPE_CHECKING only
    assert "vnode.api" in graph["vnode.api.hot"]  # a parent package runs first
    assert {"vnode", "vnode_sim"} <= {m.split(".")[0] for m in _loaded_by_importing("vnode_sim")}
    # `vnode sim serve` imports the sim lazily, in a function body, which the graph leaves out.
    cli = _imported("vnode.cli", ROOT / "vnode" / "cli.py", everywhere=True)
    assert any(name.split(".")[0] == "vnode_sim" for name in cli)
    assert not any(name.split(".")[0] == "vnode_sim" for name in graph["vnode.cli"])


def test_no_module_of_vnode_imports_the_sim() -> None:
    loaded = _loaded_by_importing("vnode")
    assert "vnode.cli" in loaded
    sim = sorted(m for m in loaded if m.split(".")[0] == "vnode_sim")
    assert sim == [], f"vnode/ imports the sim at module level: {sim}"


def test_the_sim_is_not_inside_vnode() -> None:
    assert not (ROOT / "vnode" / "lightning" / "sim").exists()


def test_neither_vnode_nor_the_sim_imports_the_harness() -> None:
    for package in ("vnode", "vnode_sim"):
        # Not even lazily, inside a function.
        for name, path in _sources(package):
            harness = {m for m in _imported(name, path, everywhere=True) if m.startswith("harness")}
            assert not harness, f"{path} imports {sorted(harness)}"


def test_no_import_by_computed_name() -> None:
    """An `importlib.import_module(...)` would hide an import from the graph above."""
    for package in ("vnode", "vnode_sim"):
        for _, path in _sources(package):
            assert "import_module(" not in path.read_text(), path


def test_the_bots_inbox_does_not_load_telegram() -> None:
    """The webhook inbox (which the API's tests use too) and the Redis consumer need no aiogram,
    whose import costs about 7 s of CPU: only the bot's Telegram side loads it."""
    for name in _loaded_by(["vnode.bot.inbox"]):
        path = ROOT / (name.replace(".", "/") + ".py")
        if not path.exists():
            path = path.with_suffix("") / "__init__.py"
        assert not any(m.startswith("aiogram") for m in _imported(name, path)), name


def test_the_reference_verifier_stands_alone() -> None:
    """vnode/proofs/verifier.py is the reference verifier (docs/PROOFS.md): a user copies it and
    runs it trusting nothing else of vnode, so it imports the standard library and coincurve
    only, anywhere in its source; its package's __init__ imports nothing."""
    allowed = set(sys.stdlib_module_names) | {"coincurve", "__future__"}
    path = ROOT / "vnode" / "proofs" / "verifier.py"
    imported = {m.split(".")[0] for m in _imported("vnode.proofs.verifier", path, everywhere=True)}
    assert imported <= allowed, sorted(imported - allowed)
    init = ROOT / "vnode" / "proofs" / "__init__.py"
    assert not _imported("vnode.proofs", init, everywhere=True)
