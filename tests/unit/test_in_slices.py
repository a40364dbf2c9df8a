"""A search's decode step formed a slice of structures at a time (`compose.ops.in_slices`): the
same numbers, to the bit and in the same shapes, as formed whole."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cmperf.compose import ops
from cmperf.compose.ops import Op, Outer, in_slices


def _compose(op_list, wait, small, hidden):
    """Sums, maxima and a division of the kind the step takes, some results varying along the
    leading axis and one not."""
    b = sum(op.time_s for op in op_list) + wait
    overlapped = 2.0 * np.maximum(np.maximum(small, b), hidden + small)
    return overlapped / (1.0 + small), np.minimum(small, small * 0.5), b - hidden


@settings(max_examples=60, deadline=None)
@given(rows=st.integers(0, 9), inner=st.tuples(st.integers(1, 4), st.integers(1, 5)), seed=st.integers(0, 2**16),
       slice_candidates=st.sampled_from([1, 2, 7, 40, 10**6]))
def test_formed_in_slices_equals_formed_whole(rows, inner, seed, slice_candidates):
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ops, "SLICE_CANDIDATES", slice_candidates)
        _check(rows, inner, seed)


def _check(rows, inner, seed):
    rng = np.random.default_rng(seed)
    shape = (rows,) + inner
    per_row = rng.random((rows, 1, inner[1]))  # spans the leading axis, not the middle one
    small = rng.random((1,) + inner)  # spans every axis but the leading one
    scale = rng.random((rows, 1, 1))
    op_list = [Op("a", "moe", "x", per_row, None, per_row, None), Op("b", "moe", "x", small, None, small, None, calls=scale)]
    wait = Outer(small * 0.03, scale)  # a product the size of the grid, formed a slice at a time
    args = (op_list, wait, small, rng.random((rows, 1, 1)))
    whole = _compose(op_list, wait.x * wait.y, small, args[3])
    parts = in_slices(shape, _compose, *args)
    for w, p in zip(whole, parts):
        assert np.shape(w) == np.shape(p)
        assert np.array_equal(w, p)


def test_an_operator_is_cut_on_its_own_copy():
    """Cutting an operator row to a slice leaves the row itself whole."""
    t = np.arange(6.0).reshape(3, 1, 2)
    op = Op("a", "moe", "x", t, None, t, None)
    seen = []
    in_slices((3, 1, 2), lambda rows: seen.append(rows[0].time_s.shape) or (rows[0].time_s,), [op])
    assert op.time_s is t and all(s[0] <= 3 for s in seen)


@pytest.mark.parametrize("hardware, model", [("cloudmatrix384", "deepseek-r1"), ("h100", "qwen3-30b-a3b"), ("gb200-nvl72", "llama-3.1-405b")])
def test_a_search_grid_formed_in_slices_gives_the_numbers_of_one_pass(hardware, model, monkeypatch):
    """The decode grid with its step formed in slices of a few structures equals the same grid
    formed in one pass (one slice holding every structure), to the bit."""
    from cmperf.solve.search import decode_grid
    from cmperf.specs.loader import load_hardware, load_model

    hw, m = load_hardware(hardware), load_model(model)
    grids = []
    for candidates in (10**9, 4096):
        monkeypatch.setattr(ops, "SLICE_CANDIDATES", candidates)
        grids.append(decode_grid(hw, m, 64, 4096, 512, 0.7))
    one, sliced = grids
    for a, b in ((one.metric, sliced.metric), (one.latency_s, sliced.latency_s), (one.ok, sliced.ok)):
        assert np.shape(a) == np.shape(b) and np.array_equal(a, b, equal_nan=True)
