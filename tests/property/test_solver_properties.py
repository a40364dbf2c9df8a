"""Hypothesis properties of the solver: SLO and budget monotonicity, and every planned record
re-evaluating, through `cmperf.evaluation.estimate`, to the same feasible numbers.

Grids and plans are cached per parameter so that the few examples stay fast.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cmperf.evaluation import estimate as _estimate
from cmperf.solve.plan import PlanRequest, plan
from cmperf.solve.search import decode_grid, ranked
from cmperf.specs.loader import load_hardware, load_model


def estimate(phase, hardware=None, model=None, opts=None):
    """The result arrays of `cmperf.evaluation.estimate` for a phase, with fields given as a dict."""
    return _estimate(phase, hardware, model, **(opts or {})).result


HW = load_hardware("cloudmatrix384")
MODEL = load_model("deepseek-r1")
REL = 1e-9

SET = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)

BUDGETS = (8, 16, 32, 48, 96, 160, 256, 384)


@functools.lru_cache(maxsize=None)
def grid(budget: int, max_batch: int = 1024):
    return decode_grid(HW, MODEL, budget, 4096, 256, 0.7, max_batch=max_batch)


def best_metric(g, slo_s: float) -> float:
    top = ranked(g, slo_s, 1)
    return float(g.metric.reshape(-1)[top[0]]) if top else -math.inf


slo_ms = st.floats(min_value=8.0, max_value=80.0, allow_nan=False, allow_infinity=False)


@SET
@given(a=slo_ms, b=slo_ms)
def test_tighter_tpot_slo_never_raises_best_throughput(a, b):
    g = grid(384)
    tight, loose = sorted((a, b))
    assert best_metric(g, tight * 1e-3) <= best_metric(g, loose * 1e-3)
    # And the best deployment under the tighter SLO also meets the looser one.
    top = ranked(g, tight * 1e-3, 1)
    if top:
        assert g.latency_s.reshape(-1)[top[0]] <= loose * 1e-3


def _structures(g) -> set:
    s = g.axes["structure"]
    return set(zip(s.devices.tolist(), s.ep.tolist(), s.redundant.tolist()))


@SET
@given(b1=st.sampled_from(BUDGETS), b2=st.sampled_from(BUDGETS), slo=slo_ms)
def test_bigger_budget_never_lowers_best_throughput(b1, b2, slo):
    small, big = sorted((b1, b2))
    gs, gb = grid(small, 256), grid(big, 256)
    assert _structures(gs) <= _structures(gb)
    assert best_metric(gs, slo * 1e-3) <= best_metric(gb, slo * 1e-3)


# ---- every planned record is feasible and reproducible by `estimate` ---------------------------


@functools.lru_cache(maxsize=None)
def cached_plan(req_key: tuple):
    budget, tpots, ttft, input_len, output_len, acc = req_key
    req = PlanRequest(tpot_ms=tpots, ttft_ms=ttft, input_len=input_len, output_len=output_len, mtp_acceptance=acc, devices=budget, top=2)
    return req, plan(req)


# Every request here is feasible: the tightest TPOT SLO (20 ms) is above the best TPOT of the
# smallest budget (about 16 ms with 16 devices) and every TTFT SLO is far above the best TTFT.
plan_keys = st.tuples(
    st.sampled_from((16, 32, 96, 384)),
    st.sampled_from(((50.0,), (25.0, 80.0), (30.0, 50.0), (20.0, 50.0), (80.0,))),
    st.sampled_from((None, 8000.0, 20000.0)),
    st.sampled_from((1024, 4096)),
    st.sampled_from((128, 512)),
    st.sampled_from((0.6, 0.7, 0.9)),
)


def _check_record(rec: dict, req: PlanRequest):
    opts = dict(
        devices=rec["devices"], ep=rec["ep"], redundant=rec["redundant"], attn_tp=rec["attn_tp"], microbatches=rec["microbatches"],
        attention_matrix_cores=rec["attn_cores"] if rec["phase"] == "decode" and rec["microbatches"] >= 2 else None, mtp=rec["mtp"], batch=rec["batch"], tokens_per_device=rec["tokens_per_device"], input_len=req.input_len,
        output_len=req.output_len, eplb=req.eplb,
        # Each phase takes only its own workload options.
        mtp_acceptance=req.mtp_acceptance if rec["phase"] == "decode" else None,
        prefix_hit=req.prefix_hit if rec["phase"] == "prefill" else None,
    )
    res = estimate(rec["phase"], req.hardware, req.model, opts)
    assert bool(np.asarray(res["feasible"]).reshape(-1)[0]), rec
    tps = float(np.asarray(res["tokens_per_s_per_device"]).reshape(-1)[0])
    assert tps == pytest.approx(rec["tokens_per_s_per_device"], rel=REL)
    if rec["phase"] == "decode":
        tpot_ms = float(np.asarray(res["tpot_s"]).reshape(-1)[0]) * 1e3
        assert tpot_ms == pytest.approx(rec["tpot_ms"], rel=REL)
        assert rec["tpot_ms"] <= rec["slo_tpot_ms"]
        assert tpot_ms <= rec["slo_tpot_ms"] * (1 + REL)
        assert rec["tokens_per_device"] is None and rec["batch"] >= 1
    else:
        ttft_ms = float(np.asarray(res["ttft_s"]).reshape(-1)[0]) * 1e3
        assert ttft_ms == pytest.approx(rec["ttft_ms"], rel=REL)
        if req.ttft_ms is not None:
            assert rec["ttft_ms"] <= req.ttft_ms
        assert rec["batch"] is None and rec["tokens_per_device"] >= 1
    assert rec["devices"] <= (req.devices or 384)
    assert rec["dp"] == rec["devices"] * HW["package.dies"] // rec["attn_tp"]


@SET
@given(key=plan_keys)
def test_every_planned_record_is_feasible(key):
    req, result = cached_plan(key)
    recs = result.records
    n_decode = sum(1 for r in recs if r["phase"] == "decode")
    assert n_decode >= len(req.tpot_ms)
    assert any(r["phase"] == "prefill" for r in recs)
    for rec in recs + result.paper:
        _check_record(rec, req)
    for s in result.sizing:
        assert s["devices_used"] <= result.budget
        assert s["requests_per_s"] > 0
