"""Hypothesis properties of the what-if layer.

- more UB bandwidth (every UB key scaled together) never raises decode TPOT or prefill TTFT;
- less HBM bandwidth never lowers decode TPOT;
- capacity is monotone in the rate, never more than doubles when the rate doubles, and at rates
  of whole supernodes doubles within the rounding of whole instances (1.6x - 2.4x);
- the refined (continuous-batch) optimum is never below the grid's, and both meet the SLO;
- sweep axes: whole-number keys give distinct whole numbers inside [START, STOP];
- prefix caching: loading cached KV over UB beats VPC, and both beat recomputation.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cmperf.compose.decode import evaluate_decode
from cmperf.compose.prefill import evaluate_prefill
from cmperf.costs.moe import placement
from cmperf.whatif.capacity import capacity
from cmperf.whatif.core import UB_BANDWIDTH_PATTERNS, apply_scales, best, refined_best, scenario, set_value
from cmperf.whatif.sweep import parse_axis
from cmperf.evaluation import default_inputs


def decode_inputs(**kw):
    return default_inputs("decode", **kw)


def prefill_inputs(**kw):
    return default_inputs("prefill", **kw)

SET = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEW = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLACK = 1e-12

BASE = scenario()
BASE50 = scenario(tpot_ms=(50.0,))


#: Every (devices, EP, redundant experts) of one-EP-group instances of whole nodes up to a supernode.
STRUCTURES = [(d, 2 * d, r) for d in range(8, 385, 8) for r in (0, 32, 64, 128) if bool(placement(256, 1, 2 * d, r)["valid"])]


def structure():
    return st.sampled_from(STRUCTURES)


@st.composite
def decode_point(draw):
    devices, ep, red = draw(structure())
    return dict(devices=devices, ep=ep, redundant=red, batch=float(draw(st.integers(1, 400))),
                kv_len=float(draw(st.integers(64, 100_000))), microbatches=draw(st.integers(1, 3)), mtp=draw(st.integers(0, 2)),
                mtp_acceptance=draw(st.floats(0.0, 1.0)), attn_tp=draw(st.sampled_from([1, 2, 4, 8])))


@st.composite
def prefill_point(draw):
    devices, ep, red = draw(structure())
    return dict(devices=devices, ep=ep, redundant=red, tokens_per_device=float(2 ** draw(st.integers(10, 17))),
                input_len=float(draw(st.integers(128, 100_000))), microbatches=draw(st.integers(1, 3)), mtp=1,
                attn_tp=draw(st.sampled_from([1, 2, 4, 8])), prefix_hit=draw(st.floats(0.0, 0.99)),
                cache_path=draw(st.sampled_from(["ub", "vpc"])))


def _ub(factor: float):
    return apply_scales(BASE, [f"{p}={factor}" for p in UB_BANDWIDTH_PATTERNS], "--variant-scale")


UB2 = _ub(2.0)


@SET
@given(decode_point())
def test_doubling_ub_bandwidth_never_raises_decode_tpot(p):
    a = float(np.asarray(evaluate_decode(BASE.hw, BASE.model, decode_inputs(**p))["tpot_s"]).reshape(-1)[0])
    b = float(np.asarray(evaluate_decode(UB2.hw, UB2.model, decode_inputs(**p))["tpot_s"]).reshape(-1)[0])
    assert b <= a * (1 + SLACK)


@FEW
@given(decode_point(), st.floats(1.0, 8.0))
def test_more_ub_bandwidth_never_raises_decode_tpot(p, factor):
    v = _ub(factor)
    a = float(np.asarray(evaluate_decode(BASE.hw, BASE.model, decode_inputs(**p))["tpot_s"]).reshape(-1)[0])
    b = float(np.asarray(evaluate_decode(v.hw, v.model, decode_inputs(**p))["tpot_s"]).reshape(-1)[0])
    assert b <= a * (1 + SLACK)


@SET
@given(prefill_point())
def test_doubling_ub_bandwidth_never_raises_prefill_ttft(p):
    a = float(np.asarray(evaluate_prefill(BASE.hw, BASE.model, prefill_inputs(**p))["ttft_s"]).reshape(-1)[0])
    b = float(np.asarray(evaluate_prefill(UB2.hw, UB2.model, prefill_inputs(**p))["ttft_s"]).reshape(-1)[0])
    assert b <= a * (1 + SLACK)


@SET
@given(decode_point(), st.floats(0.1, 1.0))
def test_less_hbm_bandwidth_never_lowers_decode_tpot(p, factor):
    v = apply_scales(BASE, [f"die.hbm_bandwidth_bytes_per_s={factor}"], "--variant-scale")
    a = float(np.asarray(evaluate_decode(BASE.hw, BASE.model, decode_inputs(**p))["tpot_s"]).reshape(-1)[0])
    b = float(np.asarray(evaluate_decode(v.hw, v.model, decode_inputs(**p))["tpot_s"]).reshape(-1)[0])
    assert b >= a * (1 - SLACK)


@SET
@given(st.floats(1.0, 5000.0), st.floats(1.0, 3.0))
def test_capacity_is_monotone_and_never_more_than_doubles(rate, k):
    a = capacity(BASE50, rate)
    b = capacity(BASE50, rate * k)
    assert b["total_devices"] >= a["total_devices"]
    d2 = capacity(BASE50, 2 * rate)["total_devices"]
    assert d2 <= 2 * a["total_devices"]  # the same instances, twice over, always serve twice the rate
    for r in (a, b):
        for phase in ("prefill", "decode"):
            assert 0 < r[phase]["utilisation"] <= 1 + 1e-9


@SET
@given(st.floats(100.0, 5000.0))
def test_capacity_doubles_with_the_rate_within_instance_rounding(rate):
    a = capacity(BASE50, rate)["total_devices"]
    b = capacity(BASE50, 2 * rate)["total_devices"]
    assert 1.6 <= b / a <= 2.4


@SET
@given(st.floats(10.0, 200.0))
def test_refined_optimum_is_at_least_the_grid_optimum(slo_ms):
    sc = set_value(BASE, "slo.tpot_ms", slo_ms, allow_slo=True)
    rec = best(sc, prefill=False)["decode"][0]
    fine = refined_best(sc, "decode", slo_ms)
    if rec is None:
        assert np.isnan(fine)
        return
    assert rec["latency_ms"] <= slo_ms * (1 + SLACK)
    assert fine >= rec["tokens_per_s_per_device"] * (1 - SLACK)
    assert fine <= rec["tokens_per_s_per_device"] * 1.25  # a refinement of the batch, not a different answer


@SET
@given(st.integers(1, 5000), st.integers(1, 5000), st.integers(2, 1000))
def test_integer_sweep_axis_is_distinct_whole_numbers_in_range(a, b, steps):
    if a == b:
        b = a + 1
    ax = parse_axis(f"workload.output_len={a}:{b}:{steps}", BASE)
    vals = list(ax.values)
    assert all(isinstance(v, int) for v in vals)
    assert len(set(vals)) == len(vals) <= steps
    assert min(a, b) <= min(vals) and max(vals) <= max(a, b)
    assert vals[0] == a and vals[-1] == b


@SET
@given(st.floats(1e11, 1e13), st.floats(1e11, 1e13), st.integers(2, 50))
def test_float_sweep_axis_has_every_step_and_exact_ends(a, b, steps):
    if a == b:
        b = a * 2
    ax = parse_axis(f"die.hbm_bandwidth_bytes_per_s={a!r}:{b!r}:{steps}", BASE)
    assert len(ax.values) == steps
    assert ax.values[0] == pytest.approx(a, rel=1e-15) and ax.values[-1] == pytest.approx(b, rel=1e-15)


@SET
@given(st.lists(st.floats(0.01, 0.999), min_size=1, max_size=5), st.sampled_from([2048, 4096, 16384]))
def test_prefix_cache_load_beats_recompute_and_ub_beats_vpc(hits, input_len):
    from cmperf.whatif.cache import cache_table

    sc = set_value(BASE, "workload.input_len", input_len)
    for r in cache_table(sc, hits)["rows"]:
        assert r["load_ub_ms"] <= r["load_vpc_ms"]
        assert r["ttft_ub_ms"] <= r["ttft_vpc_ms"] * (1 + SLACK)
        assert r["ttft_ub_ms"] <= r["ttft_recompute_ms"] * (1 + SLACK)
        assert r["tokens_per_s_per_device_ub"] >= r["tokens_per_s_per_device_vpc"] * (1 - SLACK)
