"""Hypothesis properties of the cost model: monotonicity, vectorised == scalar, pipeline bounds, finiteness.

Monotonicity is only asserted where the model is monotone by construction (roofline terms, HBM
bandwidth, matrix peak, batch, context length). Comparisons allow a relative slack of 1e-12 for
floating-point round-off.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cmperf.compose.decode import evaluate_decode
from cmperf.compose.ops import Die, pipelined_layer_time_s, stream_time_s
from cmperf.costs.moe import expected_destinations, hottest_rank_load
from cmperf.costs.roofline import matmul_efficiency, roofline_time_s
from cmperf.specs.loader import load_hardware, load_model
from cmperf.evaluation import default_inputs


def decode_inputs(**kw):
    return default_inputs("decode", **kw)


def prefill_inputs(**kw):
    return default_inputs("prefill", **kw)

HW = load_hardware("cloudmatrix384")
MODEL = load_model("deepseek-r1")
SLACK = 1e-12

SET = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])

pos = st.floats(min_value=1e-3, max_value=1e18, allow_nan=False, allow_infinity=False)
rate = st.floats(min_value=1e6, max_value=1e16, allow_nan=False, allow_infinity=False)
factor = st.floats(min_value=1.0, max_value=1e3, allow_nan=False, allow_infinity=False)
latency = st.floats(min_value=0.0, max_value=1e-3, allow_nan=False, allow_infinity=False)


def le(a, b):
    """a <= b up to round-off, elementwise."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    return bool(np.all(a <= b * (1 + SLACK) + 1e-300))


# ---- roofline --------------------------------------------------------------------------------------


@SET
@given(pos, pos, rate, rate, latency, factor, factor)
def test_roofline_monotone(flops, bytes_, peak, bw, lat, f1, f2):
    t0, _ = roofline_time_s(flops, bytes_, peak, bw, lat)
    assert le(t0, roofline_time_s(flops * f1, bytes_, peak, bw, lat)[0])
    assert le(t0, roofline_time_s(flops, bytes_ * f2, peak, bw, lat)[0])
    assert le(roofline_time_s(flops, bytes_, peak * f1, bw, lat)[0], t0)
    assert le(roofline_time_s(flops, bytes_, peak, bw * f2, lat)[0], t0)
    # and it is at least each of its terms
    assert float(t0) >= max(flops / peak, bytes_ / bw, lat) * (1 - SLACK)


@SET
@given(st.lists(st.tuples(pos, pos, latency), min_size=1, max_size=8), rate, rate)
def test_roofline_vectorised_equals_scalar(rows, peak, bw):
    f, b, lat = (np.array(c) for c in zip(*rows))
    # latency is a scalar argument in the model; use the first row's for all
    tv, bv = roofline_time_s(f, b, peak, bw, lat[0])
    for i in range(len(rows)):
        ts, bs = roofline_time_s(f[i], b[i], peak, bw, lat[0])
        assert tv[i] == pytest.approx(float(ts), rel=1e-15)
        assert int(bv[i]) == int(bs)


@SET
@given(st.lists(st.tuples(st.floats(0.01, 1e5), st.floats(1, 1e5)), min_size=1, max_size=8), st.sampled_from([1, 8, 16, 32]))
def test_matmul_efficiency_vectorised_equals_scalar_and_bounded(rows, tile):
    m, k = (np.array(c) for c in zip(*rows))
    ev = matmul_efficiency(m, k, tile, 0.855, 362.0)
    for i in range(len(rows)):
        assert ev[i] == pytest.approx(float(matmul_efficiency(m[i], k[i], tile, 0.855, 362.0)), rel=1e-15)
    assert np.all((ev > 0) & (ev <= 0.855))


@SET
@given(st.lists(st.tuples(st.floats(0, 1e6), st.floats(1, 64), st.integers(1, 1024), st.floats(0, 5)), min_size=1, max_size=8))
def test_hottest_rank_load_vectorised_and_at_least_mean(rows):
    mu, c, R, s = (np.array(col, float) for col in zip(*rows))
    hv = hottest_rank_load(mu, c, R, s)
    for i in range(len(rows)):
        assert hv[i] == pytest.approx(float(hottest_rank_load(mu[i], c[i], R[i], s[i])), rel=1e-14)
    assert np.all(hv >= mu)


@SET
@given(st.lists(st.sampled_from([1, 2, 4, 8, 16, 32, 64, 128, 256, 288, 320, 512]), min_size=1, max_size=8))
def test_expected_destinations_vectorised_and_in_range(eps):
    ep = np.array(eps, float)
    dv = expected_destinations(256, 8, 4, 8, ep)
    for i, e in enumerate(eps):
        assert dv[i] == pytest.approx(float(expected_destinations(256, 8, 4, 8, e)), rel=1e-12)
    # at least one rank, at most top_k ranks, never more ranks than exist
    assert np.all(dv >= 1 - 1e-9) and np.all(dv <= np.minimum(8, ep) + 1e-9)


def test_expected_destinations_non_decreasing_in_ep():
    ep = np.array([1, 2, 4, 8, 16, 32, 64, 128, 256], float)
    d = expected_destinations(256, 8, 4, 8, ep)
    assert np.all(np.diff(d) >= -1e-9), d


# ---- two-stream pipeline -----------------------------------------------------------------------------


op_spec = st.tuples(
    st.sampled_from(["matmul", "vector", "attention", "comm"]),
    st.sampled_from([0, 1]),  # stream index
    st.floats(1, 4096),  # rows / tokens
    st.floats(0, 1e-3),  # comm seconds
)


def build_ops(specs, share_a, share_b):
    dies = (Die(HW, share_a, share_a), Die(HW, share_b, share_b))
    streams = ("attention", "moe")
    ops = []
    for kind, s, m, comm_t in specs:
        die, name = dies[s], streams[s]
        if kind == "matmul":
            ops.append(die.matmul("mm", name, "x", m, 7168, 2048, "int8", "int8"))
        elif kind == "vector":
            ops.append(die.vector("vec", name, "x", m * 7168, 6.0, 4.0))
        elif kind == "attention":
            ops.append(die.attention("att", name, "x", 2.0 * 128 * 1088 * m * 1000, m * 1000 * 1152, "bf16"))
        else:
            ops.append(die.comm("comm", name, "x", comm_t, 0.0))
    return ops, streams, dies[0].hbm_bw


@SET
@given(st.lists(op_spec, min_size=1, max_size=10), st.floats(0.1, 1.0), st.floats(0.1, 1.0), st.integers(1, 4))
def test_pipelined_layer_between_max_and_sum(specs, share_a, share_b, n):
    ops, streams, hbm_bw = build_ops(specs, share_a, share_b)
    a, b = float(stream_time_s(ops, streams[0])), float(stream_time_s(ops, streams[1]))
    t = float(pipelined_layer_time_s(ops, streams, n, hbm_bw))
    if n == 1:
        assert t == pytest.approx(a + b, rel=1e-12)
    else:
        # overlap can never beat the slower stream, nor be worse than running both serially
        assert n * max(a, b) * (1 - SLACK) <= t <= n * (a + b) * (1 + SLACK)
    assert max(a, b) * (1 - SLACK) <= t


# ---- decode ------------------------------------------------------------------------------------------

batch_st = st.integers(1, 512)
kv_st = st.integers(1, 131072)
mb_st = st.integers(1, 3)
mtp_st = st.integers(0, 2)
acc_st = st.floats(0.0, 1.0)


def decode(hw=HW, **kw):
    return evaluate_decode(hw, MODEL, decode_inputs(**kw))


def f(x):
    return float(np.asarray(x).reshape(-1)[0])


@SET
@given(st.lists(batch_st, min_size=1, max_size=6), kv_st, mb_st, mtp_st, acc_st)
def test_decode_vectorised_over_batch_equals_scalar(batches, kv, n, k, a):
    res = decode(batch=np.array(batches, float), kv_len=kv, microbatches=n, mtp=k, mtp_acceptance=a)
    tv = np.broadcast_to(res["tpot_s"], (len(batches),))
    for i, b in enumerate(batches):
        assert tv[i] == pytest.approx(f(decode(batch=b, kv_len=kv, microbatches=n, mtp=k, mtp_acceptance=a)["tpot_s"]), rel=1e-12)


@SET
@given(st.lists(kv_st, min_size=1, max_size=5), batch_st, mb_st)
def test_decode_vectorised_over_kv_len_equals_scalar(kvs, b, n):
    res = decode(batch=b, kv_len=np.array(kvs, float), microbatches=n)
    tv = np.broadcast_to(res["tpot_s"], (len(kvs),))
    for i, kv in enumerate(kvs):
        assert tv[i] == pytest.approx(f(decode(batch=b, kv_len=kv, microbatches=n)["tpot_s"]), rel=1e-12)


def test_decode_memory_vectorised_over_mtp_equals_scalar():
    ks = [0, 1, 2]
    res = decode(mtp=np.array(ks, float))
    for i, k in enumerate(ks):
        one = decode(mtp=k)
        assert res["tpot_s"][i] == pytest.approx(f(one["tpot_s"]), rel=1e-12)
        assert res["hbm_used_bytes_per_die"][i] == pytest.approx(f(one["hbm_used_bytes_per_die"]), rel=1e-12)
        assert res["max_batch_per_device"][i] == f(one["max_batch_per_device"])


@SET
@given(batch_st, st.integers(1, 256), kv_st, mb_st, mtp_st, acc_st)
def test_decode_tpot_non_decreasing_in_batch(b, db, kv, n, k, a):
    lo = decode(batch=b, kv_len=kv, microbatches=n, mtp=k, mtp_acceptance=a)
    hi = decode(batch=b + db, kv_len=kv, microbatches=n, mtp=k, mtp_acceptance=a)
    assert le(lo["tpot_s"], hi["tpot_s"])
    assert le(lo["step_s"], hi["step_s"])


@SET
@given(batch_st, kv_st, st.integers(1, 65536), mb_st, mtp_st, acc_st)
def test_decode_tpot_non_decreasing_in_kv_len(b, kv, dkv, n, k, a):
    lo = decode(batch=b, kv_len=kv, microbatches=n, mtp=k, mtp_acceptance=a)
    hi = decode(batch=b, kv_len=kv + dkv, microbatches=n, mtp=k, mtp_acceptance=a)
    assert le(lo["tpot_s"], hi["tpot_s"])


@SET
@given(batch_st, kv_st, mb_st, mtp_st, st.floats(1.0, 8.0))
def test_decode_tpot_non_increasing_in_hbm_bandwidth(b, kv, n, k, scale):
    base = decode(batch=b, kv_len=kv, microbatches=n, mtp=k)
    hw2 = HW.with_values({"die.hbm_bandwidth_bytes_per_s": HW["die.hbm_bandwidth_bytes_per_s"] * scale})
    faster = decode(hw2, batch=b, kv_len=kv, microbatches=n, mtp=k)
    assert le(faster["tpot_s"], base["tpot_s"])


@SET
@given(batch_st, kv_st, mb_st, mtp_st, st.floats(1.0, 8.0))
def test_decode_tpot_non_increasing_in_bf16_peak(b, kv, n, k, scale):
    base = decode(batch=b, kv_len=kv, microbatches=n, mtp=k)
    hw2 = HW.with_values({"die.bf16_matrix_flops_per_s": HW["die.bf16_matrix_flops_per_s"] * scale})
    faster = decode(hw2, batch=b, kv_len=kv, microbatches=n, mtp=k)
    assert le(faster["tpot_s"], base["tpot_s"])


@SET
@given(batch_st, kv_st, mb_st, mtp_st, acc_st)
def test_decode_throughput_times_tpot_is_batch_and_all_finite(b, kv, n, k, a):
    res = decode(batch=b, kv_len=kv, microbatches=n, mtp=k, mtp_acceptance=a)
    assert f(res["tokens_per_s_per_device"]) * f(res["tpot_s"]) == pytest.approx(b, rel=1e-9)
    assert f(res["tokens_per_s_per_die"]) * HW["package.dies"] == pytest.approx(f(res["tokens_per_s_per_device"]), rel=1e-12)
    for key in ("tpot_s", "step_s", "layer_s", "tokens_per_step", "tokens_per_s_per_device", "hbm_used_bytes_per_die", "max_batch_per_device", "fill_s"):
        v = np.asarray(res[key], float)
        assert np.all(np.isfinite(v)), (key, v)
    assert f(res["tpot_s"]) > 0 and f(res["step_s"]) >= f(res["tpot_s"]) * (1 - SLACK)
    for op in res["ops"]:
        assert np.all(np.isfinite(np.asarray(op.time_s, float))) and np.all(np.asarray(op.time_s) >= 0), op.name


def test_prefill_vectorised_over_mtp_equals_scalar():
    from cmperf.compose.prefill import evaluate_prefill

    ks = [0, 1]
    res = evaluate_prefill(HW, MODEL, prefill_inputs(mtp=np.array(ks, float)))
    for i, k in enumerate(ks):
        one = evaluate_prefill(HW, MODEL, prefill_inputs(mtp=k))
        assert np.broadcast_to(res["ttft_s"], (2,))[i] == pytest.approx(f(one["ttft_s"]), rel=1e-12)
        assert np.broadcast_to(res["hbm_used_bytes_per_die"], (2,))[i] == pytest.approx(f(one["hbm_used_bytes_per_die"]), rel=1e-12)


# ---- GEMM on a GPU file: more SMs never slow it ----------------------------------------------------

H100 = load_hardware(str(Path(__file__).resolve().parents[2] / "hardware" / "h100.toml"))
gemm_dim = st.integers(min_value=1, max_value=40000)
dtypes = st.sampled_from(["fp8", "bf16"])


@SET
@given(gemm_dim, gemm_dim, gemm_dim, st.integers(1, 64), dtypes, st.floats(0.01, 1.0), st.floats(0.01, 1.0))
def test_gemm_never_slower_when_a_stream_holds_more_sms(m, n, k, groups, dtype, s1, s2):
    """A stream's share of the SMs (communication takes the rest): a larger share is never slower."""
    lo, hi = sorted((s1, s2))
    t_lo = Die(H100, matrix_share=lo).matmul("g", "s", "s", float(m), float(k), float(n), dtype, dtype, groups=float(groups)).time_s
    t_hi = Die(H100, matrix_share=hi).matmul("g", "s", "s", float(m), float(k), float(n), dtype, dtype, groups=float(groups)).time_s
    assert le(t_hi, t_lo)


@SET
@given(gemm_dim, gemm_dim, gemm_dim, dtypes, st.integers(132, 400), st.integers(132, 400))
def test_gemm_never_slower_on_a_die_with_more_sms_at_the_same_per_sm_rate(m, n, k, dtype, c1, c2):
    """More SMs of the same kind (peak grows with them): never slower."""
    lo, hi = sorted((c1, c2))

    def t(cores):
        scale = cores / H100["die.matrix_cores"]
        hw = H100.with_values({"die.matrix_cores": cores, f"die.{dtype}_matrix_flops_per_s": H100[f"die.{dtype}_matrix_flops_per_s"] * scale})
        return Die(hw).matmul("g", "s", "s", float(m), float(k), float(n), dtype, dtype).time_s

    assert le(t(hi), t(lo))


@SET
@given(st.lists(st.integers(1, 20000), min_size=2, max_size=2), st.sampled_from([8, 16, 32, 64]))
def test_padded_rows_never_fall_as_m_grows(ms, small):
    lo, hi = sorted(ms)
    from cmperf.costs.roofline import padded_rows

    assert float(padded_rows(lo, 64, small)) <= float(padded_rows(hi, 64, small))
    assert float(padded_rows(lo, 64, small)) >= lo


@SET
@given(st.lists(st.floats(0.0, 1e5), min_size=1, max_size=20), st.sampled_from([8, 16, 64, 128]))
def test_padded_rows_with_one_layout_is_the_two_branch_formula(ms, tile):
    """Where the small-M tile is the engine tile (or none is given), both branches are the same
    numbers: the one-branch form gives them bit for bit."""
    from cmperf.costs.roofline import padded_rows

    m = np.maximum(np.asarray(ms, dtype=float), 1e-12)
    two = np.where(m <= tile, np.ceil(m / tile) * tile, np.ceil(m / tile) * tile)
    assert np.array_equal(padded_rows(ms, tile), two) and np.array_equal(padded_rows(ms, tile, tile), two)
