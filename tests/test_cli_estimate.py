"""CLI tests of `cmperf estimate`: formats, the breakdown adding up, input errors, infeasible batches.

Usage errors (out-of-range option, bad choice) are typer's own and are tested on `app` with
CliRunner; domain errors (CmperfError) become exit codes only in `cmperf.cli.main`, so they are run
as a subprocess `python -m cmperf ...`.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from cmperf.cli import app

runner = CliRunner()
ENV = {"COLUMNS": "250"}

DECODE_KEYS = {"phase", "tpot_ms", "step_ms", "layer_us", "tokens_per_s_per_device", "tokens_per_s_per_die", "hbm_used_bytes_per_die", "feasible", "breakdown"}


def invoke(*args: str):
    return runner.invoke(app, list(args), env=ENV)


def ok(*args: str) -> str:
    result = invoke(*args)
    assert result.exit_code == 0, (result.output, result.exception)
    assert "Traceback" not in result.output
    return result.stdout


def as_json(*args: str) -> dict:
    return json.loads(ok("estimate", *args, "--format", "json"))


def cmperf(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cmperf", *args], capture_output=True, text=True, env={**os.environ, **ENV}, timeout=60)


def usage_error(*args: str) -> str:
    """typer's own usage error: exit 2, a message on stderr naming the option, no traceback."""
    result = invoke(*args)
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    assert result.stdout == ""
    return result.stderr


# ---- table -------------------------------------------------------------------------------------


def test_decode_table_prints_tpot():
    out = ok("estimate", "decode")
    m = re.search(r"TPOT (\d+\.\d+) ms", out)
    assert m, out
    assert 30 < float(m.group(1)) < 70
    assert "tokens/s per device" in out
    assert "Per-operator breakdown" in out and "HBM budget per die" in out
    assert "fits" in out and "DOES NOT FIT" not in out


def test_prefill_table_prints_ttft():
    out = ok("estimate", "prefill")
    assert re.search(r"TTFT \d+\.\d+ ms", out), out
    assert "tokens/s per device" in out


# ---- json --------------------------------------------------------------------------------------


def test_decode_json_keys_and_breakdown_adds_up():
    rec = as_json("decode")
    assert DECODE_KEYS <= set(rec), DECODE_KEYS - set(rec)
    assert rec["phase"] == "decode"
    assert rec["feasible"] is True
    assert isinstance(rec["breakdown"], list) and len(rec["breakdown"]) > 10
    total = sum(r["ms_per_step"] for r in rec["breakdown"])
    assert total == pytest.approx(rec["step_ms"], rel=1e-6)
    assert sum(r["share_pct"] for r in rec["breakdown"]) == pytest.approx(100.0, rel=1e-6)
    assert rec["tokens_per_s_per_device"] * rec["tpot_ms"] / 1e3 == pytest.approx(96, rel=1e-9)
    assert rec["tokens_per_s_per_die"] * 2 == pytest.approx(rec["tokens_per_s_per_device"], rel=1e-12)
    assert 0 < rec["hbm_used_bytes_per_die"] <= rec["hbm_capacity_bytes_per_die"]


def test_prefill_json_keys_and_breakdown_adds_up():
    rec = as_json("prefill")
    assert (DECODE_KEYS - {"tpot_ms"}) | {"ttft_ms"} <= set(rec)
    assert rec["phase"] == "prefill"
    assert rec["ttft_ms"] > rec["step_ms"] > 0  # TTFT adds the KV transfer to the batch time
    total = sum(r["ms_per_step"] for r in rec["breakdown"])
    assert total == pytest.approx(rec["step_ms"], rel=1e-6)


@pytest.mark.parametrize("args", [("decode", "--batch", "8", "--microbatches", "1"), ("decode", "--microbatches", "3", "--mtp", "2"), ("prefill", "--eplb", "perfect"), ("prefill", "--microbatches", "1")])
def test_breakdown_adds_up_for_other_deployments(args):
    rec = as_json(*args)
    assert sum(r["ms_per_step"] for r in rec["breakdown"]) == pytest.approx(rec["step_ms"], rel=1e-6)


# ---- csv and markdown ----------------------------------------------------------------------------


@pytest.mark.parametrize("phase", ["decode", "prefill"])
def test_csv(phase):
    out = ok("estimate", phase, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert rows and {"operator", "scope", "ms_per_step", "bound"} <= set(rows[0])
    step = as_json(phase)["step_ms"]
    assert sum(float(r["ms_per_step"]) for r in rows) == pytest.approx(step, rel=1e-6)


@pytest.mark.parametrize("phase", ["decode", "prefill"])
def test_markdown(phase):
    out = ok("estimate", phase, "--format", "md")
    assert "| operator" in out and "|---" in out
    assert "HBM capacity" in out
    assert ("TPOT" in out) if phase == "decode" else ("TTFT" in out)


# ---- errors --------------------------------------------------------------------------------------


def test_ep_not_a_divisor_is_a_domain_error():
    cp = cmperf("estimate", "decode", "--ep", "7")
    assert cp.returncode == 2, (cp.returncode, cp.stdout, cp.stderr)
    assert cp.stdout == ""
    assert cp.stderr.startswith("cmperf: error: ")
    assert "--ep" in cp.stderr and "7" in cp.stderr
    assert "Traceback" not in cp.stderr


def test_placement_error_is_a_domain_error():
    # 320 dies, EP 64: 288 instances are not divisible by 64 and 64 < 289, so no layout exists.
    cp = cmperf("estimate", "decode", "--ep", "64", "--redundant", "32")
    assert cp.returncode == 2, (cp.returncode, cp.stdout, cp.stderr)
    assert "--ep/--redundant" in cp.stderr and "Traceback" not in cp.stderr


@pytest.mark.parametrize(
    "args, option",
    [
        (("--batch", "0"), "--batch"),
        (("--mtp-acceptance", "1.5"), "--mtp-acceptance"),
        (("--eplb", "foo"), "--eplb"),
    ],
)
def test_usage_errors_exit_2(args, option):
    err = usage_error("estimate", "decode", *args)
    assert option in err


def test_usage_error_via_subprocess_has_no_traceback():
    cp = cmperf("estimate", "decode", "--batch", "0")
    assert cp.returncode == 2
    assert "--batch" in cp.stderr and "Traceback" not in cp.stderr


# ---- infeasible batch and overrides ----------------------------------------------------------------


def test_batch_too_large_does_not_fit():
    rec = as_json("decode", "--batch", "2000")
    assert rec["feasible"] is False
    assert rec["hbm_used_bytes_per_die"] > rec["hbm_capacity_bytes_per_die"]
    largest = rec["max_batch_per_device"]
    assert 96 <= largest < 2000
    out = ok("estimate", "decode", "--batch", "2000")
    assert "DOES NOT FIT" in out
    assert re.search(r"largest batch that fits: ([\d,]+) per device", out).group(1).replace(",", "") == str(largest)
    # the reported largest batch does fit, and one more device-batch step does not
    assert as_json("decode", "--batch", str(largest))["feasible"] is True
    assert as_json("decode", "--batch", str(largest + 2))["feasible"] is False


def test_set_lower_hbm_bandwidth_raises_tpot():
    base = as_json("decode")["tpot_ms"]
    slow = as_json("decode", "--set", "die.hbm_bandwidth_bytes_per_s=0.8e12")["tpot_ms"]
    assert slow > base


def test_set_unknown_key_is_a_domain_error():
    cp = cmperf("estimate", "decode", "--set", "die.hbm_bandwith_bytes_per_s=1e12")
    assert cp.returncode == 2 and "Traceback" not in cp.stderr
    assert "die.hbm_bandwidth_bytes_per_s" in cp.stderr  # the suggestion
