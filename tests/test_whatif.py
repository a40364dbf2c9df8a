"""CLI tests of the what-if commands: compare, sweep, sensitivity, capacity, cache.

Usage errors (typer's own) and successful runs go through CliRunner on `app`; domain errors
(CmperfError) become exit codes only in `cmperf.cli.main`, so they run as `python -m cmperf ...`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cmperf.cli import app
from cmperf.whatif.core import UB_BANDWIDTH_PATTERNS

runner = CliRunner()
ENV = {"COLUMNS": "250"}


def ok(*args: str) -> str:
    result = runner.invoke(app, [str(a) for a in args], env=ENV)
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout


def ok_json(*args: str):
    return json.loads(ok(*args, "--format", "json"))


def cmperf(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **ENV}
    return subprocess.run([sys.executable, "-m", "cmperf", *args], capture_output=True, text=True, env=env, timeout=120)


def svg_ok(path: Path) -> None:
    root = ET.parse(path).getroot()
    assert root.tag.endswith("svg")
    lines = root.findall(".//{http://www.w3.org/2000/svg}polyline")
    lines += [g for g in root.iter("{http://www.w3.org/2000/svg}g") if g.get("id", "").startswith("line2d")]  # matplotlib
    assert lines, f"{path} has no line"


def csv_rows(path: Path) -> list[dict]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))


# ---- the model answers the questions the what-if commands rest on ------------------------------


def _tpot(*sets: str) -> float:
    args = ["estimate", "decode"]
    for s in sets:
        args += ["--set", s]
    return ok_json(*args)["tpot_ms"]


def test_halving_hbm_bandwidth_raises_decode_tpot_at_the_paper_deployment():
    base = _tpot()
    halved = _tpot("die.hbm_bandwidth_bytes_per_s=0.8e12")
    assert halved > base * 1.05


def _ub_sets(factor: float) -> list[str]:
    from cmperf.whatif.core import apply_scales, scenario

    sc = apply_scales(scenario(), [f"{p}={factor}" for p in UB_BANDWIDTH_PATTERNS], "--variant-scale")
    return [o.split(" ")[0] for o in sc.overrides]


def test_doubling_ub_bandwidth_never_raises_decode_tpot_at_the_paper_deployment():
    sets = _ub_sets(2.0)
    assert len(sets) >= 7  # link, 4 measured read/write, 2 fitted dispatch/combine, pool read
    assert _tpot(*sets) <= _tpot()


def test_light_replan_matches_plan():
    """The what-if commands skip plan()'s explanations, not its answer."""
    from cmperf.solve.plan import PlanRequest, plan
    from cmperf.whatif.core import best, scenario

    res = plan(PlanRequest(tpot_ms=(15.0, 50.0), top=1))  # the plan's default TTFT SLO applies: give the same one
    light = best(scenario(tpot_ms=(15.0, 50.0), ttft_ms=res.request.ttft_ms))
    for slo, rec in zip((15.0, 50.0), light["decode"]):
        ref = next(r for r in res.records if r["phase"] == "decode" and r["slo_tpot_ms"] == slo and r["rank"] == 1)
        assert rec["tokens_per_s_per_device"] == pytest.approx(ref["tokens_per_s_per_device"], rel=1e-12)
        assert (rec["devices"], rec["ep"], rec["batch"]) == (ref["devices"], ref["ep"], ref["batch"])
    ref = next(r for r in res.records if r["phase"] == "prefill" and r["rank"] == 1)
    assert light["prefill"]["tokens_per_s_per_device"] == pytest.approx(ref["tokens_per_s_per_device"], rel=1e-12)


# ---- compare -----------------------------------------------------------------------------------


def test_compare_writes_csv_markdown_and_svg(tmp_path):
    out = ok("compare", "--variant-set", "die.hbm_capacity_bytes=128e9", "--out", tmp_path, "--tag", "t")
    assert "baseline" in out and "variant" in out and "delta" in out
    folder = tmp_path / "compare-t"
    assert {p.name for p in folder.iterdir()} >= {"compare.csv", "compare.md", "compare.svg"}
    rows = csv_rows(folder / "compare.csv")
    assert [r["phase"] for r in rows] == ["decode", "decode", "prefill"]
    assert all(r["binding_change"] for r in rows)
    svg_ok(folder / "compare.svg")
    md = (folder / "compare.md").read_text()
    assert "compare.svg" in md and "die.hbm_capacity_bytes=128e9" in md


def test_compare_halved_ub_lowers_throughput_and_names_the_change():
    args = ["compare", "--no-write", "--tpot", "15", "--tpot", "50"]
    for p in UB_BANDWIDTH_PATTERNS:
        args += ["--variant-scale", f"{p}=0.5"]
    rows = ok_json(*args)
    dec = [r for r in rows if r["phase"] == "decode"]
    assert len(dec) == 2
    assert all(r["delta_pct"] < -1.0 for r in dec)
    assert all(r["variant_tokens_per_s_per_device"] < r["baseline_tokens_per_s_per_device"] for r in dec)
    assert all(isinstance(r["binding_change"], str) and r["binding_change"] for r in rows)


def test_compare_set_applies_to_both_and_variant_hardware_alone_changes_nothing():
    rows = ok_json("compare", "--no-write", "--tpot", "50", "--set", "die.hbm_capacity_bytes=96e9", "--variant-hardware", "cloudmatrix384")
    for r in rows:
        assert r["delta_pct"] == pytest.approx(0.0, abs=1e-9)
        assert r["binding_change"] == "unchanged"


def test_compare_workload_keys_reach_the_variant():
    rows = ok_json("compare", "--no-write", "--tpot", "50", "--variant-set", "workload.input_len=32768")
    assert all(r["delta_pct"] < -30 for r in rows)  # 8x longer prompts: much less of everything per device


def test_compare_reports_an_slo_the_variant_cannot_meet():
    rows = ok_json("compare", "--no-write", "--tpot", "13", "--tpot", "50", "--variant-set", "workload.input_len=131072")
    r15 = rows[0]
    assert r15["variant_tokens_per_s_per_device"] is None and r15["binding_change"] == "variant no longer meets the SLO"
    assert rows[1]["variant_tokens_per_s_per_device"] > 0


# ---- sweep -------------------------------------------------------------------------------------


def test_sweep_writes_table_csv_and_svg(tmp_path):
    out = ok("sweep", "die.hbm_bandwidth_bytes_per_s=1.2e12:2.0e12:3", "--tpot", "50", "--out", tmp_path, "--tag", "s")
    assert "die.hbm_bandwidth_bytes_per_s" in out
    folder = tmp_path / "sweep-s"
    rows = csv_rows(folder / "sweep.csv")
    assert len(rows) == 3
    thr = [float(r["decode_tokens_per_s_per_device"]) for r in rows]
    assert thr == sorted(thr)  # more HBM bandwidth, more decode throughput
    svg_ok(folder / "sweep.svg")
    svg_ok(folder / "sweep-prefill.svg")
    assert "sweep.svg" in (folder / "sweep.md").read_text()


def test_sweep_two_keys_one_line_per_value_of_the_second(tmp_path):
    ok("sweep", "workload.prefix_hit=0:0.6:3", "slo.tpot_ms=20:50:2", "--out", tmp_path, "--tag", "two")
    folder = tmp_path / "sweep-two"
    rows = csv_rows(folder / "sweep.csv")
    assert len(rows) == 6
    svg = (folder / "sweep.svg").read_text()
    assert "tpot_ms = 20" in svg and "tpot_ms = 50" in svg
    hit = {float(r["workload.prefix_hit"]): float(r["prefill_tokens_per_s_per_device"]) for r in rows}
    assert hit[0.0] < hit[0.3] < hit[0.6]  # cached tokens skip compute


def test_sweep_rounds_integer_keys():
    rows = ok_json("sweep", "workload.input_len=1000:1003:5", "--tpot", "50", "--no-write")
    values = [r["workload.input_len"] for r in rows]
    assert values == [1000, 1001, 1002, 1003]
    assert all(isinstance(v, int) for v in values)


def test_sweep_unmet_slo_is_none_and_a_note_not_an_error():
    result = runner.invoke(app, ["sweep", "slo.tpot_ms=5:50:2", "--no-write", "--format", "json"], env=ENV)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert rows[0]["decode_tokens_per_s_per_device"] is None and "no deployment meets TPOT" in rows[0]["note"]
    assert rows[1]["decode_tokens_per_s_per_device"] > 0


def test_sweep_with_a_progress_bar_and_mtp_search_key():
    # > 5 points shows a (transient, stderr) progress bar; it must not disturb stdout. In-process: the
    # parallel path has its own tests (test_parallel.py).
    rows = ok_json("sweep", "search.max_mtp=0:3:4", "slo.tpot_ms=20:40:2", "--no-write", "--workers", "1")
    assert len(rows) == 8
    by = {(r["search.max_mtp"], r["slo_tpot_ms"]): r["decode_tokens_per_s_per_device"] for r in rows}
    assert by[(3, 20.0)] >= by[(0, 20.0)]  # a larger search space never loses


def test_sweep_of_20_points_gives_a_row_per_point_and_slo():
    # Its speed is measured by benchmarks/bench.py, not asserted here.
    from cmperf.whatif.core import scenario
    from cmperf.whatif.sweep import parse_axes, run_sweep

    base = scenario()
    axes = parse_axes(["die.hbm_bandwidth_bytes_per_s=1e12:3e12:20"], base)
    result = run_sweep(base, axes)
    assert len(result["rows"]) == 40


# ---- sensitivity -------------------------------------------------------------------------------


def test_sensitivity_prints_a_ranked_table():
    out = ok("sensitivity", "--key", "die.hbm_bandwidth_bytes_per_s", "--key", "scaleup.read_bandwidth_intra_bytes_per_s",
             "--key", "moe_comm.dispatch_startup_s", "--tpot", "15", "--no-write")
    assert "rank" in out and "verdict" in out
    assert out.index("die.hbm_bandwidth_bytes_per_s") < out.index("scaleup.read_bandwidth_intra_bytes_per_s")


def test_sensitivity_signs_verdicts_and_one_sided_fractions():
    rows = ok_json("sensitivity", "--key", "die.hbm_bandwidth_bytes_per_s", "--key", "scaleup.read_bandwidth_intra_bytes_per_s",
                   "--key", "overhead.op_latency_s", "--key", "efficiency.hbm_frac", "--set", "efficiency.hbm_frac=0.95",
                   "--tpot", "15", "--no-write", "--workers", "1")
    by = {r["key"]: r for r in rows}
    assert [r["rank"] for r in rows] == [1, 2, 3, 4]
    assert by["die.hbm_bandwidth_bytes_per_s"]["e decode @ 15 ms"] > 0.1
    assert by["die.hbm_bandwidth_bytes_per_s"]["verdict"] == "pays off"
    assert by["overhead.op_latency_s"]["e decode @ 15 ms"] < -0.02
    assert by["overhead.op_latency_s"]["verdict"] == "pays off to cut"
    assert by["scaleup.read_bandwidth_intra_bytes_per_s"]["verdict"].startswith("does not matter")
    assert by["efficiency.hbm_frac"]["method"] == "one-sided"  # 0.95 x 1.1 would leave (0, 1]
    assert "e prefill" in rows[0]


# ---- capacity ----------------------------------------------------------------------------------


def test_capacity_json_has_the_keys():
    d = ok_json("capacity", "--rate", "100", "--input-len", "4096", "--output-len", "256", "--tpot", "50", "--no-write")
    for k in ("total_devices", "prefill_devices", "decode_devices", "supernodes"):
        assert isinstance(d[k], int) and d[k] > 0
    assert d["total_devices"] == d["prefill_devices"] + d["decode_devices"]
    assert d["supernodes"] >= math.ceil(d["total_devices"] / d["devices_per_supernode"])
    for phase in ("prefill", "decode"):
        p = d[phase]
        assert 0 < p["utilisation"] <= 1 and p["headroom"] == pytest.approx(1 - p["utilisation"])
        assert p["devices"] == p["instances"] * p["devices_per_instance"]
        assert p["load_tokens_per_s_per_device"] <= p["capacity_tokens_per_s_per_device"] * (1 + 1e-9)


def test_capacity_doubling_the_rate_roughly_doubles_the_devices():
    a = ok_json("capacity", "--rate", "200", "--tpot", "50", "--no-write")["total_devices"]
    b = ok_json("capacity", "--rate", "400", "--tpot", "50", "--no-write")["total_devices"]
    assert 1.6 <= b / a <= 2.4


def test_capacity_prefix_cache_saves_prefill_devices_and_vpc_costs_more_than_ub():
    base = ok_json("capacity", "--rate", "300", "--tpot", "50", "--no-write")["prefill_devices"]
    ub = ok_json("capacity", "--rate", "300", "--tpot", "50", "--prefix-hit", "0.5", "--no-write")["prefill_devices"]
    vpc = ok_json("capacity", "--rate", "300", "--tpot", "50", "--prefix-hit", "0.5", "--cache-path", "vpc", "--no-write")["prefill_devices"]
    assert ub < base and ub <= vpc


def test_capacity_table_and_files(tmp_path):
    out = ok("capacity", "--rate", "50", "--tpot", "30", "--ttft", "5s", "--out", tmp_path, "--tag", "c")
    assert "supernode" in out and "headroom" in out
    assert json.loads((tmp_path / "capacity-c" / "capacity.json").read_text())["total_devices"] > 0
    assert len(csv_rows(tmp_path / "capacity-c" / "capacity.csv")) == 2


# ---- cache -------------------------------------------------------------------------------------


def test_cache_load_beats_recompute_and_ub_beats_vpc(tmp_path):
    rows = ok_json("cache", "--hits", "0,0.5,0.9", "--no-write")
    assert [r["prefix_hit"] for r in rows] == [0.0, 0.5, 0.9]
    r0 = rows[0]
    assert r0["ttft_ub_ms"] == pytest.approx(r0["ttft_recompute_ms"]) and r0["load_ub_ms"] == 0
    for r in rows[1:]:
        assert r["load_ub_ms"] < r["load_vpc_ms"] < r["recompute_ms"]
        assert r["ttft_ub_ms"] < r["ttft_vpc_ms"] < r["ttft_recompute_ms"]
        assert r["tokens_per_s_per_device_ub"] > r["tokens_per_s_per_device_recompute"]
    ok("cache", "--out", tmp_path, "--tag", "k")
    folder = tmp_path / "cache-k"
    assert len(csv_rows(folder / "cache.csv")) == 10
    svg_ok(folder / "cache.svg")


# ---- bad input: exit 2, one message naming the option or argument, no traceback ---------------

BAD = [
    (["sweep"], "SPEC"),
    (["sweep", "die.hbm_bandwidth_bytes_per_s=1e12:2e12"], "sweep argument 'die.hbm_bandwidth_bytes_per_s=1e12:2e12'"),
    (["sweep", "die.hbm_bandwidth_bytes_per_s=1e12:2e12:1"], "STEPS between 2 and 1000"),
    (["sweep", "die.hbm_bandwidth_bytes_per_s=1e12:2e12:1001"], "STEPS between 2 and 1000"),
    (["sweep", "die.hbm_bandwith_bytes_per_s=1e12:2e12:3"], "did you mean die.hbm_bandwidth_bytes_per_s"),
    (["sweep", "efficiency.hbm_frac=0.5:1.5:3"], "expected a fraction in (0, 1]"),
    (["sweep", "workload.input_len=4096:200000:3"], "sweep argument"),
    (["sweep", "a=1:2:3", "b=1:2:3", "c=1:2:3"], "SPEC"),
    (["compare"], "--variant-set"),
    (["compare", "--variant-set", "die.hbm_capacity=1"], "--variant-set"),
    (["compare", "--variant-set", "die.hbm_capacity_bytes=-5"], "--variant-set die.hbm_capacity_bytes"),
    (["compare", "--variant-hardware", "nope"], "--variant-hardware"),
    (["compare", "--variant-scale", "nothing.*=2"], "--variant-scale"),
    (["compare", "--variant-set", "x.y=1", "--set", "die.hbm_capacity_bytes=abc"], "--set die.hbm_capacity_bytes"),
    (["capacity", "--rate", "0"], "--rate"),
    (["capacity", "--rate", "10", "--tpot", "1"], "--tpot"),
    (["sensitivity", "--key", "nothing"], "--key"),
    (["cache", "--hits", "0:1:3"], "--hits"),
    (["sweep", "slo.tpot_ms=10:50:3", "--tag", "../x"], "--tag"),
]


@pytest.mark.parametrize("args,where", BAD, ids=[" ".join(a)[:60] for a, _ in BAD])
def test_bad_input_exits_2_naming_the_option(args, where):
    cp = cmperf(*args, "--no-write")
    assert cp.returncode == 2, (cp.returncode, cp.stdout, cp.stderr)
    assert "Traceback" not in cp.stderr and "Traceback" not in cp.stdout
    assert cp.stderr.startswith("cmperf: error: "), cp.stderr
    assert where in cp.stderr
    assert cp.stdout == ""


@pytest.mark.parametrize("args,option", [
    (["capacity"], "--rate"),
    (["capacity", "--rate", "10", "--prefix-hit", "1.5"], "--prefix-hit"),
    (["capacity", "--rate", "10", "--cache-path", "nvme"], "--cache-path"),
    (["sensitivity", "--step", "0"], "--step"),
    (["compare", "--format", "xml"], "--format"),
])
def test_usage_errors_exit_2(args, option):
    result = runner.invoke(app, args, env=ENV)
    assert result.exit_code == 2
    assert option in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


# ---- what-ifs search in streamed chunks, with the whole grid's answers -----------------------------


def test_whatif_decode_search_answers_as_the_whole_grid(monkeypatch):
    """best(), refined_best() and the frontier on the streamed search equal the dense grid's."""
    import numpy as np

    from cmperf.solve import stream
    from cmperf.solve.records import record
    from cmperf.solve.search import decode_grid, pareto_front, ranked
    from cmperf.whatif import core

    monkeypatch.setattr(stream, "DECODE_BYTES_PER_CANDIDATE", stream.CHUNK_BYTES / (3 * 17_424))  # chunks of three structures
    core._DECODE.clear()
    sc = core.scenario(devices=64, tpot_ms=(20.0, 50.0))
    dense = decode_grid(sc.hw, sc.model, 64, sc.input_len, sc.output_len, sc.mtp_acceptance, mtp_choices=core.mtp_choices(sc))
    got = core.best(sc, prefill=False)["decode"]
    dies = sc.hw["package.dies"]
    for t, rec in zip(sc.tpot_ms, got):
        assert rec == record(dense, ranked(dense, t * 1e-3, 1)[0], t, dies)
    streamed = core.decode_grid_for(sc)
    assert streamed.size == dense.size and streamed.searched is not None  # streamed, every candidate counted
    front = lambda g: sorted((float(g.latency_s.reshape(-1)[i]), float(g.metric.reshape(-1)[i])) for i in pareto_front(g))
    assert front(streamed) == front(dense)
    for t in sc.tpot_ms:
        a = [record(dense, f, t, dies) for f in ranked(dense, t * 1e-3, core.RANKED_TOP)]
        b = [record(streamed, f, t, dies) for f in ranked(streamed, t * 1e-3, core.RANKED_TOP)]
        assert a == b
    assert np.isfinite(core.refined_best(sc, "decode", 50.0))


def test_sweep_over_the_slo_shares_one_decode_search(monkeypatch):
    from cmperf.solve import stream
    from cmperf.whatif import core
    from cmperf.whatif.sweep import parse_axes, run_sweep

    calls = []
    real = stream.decode_search
    monkeypatch.setattr(stream, "decode_search", lambda *a, **k: calls.append(k["slos"]) or real(*a, **k))
    core._DECODE.clear()
    base = core.scenario(devices=32)
    res = run_sweep(base, parse_axes(["slo.tpot_ms=20:60:5"], base), workers=1)
    assert len(calls) == 1 and len(calls[0]) == 5
    assert len(res["rows"]) == 5
