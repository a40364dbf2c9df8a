"""Fuzz: report destinations and tags. A report folder is written whole, or the run ends with one
SpecError (a bad tag, an existing folder, or "cannot write the report to PATH: reason"); nothing
half-written or hidden is left behind either way."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from cmperf.errors import SpecError
from tests.hostile.conftest import settings_for

_n = itertools.count()
FILES = {"plan.md": "# plan \x1b[31m red\n", "a.csv": "x,y\n1,2\n"}
TAGS = st.one_of(st.none(), st.text(max_size=12), st.sampled_from(["ok", "a\\b", "../x", ".hidden", "-x", "x" * 300, "a/b", "ow", "\x1b", "é"]))
PLACES = ["fresh", "existing", "file", "under-file", "proc", "dev-null", "symlink-to-file", "dangling-symlink", "long-name", "control-name", "nul-name"]


def _destination(base: Path, place: str) -> Path:
    base.mkdir(parents=True, exist_ok=True)
    if place == "existing":
        return base
    if place == "file":
        (base / "f").write_text("x")
        return base / "f"
    if place == "under-file":
        (base / "f").write_text("x")
        return base / "f" / "sub"
    if place == "proc":
        return Path("/proc/self")
    if place == "dev-null":
        return Path("/dev/null")
    if place == "symlink-to-file":
        (base / "f").write_text("x")
        (base / "l").symlink_to(base / "f")
        return base / "l"
    if place == "dangling-symlink":
        (base / "l").symlink_to(base / "nowhere")
        return base / "l"
    if place == "long-name":
        return base / ("n" * 300)
    if place == "control-name":
        return base / "a\x1b]0;x\x07b"
    if place == "nul-name":
        return base / "a\x00b"
    return base / "fresh" / "deeper"


@settings_for(80)
@given(st.sampled_from(PLACES), TAGS, st.booleans(), st.integers(1, 2))
def test_fuzz_report_destinations(tmp_path_factory, place, tag, overwrite, times):
    from cmperf.report.files import write_run_dir

    base = tmp_path_factory.getbasetemp() / f"dest-{next(_n)}"
    out = _destination(base, place)
    for _ in range(times):
        try:
            d = write_run_dir(out, "plan", FILES, tag, overwrite)
        except SpecError as exc:
            assert exc.where == "--tag" or str(exc).startswith("cannot write the report to "), str(exc)
            assert "\x1b" not in str(exc)
            continue
        assert sorted(p.name for p in d.iterdir()) == sorted(FILES)
        assert "\x1b" not in (d / "plan.md").read_text()
    if base.exists():
        hidden = [p for p in base.rglob(".plan-*")]
        assert not hidden, hidden
    assert not [p for p in Path("/proc/self").iterdir() if p.name.startswith(".plan-")] if place == "proc" else True
    assert os.path.exists("/dev/null")
