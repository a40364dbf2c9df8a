"""Roofline time of one kernel on one engine, numpy-broadcastable.

    T = max(F / (P x e_c), B / (W x e_m)) + t_launch
Source: scaling-book, "All About Rooflines"; efficiencies e from operator measurements (hardware/).
"""

from __future__ import annotations

import numpy as np

#: What bounds an operator; codes kept in integer arrays so search stays vectorised.
COMPUTE, MEMORY, COMM, LATENCY = 0, 1, 2, 3
BOUND_NAMES = ("compute", "memory", "communication", "latency")


def roofline_time_s(flops, bytes_moved, peak_flops_per_s, bw_bytes_per_s, latency_s=0.0):
    """(time, bound) of a kernel with compute and memory traffic fully overlapped."""
    t_c = np.asarray(flops, dtype=float) / peak_flops_per_s
    t_m = np.asarray(bytes_moved, dtype=float) / bw_bytes_per_s
    t = np.maximum(t_c, t_m)
    bound = np.where(latency_s > t, np.int8(LATENCY), (t_m > t_c).view(np.int8))  # COMPUTE 0, MEMORY 1
    return t + latency_s, bound


def roofline_only_s(flops, bytes_moved, peak_flops_per_s, bw_bytes_per_s):
    """The time of `roofline_time_s` without launch latency, when what binds is not wanted."""
    return np.maximum(np.asarray(flops, dtype=float) / peak_flops_per_s, np.asarray(bytes_moved, dtype=float) / bw_bytes_per_s)


def padded_rows(m, tile_rows, small_tile_rows=None):
    """Rows a matrix engine actually processes: M rounded up to the kernel's tile.

        M <= t:  ceil(M / t_s) t_s      (small-M layout; t_s = t when the kernel has none)
        M >  t:  ceil(M / t) t
    A swap-AB kernel puts the weights on the MMA's M side and the tokens on its N side, which
    comes in steps of t_s (8 on Hopper wgmma), so a small M pads to t_s rather than to t.
    Non-decreasing in M whenever t_s divides t.
    """
    m = np.maximum(np.asarray(m, dtype=float), 1e-12)
    ts = tile_rows if small_tile_rows is None else small_tile_rows
    if ts == tile_rows:  # one layout: both branches are the same numbers
        return np.ceil(m / tile_rows) * tile_rows
    return np.where(m <= tile_rows, np.ceil(m / ts) * ts, np.ceil(m / tile_rows) * tile_rows)


def matmul_efficiency(m, k, tile_rows, e_inf, k0, small_tile_rows=None):
    """Achieved fraction of matrix peak for an (M x K) @ (K x N) GEMM.

        e(M, K) = e_inf * M / padded(M) * K / (K + k0)
    The K term is the per-output-tile fill and drain cost, fitted to the paper's Table 10 INT8
    grouped GEMM (77-83%); the M term is tile padding (`padded_rows`), which makes small-M GEMMs
    waste the engine. e_inf is per data type where the hardware file says so.
    Assumes: N is large enough to occupy every core (true for all DeepSeek shapes).
    """
    m = np.asarray(m, dtype=float)
    return e_inf * (m / padded_rows(m, tile_rows, small_tile_rows)) * (k / (k + k0))
