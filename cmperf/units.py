"""Unit constants: the only place where a power of ten or two is written.

Decimal prefixes (KB, GB, TB, TFLOPS) are 1e3 steps; binary ones (KiB, MiB, GiB) 2**10 steps.
Data files store SI base units (bytes, seconds, bytes/s, FLOP/s); these constants convert at the
edges, for display and for option parsing.
"""

KB = 1e3
MB = 1e6
GB = 1e9
TB = 1e12
KiB = 2.0**10
MiB = 2.0**20
GiB = 2.0**30

GFLOPS = 1e9
TFLOPS = 1e12

US = 1e-6
MS = 1e-3
HOUR_S = 3600.0

#: Token counts in prices: dollars per million tokens.
MILLION = 1e6

BITS_PER_BYTE = 8

#: Bytes per element of each data type a precision key may name.
DTYPE_BYTES = {"int8": 1, "fp8": 1, "fp16": 2, "bf16": 2, "fp32": 4, "fp4": 0.5}

#: Multipliers of the prefixes a quantity may carry. Decimal: k = 1,000 (so `32k` tokens is
#: 32,000); binary: Ki = 1,024 (`32Ki` is 32,768). m, u (or µ) and n are accepted only before a
#: unit, so `5m` is never read as milli-something by accident.
PREFIXES = {"": 1.0, "k": KB, "K": KB, "M": MB, "G": GB, "T": TB, "P": 1e15,
            "Ki": KiB, "Mi": MiB, "Gi": GiB, "Ti": 2.0**40}
SMALL_PREFIXES = {"m": 1e3, "u": 1e6, "µ": 1e6, "n": 1e9}  # divisors, so 50us is exactly 50 / 1e6

#: Units a quantity may carry -> (dimension, factor to the SI base of that dimension).
UNITS = {
    "B": ("bytes", 1.0), "B/s": ("bytes/s", 1.0), "bit/s": ("bytes/s", 1.0 / BITS_PER_BYTE), "bps": ("bytes/s", 1.0 / BITS_PER_BYTE),
    "s": ("s", 1.0), "FLOP/s": ("ops/s", 1.0), "FLOPS": ("ops/s", 1.0), "OP/s": ("ops/s", 1.0), "OPS": ("ops/s", 1.0),
    "W": ("W", 1.0), "tokens": ("count", 1.0),
}
#: The unit a key's `unit` label means, as (dimension, how many of that unit make one SI base unit).
KEY_UNITS = {"B": ("bytes", 1.0), "B/s": ("bytes/s", 1.0), "s": ("s", 1.0), "ms": ("s", 1e3), "OP/s": ("ops/s", 1.0),
             "FLOP/s": ("ops/s", 1.0), "W": ("W", 1.0), "tokens": ("count", 1.0)}


def parse_quantity(text: str, key_unit: str | None = None) -> float:
    """A number with an optional prefix and unit, in the unit of the key it is meant for.

    `96GB` -> 9.6e10, `1.6TB/s` -> 1.6e12, `50us` -> 5e-05 (for a key in seconds) or 0.05 (for a key
    in ms), `32k` -> 32000, `1.5e12` -> 1.5e12. A unit of another dimension than the key's (`96GB`
    for a key in B/s) is refused. Raises ValueError with a message naming what was expected.
    """
    t = text.strip().replace("_", "").replace(",", "")
    num_end = 0
    for i in range(len(t), 0, -1):
        try:
            float(t[:i])
        except ValueError:
            continue
        num_end = i
        break
    if num_end == 0:
        raise ValueError(f"expected a number, optionally with a unit (96GB, 1.6TB/s, 50us, 32k), got {text!r}")
    value, rest = float(t[:num_end]), t[num_end:].strip()
    if not rest:
        return value
    for unit in sorted(UNITS, key=len, reverse=True):
        if rest.endswith(unit):
            prefix = rest[: -len(unit)]
            if prefix in PREFIXES or prefix in SMALL_PREFIXES:
                mult, div = PREFIXES.get(prefix, 1.0), SMALL_PREFIXES.get(prefix, 1.0)
                dim, factor = UNITS[unit]
                break
    else:
        if rest in PREFIXES:
            return value * PREFIXES[rest]
        raise ValueError(f"unknown unit {rest!r} in {text!r}; expected a prefix (k, M, G, T, Ki, Gi) and a unit such as B, B/s, s, FLOP/s or W")
    if key_unit is not None:
        want = KEY_UNITS.get(key_unit)
        if want is None or want[0] != dim:
            raise ValueError(f"{text!r} is in {unit}, but the key is in {key_unit or 'plain numbers'}")
        mult *= want[1]
    return value * mult * factor / div
