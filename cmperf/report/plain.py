"""Output that is not a terminal (a pipe, a file, a test runner): rich's characters without rich's console.

Where the output is not a terminal, rich draws no styles, and what it writes for a line of plain
text or for a table whose columns fit unwrapped is simple: the line broken at words where it is
wider than the console, the table's boxes and padded cells. `PlainConsole` writes exactly those
characters itself (tests compare them with rich's, case by case and over random text and tables)
and hands anything else (tab stops, a table that has to wrap its text) to a rich console, imported
then. Importing and laying out through rich's console is most of the time a short command spends
printing (`cmperf estimate`: 36 of 58 ms).
"""

from __future__ import annotations

import os
import sys
from typing import Sequence

#: Environment variables with which rich treats any output as a terminal (styles and all).
_FORCE_TERMINAL = ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")


#: Padding rich puts either side of a cell (Table's default padding (0, 1)).
CELL_PADDING = 2


def drawn_width(widths: Sequence[int]) -> int:
    """Width of a table drawn with columns of these widths (padding included): the columns plus
    the borders, one per column boundary and the two edges."""
    return sum(widths) + len(widths) + 1


def plain_output(stream=None) -> bool:
    """Whether rich would draw to `stream` (default stdout) without styles: not a terminal, no
    variable that forces one, and an encoding that holds the box characters."""
    stream = stream or sys.stdout
    if any(os.environ.get(v) for v in _FORCE_TERMINAL):
        return False
    try:
        if stream.isatty():
            return False
    except (AttributeError, ValueError):
        return False
    return (getattr(stream, "encoding", None) or "").lower().replace("-", "").startswith("utf")


def wrap(text: str, width: int) -> list[str] | None:
    """The lines rich's console prints for `text` at `width` cells (no styles, no markup), or None
    where rich does more than break at words (tab stops).

    Each line of the text is broken where rich breaks it (`rich._wrap.divide_line`, folding words
    wider than the console); trailing spaces past the width go, and a line is cropped to the width."""
    if "\t" in text:
        return None
    from rich.cells import cell_len, set_cell_size

    out = []
    for line in text.split("\n"):
        if len(line) <= width and cell_len(line) <= width:  # nothing to break, strip or crop (rich strips by characters)
            out.append(line)
            continue
        try:
            from rich._wrap import divide_line
        except ImportError:  # a rich without it: let rich draw
            return None
        offsets = divide_line(line, width, fold=True)
        for start, end in zip([0, *offsets], [*offsets, len(line)]):
            piece = line[start:end]
            if len(piece) > width:  # rich's rstrip_end: trailing whitespace past the width
                piece = piece[:len(piece) - min(len(piece) - len(piece.rstrip()), len(piece) - width)]
            if cell_len(piece) > width:
                piece = set_cell_size(piece, width)
            out.append(piece)
    return out


def draw_table(title: str | None, headers: Sequence[str], columns: Sequence[Sequence[str]], right: Sequence[bool],
               widths: Sequence[int]) -> str | None:
    """rich's drawing of a table (HEAVY_HEAD box, one space either side of a cell) whose column
    `widths` (padding included) hold every line of every header and cell unwrapped: the title
    left-justified across the table, wrapped at words where it is wider; numbers right-justified,
    text left. None where rich would do more (a tab stop)."""
    from rich.box import HEAVY_HEAD as box  # rich's default Table box, the frame of every table cmperf draws
    from rich.cells import cell_len

    inner = [w - CELL_PADDING for w in widths]
    total = drawn_width(widths)

    def rule(parts) -> str:
        left, fill, cross, end = parts
        return left + cross.join(fill * w for w in widths) + end

    def fit(line: str, w: int, to_right: bool) -> str:
        if to_right:
            line = line.rstrip()
            return " " * (w - cell_len(line)) + line
        return line + " " * (w - cell_len(line))

    def row(cells: Sequence[str], bars) -> list[str]:
        left, bar, end = bars
        split = [c.split("\n") for c in cells]
        height = max(len(s) for s in split)
        return [left + bar.join(" " + fit(s[i] if i < len(s) else "", w, r) + " " for s, w, r in zip(split, inner, right)) + end
                for i in range(height)]

    if any("\t" in c for c in (*headers, *(x for col in columns for x in col))):
        return None
    out = []
    if title:
        lines = wrap(title, total)
        if lines is None:
            return None
        out += [fit(line, total, False) for line in lines]
    out += [rule((box.top_left, box.top, box.top_divider, box.top_right)), *row(headers, (box.head_left, box.head_vertical, box.head_right)),
            rule((box.head_row_left, box.head_row_horizontal, box.head_row_cross, box.head_row_right))]
    for cells in zip(*columns):
        out += row(cells, (box.mid_left, box.mid_vertical, box.mid_right))
    out.append(rule((box.bottom_left, box.bottom, box.bottom_divider, box.bottom_right)))
    return "".join(line + "\n" for line in out)


class PlainConsole:
    """The console where output is not a terminal: `print` writes text and fitted tables itself
    (what rich writes there, see the module) and hands anything else to a rich console."""

    def __init__(self, width: int):
        self.width = width
        self._rich = None

    def print(self, obj="", highlight: bool = False) -> None:
        if isinstance(obj, str):
            from cmperf.text import safe_text

            lines = wrap(safe_text(obj), self.width)
            if lines is not None:
                sys.stdout.write("".join(line + "\n" for line in lines))
                return
        self.rich().print(obj)

    def write(self, drawn: str) -> None:
        """Write text already drawn for this console (`draw_table`)."""
        sys.stdout.write(drawn)

    def rich(self):
        """A rich console of the same width (styles off, as rich leaves them where this one is used)."""
        if self._rich is None:
            self._rich = rich_console(self.width)
        return self._rich


def rich_console(width: int):
    """A rich console of this width printing text as given (no markup, highlighting or emoji
    codes), control characters made visible."""
    from rich.console import Console

    from cmperf.text import safe_text

    class SafeConsole(Console):
        def print(self, *objects, **kwargs):
            super().print(*(safe_text(o) if isinstance(o, str) else o for o in objects), **kwargs)

    return SafeConsole(width=width, highlight=False, markup=False, emoji=False, soft_wrap=False)
