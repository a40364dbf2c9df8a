"""CLI tests of `cmperf plan`: report files, formats, SLO parsing, input and infeasibility errors,
report-folder tags, and the printed `estimate` command reproducing a planned deployment.

Usage errors are typer's own and are tested on `app` with CliRunner; domain errors (CmperfError)
become exit codes only in `cmperf.cli.main`, so they are run as a subprocess `python -m cmperf ...`.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cmperf.cli import app
from cmperf.errors import InfeasibleError

runner = CliRunner()
ENV = {"COLUMNS": "250"}
REPORT_FILES = {"plan.md", "deployments.csv", "frontier.csv", "frontier.png", "frontier.svg", "sizing.csv"}
REQUIRED = {"phase", "slo_tpot_ms", "tpot_ms", "ttft_ms", "tokens_per_s_per_device", "devices", "ep", "dp", "batch", "microbatches",
            "mtp", "binding"}
REL = 1e-9


def invoke(*args: str):
    return runner.invoke(app, list(args), env=ENV)


def ok(*args: str) -> str:
    result = invoke(*args)
    assert result.exit_code == 0, (result.output, result.exception)
    assert "Traceback" not in result.output
    assert "Traceback" not in result.stderr
    return result.stdout


def cmperf(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cmperf", *args], capture_output=True, text=True, env={**os.environ, **ENV},
                          timeout=120, cwd=cwd)


def domain_error(*args: str, code: int | None = None, cwd: Path | None = None) -> str:
    """A CmperfError through `main`: non-zero exit (exactly `code` if given), one message, no traceback."""
    p = cmperf(*args, cwd=cwd)
    assert "Traceback" not in p.stderr, p.stderr
    assert p.returncode != 0, (p.stdout, p.stderr)
    if code is not None:
        assert p.returncode == code, (p.returncode, p.stderr)
    assert p.stderr.startswith("cmperf: error: "), p.stderr
    return p.stderr


def plan_dirs(parent: Path) -> list[Path]:
    return sorted(p for p in parent.iterdir() if p.name.startswith("plan-"))


def hidden(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if p.name.startswith(".")]


# ---- the default plan and its files ------------------------------------------------------------


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("reports")
    stdout = ok("plan", "--out", str(out))
    return out, stdout


@pytest.fixture(scope="module")
def default_json():
    return json.loads(ok("plan", "--no-write", "--format", "json"))["records"]


def test_default_plan_writes_one_folder_with_all_files(default_run):
    out, stdout = default_run
    dirs = plan_dirs(out)
    assert len(dirs) == 1
    assert {p.name for p in dirs[0].iterdir() if p.suffix != ".toml"} == REPORT_FILES
    for name in REPORT_FILES:
        assert (dirs[0] / name).stat().st_size > 0
    assert hidden(out) == []
    assert f"reports written to {dirs[0]}" in stdout.replace("\n", "")
    assert "Decode, TPOT <= 15 ms" in stdout and "Decode, TPOT <= 50 ms" in stdout


def test_plan_md_contents(default_run):
    out, _ = default_run
    md = (plan_dirs(out)[0] / "plan.md").read_text(encoding="utf-8")
    assert "Assumptions" in md
    assert "](frontier.png)" in md and "frontier.svg" in md
    assert "cloudmatrix384" in md
    assert "deepseek-r1" in md
    assert "cmperf estimate decode" in md


def test_report_csvs_parse(default_run):
    out, _ = default_run
    d = plan_dirs(out)[0]
    deploy = list(csv.DictReader(io.StringIO((d / "deployments.csv").read_text(encoding="utf-8"))))
    assert len(deploy) == 9
    assert REQUIRED <= set(deploy[0])
    front = list(csv.DictReader(io.StringIO((d / "frontier.csv").read_text(encoding="utf-8"))))
    assert len(front) > 10 and {"tpot_ms", "tokens_per_s_per_device", "devices", "batch"} <= set(front[0])
    sizing = list(csv.DictReader(io.StringIO((d / "sizing.csv").read_text(encoding="utf-8"))))
    assert [float(s["slo_tpot_ms"]) for s in sizing] == [15.0, 50.0]
    svg = (d / "frontier.svg").read_text(encoding="utf-8")
    assert svg.lstrip().startswith("<") and "</svg>" in svg


def test_json_records(default_json):
    recs = default_json
    assert isinstance(recs, list) and len(recs) == 2 * 3 + 3
    for r in recs:
        assert REQUIRED <= set(r), REQUIRED - set(r)
    keys = [(r["phase"], r["slo_tpot_ms"], r["rank"]) for r in recs]
    assert len(set(keys)) == len(keys)
    assert sorted(k for k in keys if k[0] == "decode") == [("decode", s, k) for s in (15.0, 50.0) for k in (1, 2, 3)]
    assert sorted(k[2] for k in keys if k[0] == "prefill") == [1, 2, 3]
    for r in recs:
        if r["phase"] == "decode":
            assert r["tpot_ms"] <= r["slo_tpot_ms"]


def test_two_tpot_slos_parse():
    recs = json.loads(ok("plan", "--no-write", "--format", "json", "--tpot", "50", "--tpot", "30ms", "--top", "2"))["records"]
    decode = [r for r in recs if r["phase"] == "decode"]
    assert sorted({r["slo_tpot_ms"] for r in decode}) == [30.0, 50.0]
    assert len(decode) == 4 and len(recs) == 6
    for r in decode:
        assert r["tpot_ms"] <= r["slo_tpot_ms"]


def test_tpot_in_seconds_parses():
    recs = json.loads(ok("plan", "--no-write", "--format", "json", "--tpot", "0.04s", "--top", "1"))["records"]
    assert [r["slo_tpot_ms"] for r in recs if r["phase"] == "decode"] == [pytest.approx(40.0)]


def test_csv_format(tmp_path):
    text = ok("plan", "--no-write", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    header = text.splitlines()[0].split(",")
    assert "tpot_ms" in header and "tokens_per_s_per_device" in header
    assert len(rows) == 9


def test_no_write_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ok("plan", "--no-write")
    ok("plan", "--no-write", "--out", str(tmp_path / "sub"))
    assert list(tmp_path.iterdir()) == []


# ---- errors ----------------------------------------------------------------------------------


def test_tpot_not_a_time_exits_2():
    err = domain_error("plan", "--no-write", "--tpot", "abc", code=2)
    assert "--tpot" in err and "abc" in err


def test_negative_tpot_exits_2():
    # A leading '-' would be read as an option, so use the '=' form.
    err = domain_error("plan", "--no-write", "--tpot=-5", code=2)
    assert "--tpot" in err


def test_budget_below_one_node_exits_2():
    err = domain_error("plan", "--no-write", "--devices", "4", code=2)
    assert "--devices" in err


def test_impossible_tpot_says_best_achievable():
    err = domain_error("plan", "--no-write", "--tpot", "1ms", code=InfeasibleError.exit_code)
    assert "best achievable TPOT" in err and "--tpot" in err


def test_impossible_ttft_says_best_achievable():
    err = domain_error("plan", "--no-write", "--ttft", "1ms", code=InfeasibleError.exit_code)
    assert "best achievable TTFT" in err and "--ttft" in err


def test_impossible_tpot_fails_without_writing(tmp_path):
    # Whatever the message, an infeasible plan must not exit 0 nor leave a report behind.
    p = cmperf("plan", "--out", str(tmp_path), "--tpot", "1ms")
    assert p.returncode != 0
    assert list(tmp_path.iterdir()) == []


def test_usage_errors_exit_2():
    for args in (["plan", "--devices", "0"], ["plan", "--top", "0"], ["plan", "--format", "xml"], ["plan", "--eplb", "best"]):
        result = invoke(*args)
        assert result.exit_code == 2, (args, result.output)
        assert "Traceback" not in result.output and "Traceback" not in result.stderr


def test_tag_twice_needs_overwrite(tmp_path):
    ok("plan", "--out", str(tmp_path), "--tag", "x", "--tpot", "50")
    first = (tmp_path / "plan-x" / "plan.md").read_text(encoding="utf-8")
    err = domain_error("plan", "--out", str(tmp_path), "--tag", "x", "--tpot", "30", code=2)
    assert "--tag" in err and "--overwrite" in err
    assert (tmp_path / "plan-x" / "plan.md").read_text(encoding="utf-8") == first
    ok("plan", "--out", str(tmp_path), "--tag", "x", "--tpot", "30", "--overwrite")
    second = (tmp_path / "plan-x" / "plan.md").read_text(encoding="utf-8")
    assert second != first and "TPOT <= 30 ms" in second
    assert [p.name for p in plan_dirs(tmp_path)] == ["plan-x"]
    assert {p.name for p in (tmp_path / "plan-x").iterdir() if p.suffix != ".toml"} == REPORT_FILES
    assert hidden(tmp_path) == []


def test_untagged_runs_get_distinct_folders(tmp_path):
    ok("plan", "--out", str(tmp_path), "--tpot", "50", "--top", "1")
    ok("plan", "--out", str(tmp_path), "--tpot", "50", "--top", "1")
    dirs = plan_dirs(tmp_path)
    assert len(dirs) == 2
    for d in dirs:
        assert {p.name for p in d.iterdir() if p.suffix != ".toml"} == REPORT_FILES


def test_bad_tag_exits_2():
    err = domain_error("plan", "--no-write", "--tag", "../up", code=2)
    assert "--tag" in err


# ---- the printed estimate command reproduces the plan -----------------------------------------


def _run_estimate(command: str) -> dict:
    args = shlex.split(command)
    assert args[0] == "cmperf"
    return json.loads(ok(*args[1:], "--format", "json"))


def test_estimate_command_of_best_at_50ms_reproduces(default_json):
    rec = next(r for r in default_json if r["phase"] == "decode" and r["slo_tpot_ms"] == 50.0 and r["rank"] == 1)
    got = _run_estimate(rec["estimate"])
    assert got["phase"] == "decode"
    assert got["feasible"] is True
    assert got["tpot_ms"] == pytest.approx(rec["tpot_ms"], rel=REL)
    assert got["tokens_per_s_per_device"] == pytest.approx(rec["tokens_per_s_per_device"], rel=REL)


def test_estimate_command_of_best_prefill_reproduces(default_json):
    rec = next(r for r in default_json if r["phase"] == "prefill" and r["rank"] == 1)
    got = _run_estimate(rec["estimate"])
    assert got["phase"] == "prefill"
    assert got["ttft_ms"] == pytest.approx(rec["ttft_ms"], rel=REL)
    assert got["tokens_per_s_per_device"] == pytest.approx(rec["tokens_per_s_per_device"], rel=REL)


def test_estimate_command_reproduces_with_unrounded_workload():
    recs = json.loads(ok("plan", "--no-write", "--format", "json", "--tpot", "50", "--top", "1",
                         "--mtp-acceptance", "0.7123456", "--prefix-hit", "0.1234567"))["records"]
    for rec in recs:
        got = _run_estimate(rec["estimate"])
        key = "tpot_ms" if rec["phase"] == "decode" else "ttft_ms"
        assert got[key] == pytest.approx(rec[key], rel=REL), rec["estimate"]
        assert got["tokens_per_s_per_device"] == pytest.approx(rec["tokens_per_s_per_device"], rel=REL)


# ---- the deployment files a plan writes reproduce it exactly ---------------------------------------


@pytest.mark.parametrize("extra", [(), ("--tpot", "30", "--ttft", "4000", "--input-len", "3000", "--output-len", "700", "--mtp-acceptance", "0.7123456",
                                        "--prefix-hit", "0.25", "--eplb", "perfect", "--set", "scaleup.link_bandwidth_bytes_per_s=1.5e10")])
def test_every_planned_deployment_file_reproduces_the_plan_exactly(tmp_path, extra):
    recs = json.loads(ok("plan", "--out", str(tmp_path), "--tag", "rt", "--format", "json", *extra))["records"]
    folder = tmp_path / "plan-rt"
    written = {p.name for p in folder.glob("deployment-*.toml")}
    assert {r["deployment_file"] for r in recs} <= written
    assert len(recs) >= 3
    for rec in recs:
        got = json.loads(ok("estimate", "--deployment", str(folder / rec["deployment_file"]), "--format", "json"))
        key = "tpot_ms" if rec["phase"] == "decode" else "ttft_ms"
        assert got["phase"] == rec["phase"]
        assert got[key] == rec[key], rec["deployment_file"]
        assert got["tokens_per_s_per_device"] == rec["tokens_per_s_per_device"], rec["deployment_file"]
        for k in ("devices", "ep", "redundant", "attn_tp", "microbatches", "mtp", "batch", "tokens_per_device"):
            if rec[k] is not None and k in got:
                assert got[k] == rec[k], (k, rec["deployment_file"])
        if rec["phase"] == "decode":
            assert not got["pipeline_chosen"], rec["deployment_file"]  # the file gives the microbatches and the core split
            if rec["microbatches"] >= 2 and rec["attn_cores"]:
                assert got["attn_cores"] == rec["attn_cores"], rec["deployment_file"]
