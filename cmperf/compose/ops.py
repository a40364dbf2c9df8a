"""Operators as rows: one list gives both the step time and the per-operator breakdown.

An `Op` holds per-invocation arrays (time, FLOPs, HBM bytes, bound) broadcast over the deployment
candidates, the stream it runs on, and how many times a step invokes it.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import numpy as np

from cmperf.costs.roofline import COMM, matmul_efficiency, roofline_only_s, roofline_time_s
from cmperf.specs.derived import matmul_compute_frac, matmul_kernel_fixed_s, matrix_peak_flops_per_s, small_m_tile_rows
from cmperf.specs.loader import Spec
from cmperf.units import DTYPE_BYTES


@dataclass
class Op:
    name: str
    stream: str  # "attention" / "moe" (decode), "compute" / "comm" (prefill), "serial"
    scope: str  # "dense layer", "moe layer", "mtp", "step"
    time_s: np.ndarray  # one invocation
    flops: np.ndarray
    hbm_bytes: np.ndarray
    bound: np.ndarray
    comm_bytes: np.ndarray | float = 0.0
    engine: str = "matrix"  # "matrix", "vector" or "link": the shared resource it occupies
    full_die_time_s: np.ndarray | float = 0.0  # time of the same work on the whole die
    calls: np.ndarray | float = 1.0  # invocations per step (layers x microbatches)

    def copy(self) -> "Op":
        """A fresh row over the same arrays (`dataclasses.replace` without re-running __init__:
        a shared operator list is copied for every evaluation that reuses it)."""
        new = object.__new__(Op)
        new.__dict__.update(self.__dict__)
        return new


class Die:
    """The engines of one die as a stream sees them: its share of cores, the clock they hold
    (`clock_frac` of the quoted one) and the shared HBM."""

    def __init__(self, hw: Spec, matrix_share=1.0, vector_share=1.0, clock_frac=1.0):
        self.hw = hw
        self.matrix_share = matrix_share
        self.vector_share = vector_share
        self.clock_frac = clock_frac
        self.hbm_bw = hw["die.hbm_bandwidth_bytes_per_s"] * hw["efficiency.hbm_frac"]
        self.latency = hw["overhead.op_latency_s"]

    def matmul(self, name, stream, scope, m, k, n, dtype, weight_dtype, out_dtype="bf16", groups=1.0, weight_copies=None, rows_padded=None):
        """(groups x) GEMM of M x K by K x N; weights read once per call.

            T = max(F / (P c e(M, K) s occ), B / W) + t_kernel + t_launch
        P, e: the data type's peak and large-GEMM efficiency; c: the clock held; s: the stream's
        core share; occ, W: wave quantisation (`_waves`); t_kernel: the kernel's fixed fill and
        drain (efficiency.matmul_kernel_fixed_s); t_launch: the gap between kernels.
        """
        hw = self.hw
        peak = matrix_peak_flops_per_s(hw, dtype) * self.clock_frac
        m = np.asarray(m, dtype=float)
        eff = matmul_efficiency(m if rows_padded is None else rows_padded, k, hw["die.matrix_tile_rows"], matmul_compute_frac(hw, dtype),
                                hw["efficiency.matmul_k_overhead_elements"], small_m_tile_rows(hw))
        flops = 2.0 * m * k * n * groups
        wcopies = groups if weight_copies is None else weight_copies
        bytes_ = wcopies * k * n * DTYPE_BYTES[weight_dtype] + groups * m * (k * DTYPE_BYTES[dtype] + n * DTYPE_BYTES[out_dtype])
        full_peak = peak * np.maximum(eff, 1e-9)
        occ, bw = self._waves(m, n, groups, self.matrix_share)
        occ_full, bw_full = self._waves(m, n, groups, 1.0)
        t, bound = _timed(flops, bytes_, full_peak * self.matrix_share * occ, bw, self.latency + matmul_kernel_fixed_s(hw))
        t_full = roofline_only_s(flops, bytes_, full_peak * occ_full, bw_full)
        return Op(name, stream, scope, t, flops, bytes_, bound, engine="matrix", full_die_time_s=t_full)

    def _waves(self, m, n, groups, share):
        """Wave quantisation, where the hardware file describes GEMM blocks (else no effect).

            tiles = ceil(M / b_m) ceil(N / b_n) G;  waves = ceil(tiles / P);  occupancy = tiles / (waves P)
            W = min(W_hbm, min(tiles, P) x W_core)
        P: the cores the stream holds. Few tiles leave cores idle: compute scales by the occupancy
        and a memory-bound GEMM pulls HBM through the active cores only.
        Source: the DeepGEMM table's small-M rows, which reach 1.5-2.7 of 3.35 TB/s on H800.
        """
        hw = self.hw
        if not hw.has("die.matrix_block_cols"):
            return 1.0, self.hbm_bw
        cores = np.maximum(hw["die.matrix_cores"] * np.asarray(share, dtype=float), 1.0)
        tiles = np.ceil(np.asarray(m, dtype=float) / hw["die.matrix_block_rows"]) * np.ceil(n / hw["die.matrix_block_cols"]) * groups
        waves = np.ceil(tiles / cores)
        occ = np.where(tiles > 0, tiles / np.maximum(waves * cores, 1.0), 1.0)  # no tiles: an absent operator
        bw = np.minimum(self.hbm_bw, np.minimum(tiles, cores) * hw["die.core_bandwidth_bytes_per_s"])
        return occ, bw

    def attention(self, name, stream, scope, flops, bytes_, dtype):
        hw = self.hw
        peak = matrix_peak_flops_per_s(hw, dtype) * hw["efficiency.attention_compute_frac"] * self.clock_frac
        t, bound = _timed(flops, bytes_, peak * self.matrix_share, self.hbm_bw, self.latency)
        t_full = roofline_only_s(flops, bytes_, peak, self.hbm_bw)
        return Op(name, stream, scope, t, np.asarray(flops, float), np.asarray(bytes_, float), bound, engine="matrix", full_die_time_s=t_full)

    def vector(self, name, stream, scope, elements, flops_per_element, bytes_per_element):
        hw = self.hw
        peak = hw["die.vector_flops_per_s"] * hw["efficiency.vector_frac"]
        e = np.asarray(elements, dtype=float)
        flops, bytes_ = e * flops_per_element, e * bytes_per_element
        t, bound = _timed(flops, bytes_, peak * self.vector_share, self.hbm_bw, self.latency)
        t_full = roofline_only_s(flops, bytes_, peak, self.hbm_bw)
        return Op(name, stream, scope, t, flops, bytes_, bound, engine="vector", full_die_time_s=t_full)

    def comm(self, name, stream, scope, time_s, comm_bytes):
        t = np.asarray(time_s, dtype=float)
        zero = np.broadcast_to(np.float64(0.0), t.shape)  # moves no HBM data and does no arithmetic
        bound = np.broadcast_to(np.int8(COMM), t.shape) if _DETAIL.get() else None
        return Op(name, stream, scope, t, zero, zero, bound, comm_bytes=comm_bytes, engine="link", full_die_time_s=0.0)


_DETAIL: ContextVar[bool] = ContextVar("cmperf_operator_detail", default=True)


@contextmanager
def without_operator_detail():
    """Within this block, operators carry what the step time needs (time, HBM bytes, full-die time)
    and not what binds each one (`Op.bound` is None), and decode lets its MoE-layer and MTP
    operators go once their layer is summed (fewer fresh pages at a chunk's peak): only a
    per-operator report reads them, and a search's grids are never broken down by operator; nor
    do results carry the rate per die (a search ranks per device). Times are the same numbers
    either way."""
    token = _DETAIL.set(False)
    try:
        yield
    finally:
        _DETAIL.reset(token)


def operator_detail() -> bool:
    """Whether operators built here say what binds them (see `without_operator_detail`)."""
    return _DETAIL.get()


def _timed(flops, bytes_, peak, bw, latency):
    """`roofline_time_s`, or (the same time, None) where no report reads what binds."""
    if _DETAIL.get():
        return roofline_time_s(flops, bytes_, peak, bw, latency)
    return roofline_only_s(flops, bytes_, peak, bw) + latency, None


_SHARED: ContextVar[dict | None] = ContextVar("cmperf_decode_shared_ops", default=None)


@contextmanager
def shared_operators():
    """Within this block, decode evaluations build each operator list that does not depend on the
    expert placement (attention, dense FFN) once and reuse it: a search that evaluates its
    grid a chunk of structures at a time pays for those operators once, not once per chunk."""
    token = _SHARED.set({})
    try:
        yield
    finally:
        _SHARED.reset(token)


def _fingerprint(*arrays) -> tuple:
    return tuple((np.shape(a), hash(np.ascontiguousarray(a, dtype=float).tobytes())) for a in arrays)


def placement_free(key: tuple, build, *arrays):
    """`build()`, or, inside `shared_operators`, the list built before for the same key and input
    arrays (fresh `Op` rows over the same arrays: callers set `calls` on their own)."""
    memo = _SHARED.get()
    if memo is None:
        return build()
    full = key + _fingerprint(*arrays)
    if full not in memo:
        memo[full] = build()
    return [op.copy() for op in memo[full]]


#: Candidates of a search's grid whose layer and step sums are formed at a time (`in_slices`): 1 MiB
#: an array, so that the last sums run in cache instead of over arrays the size of the chunk. A
#: default plan's 70-structure decode grid, single thread, least of 15: 35.2 ms, against 36.2 formed
#: whole, 40.3 at 65,536 and 43.6 at 262,144 (the slices' own Python against their cache misses).
SLICE_CANDIDATES = 131072


class Outer:
    """x * y not yet formed: a product the size of a search's grid (a wait that grows with the
    attention stream on one axis and with the expert group on another), which `in_slices` forms a
    slice at a time."""

    def __init__(self, x, y):
        self.x, self.y = x, y


def _cut(v, sl, ndim: int, rows: int):
    """`v` (an array, an `Outer`, an `Op` or a list or tuple of them) on rows `sl` of the leading axis,
    where it spans that axis; an `Outer` formed."""
    if isinstance(v, np.ndarray):
        return v[sl] if v.ndim == ndim and v.shape[0] == rows else v
    if isinstance(v, Outer):
        return _cut(v.x, sl, ndim, rows) * _cut(v.y, sl, ndim, rows)
    if isinstance(v, Op):
        op = v.copy()
        op.__dict__.update((k, _cut(x, sl, ndim, rows)) for k, x in v.__dict__.items() if isinstance(x, (np.ndarray, Outer)))
        return op
    if isinstance(v, (list, tuple)):
        return type(v)(_cut(x, sl, ndim, rows) for x in v)
    return v


def in_slices(shape: tuple, compose, *args):
    """`compose(*args)` (elementwise, returning a tuple of arrays) over candidates of broadcast
    `shape`, formed a slice of its leading axis at a time (SLICE_CANDIDATES) and put together: the
    same numbers, to the bit, as formed whole, with the intermediates in cache and never the size of
    the grid. An argument that spans the leading axis is cut to the slice (`_cut`)."""
    rows, ndim = (shape[0] if shape else 1), len(shape)
    step = max(2, SLICE_CANDIDATES // max(1, int(np.prod(shape[1:]))))  # two rows at least: a result of one row varies along none
    out = spans = None
    for lo in range(0, max(rows, 1), step):  # an empty grid: one empty slice
        sl = slice(lo, lo + step)
        part = compose(*(_cut(a, sl, ndim, rows) for a in args))
        if out is None:
            spans = [np.ndim(p) == ndim and np.shape(p)[0] > 1 for p in part]
            out = [np.empty((rows,) + np.shape(p)[1:], np.result_type(p)) if s else p for p, s in zip(part, spans)]
        for o, p, s in zip(out, part, spans):
            if s:
                o[sl] = p
    return tuple(out)


def placement_arrays(hw: Spec, inp):
    """(dies per package, dies, microbatches, attention TP) of the deployments in `inp`, as arrays."""
    dies_pkg = hw["package.dies"]
    return dies_pkg, np.asarray(inp.devices, float) * dies_pkg, np.asarray(inp.microbatches, float), np.asarray(inp.attn_tp, float)


def outcome(per_device, dies_pkg, mem: dict, used, cap, valid) -> dict:
    """The result fields decode and prefill share: throughput, the HBM budget and feasibility."""
    per_die = per_device / dies_pkg if _DETAIL.get() else None  # a search ranks per device
    return {"tokens_per_s_per_device": per_device, "tokens_per_s_per_die": per_die, "memory": mem,
            "hbm_used_bytes_per_die": used, "hbm_capacity_bytes_per_die": cap, "fits": used <= cap, "valid": valid,
            "feasible": valid & (used <= cap)}


def total(terms):
    """Sum of broadcastable arrays, left to right (the order is part of the result: a grid point and
    the same deployment evaluated alone add the same terms in the same order). The first array
    starts the sum (no pass adding it to zero); 0 where there is no term."""
    terms = iter(terms)
    first = next(terms, None)
    if first is None:
        return np.float64(0.0)
    return sum(terms, start=first if isinstance(first, np.ndarray) else np.float64(0.0) + first)


def grouped_total(ops, value, keep=None):
    """Sum of `value(op)` over `ops` (those `keep` accepts): each stream's work first, its
    synchronisation waits apart, then the groups, in the order they first appear.

    The order is fixed by the operator list, so a grid point and the same deployment evaluated
    alone still add the same numbers in the same order. Over a candidate grid it keeps the sums at
    the few axes each group varies along (attention not on the expert placement, expert work not
    on attention TP; only the waits on both) until the last additions.
    """
    groups: dict = {}
    for op in ops:
        if keep is None or keep(op):
            groups.setdefault((op.stream, op.engine == "sync"), []).append(value(op))
    return total(total(g) for g in groups.values())


def stream_time_s(ops, stream):
    return grouped_total(ops, lambda op: op.time_s, lambda op: op.stream == stream)


def pipelined_layer_time_s(ops, streams, microbatches, hbm_bw):
    """Wall time of one layer over all microbatches, with an explicit two-stream pipeline.

    n = 1 (serial):  T = A + B
    n >= 2:          T = max(n * max(A, B), n * R_hbm, n * R_matrix)
    A, B: per-microbatch time of each stream's operators (each stream at its share of cores);
    R: the same work's demand on a resource the streams share (HBM bytes at full bandwidth; matrix
    work at the whole die), so overlap can never beat the shared hardware. The pipeline fill,
    min(A, B), is paid once per forward pass (see `layer_time_and_fill_s`).
    Source: the paper's two-stream decode and prefill pipelines; bounds per scaling-book.
    """
    return layer_time_and_fill_s(ops, streams, microbatches, hbm_bw)[0]


def layer_time_and_fill_s(ops, streams, microbatches, hbm_bw, stream_times=None):
    """(`pipelined_layer_time_s`, the pipeline fill) of one layer, each stream summed once (and the
    two stream times put in `stream_times`, a list, when given). The fill, min(A, B) where
    microbatches overlap, is paid once per forward pass."""
    a = stream_time_s(ops, streams[0])
    b = stream_time_s(ops, streams[1])
    n = np.asarray(microbatches, dtype=float)
    if stream_times is not None:
        stream_times += [a, b]
    if np.all(n <= 1):  # serial everywhere: the general case's numbers, without its overlapped branch
        serial = a + b
        return serial, np.zeros(np.broadcast_shapes(n.shape, serial.shape))
    r_hbm = grouped_total(ops, lambda op: op.hbm_bytes, lambda op: op.engine in ("matrix", "vector")) / hbm_bw
    r_mat = grouped_total(ops, lambda op: op.full_die_time_s, lambda op: op.engine == "matrix")
    overlapped = n * np.maximum(np.maximum(a, b), np.maximum(r_hbm, r_mat))
    if np.all(n > 1):  # overlapped everywhere
        return overlapped, np.minimum(a, b)
    return np.where(n <= 1, a + b, overlapped), np.where(n > 1, np.minimum(a, b), 0.0)
