"""One way to print a number for a person: SI prefixes for large and small quantities, thousands
separators in between, never scientific notation.

    si(7.52e14, "OP/s") -> "752 TOP/s"     si(1.6e12, "B/s") -> "1.6 TB/s"    si(2500) -> "2,500"
    si(0.04757) -> "0.0476"                si(5e-05, "s") -> "50 us"           si(116.0) -> "116"
"""

from __future__ import annotations

import math

_BIG = ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"))
_SMALL = ((1e-3, "m"), (1e-6, "u"), (1e-9, "n"))
#: Units that take an SI prefix (a count, a fraction or a ratio does not).
PREFIXABLE = ("B", "B/s", "OP/s", "FLOP/s", "s", "W", "J", "Hz")


def _trim(x: float, digits: int) -> str:
    text = f"{x:,.{max(digits - 1 - int(math.floor(math.log10(abs(x)))), 0)}f}" if x else "0"
    return text.rstrip("0").rstrip(".") if "." in text else text


def si(value, unit: str = "", digits: int = 3) -> str:
    """`value` with at most `digits` significant figures (all the integer digits of a number below
    a million), an SI prefix where the unit takes one, and thousands separators."""
    if value is None:
        return "-"
    v = float(value)
    if not math.isfinite(v):
        return "-"
    tail = f" {unit}" if unit else ""
    a = abs(v)
    prefixable = unit in PREFIXABLE or unit == ""
    if a >= 1e6 and prefixable:
        for scale, p in _BIG:
            if a >= scale:
                return f"{_trim(v / scale, digits)} {p}{unit}".rstrip()
    if 0 < a < 1e-3 and unit in PREFIXABLE:
        for scale, p in _SMALL:
            if a >= scale:
                return f"{_trim(v / scale, digits)} {p}{unit}"
    if a >= 10 ** digits:
        return f"{v:,.0f}{tail}"
    return f"{_trim(v, digits) if a else '0'}{tail}"


#: Units a key's name ends in (before any `_per_<thing>`), for keys with no declared unit (derived.*).
_NAME_UNITS = (("_flops_per_s", "FLOP/s"), ("_bytes_per_s", "B/s"), ("_flops_per_byte", "FLOP/B"), ("_bytes", "B"), ("_flops", "FLOP"),
               ("_watts", "W"), ("_s", "s"), ("_frac", "fraction"))
_COUNTS = ("packages", "dies", "cpus", "layers", "nodes")


def unit_of_key(key: str) -> str:
    """`derived.kv_cache_bytes_per_token` -> "B per token"; `derived.hbm_bandwidth_bytes_per_s_per_package` -> "B/s per package"."""
    name = key.rsplit(".", 1)[-1]
    for suffix, unit in _NAME_UNITS:
        i = name.find(suffix)
        rest = name[i + len(suffix):] if i >= 0 else None
        if rest is not None and (rest == "" or rest.startswith("_per_")):
            return (unit + rest.replace("_per_", " per ").replace("_", " ")).strip()
    if name.startswith("params"):
        return "parameters" + (" per " + name.split("_per_", 1)[1].replace("_", " ") if "_per_" in name else "")
    return "count" if name.endswith(_COUNTS) else ""
