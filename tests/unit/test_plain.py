"""Output that is not a terminal: `PlainConsole` writes exactly what rich's console writes there,
for text at any width and for every table `print_table` draws unwrapped, and hands the rest to rich."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from cmperf.report.plain import PlainConsole, draw_table, plain_output, wrap
from cmperf.report.render import print_table

# Spaces in runs, wide (two-cell) and combining (zero-cell) characters, long words and line breaks.
CHARS = "ab cdefg  hij-/%.,\u4e2d\u0301\n"
TEXT = st.text(alphabet=CHARS, max_size=200)
WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-_/%.\u4e2d\u0301", min_size=1, max_size=18)
CELL = st.one_of(
    st.lists(WORD, min_size=1, max_size=5).map(" ".join),
    st.lists(st.lists(WORD, min_size=1, max_size=3).map(" ".join), min_size=2, max_size=3).map("\n".join),
    st.integers(-10**9, 10**9),
    st.floats(-1e9, 1e9, allow_nan=False),
    st.sampled_from(["-", "$0.241", "-18.0%", "80%/62%", "1.8x", "-0.8 pt", ""]),
)


def _rich(width: int) -> Console:
    return Console(width=width, file=io.StringIO(), color_system=None, highlight=False, markup=False, emoji=False, soft_wrap=False)


@settings(max_examples=400, deadline=None)
@given(TEXT, st.integers(1, 120))
def test_text_wraps_as_rich_wraps_it(text, width):
    rich = _rich(width)
    rich.print(text)
    assert "".join(line + "\n" for line in wrap(text, width)) == rich.file.getvalue()


def test_text_wrapping_cases():
    assert wrap("one two three", 7) == ["one two", "three"]
    assert wrap("abcdefghij", 4) == ["abcd", "efgh", "ij"]  # a word wider than the line is folded
    assert wrap("a  b", 2) == ["a ", "b"]  # a space within the width stays, as rich keeps it
    assert wrap("fits exactly", 12) == ["fits exactly"]
    assert wrap("x\n\ny", 5) == ["x", "", "y"]
    assert wrap("tab\there", 80) is None  # tab stops are rich's to expand
    assert wrap("\u0301 ", 1) == ["\u0301"]  # one cell wide, two characters: rich strips past the width by characters


@st.composite
def tables(draw):
    ncols = draw(st.integers(1, 6))
    names = [f"col {i}" + draw(st.sampled_from(["", " name", " a longer header", " \u4e2d"])) for i in range(ncols)]
    kinds = [draw(st.sampled_from(["text", "number"])) for _ in range(ncols)]
    rows = []
    for _ in range(draw(st.integers(1, 6))):
        rows.append({n: draw(CELL if k == "text" else st.integers(-10**6, 10**6)) for n, k in zip(names, kinds)})
    return rows, draw(st.one_of(st.none(), TEXT.filter(lambda t: "\n" not in t and t.strip())))


@settings(max_examples=300, deadline=None)
@given(tables(), st.integers(20, 220))
def test_a_table_prints_as_rich_prints_it(table, width):
    """Whatever the width: drawn here where it fits unwrapped (or with columns left out), by rich where it must wrap."""
    rows, title = table
    rich = _rich(width)
    print_table(rows, title, console=rich, drop_when_narrow=list(rows[0])[1:])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        con = PlainConsole(width)
        con._rich = _rich(width)  # where rich must draw, into the same text
        con._rich.file = out
        print_table(rows, title, console=con, drop_when_narrow=list(rows[0])[1:])
    assert out.getvalue() == rich.file.getvalue()


def test_a_table_drawn_here_by_hand():
    drawn = draw_table("t", ["name", "n"], [["ab\ncd", "x"], ["1.5", "22"]], [False, True], [6, 5])
    assert drawn.splitlines() == [
        "t             ",  # the title, left-justified across the table's 14 cells
        "┏━━━━━━┳━━━━━┓",
        "┃ name ┃   n ┃",
        "┡━━━━━━╇━━━━━┩",
        "│ ab   │ 1.5 │",
        "│ cd   │     │",  # a cell's second line; the row's other cells pad
        "│ x    │  22 │",
        "└──────┴─────┘",
    ]
    from rich.table import Table
    from rich.text import Text

    t = Table(title=Text("t"), title_justify="left")
    t.add_column(Text("name"), justify="left", width=4)
    t.add_column(Text("n"), justify="right", width=3)
    t.add_row(Text("ab\ncd"), Text("1.5"))
    t.add_row(Text("x"), Text("22"))
    rich = _rich(80)
    rich.print(t)
    assert drawn == rich.file.getvalue()


def test_what_rich_must_draw_goes_to_rich(capsys):
    """A tab stop, or a table that must wrap its text, is drawn by rich (imported then)."""
    con = PlainConsole(30)
    assert con._rich is None
    con.print("no tab here")
    assert con._rich is None
    con.print("a\ttab")
    assert con._rich is not None
    rows = [{"name": "a long note " * 6, "n": 1}]
    capsys.readouterr()
    print_table(rows, "t", console=PlainConsole(30))
    out = capsys.readouterr().out
    assert all(len(line) <= 30 for line in out.splitlines()) and "n" in out


def test_plain_only_where_rich_draws_no_styles(monkeypatch):
    class Stream(io.StringIO):
        def __init__(self, tty: bool, encoding: str = "utf-8"):
            super().__init__()
            self._tty, self._encoding = tty, encoding

        def isatty(self):
            return self._tty

        @property
        def encoding(self):
            return self._encoding

    for v in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(v, raising=False)
    assert plain_output(Stream(False))
    assert not plain_output(Stream(True))
    assert not plain_output(Stream(False, "ascii"))  # rich would draw ASCII boxes
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert not plain_output(Stream(False))


@pytest.mark.parametrize("args", [["estimate", "decode"], ["plan", "--no-write"], ["hardware", "list"]])
def test_commands_print_as_through_rich(args, monkeypatch):
    """The same characters from a command whichever console draws them."""
    from typer.testing import CliRunner

    import cmperf.report.plain as plain
    from cmperf.cli import app

    outs = []
    for forced in (False, True):
        if forced:
            monkeypatch.setattr(plain, "plain_output", lambda stream=None: False)
        r = CliRunner().invoke(app, args, env={"COLUMNS": "90"})
        assert r.exit_code == 0, r.output
        outs.append(r.output)
    assert outs[0] == outs[1]


def test_a_piped_estimate_imports_no_rich_console():
    """Piped, `cmperf estimate` prints its lines and tables without rich's console (most of its
    printing time), tables included."""
    code = ("import sys; sys.argv = ['cmperf', 'estimate', 'decode']\n"
            "from cmperf.cli import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print('rich.console' in sys.modules, 'rich.table' in sys.modules)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[-1] == "False False" and any(line.startswith("└") for line in lines)
