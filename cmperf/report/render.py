"""Render rows (a list of dicts with the same keys) as table, JSON, CSV or markdown."""

from __future__ import annotations

import io
import math
import re
from typing import Any, Sequence

from cmperf.report.plain import CELL_PADDING, PlainConsole, draw_table, drawn_width, plain_output, rich_console

FORMATS = ("table", "json", "csv", "md")


def _plain(v: Any) -> Any:
    """JSON-safe scalar: numpy scalars to Python, NaN/inf to None."""
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def fmt_number(v: Any) -> str:
    """A cell as a person reads it: whole numbers with separators, SI prefixes past a million,
    never scientific notation (see `report.numbers.si`)."""
    from cmperf.report.numbers import si

    v = _plain(v)
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if v == 0:
            return "0"
        a = abs(v)
        if 1e-3 <= a < 1e6 and a >= 100:
            return f"{v:,.1f}".rstrip("0").rstrip(".") if v != int(v) else f"{v:,.0f}"
        return si(v, digits=4)
    return str(v)


def to_json(obj: Any) -> str:
    import json

    def conv(o):
        if isinstance(o, dict):
            return {k: conv(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [conv(v) for v in o]
        return _plain(o)

    return json.dumps(conv(obj), indent=2)


def to_csv(rows: Sequence[dict]) -> str:
    import csv

    if not rows:
        return ""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: _plain(v) for k, v in r.items()})
    return buf.getvalue()


def to_markdown(rows: Sequence[dict], headers: Sequence[str] | None = None) -> str:
    from tabulate import tabulate

    if not rows:
        return ""
    cols = list(rows[0])
    body = [[fmt_number(r[c]) for c in cols] for r in rows]
    return tabulate(body, headers=list(headers or cols), tablefmt="github", disable_numparse=True)


#: Terminal width when the output is not a terminal (a pipe or a file) and $COLUMNS is unset.
DEFAULT_WIDTH = 120


def make_console(width: int | None = None):
    """A console as wide as the terminal (or $COLUMNS, or DEFAULT_WIDTH when piped). Text is
    printed as given (no rich markup), with control characters made visible (`safe_text`): a name
    or note from a file cannot restyle or retitle the terminal. Where the output is not a terminal
    it is a `PlainConsole` (the same characters, drawn without importing rich's console)."""
    import shutil

    width = width or shutil.get_terminal_size((DEFAULT_WIDTH, 40)).columns
    return PlainConsole(width) if plain_output() else rich_console(width)


def _is_number(v: Any) -> bool:
    v = _plain(v)
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _cells(rows: Sequence[dict], cols: list) -> dict:
    """Each column's cells as the text drawn (numbers formatted, control characters made visible)."""
    from cmperf.inputs import safe_text

    return {c: [safe_text(fmt_number(r[c])) for r in rows] for c in cols}


#: A number written as text: signed, with a currency sign, thousands separators, an exponent, a
#: percent, "x" or " pt" (percentage points) suffix, or two such joined by "/" ($0.241, -18.0%,
#: 80%/62%, 1.8x, 1.2e+03, -0.8 pt). A name
#: with digits in it (h100, cm384-paper-decode) or a path is text.
_NUMBER_TEXT = re.compile(r"^[+-]?\$?\d[\d,]*(\.\d+)?(e[+-]?\d+)?([%x]| pt)?(/[+-]?\$?\d[\d,]*(\.\d+)?(e[+-]?\d+)?([%x]| pt)?)*$")


def _table(rows: Sequence[dict], cols: list, names: dict, title: str | None, whole_words: bool = True, cells: dict | None = None):
    from rich.cells import cell_len
    from rich.table import Table

    from rich.text import Text

    from cmperf.inputs import safe_text

    cells = cells or _cells(rows, cols)
    t = Table(title=Text(safe_text(title)) if title else None, title_justify="left", show_lines=False)
    for c in cols:
        col = cells[c]
        if _right_justified(rows, c, col):
            # A number ($0.241, -18.0%, 80%/62% too) never breaks: its column is as wide as its widest line.
            t.add_column(Text(safe_text(str(names[c]))), justify="right", no_wrap=True, min_width=max(_widest(str(names[c])), *(_widest(x) for x in col)))
        else:
            # Text wraps at words (no narrower than its longest word, up to 14) unless the table cannot fit that way.
            word = min(14, max((cell_len(w) for x in col for w in x.split()), default=1)) if whole_words else None
            t.add_column(Text(safe_text(str(names[c]))), justify="left", overflow="fold", min_width=word)
    for row in zip(*(cells[c] for c in cols)):
        t.add_row(*[Text(x) for x in row])
    return t


def _right_justified(rows: Sequence[dict], c, col: list[str]) -> bool:
    """Whether column `c` (drawn as the cells `col`) holds numbers, drawn right-justified and never broken."""
    return _is_number(rows[0][c]) or all(_NUMBER_TEXT.match(x) or x == "-" for x in col)


def _widest(text: str) -> int:
    """Cells taken by the widest line of a header or cell."""
    from rich.cells import cell_len

    return max((cell_len(line) for line in text.splitlines()), default=0)


def _natural_widths(headers: Sequence[str], cells: dict, cols: list) -> list[int]:
    """Each column's width drawn unwrapped, padding included: rich's own measure of the table
    `_table` draws for these cells (the widest line of the header or any cell; a column's minimum
    width, its widest line or word, never exceeds that), taken without drawing it."""
    return [max(_widest(h), *(_widest(x) for x in cells[c])) + CELL_PADDING for h, c in zip(headers, cols)]


def _fix_widths(table, widths: list[int]) -> None:
    """Pin each column at its natural width (`widths`, padding included), so that drawing the table
    (known to fit) does not measure every cell again: rich draws a fixed-width column as it would
    have measured it. Where `drawn_width` of them is within the console, the table is drawn whole
    without wrapping a cell (else the caller leaves columns out first)."""
    for c, w in zip(table.columns, widths):
        c.width = w - CELL_PADDING


def print_table(rows: Sequence[dict], title: str | None = None, headers: Sequence[str] | None = None, console=None,
                drop_when_narrow: Sequence[str] = ()) -> None:
    """A rich table that fits the console: drawn unwrapped where it fits; else the columns in
    `drop_when_narrow` are left out, in order, until it does (CSV and JSON keep them all); past
    that, text wraps and numbers never break."""
    console = console or make_console()
    if not rows:
        console.print(f"{title or ''}: (no rows)")
        return
    from cmperf.inputs import safe_text

    cols = list(rows[0])
    names = dict(zip(cols, headers or cols))
    by_name = {str(v): k for k, v in names.items()}
    cells = _cells(rows, cols)
    heads = {c: safe_text(str(names[c])) for c in cols}
    # A column's natural width depends on its own cells only: leaving columns out is arithmetic.
    natural = dict(zip(cols, _natural_widths([heads[c] for c in cols], cells, cols)))

    def fits(kept: list) -> bool:
        return drawn_width([natural[c] for c in kept]) <= console.width

    for c in drop_when_narrow:
        if fits(cols):
            break
        c = by_name.get(c, c)
        if c in cols and len(cols) > 2:
            cols.remove(c)
    if not fits(cols):
        console.print(_table(rows, cols, names, title, whole_words=False, cells=cells))  # wrap text, at any character if need be
        return
    widths = [natural[c] for c in cols]
    if isinstance(console, PlainConsole):
        drawn = draw_table(safe_text(title) if title else None, [heads[c] for c in cols], [cells[c] for c in cols],
                           [_right_justified(rows, c, cells[c]) for c in cols], widths)
        if drawn is not None:
            console.write(drawn)
            return
    table = _table(rows, cols, names, title, cells=cells)
    _fix_widths(table, widths)
    console.print(table)


def emit(rows: Sequence[dict], fmt: str, title: str | None = None, headers: Sequence[str] | None = None,
         drop_when_narrow: Sequence[str] = ()) -> None:
    """Print rows to stdout in one of FORMATS (control characters in text made visible); a table
    leaves out the columns `drop_when_narrow` names, in order, where the console is too narrow."""
    from cmperf.inputs import safe_text

    if fmt == "json":
        print(to_json(list(rows)))
    elif fmt == "csv":
        print(safe_text(to_csv(rows)), end="")
    elif fmt == "md":
        if title:
            print(safe_text(f"### {title}\n"))
        print(safe_text(to_markdown(rows, headers)))
    else:
        print_table(rows, title, headers, drop_when_narrow=drop_when_narrow)
