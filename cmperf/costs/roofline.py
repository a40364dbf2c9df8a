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
    bound = np.where(t_c >= t_m, COMPUTE, MEMORY)
    bound = np.where(latency_s > t, LATENCY, bound)
    return t + latency_s, bound


def padded_rows(m, tile_rows):
    """Rows a matrix engine actually processes: M rounded up to its tile."""
    m = np.asarray(m, dtype=float)
    return np.ceil(np.maximum(m, 1e-12) / tile_rows) * tile_rows


def matmul_efficiency(m, k, tile_rows, e_inf, k0):
    """Achieved fraction of matrix peak for an (M x K) @ (K x N) GEMM.

        e(M, K) = e_inf * M / ceil_tile(M) * K / (K + k0)
    The K term is the per-output-tile fill and drain cost, fitted to the paper's Table 10 INT8
    grouped GEMM (77-83%); the M term is tile padding, which makes small-M GEMMs waste the engine.
    Assumes: N is large enough to occupy every core (true for all DeepSeek shapes).
    """
    m = np.asarray(m, dtype=float)
    return e_inf * (m / padded_rows(m, tile_rows)) * (k / (k + k0))
