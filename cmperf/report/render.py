"""Render rows (a list of dicts with the same keys) as table, JSON, CSV or markdown."""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any, Sequence

FORMATS = ("table", "json", "csv", "md")


def _plain(v: Any) -> Any:
    """JSON-safe scalar: numpy scalars to Python, NaN/inf to None."""
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def fmt_number(v: Any) -> str:
    v = _plain(v)
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if v == 0:
            return "0"
        a = abs(v)
        if a >= 1e5 or a < 1e-3:
            return f"{v:.4g}"
        if a >= 100:
            return f"{v:,.1f}"
        return f"{v:.4g}"
    return str(v)


def to_json(obj: Any) -> str:
    def conv(o):
        if isinstance(o, dict):
            return {k: conv(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [conv(v) for v in o]
        return _plain(o)

    return json.dumps(conv(obj), indent=2)


def to_csv(rows: Sequence[dict]) -> str:
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


def make_console():
    """A console that stays readable when piped: at least 160 columns wide. Text is printed as
    given (no rich markup), with control characters made visible (`safe_text`): a name or note
    from a file cannot restyle or retitle the terminal."""
    import shutil

    from rich.console import Console

    from cmperf.inputs import safe_text

    class SafeConsole(Console):
        def print(self, *objects, **kwargs):
            super().print(*(safe_text(o) if isinstance(o, str) else o for o in objects), **kwargs)

    return SafeConsole(width=max(shutil.get_terminal_size((160, 40)).columns, 160), highlight=False, markup=False, emoji=False)


def print_table(rows: Sequence[dict], title: str | None = None, headers: Sequence[str] | None = None, console=None) -> None:
    from rich.table import Table

    console = console or make_console()
    if not rows:
        console.print(f"{title or ''}: (no rows)")
        return
    cols = list(rows[0])
    from rich.text import Text

    from cmperf.inputs import safe_text

    t = Table(title=Text(safe_text(title)) if title else None, title_justify="left", show_lines=False)
    for i, c in enumerate(headers or cols):
        t.add_column(Text(safe_text(c)), justify="left" if isinstance(_plain(rows[0][cols[i]]), str) else "right")
    for r in rows:
        t.add_row(*[Text(safe_text(fmt_number(r[c]))) for c in cols])
    console.print(t)


def emit(rows: Sequence[dict], fmt: str, title: str | None = None, headers: Sequence[str] | None = None) -> None:
    """Print rows to stdout in one of FORMATS (control characters in text made visible)."""
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
        print_table(rows, title, headers)
