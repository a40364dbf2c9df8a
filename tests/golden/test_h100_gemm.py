"""Golden test: hardware/h100.toml's GEMM cost against the 146 H100 kernel times it was fitted to.

Source: tests/data/h100-gemm-measured.csv (one H100 SXM 80GB HBM3; FP8 cuBLASLt, BF16 torch.matmul,
BF16 torch._grouped_mm; provenance in the file's header). The bounds are the median and max relative
errors stated in h100.toml's notes (efficiency.matmul_compute_frac), plus 0.2 points of slack: the
test fails if a change to a formula or to the file moves the fit's quality. The rows of the file
that `cmperf validate` shows (published.csv, hardware h100) must be rows of this file, same value.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cmperf.validation.cases import load_published
from cmperf.validation.measurements import Predictor, read_measurements

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data" / "h100-gemm-measured.csv"
HW = str(REPO / "hardware" / "h100.toml")
# (median |error|, max |error|) per class, as stated in h100.toml.
STATED = {"all": (0.074, 0.317), "fp8": (0.062, 0.216), "bf16": (0.064, 0.208), "grouped": (0.107, 0.317)}
SLACK = 0.002


@pytest.fixture(scope="module")
def errors():
    meas = read_measurements(DATA)
    pred = Predictor(HW, "deepseek-r1", meas, path=str(DATA)).check()
    err = np.abs(pred / np.array([m.value for m in meas]) - 1.0)
    cls = np.array(["grouped" if m.params.get("groups", 1) > 1 else m.params["dtype"] for m in meas])
    return err, cls


def test_the_file_is_the_one_described():
    meas = read_measurements(DATA)
    assert len(meas) == 146
    assert {m.params["dtype"] for m in meas} == {"fp8", "bf16"}
    assert DATA.read_text(encoding="utf-8").startswith("# GEMM kernel times measured on one NVIDIA H100 SXM")


@pytest.mark.parametrize("which", list(STATED))
def test_median_and_max_error_are_the_stated_ones(errors, which):
    err, cls = errors
    e = err if which == "all" else err[cls == which]
    med, mx = STATED[which]
    assert np.median(e) <= med + SLACK, np.median(e)
    assert e.max() <= mx + SLACK, e.max()


def test_h100_rows_in_published_csv_come_from_the_file():
    meas = read_measurements(DATA)
    have = {(m.params["m"], m.params["n"], m.params["k"], m.params["dtype"], m.params.get("groups", 1)): m.value for m in meas}
    rows = [c for c in load_published() if c.hardware == "h100" and c.evaluator == "gemm"]
    assert len(rows) >= 20
    for c in rows:
        p = c.params
        key = (p["m"], p["n"], p["k"], p["dtype"], p.get("groups", 1))
        assert key in have, c.case
        assert c.published == pytest.approx(have[key], rel=1e-9), c.case
        assert c.unit == "us" and c.metric == "latency_us"
