"""Quantities with units in --set and sweep ranges: 96GB, 1.6TB/s, 50us, 32k."""

import pytest

from cmperf.errors import SpecError
from cmperf.specs.loader import parse_finite
from cmperf.units import parse_quantity


@pytest.mark.parametrize("text, unit, want", [
    ("96GB", "B", 96e9), ("1.6TB/s", "B/s", 1.6e12), ("50us", "s", 50e-6), ("50us", "ms", 0.05), ("2s", "ms", 2000.0),
    ("32k", None, 32_000.0), ("32Ki", None, 32_768.0), ("1.5e12", None, 1.5e12), ("400Gbit/s", "B/s", 50e9), ("752TOP/s", None, 7.52e14),
])
def test_quantities(text, unit, want):
    assert parse_quantity(text, unit) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("text, unit", [("96GB", "B/s"), ("5m", None), ("abc", None), ("50us", "B")])
def test_wrong_or_unknown_units_are_refused(text, unit):
    with pytest.raises(ValueError):
        parse_quantity(text, unit)


def test_parse_finite_keeps_its_signature_and_names_where():
    assert parse_finite("1_000", "--set x") == 1000.0
    with pytest.raises(SpecError, match="--set x"):
        parse_finite("96GB", "--set x", unit="s")
