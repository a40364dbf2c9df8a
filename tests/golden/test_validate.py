"""Golden test: every published figure in cmperf/validation/published.csv is within its tolerance.

The table (values, sources, per-row tolerances and known gaps) is the one `cmperf validate` prints;
predictions are computed from the model at test time. One test per row, named after the row, so a
failing row names itself.
"""

from __future__ import annotations

import math

import pytest

from cmperf.validation.cases import ROW_KINDS, evaluate_case, load_published

CASES = load_published()


def _id(case) -> str:
    return f"{case.case} [{case.metric}]"


def test_table_is_not_empty_and_ids_are_unique():
    ids = [_id(c) for c in CASES]
    assert len(ids) >= 40
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_published_row_within_tolerance(case):
    row = evaluate_case(case)
    assert math.isfinite(row["predicted"]) and row["predicted"] > 0
    assert row["kind"] in ROW_KINDS
    assert row["source"], "every row cites its source"
    assert row["within"], (
        f"{case.case} {case.metric}: published {case.published} {case.unit}, predicted {row['predicted']:.4g}, "
        f"error {row['error_pct']:+.2f} ({case.error_basis}) outside tolerance {case.tolerance_pct:g}"
    )
