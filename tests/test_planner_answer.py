"""A planner's answer: cost and power, queueing under load, terminals that fit, slide-ready plots,
and the consistency rules (several SLOs, JSON with the split and frontier, units, the paper only
where it applies)."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console
from typer.testing import CliRunner

from cmperf.cli import app
from cmperf.costs.economics import dollars_per_million_tokens, economics
from cmperf.solve.queueing import instances_for, ttft_quantile_s
from cmperf.specs.loader import load_hardware

runner = CliRunner()


def ok(*args: str, env=None) -> str:
    r = runner.invoke(app, [str(a) for a in args], env=env)
    assert r.exit_code == 0, r.output
    return r.output


# ---- cost and power ----------------------------------------------------------------------------


def test_halving_the_price_halves_dollars_per_million_tokens():
    full = json.loads(ok("capacity", "--rate", "300", "--no-write", "-f", "json"))
    half = json.loads(ok("capacity", "--rate", "300", "--no-write", "-f", "json", "--set", "cost.package_dollars_per_hour=0.5"))
    assert half["dollars_per_m_output_tokens"] == pytest.approx(full["dollars_per_m_output_tokens"] / 2, rel=1e-12)
    assert half["total_devices"] == full["total_devices"]
    assert dollars_per_million_tokens(1.0, 1000.0) == pytest.approx(2 * dollars_per_million_tokens(0.5, 1000.0))


def test_every_builtin_hardware_has_price_and_power():
    for name in ("cloudmatrix384", "h100", "h200", "h800", "h20", "b200", "gb200-nvl72"):
        e = economics(load_hardware(name))
        assert e.dollars_per_device_hour > 0 and e.watts_per_device > 0
        assert load_hardware(name).provenance["cost.package_dollars_per_hour"].kind == "assumed"


def test_plan_and_capacity_show_cost_energy_and_p99():
    out = ok("plan", "--no-write", env={"COLUMNS": "120"})
    assert "$/M" in out and "tok/J" in out or "tokens/J" in out
    assert "P99 TTFT" in out and "default" in out
    out = ok("capacity", "--rate", "1000", "--tpot", "50", "--ttft", "2s", "--no-write", env={"COLUMNS": "120"})
    assert "$/M" in out and "tokens/J" in out and "P99" in out and "headroom" in out


def test_capacity_objective_cost_never_needs_more_supernodes():
    a = json.loads(ok("capacity", "--rate", "700", "--no-write", "-f", "json"))
    b = json.loads(ok("capacity", "--rate", "700", "--no-write", "-f", "json", "--objective", "cost"))
    assert b["supernodes"] <= a["supernodes"] and b["objective"] == "cost"


# ---- queueing ----------------------------------------------------------------------------------


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 200), st.floats(0.05, 5.0), st.floats(0.5, 500.0))
def test_p99_ttft_rises_without_bound_toward_saturation_and_capacity_adds_instances(n, batch_s, mu):
    rhos = (0.5, 0.9, 0.99, 0.999, 0.99999, 1 - 1e-9)
    p99 = [ttft_quantile_s(0.99, r * n * mu, n, batch_s, mu) for r in rhos]
    assert all(b >= a for a, b in zip(p99, p99[1:]))
    assert p99[-1] > 1000 * batch_s and p99[-1] > 10 * p99[-2]  # unbounded as rho -> 1: the wait grows as 1 / (1 - rho)
    assert math.isinf(ttft_quantile_s(0.99, n * mu, n, batch_s, mu))
    slo = 3 * batch_s
    sized = [instances_for(r * n * mu, batch_s, mu, slo) for r in rhos[:5]]
    assert all(b >= a for a, b in zip(sized, sized[1:]))  # more load, more instances, never fewer
    for r, m in zip(rhos, sized):
        assert ttft_quantile_s(0.99, r * n * mu, m, batch_s, mu) <= slo


def test_capacity_meets_p99_ttft_and_the_utilisation_cap():
    d = json.loads(ok("capacity", "--rate", "1000", "--tpot", "50", "--ttft", "2s", "--max-utilisation", "0.7", "--no-write", "-f", "json"))
    assert d["prefill"]["p99_ttft_ms"] <= 2000 and d["prefill"]["p50_ttft_ms"] <= d["prefill"]["p99_ttft_ms"]
    for phase in ("prefill", "decode"):
        assert d[phase]["utilisation"] <= 0.7 + 1e-9 and d[phase]["headroom"] >= 0.3 - 1e-9


# ---- consistency -------------------------------------------------------------------------------


def test_capacity_takes_several_tpot_slos():
    d = json.loads(ok("capacity", "--rate", "200", "--tpot", "50", "--tpot", "15", "--no-write", "-f", "json"))
    assert [c["slo_tpot_ms"] for c in d["capacities"]] == [50.0, 15.0]


def test_plan_json_carries_split_and_frontier():
    d = json.loads(ok("plan", "--no-write", "-f", "json"))
    assert d["records"] and len(d["split"]) == 2 and len(d["frontier"]) > 10
    s = d["split"][0]
    assert s["under_load"]["p99_ttft_ms"] > 0 and s["economics"]["whole"]["dollars_per_m_tokens"] > 0
    assert d["slo"]["ttft_default"] is True and d["slo"]["ttft_ms"] == 2000


@pytest.mark.parametrize("args", [
    ["hardware", "show", "--set", "die.hbm_capacity_bytes=96GB", "-f", "json"],
    ["hardware", "show", "--set", "die.hbm_bandwidth_bytes_per_s=1.6TB/s", "-f", "json"],
    ["hardware", "show", "--set", "overhead.op_latency_s=50us", "-f", "json"],
])
def test_set_accepts_units(args):
    d = json.loads(ok(*args))
    key, value = args[3].split("=")
    assert d[key] == pytest.approx({"96GB": 96e9, "1.6TB/s": 1.6e12, "50us": 50e-6}[value])


def test_sweep_range_accepts_units():
    d = json.loads(ok("sweep", "workload.input_len=1k:2k:2", "--tpot", "50", "--no-write", "-f", "json"))
    rows = d["rows"] if isinstance(d, dict) else d
    assert sorted({r["workload.input_len"] for r in rows}) == [1000, 2000]


def test_units_of_the_wrong_dimension_exit_2():
    r = runner.invoke(app, ["hardware", "show", "--set", "die.hbm_capacity_bytes=1.6TB/s"])
    assert r.exit_code != 0


def test_paper_comparison_only_on_cloudmatrix384():
    out = ok("plan", "--no-write", "--hardware", "h100", "--tpot", "50", env={"COLUMNS": "120"})
    assert "paper" not in out
    assert "the paper's deployment" in ok("plan", "--no-write", env={"COLUMNS": "120"})


def test_help_has_clean_placeholders():
    for cmd in ("plan", "capacity", "compare", "sweep", "estimate"):
        text = ok(cmd, "--help")
        assert "<list[str]>" not in text and "range>" not in text and "LIST[STR]" not in text, cmd


def test_readme_tour_says_how_to_run_cmperf():
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    tour = readme[readme.index("## A short tour"):]
    assert "source .venv/bin/activate" in tour[:600] or ".venv/bin/cmperf" in tour[:600]


# ---- terminals ---------------------------------------------------------------------------------

TOUR = [["hardware", "list"], ["hardware", "show", "cloudmatrix384"], ["estimate", "decode"], ["estimate", "prefill", "--eplb", "perfect"],
        ["plan", "--no-write"], ["capacity", "--rate", "1000", "--tpot", "50", "--ttft", "2s", "--no-write"]]


@pytest.mark.parametrize("args", TOUR, ids=lambda a: " ".join(a[:2]))
def test_tour_tables_fit_100_columns_without_breaking_a_number(args):
    out = ok(*args, env={"COLUMNS": "100"})
    for line in out.splitlines():
        assert len(line.rstrip()) <= 100, line
        if line[:1] in "┏┃┡│└":
            assert line.rstrip()[-1] in "┓┃┩│┘", f"cropped: {line}"
            for cell in line.strip("│┃").split("│"):
                # a number cut at the edge of a cell would leave a dangling separator or dot
                assert not re.fullmatch(r"[-+$]?[\d,.]*\d[,.]", cell.strip()), line


# ---- plots -------------------------------------------------------------------------------------


def test_frontier_plot_png_and_svg_have_legend_ticks_and_title(tmp_path):
    ok("plan", "--out", tmp_path, "--tag", "p")
    d = tmp_path / "plan-p"
    png = (d / "frontier.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    md = (d / "plan.md").read_text(encoding="utf-8")
    assert "![tokens/s per device against TPOT](frontier.png)" in md
    svg = ET.parse(d / "frontier.svg").getroot()
    ids = {el.get("id", "") for el in svg.iter()}
    assert any(i.startswith("legend") for i in ids)
    assert sum(i.startswith("xtick_") for i in ids) >= 5 and sum(i.startswith("ytick_") for i in ids) >= 5
    text = (d / "frontier.svg").read_text(encoding="utf-8")
    assert "deepseek-r1 on cloudmatrix384" in text and "4,096-token prompts" in text


def test_default_plan_does_not_import_matplotlib_without_writing():
    code = ("import sys; from cmperf.cli import app; from typer.testing import CliRunner; "
            "r = CliRunner().invoke(app, ['plan', '--no-write']); assert r.exit_code == 0, r.output; "
            "print('matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("False")


def test_sweep_plots_have_units_baseline_and_png(tmp_path):
    ok("sweep", "die.hbm_bandwidth_bytes_per_s=0.8TB/s:3.2TB/s:3", "--tpot", "50", "--out", tmp_path, "--tag", "s")
    d = tmp_path / "sweep-s"
    assert (d / "sweep.png").read_bytes()[:4] == b"\x89PNG" and (d / "sweep-prefill.png").exists()
    text = (d / "sweep.svg").read_text(encoding="utf-8")
    assert "baseline 1.6 TB/s" in text and "TB/s" in text and "1e+12" not in text
    assert "HBM bandwidth per die" in text and "deepseek-r1 on cloudmatrix384" in text
    assert "](sweep.png)" in (d / "sweep.md").read_text(encoding="utf-8")
