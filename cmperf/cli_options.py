"""What every command module shares: the typer app, option types, choices and small parsers.

`cli.py` and the modules that add commands (`cli_whatif.py`, `cli_validate.py`) all import this
module and none imports another, so the command modules form no import circle.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Optional

import typer

app = typer.Typer(
    help="cmperf: analytical performance model of LLM inference serving (DeepSeek-R1 on CloudMatrix384 and others).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


class Format(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"
    md = "md"


FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="Output format.")]
HardwareOpt = Annotated[str, typer.Option("--hardware", help="Hardware name (see `cmperf hardware list`) or path to a .toml file.")]
ModelOpt = Annotated[str, typer.Option("--model", help="Model name (see `cmperf model list`) or path to a .toml file.")]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", metavar="KEY=VALUE", help="Override a value by dotted key, KEY=VALUE (repeatable); keys as in `show --format json`; units allowed: 96GB, 1.6TB/s, 50us, 32k.")]


class Phase(str, Enum):
    decode = "decode"
    prefill = "prefill"


class Eplb(str, Enum):
    default = "default"
    perfect = "perfect"


class CachePath(str, Enum):
    ub = "ub"
    vpc = "vpc"


def bounds(lo, hi=None):
    """Typer's min/max keywords for a numeric option."""
    return {"min": lo, "max": hi}


def frange(lo: float, hi: float):
    """A real-valued option in [lo, hi]: NaN and infinities are refused with the range named
    (a plain min/max check lets NaN through to a misleading message)."""

    def parse(text):
        from cmperf.errors import SpecError
        from cmperf.inputs import check_number, safe_text

        if isinstance(text, float):  # a default
            return text
        try:
            return check_number(text, "", whole=False, lo=lo, hi=hi, text_ok=True)
        except SpecError:
            raise typer.BadParameter(f"expected a finite number in [{lo:g}, {hi:g}], got {safe_text(repr(text))}") from None

    return {"parser": parse, "metavar": "FLOAT"}


def parse_ms(text: str, option: str) -> float:
    from cmperf.errors import SpecError
    from cmperf.inputs import TPOT_MS_RANGE, TTFT_MS_RANGE, safe_text
    from cmperf.units import MS

    t = text.strip().lower()
    scale = 1.0
    if t.endswith("ms"):
        t = t[:-2]
    elif t.endswith("s"):
        t, scale = t[:-1], 1 / MS
    try:
        v = float(t.replace("_", "")) * scale
    except ValueError:
        raise SpecError(f"expected a time such as 50, 50ms or 0.05s, got {safe_text(repr(text))}", where=option) from None
    lo, hi = TTFT_MS_RANGE if option == "--ttft" else TPOT_MS_RANGE
    if not lo <= v <= hi:
        raise SpecError(f"expected a time from {lo:g} ms to {hi:g} ms, got {safe_text(repr(text))}", where=option)
    return v
