"""Terminal tables: the fit test and the pinned widths agree with rich's own measure and drawing,
and a table never runs past the console."""

from __future__ import annotations

import io

from hypothesis import given, settings
from hypothesis import strategies as st
from rich.cells import cell_len
from rich.console import Console

from cmperf.report.plain import drawn_width
from cmperf.report.render import _cells, _fix_widths, _natural_widths, _table, print_table

# Wide (two-cell) and combining (zero-cell) characters too: widths are cells, not characters.
WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-_/%.\u4e2d\u0301", min_size=1, max_size=18)
TEXT = st.lists(WORD, min_size=1, max_size=5).map(" ".join)
CELL = st.one_of(
    TEXT,
    st.lists(TEXT, min_size=2, max_size=3).map("\n".join),  # a note with a line break
    st.integers(-10**9, 10**9),
    st.floats(-1e9, 1e9, allow_nan=False),
)


@st.composite
def tables(draw):
    ncols = draw(st.integers(1, 6))
    names = [f"col {i}" + draw(st.sampled_from(["", " name", " a longer header"])) for i in range(ncols)]
    kinds = [draw(st.sampled_from(["text", "number"])) for _ in range(ncols)]
    nrows = draw(st.integers(1, 6))
    rows = []
    for _ in range(nrows):
        rows.append({n: draw(CELL if k == "text" else st.integers(-10**6, 10**6)) for n, k in zip(names, kinds)})
    return rows


def _draw(table, width: int) -> str:
    con = Console(width=width, file=io.StringIO(), color_system=None, highlight=False, markup=False, emoji=False)
    con.print(table)
    return con.file.getvalue()


@settings(max_examples=150, deadline=None)
@given(tables())
def test_natural_widths_are_riches_own_measure(rows):
    cols = list(rows[0])
    t = _table(rows, cols, {c: c for c in cols}, "title")
    con = Console(width=10_000, file=io.StringIO())
    assert _natural_widths(cols, _cells(rows, cols), cols) == [t._measure_column(con, con.options, c).maximum for c in t.columns]


@settings(max_examples=150, deadline=None)
@given(tables(), st.integers(20, 200))
def test_a_table_that_fits_draws_the_same_with_pinned_widths(rows, width):
    cols = list(rows[0])
    plain = _table(rows, cols, {c: c for c in cols}, "title")
    widths = _natural_widths(cols, _cells(rows, cols), cols)
    if drawn_width(widths) <= width:
        drawn = _draw(plain, width)
        assert all(cell_len(line) <= width for line in drawn.splitlines())
        pinned = _table(rows, cols, {c: c for c in cols}, "title")
        _fix_widths(pinned, widths)
        assert _draw(pinned, width) == drawn


@settings(max_examples=100, deadline=None)
@given(tables(), st.integers(30, 160))
def test_printed_table_never_runs_past_the_console(rows, width):
    con = Console(width=width, file=io.StringIO(), color_system=None, highlight=False, markup=False, emoji=False)
    print_table(rows, "title", console=con, drop_when_narrow=list(rows[0])[1:])
    assert all(cell_len(line) <= width for line in con.file.getvalue().splitlines())


def test_columns_are_left_out_in_order_until_the_table_fits():
    rows = [{"name": "a deployment", "tokens/s": 1234.5, "wide note": "x" * 40, "other note": "y" * 30}]
    con = Console(width=60, file=io.StringIO(), color_system=None)
    print_table(rows, "t", console=con, drop_when_narrow=["wide note", "other note"])
    out = con.file.getvalue()
    assert "wide note" not in out and "other note" in out and "tokens/s" in out


def test_numbers_written_as_text_align_right_and_names_with_digits_do_not():
    from cmperf.report.render import _NUMBER_TEXT

    for number in ("$0.241", "-18.0%", "+9.5%", "80%/62%", "1.8x", "1,943", "2,126.8", "1.2e+03", "49.4", "0", "-0.8 pt"):
        assert _NUMBER_TEXT.match(number), number
    for name in ("h100", "cm384-paper-decode", "cloudmatrix384", "/work/deployments/h100.toml", "EP320", "gb200-nvl72", "4K", "1.2 ms"):
        assert not _NUMBER_TEXT.match(name), name
    rows = [{"name": "h100", "value": "1.8x"}, {"name": "cm384-paper-decode", "value": "$0.241"}]
    t = _table(rows, ["name", "value"], {"name": "name", "value": "value"}, None)
    assert [c.justify for c in t.columns] == ["left", "right"] and t.columns[1].no_wrap and not t.columns[0].no_wrap
