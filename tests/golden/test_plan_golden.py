"""Golden checks of the default plan (PlanRequest()): it meets each SLO, finds at least the paper's
deployments (cm384: 1,943 tokens/s per NPU at 50 ms TPOT, 538 at 15 ms; 10% slack for the model),
and reports complete records from a large enough search.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cmperf.report.plan import RECORD_KEYS, records
from cmperf.solve.plan import PlanRequest, plan
from cmperf.solve.search import decode_grid

PAPER_TOKENS_PER_S = {50.0: 1943.0, 15.0: 538.0}
REQUIRED = {"phase", "slo_tpot_ms", "tpot_ms", "ttft_ms", "tokens_per_s_per_device", "devices", "ep", "dp", "batch", "microbatches",
            "mtp", "binding"}


@pytest.fixture(scope="module")
def result():
    return plan(PlanRequest())


def decode_records(result, slo=None):
    return [r for r in result.records if r["phase"] == "decode" and (slo is None or r["slo_tpot_ms"] == slo)]


def test_default_request_is_the_paper_question(result):
    req = result.request
    assert req.tpot_ms == (15.0, 50.0)
    assert (req.input_len, req.output_len, req.mtp_acceptance) == (4096, 256, 0.7)
    assert result.budget == 384


def test_meets_each_slo(result):
    for slo in result.request.tpot_ms:
        recs = decode_records(result, slo)
        assert [r["rank"] for r in recs] == [1, 2, 3]
        for r in recs:
            assert 0 < r["tpot_ms"] <= slo
            assert r["ttft_ms"] is None
        tps = [r["tokens_per_s_per_device"] for r in recs]
        assert tps == sorted(tps, reverse=True)
    prefill = [r for r in result.records if r["phase"] == "prefill"]
    assert [r["rank"] for r in prefill] == [1, 2, 3]
    for r in prefill:
        assert r["ttft_ms"] > 0 and r["tpot_ms"] is None


@pytest.mark.parametrize("slo", [50.0, 15.0])
def test_finds_at_least_the_papers_throughput(result, slo):
    best = decode_records(result, slo)[0]
    assert best["rank"] == 1
    assert best["tokens_per_s_per_device"] >= PAPER_TOKENS_PER_S[slo] * 0.9


@pytest.mark.parametrize("slo", [50.0, 15.0])
def test_best_beats_the_papers_structure(result, slo):
    paper = [p for p in result.paper if p["phase"] == "decode" and p["slo_tpot_ms"] == slo]
    assert len(paper) == 1
    assert paper[0]["devices"] == 160 and paper[0]["ep"] == 320 and paper[0]["mtp"] == 1
    assert paper[0]["tpot_ms"] <= slo
    assert decode_records(result, slo)[0]["tokens_per_s_per_device"] >= paper[0]["tokens_per_s_per_device"]


def test_every_record_has_the_required_keys(result):
    assert len(result.records) == 2 * 3 + 3
    for r in result.records:
        missing = REQUIRED - set(r)
        assert not missing, missing
        assert isinstance(r["binding"], str) and r["binding"]
        assert r["dp"] == r["devices"] * 2 // r["attn_tp"]
        assert r["devices"] <= result.budget
    for r in records(result):
        assert set(r) == set(RECORD_KEYS)
        assert REQUIRED <= set(r)


def test_decode_grid_is_large(result):
    assert result.decode_grid_size >= 100_000
    assert result.prefill_grid_size > 1_000


def test_decode_records_say_how_they_differ_from_the_paper(result):
    for r in result.records:
        assert isinstance(r["vs_paper"], str) and r["vs_paper"].strip()
        assert isinstance(r["estimate"], str) and r["estimate"].startswith(f"cmperf estimate {r['phase']} ")


def test_sizing_per_slo(result):
    assert [s["slo_tpot_ms"] for s in result.sizing] == list(result.request.tpot_ms)
    for s in result.sizing:
        assert s["requests_per_s"] > 0
        assert s["devices_used"] + s["idle_devices"] == result.budget
        assert s["prefill_utilisation"] <= 1 + 1e-12 and s["decode_utilisation"] <= 1 + 1e-12


def test_frontier_is_non_dominated_on_the_full_grid(result):
    g = decode_grid(result.hw, result.model, result.budget, 4096, 256, 0.7)
    lat = np.where(g.ok, g.latency_s, np.inf).reshape(-1)
    thr = np.where(g.ok, g.metric, -np.inf).reshape(-1)
    front = result.frontier
    assert len(front) > 10
    tpot = [p["tpot_ms"] for p in front]
    tps = [p["tokens_per_s_per_device"] for p in front]
    assert tpot == sorted(tpot)
    assert all(b > a for a, b in zip(tps, tps[1:]))
    for p in front:
        assert not np.any((lat * 1e3 <= p["tpot_ms"]) & (thr > p["tokens_per_s_per_device"]))
    # Each SLO's best deployment lies on or under the frontier at that SLO.
    for slo in result.request.tpot_ms:
        best = decode_records(result, slo)[0]["tokens_per_s_per_device"]
        assert best == pytest.approx(max(t for t, x in zip(tps, tpot) if x <= slo), rel=1e-12)


# ---- stored answer --------------------------------------------------------------------------------
# tests/data/plan_default.json is the default plan's full answer (records, the paper's points, the
# P/D split, the frontier). The search may change how it walks the candidates, never what it finds:
# a change in the cost model that moves the answer regenerates it with
# `python tests/golden/test_plan_golden.py`.

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "plan_default.json"


def snapshot(result) -> dict:
    def plain(o):
        if isinstance(o, dict):  # the Deployment object is the record's fields again, as a value type
            return {k: plain(v) for k, v in o.items() if k not in ("deployment_obj", "workload_obj", "workload")}
        if isinstance(o, (list, tuple)):
            return [plain(v) for v in o]
        return o.item() if hasattr(o, "item") else o
    return {"request": "PlanRequest()", "budget": result.budget, "records": plain(result.records), "paper": plain(result.paper),
            "sizing": plain(result.sizing), "frontier": plain(result.frontier)}


def test_answer_identical_to_the_stored_one(result):
    want = json.loads(FIXTURE.read_text())
    got = json.loads(json.dumps(snapshot(result)))
    for key in want:
        assert got[key] == want[key], key


if __name__ == "__main__":
    FIXTURE.write_text(json.dumps(snapshot(plan(PlanRequest())), indent=1, sort_keys=True) + "\n")
