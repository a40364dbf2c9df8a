"""Unit tests of the deployment solver: the vectorised grid search against a brute-force loop,
the prefill/decode split, the Pareto frontier, what limits a deployment, and atomic report writing.

The brute-force checks call the cost model once per point with scalar inputs: every point of the
small prefill grid, and a seeded sample of the decode grid (a 16-device budget and batches up to
40: about 27,000 points, of which 1,500 are evaluated alone, always including the grid's corners).
"""

from __future__ import annotations

import itertools
import math
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from cmperf.compose.decode import evaluate_decode, pipelines
from cmperf.compose.prefill import evaluate_prefill
from cmperf.errors import InfeasibleError, SpecError
from cmperf.report.files import write_run_dir
from cmperf.solve.search import (
    DECODE_AXES, PREFILL_AXES, best_latency_s, best_per_deployment, decode_grid, decode_grid_deployment, limit_reason, params_at, pareto_front, prefill_grid, ranked,
)
from cmperf.solve.plan import PlanRequest, plan
from cmperf.solve.sizing import best_split
from cmperf.solve.space import MICROBATCH_CHOICES, PREFILL_TOKENS_CHOICES, batch_grid, structures
from cmperf.specs.loader import load_hardware, load_model
from cmperf.evaluation import default_inputs


def decode_inputs(**kw):
    return default_inputs("decode", **kw)


def prefill_inputs(**kw):
    return default_inputs("prefill", **kw)

HW = load_hardware("cloudmatrix384")
MODEL = load_model("deepseek-r1")
INPUT_LEN, OUTPUT_LEN, ACCEPTANCE = 4096, 256, 0.7
BUDGET = 16  # two instance sizes (8 and 16 devices), eight structures
MAX_BATCH = 40
REL = 1e-9


# ---- fixtures: small grids and their brute-force twins ----------------------------------------


@pytest.fixture(scope="module")
def small_decode():
    return decode_grid(HW, MODEL, BUDGET, INPUT_LEN, OUTPUT_LEN, ACCEPTANCE, max_batch=MAX_BATCH)


@pytest.fixture(scope="module")
def small_prefill():
    return prefill_grid(HW, MODEL, BUDGET, INPUT_LEN)


BRUTE_SAMPLE = 1500


@pytest.fixture(scope="module")
def brute_decode():
    """A seeded sample of (structure, attn_tp, (microbatches, attention cores), mtp, batch) points,
    each evaluated alone with scalar inputs; the grid's corners are always in it."""
    st = structures(HW, MODEL, BUDGET)
    pipes = pipelines(HW)
    mtps = (0, 1, 2)
    batches = batch_grid(MAX_BATCH)
    kv_len = INPUT_LEN + OUTPUT_LEN / 2.0
    shape = (len(st), 4, len(pipes), len(mtps), len(batches))
    rng = np.random.default_rng(7)
    corners = [np.ravel_multi_index(c, shape) for c in itertools.product(*[(0, n - 1) for n in shape])]
    flats = np.unique(np.concatenate([corners, rng.choice(int(np.prod(shape)), BRUTE_SAMPLE, replace=False)]))
    tpot, tps, ok = [], [], []
    for flat in flats:
        s, tp, p, k, b = np.unravel_index(flat, shape)
        inp = decode_inputs(
            devices=float(st.devices[s]), ep=float(st.ep[s]), redundant=float(st.redundant[s]), attn_tp=float((1, 2, 4, 8)[tp]),
            microbatches=float(pipes[p][0]), attn_cores=float(pipes[p][1]), mtp=float(mtps[k]), batch=float(batches[b]), kv_len=kv_len,
            mtp_acceptance=ACCEPTANCE, eplb_perfect=False, extra={"max_context": INPUT_LEN + OUTPUT_LEN},
        )
        r = evaluate_decode(HW, MODEL, inp)
        tpot.append(float(np.asarray(r["tpot_s"])))
        tps.append(float(np.asarray(r["tokens_per_s_per_device"])))
        ok.append(bool(np.asarray(r["valid"])) and bool(np.asarray(r["fits"])))
    return {"shape": shape, "flat": flats, "tpot_s": np.array(tpot), "tps": np.array(tps), "ok": np.array(ok)}


@pytest.fixture(scope="module")
def brute_prefill():
    st = structures(HW, MODEL, BUDGET)
    toks = [t for t in PREFILL_TOKENS_CHOICES if t >= HW["package.dies"]]
    ttft, tps, ok = [], [], []
    for s, tp, mb, tok in itertools.product(range(len(st)), (1, 2, 4, 8), MICROBATCH_CHOICES, toks):
        inp = prefill_inputs(
            devices=float(st.devices[s]), ep=float(st.ep[s]), redundant=float(st.redundant[s]), attn_tp=float(tp),
            microbatches=float(mb), tokens_per_device=float(tok), input_len=INPUT_LEN, mtp=1, prefix_hit=0.0,
            cache_path="ub", eplb_perfect=False,
        )
        r = evaluate_prefill(HW, MODEL, inp)
        ttft.append(float(np.asarray(r["ttft_s"])))
        tps.append(float(np.asarray(r["tokens_per_s_per_device"])))
        ok.append(bool(np.asarray(r["valid"])) and bool(np.asarray(r["fits"])))
    shape = (len(st), 4, len(MICROBATCH_CHOICES), len(toks))
    return {"ttft_s": np.array(ttft).reshape(shape), "tps": np.array(tps).reshape(shape), "ok": np.array(ok).reshape(shape)}


def _brute_argmax(metric: np.ndarray, latency: np.ndarray, ok: np.ndarray, slo: float | None) -> int | None:
    """The first (C order) feasible point of highest metric, by a plain Python loop."""
    best, best_i = -math.inf, None
    for i, (m, lat, good) in enumerate(zip(metric.reshape(-1), latency.reshape(-1), ok.reshape(-1))):
        if good and (slo is None or lat <= slo) and m > best:
            best, best_i = m, i
    return best_i


# ---- vectorised search == brute force ---------------------------------------------------------


def test_decode_grid_axes_are_the_searched_space(small_decode):
    g = small_decode
    st = structures(HW, MODEL, BUDGET)
    assert g.phase == "decode"
    assert g.shape == (len(st), 4, len(pipelines(HW)), 3, MAX_BATCH)
    assert g.size == int(np.prod(g.shape))
    np.testing.assert_array_equal(g.axes["structure"].devices, st.devices)
    np.testing.assert_array_equal(g.axes["structure"].ep, st.ep)
    np.testing.assert_array_equal(g.axes["structure"].redundant, st.redundant)
    np.testing.assert_array_equal(g.axes["batch"], np.arange(1, MAX_BATCH + 1))
    assert set(st.devices) == {8.0, 16.0}
    for name in DECODE_AXES[1:]:
        assert g.axes[name].ndim == 1


def test_decode_grid_equals_brute_force(small_decode, brute_decode):
    g = small_decode
    assert brute_decode["shape"] == g.shape
    f = brute_decode["flat"]
    np.testing.assert_allclose(g.latency_s.reshape(-1)[f], brute_decode["tpot_s"], rtol=REL, atol=0)
    np.testing.assert_allclose(g.metric.reshape(-1)[f], brute_decode["tps"], rtol=REL, atol=0)
    np.testing.assert_array_equal(g.ok.reshape(-1)[f], brute_decode["ok"])
    # The sample exercises both feasible and out-of-HBM points, and every pipeline choice.
    assert brute_decode["ok"].any() and (~brute_decode["ok"]).any()
    assert set(np.unravel_index(f, g.shape)[2]) == set(range(g.shape[2]))


@pytest.mark.parametrize("slo", [0.020, 0.030])
def test_decode_argmax_under_slo_equals_brute_force(small_decode, brute_decode, slo):
    g = small_decode
    # A plain loop over the grid's own arrays (checked against scalar runs above) finds the best.
    i = _brute_argmax(g.metric, g.latency_s, g.ok, slo)
    assert i is not None
    top = ranked(g, slo, 1)
    assert len(top) == 1
    assert params_at(g, top[0]) == params_at(g, i)
    assert g.latency_s.reshape(-1)[top[0]] <= slo
    assert g.metric.reshape(-1)[top[0]] == pytest.approx(g.metric.reshape(-1)[i], rel=REL)
    # ... and the winner, run alone with scalar inputs, gives the same throughput.
    p = params_at(g, top[0])
    alone = evaluate_decode(HW, MODEL, decode_inputs(
        devices=p["devices"], ep=p["ep"], redundant=p["redundant"], attn_tp=p["attn_tp"], microbatches=p["microbatches"],
        attn_cores=p["attn_cores"], mtp=p["mtp"], batch=p["batch"], kv_len=INPUT_LEN + OUTPUT_LEN / 2.0, mtp_acceptance=ACCEPTANCE,
        extra={"max_context": INPUT_LEN + OUTPUT_LEN}))
    assert float(alone["tokens_per_s_per_device"]) == pytest.approx(g.metric.reshape(-1)[top[0]], rel=REL)


def test_decode_ranked_is_sorted_distinct_and_feasible(small_decode):
    g = small_decode
    slo = 0.030
    top = ranked(g, slo, 10)
    assert len(top) == 10
    vals = [g.metric.reshape(-1)[i] for i in top]
    assert vals == sorted(vals, reverse=True)
    deployments = {tuple(np.unravel_index(i, g.shape)[:-1]) for i in top}
    assert len(deployments) == len(top)  # one point per deployment
    for i in top:
        assert g.ok.reshape(-1)[i] and g.latency_s.reshape(-1)[i] <= slo


def test_decode_ranked_empty_when_slo_impossible(small_decode):
    assert ranked(small_decode, 1e-6, 3) == []


def test_prefill_grid_equals_brute_force(small_prefill, brute_prefill):
    g = small_prefill
    assert g.phase == "prefill"
    assert g.shape == brute_prefill["ttft_s"].shape
    assert g.fixed == {"mtp": 1}
    np.testing.assert_allclose(g.latency_s, brute_prefill["ttft_s"], rtol=REL, atol=0)
    np.testing.assert_allclose(g.metric, brute_prefill["tps"], rtol=REL, atol=0)
    np.testing.assert_array_equal(g.ok, brute_prefill["ok"])
    assert g.ok.any() and (~g.ok).any()
    for name in PREFILL_AXES[1:]:
        assert g.axes[name].ndim == 1


@pytest.mark.parametrize("slo", [None, 2.0, 5.0])
def test_prefill_argmax_equals_brute_force(small_prefill, brute_prefill, slo):
    g = small_prefill
    i = _brute_argmax(brute_prefill["tps"], brute_prefill["ttft_s"], brute_prefill["ok"], slo)
    assert i is not None
    top = ranked(g, slo, 1)
    assert params_at(g, top[0]) == params_at(g, i)
    assert params_at(g, top[0])["mtp"] == 1


def test_best_per_deployment_matches_loop(small_decode):
    g = small_decode
    slo = 0.025
    best, flat = best_per_deployment(g, slo)
    assert best.shape == g.shape[:-1]
    feasible = g.ok & (g.latency_s <= slo)
    for lead in itertools.product(*(range(n) for n in g.shape[:-1])):
        vals = [g.metric[lead + (j,)] if feasible[lead + (j,)] else -math.inf for j in range(g.shape[-1])]
        assert best[lead] == max(vals)
        if math.isfinite(max(vals)):
            assert np.unravel_index(flat[lead], g.shape)[:-1] == lead
            assert g.metric.reshape(-1)[flat[lead]] == max(vals)


def test_params_at_decode_round_trip(small_decode):
    g = small_decode
    flat = int(np.ravel_multi_index((5, 2, 1, 2, 7), g.shape))
    st = g.axes["structure"]
    assert params_at(g, flat) == {
        "devices": int(st.devices[5]), "ep": int(st.ep[5]), "redundant": int(st.redundant[5]),
        "attn_tp": 4, "microbatches": 2, "attn_cores": pipelines(HW)[1][1], "mtp": 2, "batch": 8,
    }


# ---- best_split ---------------------------------------------------------------------------------


def test_best_split_hand_computed():
    # Prefill instance: 16 devices x 1000 tok/s / 1000 input tokens = 16 requests/s.
    # Decode instance: 32 devices x 500 tok/s / 100 output tokens = 160 requests/s.
    # 96 devices: n_d = 1 leaves 64 -> n_p = 4 -> min(64, 160) = 64 req/s;
    #             n_d = 2 leaves 32 -> n_p = 2 -> min(32, 320) = 32 req/s. Best: 4 x 16 + 1 x 32.
    s = best_split(96, [16], [1000.0], [32], [500.0], 1000, 100)
    assert s is not None
    assert s["prefill_instances"] == 4 and s["prefill_devices_per_instance"] == 16
    assert s["decode_instances"] == 1 and s["decode_devices_per_instance"] == 32
    assert s["requests_per_s"] == pytest.approx(64.0, rel=1e-12)
    assert s["devices_used"] == 96 and s["idle_devices"] == 0
    assert s["prefill_utilisation"] == pytest.approx(1.0, rel=1e-12)
    assert s["decode_utilisation"] == pytest.approx(64.0 / 160.0, rel=1e-12)
    assert s["output_tokens_per_s_per_device"] == pytest.approx(64.0 * 100 / 96, rel=1e-12)
    assert s["input_tokens_per_s_per_device"] == pytest.approx(64.0 * 1000 / 96, rel=1e-12)
    assert s["prefill_option"] == 0 and s["decode_option"] == 0


def test_best_split_picks_between_options():
    # Prefill options: 8 dev @ 1000 (8 req/s) or 16 dev @ 1200 (19.2 req/s).
    # Decode options: 8 dev @ 400 (32 req/s) or 32 dev @ 450 (144 req/s). Output 100, input 1000.
    # Budget 64: 16-dev prefill x3 (57.6) + 8-dev decode x2 (64) = 64 devices -> 57.6 req/s;
    # 8-dev prefill x6 (48) + 8-dev decode x2 (64) -> 48; 16x2 + 32x1 -> 38.4. Best 57.6.
    s = best_split(64, [8, 16], [1000.0, 1200.0], [8, 32], [400.0, 450.0], 1000, 100)
    assert s["requests_per_s"] == pytest.approx(57.6, rel=1e-12)
    assert (s["prefill_instances"], s["prefill_devices_per_instance"], s["prefill_option"]) == (3, 16, 1)
    assert (s["decode_instances"], s["decode_devices_per_instance"], s["decode_option"]) == (2, 8, 0)
    assert s["idle_devices"] == 0


def test_best_split_none_when_nothing_fits():
    assert best_split(24, [16], [1000.0], [16], [500.0], 1000, 100) is None
    assert best_split(96, [], [], [32], [500.0], 1000, 100) is None
    assert best_split(96, [16], [1000.0], [], [], 1000, 100) is None


@pytest.mark.parametrize("seed", range(6))
def test_best_split_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    budget = int(rng.choice([32, 64, 96, 128, 200]))
    p_dev = list(rng.choice([8, 16, 24, 32], size=int(rng.integers(1, 4))))
    d_dev = list(rng.choice([8, 16, 32, 64], size=int(rng.integers(1, 4))))
    p_tps = list(rng.uniform(500, 6000, size=len(p_dev)))
    d_tps = list(rng.uniform(100, 2500, size=len(d_dev)))
    inp, out = int(rng.integers(100, 5000)), int(rng.integers(10, 1000))
    best = -math.inf
    for (P, xp), (D, xd) in itertools.product(zip(p_dev, p_tps), zip(d_dev, d_tps)):
        for n_p in range(1, budget // P + 1):
            for n_d in range(1, (budget - n_p * P) // D + 1):
                best = max(best, min(n_p * xp * P / inp, n_d * xd * D / out))
    s = best_split(budget, p_dev, p_tps, d_dev, d_tps, inp, out)
    if not math.isfinite(best):
        assert s is None
        return
    assert s["requests_per_s"] == pytest.approx(best, rel=1e-9)
    used = s["prefill_instances"] * s["prefill_devices_per_instance"] + s["decode_instances"] * s["decode_devices_per_instance"]
    assert used == s["devices_used"] <= budget
    assert s["idle_devices"] == budget - used
    assert 0 < s["prefill_utilisation"] <= 1 + 1e-12 and 0 < s["decode_utilisation"] <= 1 + 1e-12


# ---- Pareto frontier ----------------------------------------------------------------------------


def _check_frontier(g, front):
    lat, thr, ok = g.latency_s.reshape(-1), g.metric.reshape(-1), g.ok.reshape(-1)
    assert len(front) > 0
    assert len(set(front.tolist())) == len(front)
    assert ok[front].all()
    flat_lat, flat_thr = lat[ok], thr[ok]
    # No feasible point has lower-or-equal TPOT and strictly higher tokens/s than a frontier point.
    for f in front:
        assert not np.any((flat_lat <= lat[f]) & (flat_thr > thr[f])), params_at(g, int(f))
    # Sorted by TPOT, tokens/s strictly increases.
    fl, ft = lat[front], thr[front]
    order = np.argsort(fl, kind="stable")
    assert np.all(np.diff(ft[order]) > 0)
    assert np.all(np.diff(fl[order]) > 0)
    # Completeness: every feasible point is weakly dominated by some frontier point.
    dominated = np.zeros(len(flat_lat), bool)
    for f in front:
        dominated |= (lat[f] <= flat_lat) & (thr[f] >= flat_thr)
    assert dominated.all()


def test_pareto_front_small_grid(small_decode):
    _check_frontier(small_decode, pareto_front(small_decode))


def test_pareto_front_medium_grid():
    g = decode_grid(HW, MODEL, 64, INPUT_LEN, OUTPUT_LEN, ACCEPTANCE, max_batch=256)
    _check_frontier(g, pareto_front(g))


def test_pareto_front_brute_force_equal(small_decode):
    """The staircase shortcut finds exactly the non-dominated (lat, tokens/s) values."""
    g = small_decode
    lat, thr, ok = g.latency_s.reshape(-1), g.metric.reshape(-1), g.ok.reshape(-1)
    idx = np.flatnonzero(ok)
    pts = sorted(zip(lat[idx], -thr[idx]))
    brute, best = [], -math.inf
    for la, nthr in pts:
        if -nthr > best:
            brute.append((la, -nthr))
            best = -nthr
    front = pareto_front(g)
    got = sorted(zip(lat[front], thr[front]))
    assert got == brute


def test_pareto_front_skips_a_point_without_a_latency_not_its_neighbours():
    """A feasible point whose latency is not a number is on no frontier, and does not hide the
    other pipelines of its structure, TP, MTP and batch (tokens/s is batch / TPOT throughout)."""
    from cmperf.solve.search import Grid

    shape = (1, 1, 2, 1, 2)  # two pipelines x two batches (1 and 2 requests)
    lat = np.array([[np.nan, 0.01], [0.005, 0.03]]).reshape(shape)
    met = np.array([1.0, 2.0, 1.0, 2.0]).reshape(shape) / lat
    g = Grid("decode", {}, {}, shape, met, lat, np.ones(shape, bool), np.ones(shape, bool))
    assert pareto_front(g).tolist() == [2]  # (5 ms, 200/s); (10 ms, 200/s) does not beat it


def test_a_replaced_grid_does_not_share_the_memo(small_decode):
    import dataclasses

    ranked(small_decode, 0.05, 1)
    assert small_decode.memo
    none = dataclasses.replace(small_decode, ok=np.zeros(small_decode.shape, bool))
    assert not none.memo and ranked(none, 0.05, 1) == []


@pytest.mark.parametrize("budget, max_batch", [(16, 64), (64, 256)])
def test_pareto_prefilter_keeps_the_same_points_as_the_exact_pass_alone(budget, max_batch):
    """The pre-filters (fastest pipeline per batch, staircase, latency bins) drop only points the
    exact pass drops: the frontier is the same points, index for index (ties too)."""
    from cmperf.solve.search import front_of

    g = decode_grid(HW, MODEL, budget, INPUT_LEN, OUTPUT_LEN, ACCEPTANCE, max_batch=max_batch)
    assert np.array_equal(pareto_front(g), front_of(g, np.flatnonzero(g.ok.reshape(-1))))


# ---- limit_reason ---------------------------------------------------------------------------------


def _first(mask: np.ndarray) -> int:
    hits = np.flatnonzero(mask.reshape(-1))
    assert len(hits), "no grid point of the required kind"
    return int(hits[0])


def test_limit_reason_hbm_capacity():
    g = decode_grid(HW, MODEL, 8, INPUT_LEN, OUTPUT_LEN, ACCEPTANCE, max_batch=40)
    nxt_fits = np.concatenate([g.fits[..., 1:], np.ones(g.shape[:-1] + (1,), bool)], axis=-1)
    i = _first(g.ok & ~nxt_fits)
    assert limit_reason(g, i, 0.030) == "HBM capacity"
    assert limit_reason(g, i, None) == "HBM capacity"
    # The best 8-device deployment at 30 ms stops growing because the next batch does not fit.
    best = ranked(g, 0.030, 1)[0]
    nxt = np.unravel_index(best, g.shape)
    nxt = nxt[:-1] + (nxt[-1] + 1,)
    assert not g.fits[nxt]
    assert limit_reason(g, best, 0.030) == "HBM capacity"


def test_limit_reason_tpot_slo(small_decode):
    g = small_decode
    slo = 0.020
    nxt_fits = np.concatenate([g.fits[..., 1:], np.zeros(g.shape[:-1] + (1,), bool)], axis=-1)
    nxt_lat = np.concatenate([g.latency_s[..., 1:], np.zeros(g.shape[:-1] + (1,))], axis=-1)
    i = _first(g.ok & (g.latency_s <= slo) & nxt_fits & (nxt_lat > slo))
    assert limit_reason(g, i, slo) == "TPOT SLO"
    best = ranked(g, slo, 1)[0]
    assert limit_reason(g, best, slo) == "TPOT SLO"
    # Without an SLO a fitting next batch means throughput was the limit.
    assert limit_reason(g, i, None) == "throughput peaks here"


def test_limit_reason_last_batch_and_ttft(small_decode, small_prefill):
    g = small_decode
    last = int(np.ravel_multi_index((0, 0, 0, 0, g.shape[-1] - 1), g.shape))
    assert limit_reason(g, last, 0.030) == "largest batch searched"
    p = small_prefill
    slo = 2.0
    best = ranked(p, slo, 1)[0]
    assert limit_reason(p, best, slo) == "TTFT SLO"


# ---- plan: refusing an impossible SLO ----------------------------------------------------------------


def test_plan_impossible_tpot_raises_infeasible():
    with pytest.raises(InfeasibleError, match="best achievable TPOT") as err:
        plan(PlanRequest(tpot_ms=(50.0, 1.0), devices=16))
    assert err.value.exit_code != 0
    assert err.value.where == "--tpot"
    best = best_latency_s(decode_grid(HW, MODEL, 16, INPUT_LEN, OUTPUT_LEN, ACCEPTANCE))
    assert f"best achievable TPOT is {best * 1e3:.2f} ms" in str(err.value)


def test_plan_impossible_ttft_raises_infeasible():
    with pytest.raises(InfeasibleError, match="best achievable TTFT") as err:
        plan(PlanRequest(tpot_ms=(50.0,), ttft_ms=1.0, devices=16))
    assert err.value.exit_code != 0
    assert err.value.where == "--ttft"


def test_plan_rejects_bad_requests():
    with pytest.raises(SpecError) as err:
        plan(PlanRequest(tpot_ms=(0.0,)))
    assert err.value.where == "--tpot"
    with pytest.raises(SpecError) as err:
        plan(PlanRequest(devices=4))
    assert err.value.where == "--devices"


# ---- write_run_dir ------------------------------------------------------------------------------


FILES = {"plan.md": "# plan\n" + "x" * 10_000, "deployments.csv": "a,b\n1,2\n", "frontier.svg": "<svg/>\n"}


def _hidden(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if p.name.startswith(".")]


def _assert_complete(d: Path, files=FILES):
    assert d.is_dir()
    assert sorted(p.name for p in d.iterdir()) == sorted(files)
    for name, text in files.items():
        assert (d / name).read_text(encoding="utf-8") == text


def test_write_run_dir_writes_all_files(tmp_path):
    d = write_run_dir(tmp_path / "reports", "plan", FILES)
    assert d.parent == tmp_path / "reports"
    assert d.name.startswith("plan-")
    _assert_complete(d)
    assert _hidden(tmp_path / "reports") == []


def test_write_run_dir_untagged_never_clobbers(tmp_path):
    a = write_run_dir(tmp_path, "plan", FILES)
    other = {"plan.md": "second\n"}
    b = write_run_dir(tmp_path, "plan", other)
    assert a != b
    _assert_complete(a)
    _assert_complete(b, other)
    assert _hidden(tmp_path) == []


def test_write_run_dir_tag_exists_raises_unless_overwrite(tmp_path):
    a = write_run_dir(tmp_path, "plan", FILES, tag="x")
    assert a == tmp_path / "plan-x"
    with pytest.raises(SpecError) as err:
        write_run_dir(tmp_path, "plan", {"plan.md": "new\n"}, tag="x")
    assert err.value.where == "--tag"
    _assert_complete(a)  # untouched
    assert _hidden(tmp_path) == []
    new = {"plan.md": "new\n"}
    b = write_run_dir(tmp_path, "plan", new, tag="x", overwrite=True)
    assert b == a
    _assert_complete(b, new)  # replaced, no stale files
    assert _hidden(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan-x"]


def test_write_run_dir_overwrite_without_existing(tmp_path):
    d = write_run_dir(tmp_path, "plan", FILES, tag="fresh", overwrite=True)
    assert d == tmp_path / "plan-fresh"
    _assert_complete(d)


def test_write_run_dir_concurrent_writers(tmp_path):
    contents = [{"plan.md": f"writer {i}\n" * 2000, "sizing.csv": f"i\n{i}\n"} for i in range(4)]
    results, errors = [None] * len(contents), []
    barrier = threading.Barrier(len(contents))

    def work(i):
        try:
            barrier.wait()
            results[i] = write_run_dir(tmp_path, "plan", contents[i])
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(contents))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(set(results)) == len(contents)
    for d, files in zip(results, contents):
        _assert_complete(d, files)
    assert _hidden(tmp_path) == []
    assert len(os.listdir(tmp_path)) == len(contents)


def test_write_run_dir_bad_parent(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(SpecError):
        write_run_dir(blocker / "sub", "plan", FILES)


@pytest.mark.parametrize("hardware, model", [("cloudmatrix384", "deepseek-r1"), ("h100", "llama-3.1-405b"), ("h800", "deepseek-v3.2")])
def test_search_grids_leave_out_what_binds_each_operator_and_nothing_else(hardware, model):
    """A search's grids carry no per-operator bound and let the MoE-layer and MTP operators and the
    decode step's parts go once summed (only a breakdown reads them); every time, HBM figure and
    answer is the same number as with the detail."""
    import contextlib

    import cmperf.solve.search as search_mod

    from cmperf.compose.ops import without_operator_detail
    from cmperf.evaluation import evaluate

    hw, m = load_hardware(hardware), load_model(model)
    grids = {}
    for detail in (False, True):
        with pytest.MonkeyPatch.context() as mp:
            if detail:
                mp.setattr(search_mod, "without_operator_detail", contextlib.nullcontext)
            grids[detail] = (decode_grid(hw, m, 32, 4096, 256, 0.7), prefill_grid(hw, m, 32, 4096, prefix_hit=0.5))
    for lean, full in zip(grids[False], grids[True]):
        assert np.array_equal(lean.metric, full.metric) and np.array_equal(lean.latency_s, full.latency_s) and np.array_equal(lean.ok, full.ok)
    # The decode grid keeps only its answers' arrays: the operators are compared on its candidates
    # evaluated in one call.
    work, dep = decode_grid_deployment(hw, m, 32, 4096, 256, 0.7)
    with without_operator_detail():
        lean_decode = evaluate(hw, m, work, dep)
    for lean, full in ((lean_decode, evaluate(hw, m, work, dep)), (grids[False][1], grids[True][1])):
        assert all(op.bound is None for op in lean.result["ops"]) and all(op.bound is not None for op in full.result["ops"])
        # The operators a decode grid still holds (its MoE-layer and MTP arrays are let go once summed).
        by_place = {(op.scope, op.name): op for op in full.result["ops"]}
        assert len(lean.result["ops"]) <= len(full.result["ops"])
        for a in lean.result["ops"]:
            b = by_place[(a.scope, a.name)]
            assert np.array_equal(a.time_s, b.time_s) and np.array_equal(a.hbm_bytes, b.hbm_bytes)
        decode = lean.result["phase"] == "decode"
        for k in ("tpot_s", "tokens_per_s_per_device", "hbm_used_bytes_per_die") if decode else ("ttft_s", "step_s", "tokens_per_s_per_device", "hbm_used_bytes_per_die"):
            assert np.array_equal(lean.result[k], full.result[k]), k
        # A decode grid forms its step a slice of structures at a time and keeps none of its parts.
        breakdown = ("step_s", "fill_s", "layer_s", "layer_wall_s", "attention_stream_s", "moe_stream_s")
        assert not decode or all(lean.result[k] is None and full.result[k] is not None for k in breakdown)
