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
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", help="Override a value by dotted key, KEY=VALUE (repeatable); keys as in `show --format json`.")]


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


def parse_ms(text: str, option: str) -> float:
    from cmperf.errors import SpecError

    t = text.strip().lower()
    scale = 1.0
    if t.endswith("ms"):
        t = t[:-2]
    elif t.endswith("s"):
        t, scale = t[:-1], 1e3
    try:
        v = float(t) * scale
    except ValueError:
        raise SpecError(f"expected a time such as 50, 50ms or 0.05s, got {text!r}", where=option) from None
    if not (v > 0 and v < 1e9):
        raise SpecError(f"expected a positive time, got {text!r}", where=option)
    return v
