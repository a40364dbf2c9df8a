"""Fuzz: the Python entry points (`estimate` with deployment and workload fields, `PlanRequest`) with any Python values:
a SpecError naming the matching CLI option, or finite numbers."""

from __future__ import annotations

import math
import warnings

from hypothesis import given
from hypothesis import strategies as st

from cmperf.errors import CmperfError, SpecError
from tests.hostile.conftest import finite_result, settings_for

ANY = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.integers(0, 400),
                st.floats(allow_nan=True, allow_infinity=True), st.floats(0, 1), st.sampled_from(["96", "", "perfect", "ub", "vpc", "nan"]),
                st.lists(st.integers(1, 4), max_size=2), st.sampled_from([math.nan, 0, 1, 2, 8, 96, 1024, 10**6]))


@st.composite
def options(draw):
    from cmperf.evaluation import DEPLOYMENT_FIELDS, WORKLOAD_FIELDS

    names = [*DEPLOYMENT_FIELDS, *WORKLOAD_FIELDS]
    chosen = draw(st.lists(st.sampled_from(names), min_size=1, max_size=3, unique=True))
    kw = {n: draw(ANY) for n in chosen}
    if draw(st.booleans()):
        kw["sets"] = draw(st.one_of(st.none(), st.just({}), st.just([]), st.just({"workload.input_len": math.nan}), st.just({1: 2})))
    return kw


@settings_for(80)
@given(options(), st.sampled_from(["decode", "prefill"]))
def test_fuzz_options(opts, phase):
    from cmperf.evaluation import estimate

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            res = estimate(phase, **opts).result
    except SpecError as exc:
        assert exc.where, str(exc)
        return
    except CmperfError:
        return
    finite_result(res, phase)


@settings_for(60)
@given(st.dictionaries(st.sampled_from(["tpot_ms", "ttft_ms", "input_len", "output_len", "mtp_acceptance", "devices", "top", "eplb",
                                        "prefix_hit", "sets", "hardware", "model"]), ANY, min_size=1, max_size=3))
def test_fuzz_plan_request(kw):
    from cmperf.solve.plan import PlanRequest

    try:
        req = PlanRequest(**kw).checked()
    except SpecError as exc:
        assert exc.where and exc.where.startswith("--"), str(exc)
        return
    for t in req.tpot_ms:
        assert math.isfinite(t) and t > 0
    assert 0 <= req.prefix_hit < 1 and 0 <= req.mtp_acceptance <= 1 and req.input_len >= 1 and req.top >= 1


@settings_for(60)
@given(st.dictionaries(st.sampled_from(["input_len", "output_len", "mtp_acceptance", "prefix_hit", "devices", "max_mtp", "tpot_ms", "ttft_ms",
                                        "eplb", "cache_path"]), ANY, min_size=1, max_size=3))
def test_fuzz_whatif_scenario(kw):
    from cmperf.whatif.core import scenario

    if "tpot_ms" in kw and not isinstance(kw["tpot_ms"], (tuple, list)):
        kw["tpot_ms"] = (kw["tpot_ms"],)
    try:
        sc = scenario(**kw)
    except SpecError as exc:
        assert exc.where, str(exc)
        return
    except CmperfError:
        return
    assert sc.input_len >= 1 and 0 <= sc.prefix_hit < 1 and all(math.isfinite(t) and t > 0 for t in sc.tpot_ms)
