"""Checks every entry point shares: numbers, text, names and file structure.

Hardware and model files, `--set`, the measurement and published CSVs, CLI options and the Python
entry points (`Workload`, `Deployment`, `PlanRequest`) all validate through these functions, so a value is
refused the same way, with the same bound in the message, wherever it comes from.
"""

from __future__ import annotations

import math
import re
from typing import Any

from cmperf.errors import SpecError
from cmperf.text import _UNSAFE, safe_text  # noqa: F401  (safe_text is used here and re-exported)

#: Whole numbers (counts and shapes) fit a signed 32-bit integer; with every factor below this,
#: the model's products of a few of them stay exact in float64 and within numpy's int64.
MAX_INT = 2**31 - 1
#: Counts derived from several whole numbers (parameters, elements) must stay exactly representable
#: as float64 integers (2**53), so that bytes, FLOPs and memory derived from them stay exact and finite.
MAX_DERIVED_COUNT = 2**53
#: A physical quantity in SI base units beyond these magnitudes is a typo, not hardware.
MIN_MAGNITUDE, MAX_MAGNITUDE = 1e-30, 1e30
#: Deepest nesting of arrays and inline tables a TOML file may have: the schema needs two
#: (a table of inline tables); the bound keeps the parser's recursion far from Python's limit.
MAX_TOML_NESTING = 16
#: SLOs in milliseconds, as [lowest, highest]: below a microsecond no step or batch completes, and
#: beyond these an SLO constrains nothing (about 12 days per token; 30 years to the first token).
TPOT_MS_RANGE = (1e-3, 1e9)
TTFT_MS_RANGE = (1e-3, 1e12)
#: The workload every entry point serves unless told otherwise (Workload, PlanRequest, what-if
#: scenarios, the CLI's options): the paper's decode workload, 4K-token prompts, 256 output tokens
#: and 70% acceptance of each speculative token (deployments/cm384-paper-decode.toml, [workload]).
DEFAULT_INPUT_LEN, DEFAULT_OUTPUT_LEN, DEFAULT_MTP_ACCEPTANCE = 4096, 256, 0.7
#: Default highest utilisation a sized pool may run at. Reason: at rho = 0.8 a 25% surge above the
#: sized rate still finds capacity, and the queueing wait, which grows as 1 / (1 - rho), is still
#: a small part of TTFT; above about 0.85 it climbs steeply (x2 from 0.8 to 0.9, x5 to 0.96).
DEFAULT_MAX_UTILISATION = 0.8
#: Longest report tag: the folder name PREFIX-TAG-N must stay under the 255-byte name limit of
#: common file systems.
MAX_TAG_CHARS = 100

_TAG_OK = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=@-]*")


def check_text(value: Any, where: str, what: str = "a string") -> str:
    """A string without control characters (tab and newline allowed), or a SpecError."""
    if not isinstance(value, str):
        raise SpecError(f"expected {what}, got {value!r}", where=where)
    bad = _UNSAFE.search(value)
    if bad:
        raise SpecError(f"expected {what} without control characters, got {ascii(bad.group(0))} at position {bad.start()}", where=where)
    return value


def check_tag(tag: str | None, where: str = "--tag") -> str | None:
    """A report tag: a plain folder name of letters, digits and . _ + = @ - (not starting with . or -)."""
    if tag is None:
        return None
    if not isinstance(tag, str) or not _TAG_OK.fullmatch(tag) or len(tag) > MAX_TAG_CHARS:
        raise SpecError(f"expected a plain folder name of at most {MAX_TAG_CHARS} letters, digits and . _ + = @ - "
                        f"(starting with a letter or digit), got {safe_text(repr(tag))}", where=where)
    return tag


def parse_finite(text: str, where: str, what: str = "", unit: str | None = None) -> float:
    """A finite number written as text (underscores allowed, and a unit: `96GB`, `1.6TB/s`, `50us`,
    `32k`, converted to `unit`, the unit of the key it is for), or a SpecError naming `where`
    (and `what` the number stands for, e.g. START)."""
    as_what = f" as {what}" if what else ""
    try:
        value = float(str(text).replace("_", ""))
    except OverflowError:
        raise SpecError(f"expected a number{as_what}, got {safe_text(repr(text))}", where=where) from None
    except ValueError:
        from cmperf.units import parse_quantity

        try:
            value = parse_quantity(str(text), unit)
        except ValueError as exc:
            raise SpecError(f"{safe_text(str(exc))}{as_what}", where=where) from None
    if not math.isfinite(value):
        raise SpecError(f"expected a finite number{as_what}, got {safe_text(repr(text))}", where=where)
    return value


def _bounds_text(lo, hi, lo_open: bool) -> str:
    if lo == 0 and lo_open:
        return f"above 0 and at most {hi:g}"
    left = "(" if lo_open else "["
    return f"in {left}{lo:g}, {hi:g}]"


def check_number(value: Any, where: str, *, whole: bool, lo: float, hi: float, lo_open: bool = False, text_ok: bool = False):
    """A Python-API or CSV value: a whole number or a finite real in [lo, hi] ((lo, hi] with lo_open).

    bool, None, NaN, infinities and (unless `text_ok`) strings are refused with a SpecError that
    names `where` and the allowed range."""
    refused = SpecError(f"expected {'a whole number' if whole else 'a number'} {_bounds_text(lo, hi, lo_open)}, "
                        f"got {safe_text(repr(value))}", where=where)
    if isinstance(value, str) and text_ok:
        try:
            value = parse_finite(value, where)
        except SpecError:
            raise refused from None
    if isinstance(value, bool) or not (isinstance(value, (int, float)) or _is_np_real(value)):
        raise refused
    try:
        f = float(value)
    except (OverflowError, TypeError, ValueError):
        raise refused from None
    if not math.isfinite(f) or (whole and not f.is_integer()) or not ((lo < f) if lo_open else (lo <= f)) or not f <= hi:
        raise refused
    return int(f) if whole else f


def _is_np_real(value: Any) -> bool:
    try:
        import numpy as np
    except ImportError:  # pragma: no cover
        return False
    return isinstance(value, (np.integer, np.floating))


def toml_nesting(text: str) -> int:
    """Deepest nesting of [ ] and { } in TOML text, outside strings and comments (table headers
    count as one level). Linear time, no recursion, so any input is safe to measure."""
    depth = deepest = 0
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "#":
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        if c in "\"'":
            triple = text.startswith(c * 3, i)
            quote = c * 3 if triple else c
            j = i + len(quote)
            while j < n:
                if c == '"' and text[j] == "\\":
                    j += 2
                    continue
                if text.startswith(quote, j):
                    break
                if not triple and text[j] == "\n":
                    break
                j += 1
            i = j + len(quote)
            continue
        if c in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif c in "]}":
            depth = max(depth - 1, 0)
        i += 1
    return deepest


def option_name(field: str) -> str:
    """The CLI option of a Python field: input_len -> --input-len."""
    return "--" + field.replace("_", "-")


def check_fields(obj: Any, bounds: dict[str, tuple], choices: dict[str, tuple] | None = None, required: tuple = ()) -> dict[str, Any]:
    """Check the fields of a Python request object (None: use the default, except for the
    `required` ones) against {field: (whole, lo, hi[, lo_open])} and {field: allowed values};
    errors name the matching CLI option, so the Python API and the command line say the same
    thing. Returns the checked values."""
    out = {}
    for name, b in bounds.items():
        v = getattr(obj, name)
        if v is not None or name in required:
            whole, lo, hi, *rest = b
            out[name] = check_number(v, option_name(name), whole=whole, lo=lo, hi=hi, lo_open=bool(rest and rest[0]))
    for name, allowed in (choices or {}).items():
        v = getattr(obj, name)
        if not isinstance(v, str) or v not in allowed:
            raise SpecError(f"expected one of {', '.join(map(repr, allowed))}, got {safe_text(repr(v))}", where=option_name(name))
    return out


def check_sets(sets: Any, where: str = "--set") -> dict:
    """`sets` of a Python request: a mapping of dotted keys to values (None for none)."""
    if sets is None:
        return {}
    if not isinstance(sets, dict):
        raise SpecError(f"expected a mapping of KEY to VALUE, got {safe_text(repr(sets))}", where=where)
    for k, v in sets.items():
        if not isinstance(k, str) or not k:
            raise SpecError(f"expected dotted keys, got {safe_text(repr(k))}", where=where)
        if isinstance(v, bool) or not isinstance(v, (str, int, float)):
            raise SpecError(f"expected a number or text for {safe_text(k)}, got {safe_text(repr(v))}", where=where)
    return dict(sets)


#: Most data rows a published-results or measurements CSV may have: each row is at least one model
#: evaluation (tens of milliseconds for a whole deployment), so this keeps a run under a minute.
MAX_CSV_ROWS = 2_000


def csv_lines(path, name: str, max_rows: int | None = None, what: str = "rows") -> list[tuple[int, list[str]]]:
    """(line number, cells) of each CSV record of a file, skipping blank lines and '#' comments;
    a leading byte-order mark is allowed. Reading stops past `max_rows` data rows (after the
    header) with a SpecError, so a huge file is refused without being read whole; a cell beyond
    csv's field limit, a NUL byte or undecodable text is a SpecError naming the line."""
    import csv

    state = {"line": 0}

    def records(fh):
        for i, ln in enumerate(fh, start=1):
            state["line"] = i
            if ln.strip() and not ln.lstrip().startswith("#"):
                yield ln

    out: list[tuple[int, list[str]]] = []
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            reader = csv.reader(records(fh))
            while True:
                try:
                    cells = next(reader)
                except StopIteration:
                    break
                except csv.Error as exc:
                    limit = csv.field_size_limit()
                    why = f"a cell longer than {limit:,} characters" if "field larger" in str(exc) else f"not CSV ({exc})"
                    raise SpecError(f"{why}; expected short cells of text or numbers", where=f"{name}: line {state['line']}") from None
                out.append((state["line"], cells))
                if max_rows is not None and len(out) > max_rows + 1:
                    raise SpecError(f"more than {max_rows:,} {what}; expected at most {max_rows:,}", where=name)
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # ValueError: a path with a NUL byte
        raise SpecError(f"cannot read the file: {safe_text(exc)}", where=name) from None
    return out


def is_plain_number(text: str) -> bool:
    """Whether text reads as a number without units (then it is checked and quoted as written)."""
    try:
        float(text.replace("_", ""))
    except ValueError:
        return False
    return True
