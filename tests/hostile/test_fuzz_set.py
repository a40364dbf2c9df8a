"""Fuzz: hostile `--set KEY=VALUE` items, one or several at once, through `estimate` (the path
every command shares). Each is refused with a SpecError naming --set, or gives finite numbers."""

from __future__ import annotations

import warnings

from hypothesis import given
from hypothesis import strategies as st

from cmperf.errors import CmperfError, SpecError
from cmperf.overrides import all_keys
from cmperf.specs.schema import HARDWARE_FIELDS, MODEL_FIELDS
from tests.hostile.conftest import HOSTILE_NUMBERS, finite_result, settings_for

KEYS = all_keys() + ["derived.dies", "derived.params_total", "derived.nosuch", "nosuch", "arch.", ".", "arch.hidden_size.x", "\x1b[0m"]
VALUES = HOSTILE_NUMBERS + ["fp8", "int8", "bf16", "fp4", "fp64", "1.5", "64", "128", "300", "1000", "16777215", "0.999", "1e11"]


INT_KEYS = [k for k, f in {**HARDWARE_FIELDS, **MODEL_FIELDS}.items() if f.type == "int"]
BIG = ["2147483647", "1000000000", "16777215", "1000000", "65536"]
SETS = st.one_of(st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), min_size=1, max_size=3),
                 st.dictionaries(st.sampled_from(INT_KEYS + ["routing.popularity_skew", "routing.request_skew"]), st.sampled_from(BIG),
                                 min_size=1, max_size=2))


@settings_for(80)
@given(SETS, st.sampled_from(["decode", "prefill"]))
def test_fuzz_set_items(sets, phase):
    from cmperf.evaluation import estimate

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            res = estimate(phase, sets=sets).result
    except SpecError as exc:
        assert exc.where and (exc.where.startswith("--") or exc.where.endswith(".toml")), str(exc)
        return
    except CmperfError:
        return
    finite_result(res, phase)
