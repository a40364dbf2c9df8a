"""Fuzz: hostile measurement CSVs (calibrate) and published-results CSVs (validate). A file is read
into rows, or refused with a SpecError naming the file (and line); a published row the model
evaluates gives a finite prediction."""

from __future__ import annotations

import csv
import io
import itertools
import math

from hypothesis import given
from hypothesis import strategies as st

from cmperf.errors import CmperfError, SpecError
from tests.hostile.conftest import HOSTILE_NUMBERS, PUBLISHED, settings_for

_n = itertools.count()
CELLS = st.one_of(st.sampled_from(HOSTILE_NUMBERS), st.sampled_from(["gemm", "dispatch", "combine", "decode", "prefill", "us", "ms", "s",
                                                                      "TFLOPS", "tokens/s", "tflops", "seconds", "tpot_ms", "tokens_per_s",
                                                                      "int8", "fp8", "perfect", "8", "128", "96", "116", "x" * 200_000]),
                  st.text(max_size=8))
COLUMNS = ["kind", "value", "unit", "metric", "m", "n", "k", "dtype", "groups", "ep", "tokens", "devices", "batch", "kv_len", "microbatches",
           "mtp", "mtp_acceptance", "eplb", "tokens_per_device", "input_len", "label", "note", "nosuch", "kind"]


def _write(tmp, text: str) -> str:
    path = tmp / f"fuzz-{next(_n)}.csv"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    return str(path)


def _csv_text(rows) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def _read_or_refused(read, tmp, text: str):
    """(path, read(path)) of a fuzzed file, or (path, None) where it is refused by a message naming it."""
    path = _write(tmp, text)
    try:
        return path, read(path)
    except SpecError as exc:
        assert path in str(exc)
        return path, None


@settings_for(80)
@given(st.lists(st.sampled_from(COLUMNS), min_size=1, max_size=8), st.lists(st.lists(CELLS, max_size=9), max_size=4),
       st.sampled_from(["", "\ufeff", "# comment\n", "\n\n"]))
def test_fuzz_measurement_csv(tmp_path_factory, header, rows, lead):
    from cmperf.validation.measurements import read_measurements

    _, meas = _read_or_refused(read_measurements, tmp_path_factory.getbasetemp(), lead + _csv_text([header, *rows]))
    for m in meas or ():
        assert math.isfinite(m.value) and m.value > 0 and m.si_per_unit > 0


PUB_LINES = PUBLISHED.read_text(encoding="utf-8").splitlines()
PUB_HEADER = next(ln for ln in PUB_LINES if ln.startswith("case,"))
PUB_ROWS = [r for r in csv.reader([ln for ln in PUB_LINES if ln and not ln.startswith("#") and ln != PUB_HEADER])]


@settings_for(60)
@given(st.sampled_from(PUB_ROWS), st.lists(st.tuples(st.integers(0, 11), CELLS), min_size=1, max_size=2), st.booleans())
def test_fuzz_published_csv(tmp_path_factory, row, edits, param_edit):
    from cmperf.validation.cases import evaluate_case, load_published

    row = list(row)
    for col, cell in edits:
        if param_edit and col == 4:  # keep the params column's form: key=value items
            cell = f"{row[4]};{cell}=1" if row[4] else f"{cell}=1"
        row[col] = cell
    path, cases = _read_or_refused(load_published, tmp_path_factory.getbasetemp(), PUB_HEADER + "\n" + _csv_text([row]))
    for case in cases or ():
        try:
            out = evaluate_case(case)
        except SpecError as exc:
            assert path in str(exc) or (exc.where or "").startswith("--"), str(exc)
            continue
        except CmperfError:
            continue
        assert math.isfinite(out["predicted"]) and math.isfinite(out["error_pct"])
