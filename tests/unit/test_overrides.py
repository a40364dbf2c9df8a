"""Unit tests of cmperf.overrides: `--set KEY=VALUE` parsing, routing and validation."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cmperf.errors import SpecError
from cmperf.overrides import WORKLOAD_FIELDS, all_keys, apply_overrides, check_workload_value, parse_set
from cmperf.specs.loader import load_hardware, load_model
from cmperf.specs.schema import HARDWARE_FIELDS, MODEL_FIELDS


@pytest.fixture(scope="module")
def specs():
    return load_hardware("cloudmatrix384"), load_model("deepseek-r1")


# ---- parse_set -----------------------------------------------------------------------------------


def test_parse_set_empty():
    assert parse_set(None) == {}
    assert parse_set([]) == {}


def test_parse_set_basic():
    got = parse_set(["die.hbm_bandwidth_bytes_per_s=2e12", "  arch.hidden_size =  4096 ", "workload.input_len=1024"])
    assert got == {"die.hbm_bandwidth_bytes_per_s": "2e12", "arch.hidden_size": "4096", "workload.input_len": "1024"}


def test_parse_set_value_may_contain_equals_and_last_wins():
    assert parse_set(["a.b=c=d"]) == {"a.b": "c=d"}
    assert parse_set(["a.b=1", "a.b=2"]) == {"a.b": "2"}


@pytest.mark.parametrize("item", ["novalue", "=5", "key=", "key=   ", "  =  ", "", "="])
def test_parse_set_rejects_malformed(item):
    with pytest.raises(SpecError) as info:
        parse_set([item])
    msg = str(info.value)
    assert "--set" in msg and "KEY=VALUE" in msg and repr(item) in msg


_token = st.text(alphabet=st.characters(blacklist_characters="=", blacklist_categories=("Cs",)), min_size=1).filter(
    lambda s: s.strip() == s and s != ""
)


@settings(max_examples=80, deadline=None)
@given(st.dictionaries(_token, _token, max_size=5))
def test_parse_set_roundtrip(d):
    assert parse_set([f"{k}={v}" for k, v in d.items()]) == d


# ---- routing -------------------------------------------------------------------------------------


def test_routing_to_hardware_model_workload(specs):
    hw, m = specs
    sets = {
        "die.hbm_bandwidth_bytes_per_s": "2e12",
        "arch.hidden_size": "4096",
        "precision.kv_cache": "int8",
        "workload.input_len": "2048",
        "workload.mtp_acceptance": "0.7",
    }
    hw2, m2, wl = apply_overrides(hw, m, sets)
    assert hw2["die.hbm_bandwidth_bytes_per_s"] == 2e12
    assert hw2.overridden == ("die.hbm_bandwidth_bytes_per_s",)
    assert m2["arch.hidden_size"] == 4096 and type(m2["arch.hidden_size"]) is int
    assert m2["precision.kv_cache"] == "int8"
    assert set(m2.overridden) == {"arch.hidden_size", "precision.kv_cache"}
    assert wl == {"input_len": 2048, "mtp_acceptance": 0.7}  # workload fields by name
    assert type(wl["input_len"]) is int
    # nothing leaks across: the model key is not on the hardware and vice versa
    assert not hw2.has("arch.hidden_size") and not m2.has("die.hbm_bandwidth_bytes_per_s")
    # the inputs are untouched
    assert hw["die.hbm_bandwidth_bytes_per_s"] == 1.6e12 and m["arch.hidden_size"] == 7168


def test_no_overrides_returns_same_specs(specs):
    hw, m = specs
    hw2, m2, wl = apply_overrides(hw, m, {})
    assert hw2 is hw and m2 is m and wl == {}


def test_only_hardware_override_leaves_model_object(specs):
    hw, m = specs
    hw2, m2, wl = apply_overrides(hw, m, {"package.dies": "4"})
    assert m2 is m and hw2 is not hw and hw2["package.dies"] == 4 and wl == {}


@pytest.mark.parametrize(
    "key, suggestion",
    [
        ("die.hbm_bandwith_bytes_per_s", "die.hbm_bandwidth_bytes_per_s"),
        ("arch.hiden_size", "arch.hidden_size"),
        ("workload.input_length", "workload.input_len"),
        ("moe.n_routed_expert", "moe.n_routed_experts"),
        ("die.hbm_frac", "efficiency.hbm_frac"),  # right name, wrong table
    ],
)
def test_unknown_key_suggests_closest(specs, key, suggestion):
    hw, m = specs
    with pytest.raises(SpecError) as info:
        apply_overrides(hw, m, {key: "1"})
    msg = str(info.value)
    assert f"unknown key '{key}'" in msg
    assert "did you mean" in msg and suggestion in msg
    assert msg.startswith("--set")


def test_unknown_key_without_any_close_match(specs):
    hw, m = specs
    with pytest.raises(SpecError) as info:
        apply_overrides(hw, m, {"zzzzzzzz": "1"})
    assert "unknown key 'zzzzzzzz'" in str(info.value)
    assert "did you mean" not in str(info.value)


@pytest.mark.parametrize("key", ["derived.dies", "derived.params_total", "derived.int8_ridge_flops_per_byte"])
def test_derived_keys_refused(specs, key):
    hw, m = specs
    with pytest.raises(SpecError) as info:
        apply_overrides(hw, m, {key: "1"})
    msg = str(info.value)
    assert key in msg and "derived" in msg and "cannot be set" in msg


@pytest.mark.parametrize(
    "key, value, fragment",
    [
        ("die.hbm_bandwidth_bytes_per_s", "-5", "positive"),
        ("die.hbm_bandwidth_bytes_per_s", "0", "positive"),
        ("die.matrix_cores", "24.5", "whole number"),
        ("efficiency.hbm_frac", "1.5", "fraction"),
        ("precision.kv_cache", "bf17", "expected one of"),
        ("arch.hidden_size", "wide", "expected a number"),
    ],
)
def test_spec_values_validated_through_overrides(specs, key, value, fragment):
    hw, m = specs
    with pytest.raises(SpecError) as info:
        apply_overrides(hw, m, {key: value})
    assert key in str(info.value) and fragment in str(info.value)


# ---- workload ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key, value, fragment",
    [
        ("workload.input_len", "0", "[1, 1e+07]"),
        ("workload.input_len", "-1", "[1, 1e+07]"),
        ("workload.input_len", "20000000", "[1, 1e+07]"),
        ("workload.input_len", "1.5", "whole number"),
        ("workload.input_len", "abc", "whole number"),
        ("workload.output_len", "0", "expected a whole number in"),
        ("workload.mtp_acceptance", "1.5", "[0, 1]"),
        ("workload.mtp_acceptance", "-0.1", "[0, 1]"),
        ("workload.mtp_acceptance", "nan", "[0, 1]"),
        ("workload.prefix_hit", "x", "expected a number"),
        ("workload.prefix_hit", "2", "[0, 0.999]"),
    ],
)
def test_workload_range_checks(specs, key, value, fragment):
    hw, m = specs
    with pytest.raises(SpecError) as info:
        apply_overrides(hw, m, {key: value})
    msg = str(info.value)
    assert key in msg and fragment in msg and repr(value) in msg


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("workload.input_len", "1", 1),
        ("workload.input_len", "10000000", 10_000_000),
        ("workload.input_len", "1e3", 1000),
        ("workload.output_len", "2048.0", 2048),
        ("workload.mtp_acceptance", "0", 0.0),
        ("workload.mtp_acceptance", "1", 1.0),
        ("workload.prefix_hit", "0.5", 0.5),
    ],
)
def test_workload_accepts_bounds(specs, key, value, expected):
    hw, m = specs
    _, _, wl = apply_overrides(hw, m, {key: value})
    assert wl[key.split(".", 1)[1]] == expected  # keyed by workload field
    assert type(wl[key.split(".", 1)[1]]) is WORKLOAD_FIELDS[key][0]


@settings(max_examples=100, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False, min_value=-10, max_value=10))
def test_workload_fraction_property(x):
    if 0.0 <= x <= 0.999:  # a full hit would leave nothing to prefill
        assert check_workload_value("workload.prefix_hit", repr(x)) == x
    else:
        with pytest.raises(SpecError):
            check_workload_value("workload.prefix_hit", repr(x))


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=-10**9, max_value=10**9))
def test_workload_length_property(n):
    if 1 <= n <= 10_000_000:
        assert check_workload_value("workload.input_len", str(n)) == n
    else:
        with pytest.raises(SpecError):
            check_workload_value("workload.input_len", str(n))


@pytest.mark.parametrize("value", ["inf", "1e400"])
def test_workload_infinite_length_is_a_spec_error(specs, value):
    hw, m = specs
    with pytest.raises(SpecError):
        apply_overrides(hw, m, {"workload.input_len": value})


# ---- key spaces ----------------------------------------------------------------------------------


def test_key_spaces_do_not_overlap():
    hw_keys, model_keys, wl_keys = set(HARDWARE_FIELDS), set(MODEL_FIELDS), set(WORKLOAD_FIELDS)
    assert hw_keys & model_keys == set()
    assert hw_keys & wl_keys == set() and model_keys & wl_keys == set()
    for key in hw_keys | model_keys:
        assert not key.startswith("derived."), key
        assert not key.startswith("workload."), key
        assert key.count(".") == 1, key
    assert all(k.startswith("workload.") for k in wl_keys)
    assert len(all_keys()) == len(set(all_keys())) == len(hw_keys) + len(model_keys) + len(wl_keys)


def test_table_names_do_not_overlap():
    hw_tables = {k.split(".")[0] for k in HARDWARE_FIELDS}
    model_tables = {k.split(".")[0] for k in MODEL_FIELDS}
    assert hw_tables & model_tables == set()
    assert not {"derived", "workload", "meta", "sources"} & (hw_tables | model_tables)
