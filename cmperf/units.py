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

BITS_PER_BYTE = 8

#: Bytes per element of each data type a precision key may name.
DTYPE_BYTES = {"int8": 1, "fp8": 1, "fp16": 2, "bf16": 2, "fp32": 4, "fp4": 0.5}
