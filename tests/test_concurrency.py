"""Concurrent and interrupted `cmperf plan` runs, as real processes.

A report folder appears whole or not at all (cmperf/report/files.py writes into a hidden temporary
directory and renames it into place): two runs started together both succeed with two complete,
distinct folders; a run killed at any moment leaves no partial `plan-*` folder.
"""

from __future__ import annotations

import csv
import io
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

FILES = {"plan.md", "deployments.csv", "frontier.csv", "frontier.png", "frontier.svg", "sizing.csv"}


def start_plan(out: Path, *extra: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "cmperf", "plan", "--out", str(out), *extra],
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "200"},
    )


def finish(p: subprocess.Popen, timeout: float = 120) -> tuple[int, str, str]:
    out, err = p.communicate(timeout=timeout)
    return p.returncode, out, err


def plan_dirs(out: Path) -> list[Path]:
    return sorted(d for d in out.iterdir() if d.name.startswith("plan-")) if out.exists() else []


def hidden_dirs(out: Path) -> list[Path]:
    return sorted(d for d in out.iterdir() if d.name.startswith(".plan-")) if out.exists() else []


def assert_complete(d: Path) -> None:
    names = {p.name for p in d.iterdir() if p.suffix != ".toml"}  # plus one deployment file per reported record
    assert names == FILES, (d, names)
    for name in FILES:
        assert (d / name).stat().st_size > 0, (d, name)
    md = (d / "plan.md").read_text(encoding="utf-8")
    assert md.strip() and "TPOT" in md
    assert (d / "frontier.svg").read_text(encoding="utf-8").rstrip().endswith("</svg>")
    for name in ("deployments.csv", "frontier.csv", "sizing.csv"):
        rows = list(csv.reader(io.StringIO((d / name).read_text(encoding="utf-8"))))
        assert len(rows) >= 2 and all(len(r) == len(rows[0]) for r in rows), name


def test_two_concurrent_plans_write_two_complete_distinct_folders(tmp_path):
    out = tmp_path / "reports"
    procs = [start_plan(out, cwd=tmp_path) for _ in range(2)]
    results = [finish(p) for p in procs]
    for rc, stdout, stderr in results:
        assert rc == 0, stderr
        assert "Traceback" not in stderr
    dirs = plan_dirs(out)
    assert len(dirs) == 2 and dirs[0].name != dirs[1].name, dirs
    for d in dirs:
        assert_complete(d)
    # each run reports the folder it wrote, and they differ
    reported = {d.name for d in dirs if any(d.name in stdout for _, stdout, _ in results)}
    assert reported == {d.name for d in dirs}
    assert hidden_dirs(out) == [], "temporary .plan-* directories left behind"
    # identical inputs: identical reports, apart from the folder name itself
    a, b = ((d / "deployments.csv").read_text(encoding="utf-8") for d in dirs)
    assert a == b


def test_concurrent_plans_with_one_tag_write_one_folder(tmp_path):
    out = tmp_path / "reports"
    procs = [start_plan(out, "--tag", "same", cwd=tmp_path) for _ in range(2)]
    results = [finish(p) for p in procs]
    codes = sorted(rc for rc, _, _ in results)
    assert codes == [0, 2], results  # one wins; the other is told the folder exists
    loser = next(err for rc, _, err in results if rc == 2)
    assert "--tag" in loser and "exists" in loser and "Traceback" not in loser
    assert [d.name for d in plan_dirs(out)] == ["plan-same"]
    assert_complete(out / "plan-same")
    assert hidden_dirs(out) == []


def _kill_and_check(out: Path, p: subprocess.Popen) -> None:
    p.send_signal(signal.SIGKILL)  # a no-op if it has already been reaped
    p.communicate(timeout=30)
    assert p.returncode == -signal.SIGKILL or p.returncode == 0  # it may have finished first
    for d in plan_dirs(out):
        assert_complete(d)


@pytest.mark.parametrize("delay", [0.2, 0.35, 0.5])
def test_killed_plan_leaves_no_partial_folder(tmp_path, delay):
    out = tmp_path / "reports"
    p = start_plan(out, cwd=tmp_path)
    time.sleep(delay)
    _kill_and_check(out, p)


def test_plan_killed_while_writing_leaves_no_partial_folder(tmp_path):
    """Kill the moment the hidden temporary folder appears, i.e. during the writes themselves.
    A SIGKILLed process cannot clean up, so the hidden .plan-* directory may stay; a visible
    plan-* folder must never be partial."""
    caught = 0
    for attempt in range(5):
        out = tmp_path / f"reports-{attempt}"
        p = start_plan(out, cwd=tmp_path)
        deadline = time.monotonic() + 60
        while p.poll() is None and time.monotonic() < deadline:
            if out.exists() and hidden_dirs(out):
                caught += 1
                break
        _kill_and_check(out, p)
    assert caught >= 1, "never caught a run mid-write"


def test_report_folder_honours_the_umask(tmp_path):
    out = tmp_path / "reports"
    rc, _, err = finish(start_plan(out, cwd=tmp_path))
    assert rc == 0, err
    old = os.umask(0)
    os.umask(old)
    (d,) = plan_dirs(out)
    assert stat.S_IMODE(d.stat().st_mode) == 0o777 & ~old
