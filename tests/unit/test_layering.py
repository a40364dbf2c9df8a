"""Imports flow one way: specs -> costs, comm -> compose -> estimate -> solve -> report -> cli.

A lower layer importing a higher one would let presentation or search leak into the physics.
"""

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "cmperf"
ORDER = ["units", "errors", "specs", "costs", "comm", "compose", "overrides", "estimate", "solve", "whatif", "validation", "report", "cli"]
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
