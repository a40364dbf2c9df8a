"""Imports flow one way: specs -> costs, comm -> compose -> evaluation -> solve -> whatif -> api -> report -> cli.

A lower layer importing a higher one would let presentation or search leak into the physics.
"""

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "cmperf"
ORDER = ["units", "errors", "frames", "specs", "costs", "comm", "compose", "overrides", "evaluation", "solve", "whatif", "validation", "api",
         "report", "cli"]
RANK = {name: i for i, name in enumerate(ORDER)}
# Same-level pairs that may import each other.
PEERS = {("costs", "comm"), ("comm", "costs")}


def layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "cmperf" or len(parts) < 2:
        return None
    head = parts[1]
    if head.startswith("cli"):
        return "cli"
    return head if head in RANK else None


def imports(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names)


FILES = sorted(p for p in PKG.rglob("*.py") if p.name != "__main__.py")


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PKG)))
def test_no_import_points_up_the_layers(path):
    rel = "cmperf." + ".".join(path.relative_to(PKG).with_suffix("").parts)
    me = layer(rel if not rel.endswith("__init__") else rel.rsplit(".", 1)[0] + ".x")
    if me is None:
        return
    for mod in imports(path):
        other = layer(mod)
        if other is None or other == me or (me, other) in PEERS:
            continue
        assert RANK[other] < RANK[me], f"{rel} ({me}) imports {mod} ({other}), which is a higher layer"


def test_the_layering_test_catches_an_upward_import(tmp_path):
    bad = tmp_path / "x.py"
    bad.write_text("from cmperf.report.render import emit\n")
    assert any(layer(m) == "report" for m in imports(bad))


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(["cmperf", *parts])


def _graph() -> dict[str, set[str]]:
    """cmperf module -> the cmperf modules it imports (anywhere in the file, functions included)."""
    names = {_module_name(p) for p in PKG.rglob("*.py")}
    graph = {}
    for path in PKG.rglob("*.py"):
        me = _module_name(path)
        out = set()
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cmperf"):
                out.add(node.module)
                out.update(f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in names)
            elif isinstance(node, ast.Import):
                out.update(a.name for a in node.names if a.name.startswith("cmperf"))
        graph[me] = {m for m in out if m in names and m != me and m != "cmperf"}
    return graph


def test_no_import_cycle():
    graph = _graph()
    state: dict[str, int] = {}

    def visit(node, stack):
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(nxt):] + [nxt]) if nxt in stack else nxt)
            if nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


def test_command_modules_share_options_without_importing_each_other():
    graph = _graph()
    for mod in ("cmperf.cli_whatif", "cmperf.cli_validate", "cmperf.cli_options"):
        assert "cmperf.cli" not in graph[mod], mod
    assert "cmperf.cli_options" in graph["cmperf.cli_whatif"] and "cmperf.cli_options" in graph["cmperf.cli_validate"]


def test_the_api_and_the_model_never_import_the_cli_or_the_reports():
    graph = _graph()
    low = [m for m in graph if layer(m) in RANK and RANK[layer(m)] <= RANK["api"]]
    assert "cmperf.api" in low and "cmperf.evaluation" in low and "cmperf.frames" in low
    for mod in low:
        assert not any(layer(o) in ("report", "cli") for o in graph[mod]), mod


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PKG)))
def test_no_module_is_much_over_400_lines(path):
    assert len(path.read_text().splitlines()) <= 420, path
