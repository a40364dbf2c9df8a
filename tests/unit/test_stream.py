"""The streamed search answers exactly as the whole grid does, in memory that does not grow with
the budget: chunked answers against the dense grid's (ranked, best per instance size, frontier,
limits, the paper's structure), the windowed P/D split against every instance count, and the plan
at fleet budgets against the one-system plan's peak memory.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cmperf.cli import app
from cmperf.solve.plan import PlanRequest, paper_deployment, plan
from cmperf.solve.search import best_by_devices, best_latency_s, best_per_deployment, decode_grid, limit_reason, params_at, pareto_front, prefill_grid, ranked
from cmperf.solve.sizing import TIE_BREAK_PER_DEVICE, best_split
from cmperf.solve.space import max_instance_devices, structures
from cmperf.solve.stream import BYTES_PER_CANDIDATE, DECODE_BYTES_PER_CANDIDATE, _least, chunk_structures, streamed
from cmperf.specs.loader import load_hardware, load_model

HW = load_hardware("cloudmatrix384")
MODEL = load_model("deepseek-r1")
BUDGET = 96
SLOS = (0.012, 0.020, 0.050)


def _decode(st):
    return decode_grid(HW, MODEL, BUDGET, 4096, 256, 0.7, max_batch=96, st=st)


@pytest.fixture(scope="module")
def pair():
    st = structures(HW, MODEL, BUDGET)
    dense = _decode(st)
    per = int(np.prod(dense.shape[1:]))
    # Chunks of three structures: many chunks, a device count split across two of them.
    chunk = 3 * per * BYTES_PER_CANDIDATE
    plain = streamed(_decode, st, per, SLOS, 3, frontier=True, chunk_bytes=chunk)
    kept = {(d, r) for d, r in zip(plain.axes["structure"].devices, plain.axes["structure"].redundant)}
    extra = next({"devices": d, "ep": e, "redundant": r} for d, e, r in zip(st.devices, st.ep, st.redundant) if (d, r) not in kept)
    small = streamed(_decode, st, per, SLOS, 3, keep=[paper_deployment("decode"), extra], frontier=True, chunk_bytes=chunk)
    return dense, small, extra


def _params(grid, flats):
    return [params_at(grid, int(f)) for f in flats]


def test_streamed_keeps_few_structures_and_counts_every_candidate(pair):
    dense, small, extra = pair
    assert small.size == dense.size
    assert len(small.axes["structure"]) < len(dense.axes["structure"])


@pytest.mark.parametrize("slo", SLOS)
def test_streamed_answers_equal_the_whole_grid(pair, slo):
    dense, small, extra = pair
    for top in (1, 3):
        a, b = ranked(dense, slo, top), ranked(small, slo, top)
        assert _params(dense, a) == _params(small, b)
        assert [limit_reason(dense, f, slo) for f in a] == [limit_reason(small, f, slo) for f in b]
        assert [float(dense.metric.reshape(-1)[f]) for f in a] == [float(small.metric.reshape(-1)[f]) for f in b]
    da, sa = best_by_devices(dense, slo), best_by_devices(small, slo)
    assert [(d, x) for d, x, _ in da] == [(d, x) for d, x, _ in sa]
    assert _params(dense, [f for *_, f in da]) == _params(small, [f for *_, f in sa])


def test_streamed_frontier_fastest_point_and_kept_structure(pair):
    dense, small, extra = pair
    assert _params(dense, pareto_front(dense)) == _params(small, pareto_front(small))
    assert best_latency_s(dense) == best_latency_s(small)
    st, d, r = small.axes["structure"], extra["devices"], extra["redundant"]
    s_d = int(np.flatnonzero((dense.axes["structure"].devices == d) & (dense.axes["structure"].redundant == r))[0])
    s_s = int(np.flatnonzero((st.devices == d) & (st.redundant == r))[0])
    for slo in SLOS:
        assert np.array_equal(best_per_deployment(dense, slo)[0][s_d], best_per_deployment(small, slo)[0][s_s])


def test_prefill_streamed_equals_whole_grid():
    st = structures(HW, MODEL, BUDGET)

    def build(s):
        return prefill_grid(HW, MODEL, BUDGET, 4096, st=s)

    dense = build(st)
    per = int(np.prod(dense.shape[1:]))
    for slo in (None, 2.0):
        small = streamed(build, st, per, [slo], 2, chunk_bytes=2 * per * BYTES_PER_CANDIDATE)
        assert _params(dense, ranked(dense, slo, 2)) == _params(small, ranked(small, slo, 2))
        assert [x[:2] for x in best_by_devices(dense, slo)] == [x[:2] for x in best_by_devices(small, slo)]


def test_chunk_size_from_the_memory_budget():
    assert chunk_structures(1000, 10 * 1000 * BYTES_PER_CANDIDATE) == 10
    assert chunk_structures(10**9, 1.0) == 1


def test_measured_bytes_per_candidate_within_the_bound():
    st = structures(HW, MODEL, 64)
    tracemalloc.start()
    g = decode_grid(HW, MODEL, 64, 4096, 256, 0.7, st=st)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(st) >= 8 and peak / g.size <= DECODE_BYTES_PER_CANDIDATE
    del g
    tracemalloc.start()
    g = prefill_grid(HW, MODEL, 8, 4096, st=structures(HW, MODEL, 8))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak / g.size <= BYTES_PER_CANDIDATE


def test_instances_stop_at_one_system():
    system = max_instance_devices(HW)
    assert structures(HW, MODEL, 10 * system).devices.max() == system
    assert np.array_equal(structures(HW, MODEL, 10 * system).devices, structures(HW, MODEL, system).devices)


# ---- the P/D split: the window against every instance count -------------------------------------


def _split_every_count(budget, p_devices, p_tps, d_devices, d_tps, input_len, output_len):
    """The split over every prefill instance count (the window's reference)."""
    p_devices, p_tps, d_devices, d_tps = (np.asarray(x, float) for x in (p_devices, p_tps, d_devices, d_tps))
    cap_p, cap_d = p_tps * p_devices / input_len, d_tps * d_devices / output_len
    n_p = np.arange(1, int(budget // p_devices.min()) + 1, dtype=float).reshape(1, 1, -1)
    P, D = p_devices.reshape(-1, 1, 1), d_devices.reshape(1, -1, 1)
    left = budget - n_p * P
    n_d = np.floor(np.maximum(left, 0) / D)
    good = np.where(left >= D, np.minimum(n_p * cap_p.reshape(-1, 1, 1), n_d * cap_d.reshape(1, -1, 1)), -np.inf)
    k = int(np.argmax(good - TIE_BREAK_PER_DEVICE * (n_p * P + n_d * D)))
    if not np.isfinite(good.reshape(-1)[k]):
        return None
    i, j, m = np.unravel_index(k, good.shape)
    return float(good[i, j, m]), int(n_p[0, 0, m]), int(p_devices[i]), int(n_d[i, j, m]), int(d_devices[j])


def test_windowed_split_equals_every_count():
    rng = np.random.default_rng(7)
    for trial in range(400):
        node = int(rng.choice([1, 4, 8]))
        budget = int(rng.integers(node, (64, 400, 4000, 40000)[trial % 4]))
        P = rng.integers(1, 48, size=int(rng.integers(1, 6))) * node
        D = rng.integers(1, 48, size=int(rng.integers(1, 6))) * node
        P, D = P[P <= budget], D[D <= budget]
        scale = 10.0 ** rng.uniform(-6, 4) if trial % 5 == 0 else 1.0
        pt, dt = rng.uniform(1, 8000, len(P)) * scale, rng.uniform(1, 3000, len(D)) * scale
        i_len, o_len = int(rng.integers(1, 20000)), int(rng.integers(1, 4000))
        want = _split_every_count(budget, P, pt, D, dt, i_len, o_len) if len(P) and len(D) else None
        got = best_split(budget, P, pt, D, dt, i_len, o_len)
        if want is None:
            assert got is None
        else:
            assert (got["requests_per_s"], got["prefill_instances"], got["prefill_devices_per_instance"], got["decode_instances"],
                    got["decode_devices_per_instance"]) == want


# ---- fleets -------------------------------------------------------------------------------------


def _peak(req):
    tracemalloc.start()
    result = plan(req)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return result, peak


def test_fleet_plan_in_the_memory_of_one_system():
    one, peak_one = _peak(PlanRequest(top=1))
    fleet, peak_fleet = _peak(PlanRequest(devices=38_400, top=1))
    assert peak_fleet <= 1.5 * peak_one
    assert fleet.decode_grid_size == one.decode_grid_size
    for s in fleet.sizing:
        assert s["devices_used"] + s["idle_devices"] == 38_400 and s["idle_devices"] < 384


def test_cli_plans_a_million_devices(tmp_path):
    res = CliRunner().invoke(app, ["plan", "--devices", "1000000", "--top", "1", "--no-write"])
    assert res.exit_code == 0, res.output
    assert "1000000" in res.output.replace(",", "")


# ---- threads: the chunks of one search on several cores ---------------------------------------------


def test_threaded_search_answers_exactly_as_one_thread(monkeypatch):
    """Chunks evaluated in threads (sharing the placement-free operators) give the one-thread grid."""
    from cmperf.solve import stream

    st = structures(HW, MODEL, BUDGET)
    per = int(np.prod(_decode(st.take(slice(0, 1))).shape[1:]))
    chunk = 3 * per * BYTES_PER_CANDIDATE
    grids = {}
    for threads in ("1", "3"):
        monkeypatch.setenv(stream.THREADS_ENV, threads)
        grids[threads] = streamed(_decode, st, per, SLOS, 3, frontier=True, chunk_bytes=chunk)
    a, b = grids["1"], grids["3"]
    assert a.size == b.size and np.array_equal(a.axes["structure"].devices, b.axes["structure"].devices)
    for name in ("metric", "latency_s", "ok", "fits"):
        assert np.array_equal(getattr(a, name), getattr(b, name), equal_nan=name in ("metric", "latency_s")), name


@pytest.mark.parametrize("value, expected", [("1", 1), ("3", 3), ("", None), ("0", None), ("-2", None), ("two", None), (" 2 ", 2)])
def test_search_threads_from_the_environment(monkeypatch, value, expected):
    from cmperf.solve import stream

    monkeypatch.setenv(stream.THREADS_ENV, value)
    default = min(stream.MAX_SEARCH_THREADS, stream.available_cores())
    assert stream.search_threads() == (expected if expected is not None else default)


@pytest.mark.parametrize("value, expected_mib", [("64", 64), ("", None), ("0", None), ("big", None), ("-1", None)])
def test_chunk_budget_from_the_environment(monkeypatch, value, expected_mib):
    from cmperf.solve import stream

    monkeypatch.setenv(stream.CHUNK_ENV, value)
    assert stream.chunk_budget() == (stream.CHUNK_BYTES if expected_mib is None else expected_mib * 2**20)


def test_a_worker_searches_in_one_thread_and_a_lone_search_s_chunks(monkeypatch):
    """Worker processes of a parallel what-if (and of an exploration, which keeps what is set)."""
    from cmperf.solve import stream, threads
    from cmperf.whatif.parallel import _one_search_thread

    monkeypatch.setenv(threads.THREADS_ENV, "2")
    monkeypatch.delenv(threads.CHUNK_ENV, raising=False)
    threads.search_as_worker(override=False)
    assert stream.search_threads() == 2 and stream.chunk_budget() == stream.CHUNK_BYTES
    _one_search_thread()
    assert stream.search_threads() == 1 and stream.chunk_budget() == stream.CHUNK_BYTES
    monkeypatch.setenv(threads.CHUNK_ENV, "64")  # a budget the environment sets stays
    _one_search_thread()
    assert stream.chunk_budget() == 64 * 2**20


@pytest.mark.parametrize("per_chunk", [3 * 17_424, 21 * 12_960 + 100], ids=["many chunks", "one chunk's worth once the batches are cut"])
def test_decode_search_evaluates_only_batches_that_fit_somewhere(monkeypatch, per_chunk):
    """decode_search skips the cost model past the last batch that fits anywhere; the answers, the
    limits and the memory there are the whole grid's (in many chunks, or in one chunk's worth of
    structures once the batches are cut, run as two halves: chunks come in pairs)."""
    from cmperf.solve import stream
    from cmperf.solve.stream import decode_search

    seen = []
    real = stream.decode_grid
    monkeypatch.setattr(stream, "decode_grid", lambda *a, **k: seen.append(len(k["batches"])) or real(*a, **k))
    monkeypatch.setattr(stream, "DECODE_BYTES_PER_CANDIDATE", stream.CHUNK_BYTES / per_chunk)
    dense = decode_grid(HW, MODEL, BUDGET, 4096, 256, 0.7, st=structures(HW, MODEL, BUDGET))
    small = decode_search(HW, MODEL, BUDGET, 4096, 256, 0.7, slos=SLOS, top=3)
    assert len(seen) == (6 if per_chunk < 21 * 12_960 else 2) and max(seen) < dense.shape[-1]  # on fewer batches
    assert small.shape[-1] == dense.shape[-1] and small.size == dense.size
    for slo in SLOS:
        a, b = ranked(dense, slo, 3), ranked(small, slo, 3)
        assert _params(dense, a) == _params(small, b)
        assert [limit_reason(dense, f, slo) for f in a] == [limit_reason(small, f, slo) for f in b]
    front = lambda g: [(float(g.latency_s.reshape(-1)[i]), float(g.metric.reshape(-1)[i])) for i in pareto_front(g)]
    assert front(dense) == front(small)
    kept = [int(np.flatnonzero((dense.axes["structure"].devices == d) & (dense.axes["structure"].ep == e) & (dense.axes["structure"].redundant == r))[0])
            for d, e, r in zip(small.axes["structure"].devices, small.axes["structure"].ep, small.axes["structure"].redundant)]
    assert np.array_equal(small.fits, dense.fits[kept])
    used = np.broadcast_to(dense.result["hbm_used_bytes_per_die"], dense.shape)[kept]
    assert np.array_equal(small.result["hbm_used_bytes_per_die"], used)


def test_chunk_answers_carried_to_the_kept_grid_equal_a_fresh_pass(pair):
    """The kept grid takes its best points per deployment and its frontier from the chunks'
    passes; computed again over the kept grid itself they are the same, index for index."""
    from cmperf.solve.search import Grid

    dense, small, extra = pair
    assert ("best", SLOS[0]) in small.memo and "front" in small.memo
    fresh = Grid(**{f: getattr(small, f) for f in ("phase", "axes", "result", "shape", "metric", "latency_s", "ok", "fits", "fixed", "searched")})
    for slo in SLOS:
        for a, b in zip(best_per_deployment(small, slo), best_per_deployment(fresh, slo)):
            assert np.array_equal(a, b)
            assert not a.flags.writeable  # shared by every reader: nobody may change it
    assert np.array_equal(pareto_front(small), pareto_front(fresh))


def test_decode_search_answers_carried_past_the_batch_cut_equal_a_fresh_pass(monkeypatch):
    """The same when the search evaluated fewer batches and the grid was widened after."""
    from cmperf.solve import stream
    from cmperf.solve.search import Grid
    from cmperf.solve.stream import decode_search

    monkeypatch.setattr(stream, "DECODE_BYTES_PER_CANDIDATE", stream.CHUNK_BYTES / (3 * 17_424))
    small = decode_search(HW, MODEL, BUDGET, 4096, 256, 0.7, slos=SLOS, top=3)
    assert small.memo
    fresh = Grid(**{f: getattr(small, f) for f in ("phase", "axes", "result", "shape", "metric", "latency_s", "ok", "fits", "fixed", "searched")})
    for slo in SLOS:
        for a, b in zip(best_per_deployment(small, slo), best_per_deployment(fresh, slo)):
            assert np.array_equal(a, b)
    assert np.array_equal(pareto_front(small), pareto_front(fresh))


def test_allocator_setting_applies_on_glibc_and_can_be_left_off(monkeypatch):
    import platform

    from cmperf import cli_heap as stream

    monkeypatch.setenv(stream.ALLOCATOR_ENV, "0")
    assert stream.reuse_freed_memory() is False
    monkeypatch.delenv(stream.ALLOCATOR_ENV)
    assert stream.reuse_freed_memory() is (platform.system() == "Linux" and platform.libc_ver()[0] == "glibc")


@pytest.mark.parametrize("hardware, model, input_len, output_len", [
    ("cloudmatrix384", "deepseek-r1", 4096, 256), ("cloudmatrix384", "deepseek-r1", 120_000, 8_000), ("h100", "deepseek-v3", 128, 16),
    ("h20", "qwen3-235b-a22b", 30_000, 2_000), ("b200", "llama-3.1-405b", 4096, 1024), ("gb200-nvl72", "kimi-k2", 60_000, 4_000),
    ("h800", "qwen3-30b-a3b", 512, 64),
])
def test_batches_that_fit_equal_the_whole_memory_grid(hardware, model, input_len, output_len):
    """The batch cut, from the closed-form largest batch and a check at the boundary, is the count
    the memory of every candidate at every batch gives: through the last batch that fits anywhere."""
    from cmperf.solve.search import batches_that_fit, decode_memory_grid
    from cmperf.solve.space import batch_grid, mtp_axis

    from cmperf.solve import search

    hw, m = load_hardware(hardware), load_model(model)
    st, batches = structures(hw, m, max_instance_devices(hw)), batch_grid()
    fits = decode_memory_grid(hw, m, input_len, output_len, st, mtp_axis(m), batches)[1].any(axis=(0, 1, 2, 3))
    want = int(np.flatnonzero(fits)[-1]) + 1 if fits.any() else 0
    checks = []
    real = search.decode_memory_grid
    search.decode_memory_grid = lambda *a: checks.append(len(a[-1])) or real(*a)
    try:
        assert batches_that_fit(hw, m, input_len, output_len, st, mtp_axis(m), batches) == want
    finally:
        search.decode_memory_grid = real
    assert len(checks) <= 3 and set(checks) == {1}  # the closed form lands at the boundary: a check or two of one batch


@pytest.mark.parametrize("count, most", [(139, 27), (139, 21), (18, 3), (18, 30), (1, 5), (7, 1), (2, 2)])
def test_chunks_are_few_even_and_within_the_memory_bound(count, most):
    from cmperf.solve.stream import CHUNK_MULTIPLE, chunk_bounds

    b = chunk_bounds(count, most)
    sizes = np.diff(b)
    assert b[0] == 0 and b[-1] == count and sizes.min() >= 1 and sizes.max() <= most
    assert sizes.max() - sizes.min() <= 1  # equal work for the threads
    fewest = -(-count // most)  # the fewest chunks the bound allows
    assert fewest <= len(sizes) < fewest + CHUNK_MULTIPLE
    assert len(sizes) % CHUNK_MULTIPLE == 0 or len(sizes) == count  # in whole pairs, unless there are too few structures


def test_no_structures_make_no_chunks():
    from cmperf.solve.stream import chunk_bounds

    assert chunk_bounds(0, 5) == [0] and chunk_bounds(3, 0) == [0, 1, 2, 3]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(1, 3), min_size=1, max_size=4).flatmap(
    lambda shape: st.tuples(st.just(tuple(shape)), st.lists(st.booleans(), min_size=len(shape), max_size=len(shape)),
                            st.lists(st.sampled_from([1.0, 2.0, 3.0, np.inf, np.nan]), min_size=int(np.prod(shape)), max_size=int(np.prod(shape))))))
def test_least_point_found_in_the_unbroadcast_array(case):
    """`_least` of an array against the grid it broadcasts to: the flat index np.argmin gives over
    the broadcast grid where some value is finite, else None."""
    shape, kept, values = case
    small_shape = tuple(n if k else 1 for n, k in zip(shape, kept))
    a = np.array(values[:int(np.prod(small_shape))]).reshape(small_shape)
    full = np.broadcast_to(a, shape)
    expected = int(np.argmin(full)) if np.isfinite(full).any() else None
    assert _least(a, shape) == expected
    assert _least(a.reshape(a.shape[1:]) if a.ndim > 1 and a.shape[0] == 1 else a, shape) == expected  # fewer leading axes
