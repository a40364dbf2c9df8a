"""Parallel what-ifs give exactly the serial answers: sweep, sensitivity and compare with two
worker processes against one, and the order-keeping map they share."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from cmperf.cli import app
from cmperf.whatif import parallel
from cmperf.whatif.compare import compare
from cmperf.whatif.core import scenario, set_value
from cmperf.whatif.sensitivity import sensitivity
from cmperf.whatif.sweep import parse_axes, run_sweep


def _square(x):
    return x * x


def test_run_keeps_order_and_counts_progress():
    ticks = []
    assert parallel.run(_square, range(23), 2, lambda: ticks.append(1)) == [x * x for x in range(23)]
    assert len(ticks) == 23
    assert parallel.run(_square, [3], 4) == [9]
    assert parallel.run(_square, [], 2) == []


def test_sweep_parallel_equals_serial():
    base = scenario(devices=64)  # small grids: the check is equality, not speed
    axes = parse_axes(["die.hbm_bandwidth_bytes_per_s=1.2e12:2e12:3", "slo.tpot_ms=20:50:2"], base)
    one, two = run_sweep(base, axes, workers=1), run_sweep(base, axes, workers=2)
    assert one["rows"] == two["rows"] and one["notes"] == two["notes"]


def test_sensitivity_and_compare_parallel_equal_serial():
    base = scenario(tpot_ms=(30.0,), devices=64)
    keys = ["die.hbm_bandwidth_bytes_per_s", "efficiency.hbm_frac"]
    a, b = sensitivity(base, 0.1, keys, workers=1), sensitivity(base, 0.1, keys, workers=2)
    assert a["rows"] == b["rows"] and a["base"] == b["base"]
    variant = set_value(base, "die.hbm_bandwidth_bytes_per_s", 2e12)
    c, d = compare(base, variant, workers=1), compare(base, variant, workers=2)
    assert c["rows"] == d["rows"] and c["frontier"] == d["frontier"]


def test_cli_workers_option():
    r = CliRunner().invoke(app, ["sweep", "workload.prefix_hit=0:0.5:2", "--tpot", "50", "--devices", "64", "--workers", "2", "--no-write", "--format", "json"])
    assert r.exit_code == 0, r.output
    assert len(json.loads(r.stdout)) == 2
    r = CliRunner().invoke(app, ["sweep", "workload.prefix_hit=0:0.5:2", "--workers", "0", "--no-write"])
    assert r.exit_code == 2
