"""One way to print a number: SI prefixes, thousands separators, never scientific notation."""

import pytest

from cmperf.report.numbers import si, unit_of_key
from cmperf.report.render import fmt_number


@pytest.mark.parametrize("value, unit, text", [
    (7.52e14, "OP/s", "752 TOP/s"), (1.6e12, "B/s", "1.6 TB/s"), (2500, "", "2,500"), (0.04757, "", "0.0476"),
    (5e-5, "s", "50 us"), (116.0, "", "116"), (6.4e10, "B", "64 GB"), (1_412_796, "", "1.41 M"), (None, "", "-"),
])
def test_si(value, unit, text):
    assert si(value, unit) == text


def test_table_cells_have_no_scientific_notation():
    for v in (7.52e14, 1.6e12, 116.0, 0.04757, 12345.678):
        assert "e+" not in fmt_number(v) and "e-" not in fmt_number(v)
    assert fmt_number(116.0) == "116"


@pytest.mark.parametrize("key, unit", [
    ("derived.kv_cache_bytes_per_token", "B per token"), ("derived.hbm_bandwidth_bytes_per_s_per_package", "B/s per package"),
    ("derived.int8_ridge_flops_per_byte", "FLOP/B"), ("derived.params_per_expert", "parameters per expert"), ("derived.dies", "count"),
])
def test_derived_keys_have_units(key, unit):
    assert unit_of_key(key) == unit
