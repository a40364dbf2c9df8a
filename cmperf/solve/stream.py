"""Search a candidate space of any size in bounded memory: evaluate it a chunk of structures at a
time and keep only the structures an answer can name.

A plan's answers each pick a point of one structure: the best deployments per SLO and the next
ones, the best per instance size (for the prefill/decode split), the Pareto frontier, the fastest
feasible point and the smallest HBM need. A point that answers over the whole grid also answers
over its own chunk (whatever beats it in the chunk beats it in the grid), so the structures that
answer in some chunk hold every answer. They are kept whole and in enumeration order, and the
same answer functions (`ranked`, `best_by_devices`, `pareto_front`, ...) run on the kept grid:
the result is the whole grid's, ties included.

Peak memory is one chunk's intermediates per search thread plus the kept structures' four arrays
(about 27 bytes a candidate), not the whole grid's: a chunk holds at most as many structures as
CHUNK_BYTES allows at BYTES_PER_CANDIDATE, the chunks as equal as they can be (`chunk_bounds`).
Chunks are evaluated by `search_threads()` threads (numpy works outside the interpreter lock);
neither the chunks nor their answers depend on the thread count, so neither does the result.
"""

from __future__ import annotations

import contextvars
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from cmperf.solve.search import (
    Grid, ok_latency_s, read_only, batches_that_fit, best_by_devices, best_per_deployment, decode_grid, decode_memory_grid, front_of, pareto_front, prefill_grid, ranked,
)
from cmperf.compose.decode import pipelines
from cmperf.compose.ops import shared_operators
from cmperf.solve.threads import CHUNK_ENV, MAX_SEARCH_THREADS, THREADS_ENV, available_cores, search_threads  # noqa: F401  (re-exported)
from cmperf.solve.space import (
    ATTN_TP_CHOICES, MICROBATCH_CHOICES, PREFILL_TOKENS_CHOICES, Structures, batch_grid, mtp_axis, structures,
)
from cmperf.specs.loader import Spec
from cmperf.units import MiB

#: Memory one chunk of candidates may take while the cost model evaluates it. Each chunk costs its
#: evaluations' fixed Python work (about 2.6 ms a call, `decode_grid` over one structure), so fewer,
#: larger chunks are faster: the default plan's 139 decode structures in two chunks (one per thread on
#: two cores) instead of four at 128 MiB, 0.240 against 0.249 s a plan, for 64 MB more peak memory.
#: Worker processes of a parallel what-if use the same (`solve.threads.search_as_worker`).
CHUNK_BYTES = 256 * MiB
#: Chunks come in multiples of this: two threads (the default on two cores; more rarely pay) get equal work.
CHUNK_MULTIPLE = 2
#: Intermediate arrays per candidate while evaluated (tracemalloc peak over candidates, chunks of
#: 12 structures down to 4): prefill 328-563 bytes (384 down to 8 devices).
BYTES_PER_CANDIDATE = 640
#: The same for a decode chunk, its answers included (`_chunk` under `shared_operators`, chunks of
#: 4 to 70 structures of a 384-device budget): cloudmatrix384 82-89 bytes (its core splits are
#: evaluated as one group, `search.pipeline_groups`), h100 113-129, gb200-nvl72 with kimi-k2 148-168,
#: measured before the step was formed a slice at a time (`compose.ops.in_slices`), which took
#: cloudmatrix384's 70-structure chunk from 78 to 58: an upper bound now.
DECODE_BYTES_PER_CANDIDATE = 170


def chunk_budget() -> float:
    """A search's chunk budget in bytes: $CMPERF_CHUNK_MIB, else CHUNK_BYTES."""
    value = os.environ.get(CHUNK_ENV, "").strip()
    return int(value) * MiB if value.isdigit() and int(value) >= 1 else CHUNK_BYTES


def chunk_structures(per_structure: int, chunk_bytes: float | None = None, bytes_per_candidate: float = BYTES_PER_CANDIDATE) -> int:
    """Structures per chunk: as many as `chunk_bytes` (default `chunk_budget()`) holds, at least one."""
    chunk_bytes = chunk_budget() if chunk_bytes is None else chunk_bytes
    return max(1, int(chunk_bytes // (bytes_per_candidate * per_structure)))


def chunk_bounds(count: int, most: int) -> list[int]:
    """Where the chunks of `count` structures start (and the last ends): at most `most` a chunk, in
    as few chunks as that allows rounded up to a multiple of CHUNK_MULTIPLE, of sizes that differ by
    at most one, so that two threads finish together (chunks of 27, 27, 27, 27, 27 and 4 keep one
    thread busy for three while the other runs two and a small one: 10% longer). The chunks never
    depend on the thread count, so neither do the kept structures."""
    if count <= 0:
        return [0]
    chunks = -(-count // max(most, 1))
    chunks = min(count, -(-chunks // CHUNK_MULTIPLE) * CHUNK_MULTIPLE)
    return [i * count // chunks for i in range(chunks + 1)]


def _answering(grid: Grid, slos, top: int, keep, frontier: bool) -> np.ndarray:
    """Indices of the structures of `grid` that hold an answer, sorted."""
    st = grid.axes["structure"]
    per = int(np.prod(grid.shape[1:]))
    flats = []
    for slo in slos:
        flats += ranked(grid, slo, top)
        flats += [f for _, _, f in best_by_devices(grid, slo)]
    if frontier:
        flats += [int(f) for f in pareto_front(grid)]
    for least in (_least(ok_latency_s(grid), grid.shape),
                  _least(np.where(grid.result["valid"], grid.result["hbm_used_bytes_per_die"], np.inf), grid.shape)):
        if least is not None:
            flats.append(least)
    picked = {f // per for f in flats}
    for ref in keep:
        picked.update(int(s) for s in np.flatnonzero((st.devices == ref["devices"]) & (st.ep == ref["ep"]) & (st.redundant == ref["redundant"])))
    return np.array(sorted(picked), dtype=int)


def _least(a: np.ndarray, shape: tuple) -> int | None:
    """The flat index in `shape` of `np.argmin` of `a` broadcast to it (None where no value is
    finite), found in `a` itself: the first least point of the broadcast grid is the first of `a`,
    at the start of every axis `a` is broadcast along."""
    a = np.asarray(a).reshape((1,) * (len(shape) - np.ndim(a)) + np.shape(a))
    i = int(np.argmin(a))
    v = a.flat[i]
    if not (np.isfinite(v) or (np.isnan(v) and np.isfinite(a).any())):
        return None
    return int(np.ravel_multi_index(np.unravel_index(i, a.shape), shape))


def _kept(grid: Grid, idx: np.ndarray) -> dict:
    shape = (len(idx),) + grid.shape[1:]

    def take(a, dtype):
        return np.ascontiguousarray(np.broadcast_to(np.asarray(a, dtype=dtype), grid.shape)[idx]).reshape(shape)

    return {"structure": grid.axes["structure"].take(idx), "metric": take(grid.metric, float), "latency_s": take(grid.latency_s, float),
            "ok": take(grid.ok, bool), "fits": take(grid.fits, bool), "valid": take(grid.result["valid"], bool),
            "hbm_used_bytes_per_die": take(grid.result["hbm_used_bytes_per_die"], float)}


def streamed(build, st: Structures, per_structure: int, slos, top: int, keep=(), frontier: bool = False,
             chunk_bytes: float | None = None, bytes_per_candidate: float = BYTES_PER_CANDIDATE, widen=None) -> Grid:
    """Run `build(structures) -> Grid` chunk by chunk over `st`; return the grid of the kept structures.

    The returned grid answers `ranked(g, slo, k)` and `best_by_devices(g, slo)` for every `slo` in
    `slos` and k <= `top`, `pareto_front` (when `frontier`), `best_latency_s`, `limit_reason`,
    `params_at` and the structures named in `keep` (dicts with devices, ep, redundant) exactly as
    the whole grid would; its `size` is the number of candidates searched.

    `widen(kept, answers, meta) -> (kept, answers, meta)`, where given, extends each chunk's kept
    arrays (and the flat indices of its answers) to a wider grid in the chunk's own thread.
    """
    n = chunk_structures(per_structure, chunk_bytes, bytes_per_candidate)
    if len(st) <= n and widen is None:
        return build(st)
    with shared_operators():
        return _streamed(build, st, n, slos, top, keep, frontier, widen)


def _chunk(build, part: Structures, slos, top: int, keep, frontier: bool, widen=None):
    grid = build(part)
    meta = (grid.phase, grid.axes, grid.shape[1:], grid.fixed, grid.workload, grid.choices)
    idx = _answering(grid, slos, top, keep, frontier)
    kept, answers = _kept(grid, idx), _kept_answers(grid, idx, slos, frontier)
    if widen is not None:
        kept, answers, meta = widen(kept, answers, meta)
    return int(np.prod(grid.shape)), kept, meta, answers


def _kept_answers(grid: Grid, idx: np.ndarray, slos, frontier: bool) -> dict:
    """The chunk's best point per deployment (per SLO) and frontier, at the kept structures `idx`,
    flat indices counted in the kept grid: the kept grid's own answers (a structure's deployments
    are the same there), which the merged grid then need not recompute."""
    per = int(np.prod(grid.shape[1:]))
    pos = np.full(grid.shape[0], -1, dtype=np.intp)
    pos[idx] = np.arange(len(idx))

    def local(flat):
        return pos[flat // per] * per + flat % per

    memo = {}
    for slo in slos:
        best, flat = best_per_deployment(grid, slo)
        memo[("best", slo)] = (best[idx], local(flat[idx]))
    if frontier:
        memo["front"] = local(pareto_front(grid))  # every frontier structure is kept
    return memo


def _merged_answers(answers: list, counts: list, per: int, grid: Grid) -> dict:
    """The chunks' answers as the merged grid's: rows concatenated, flat indices shifted by the
    kept structures before each chunk; the frontier is the frontier of the chunks' frontiers."""
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]) * per
    memo = {}
    for key in answers[0]:
        if key == "front":
            continue
        memo[key] = read_only(np.concatenate([a[key][0] for a in answers]), np.concatenate([a[key][1] + o for a, o in zip(answers, offsets)]))
    if "front" in answers[0]:
        candidates = np.sort(np.concatenate([a["front"] + o for a, o in zip(answers, offsets)]))
        memo["front"] = read_only(front_of(grid, candidates))[0]
    return memo


def _streamed(build, st: Structures, n: int, slos, top: int, keep, frontier: bool, widen=None) -> Grid:
    bounds = chunk_bounds(len(st), n)
    chunks = [st.take(slice(lo, hi)) for lo, hi in zip(bounds[:-1], bounds[1:])]
    threads = min(search_threads(), len(chunks))
    if threads <= 1:
        done = [_chunk(build, c, slos, top, keep, frontier, widen) for c in chunks]
    else:
        with ThreadPoolExecutor(threads) as pool:  # each task in a copy of this context: the operator memo travels
            futures = [pool.submit(contextvars.copy_context().run, _chunk, build, c, slos, top, keep, frontier, widen) for c in chunks]
            done = [f.result() for f in futures]
    searched = sum(d[0] for d in done)
    parts = [d[1] for d in done]
    phase, axes, inner, fixed, workload, choices = done[-1][2]
    cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0] if k != "structure"}
    kept = Structures(*(np.concatenate([getattr(p["structure"], f) for p in parts]) for f in ("devices", "ep", "redundant")))
    grid = Grid(phase, {**axes, "structure": kept}, {"valid": cat["valid"], "hbm_used_bytes_per_die": cat["hbm_used_bytes_per_die"]},
                (len(kept),) + inner, cat["metric"], cat["latency_s"], cat["ok"], cat["fits"], fixed, searched, workload=workload, choices=choices)
    grid.memo.update(_merged_answers([d[3] for d in done], [len(p["structure"]) for p in parts], int(np.prod(inner)), grid))
    return grid


def decode_search(hw: Spec, model: Spec, budget: int, input_len: int, output_len: int, acceptance: float, eplb_perfect: bool = False,
                  *, slos, top: int, keep=(), chunk_bytes: float | None = None, mtp_choices=None) -> Grid:
    """`decode_grid` for any budget, streamed; answers the TPOT SLOs `slos` (seconds) and the frontier.
    `mtp_choices` as `decode_grid` takes them (default: MTP_CHOICES where the model has MTP).

    Streamed, the search evaluates the cost model only up to the largest batch at which any
    candidate fits in HBM (memory grows with the batch, so no larger batch fits anywhere); the
    batches past it are kept as not fitting, with their memory, which is all any answer reads there."""
    mtp_choices = mtp_axis(model, mtp_choices)
    st, batches = structures(hw, model, budget), batch_grid()
    per = len(ATTN_TP_CHOICES) * len(pipelines(hw)) * len(mtp_choices) * len(batches)

    def build(part, b=batches):
        return decode_grid(hw, model, budget, input_len, output_len, acceptance, eplb_perfect, mtp_choices=mtp_choices, st=part, batches=b)

    if len(st) <= chunk_structures(per, chunk_bytes, DECODE_BYTES_PER_CANDIDATE):
        return build(st)
    j = max(batches_that_fit(hw, model, input_len, output_len, st, mtp_choices, batches), 1)  # batches evaluated: through the last that fits anywhere
    if j == len(batches):
        return streamed(build, st, per, slos, top, keep, frontier=True, chunk_bytes=chunk_bytes, bytes_per_candidate=DECODE_BYTES_PER_CANDIDATE)

    def widen(kept: dict, answers: dict, meta: tuple):
        """A chunk's kept structures over the whole batch axis: the batches it left out, none of
        which fits, appended as not fitting (no throughput or latency) with their memory and validity."""
        phase, axes, inner, fixed, workload, choices = meta
        used, fits, valid = decode_memory_grid(hw, model, input_len, output_len, kept["structure"], mtp_choices, batches[j:])
        assert not fits.any(), "a batch past the last that fits anywhere fits"
        pad = (len(kept["structure"]),) + inner[:-1] + (len(batches) - j,)

        def cat(a, fill, dtype):
            return np.concatenate([a, np.broadcast_to(np.asarray(fill, dtype=dtype), pad)], axis=-1)

        fills = {"metric": np.nan, "latency_s": np.nan, "ok": False, "fits": False, "valid": valid, "hbm_used_bytes_per_die": used}
        kept = {"structure": kept["structure"], **{k: cat(kept[k], fill, kept[k].dtype) for k, fill in fills.items()}}
        wide = lambda flat: flat // j * len(batches) + flat % j  # noqa: E731  (the same points, at their new flat indices)
        answers = {k: (wide(v) if k == "front" else (v[0], wide(v[1]))) for k, v in answers.items()}
        return kept, answers, (phase, {**axes, "batch": np.asarray(batches, float)}, inner[:-1] + (len(batches),), fixed, workload, choices)

    grid = streamed(lambda part: build(part, batches[:j]), st, per * j // len(batches), slos, top, keep, frontier=True,
                    chunk_bytes=chunk_bytes, bytes_per_candidate=DECODE_BYTES_PER_CANDIDATE, widen=widen)
    grid.searched = len(st) * per
    return grid


def prefill_search(hw: Spec, model: Spec, budget: int, input_len: int, eplb_perfect: bool = False, prefix_hit: float = 0.0,
                   *, slos, top: int, keep=(), chunk_bytes: float | None = None) -> Grid:
    """`prefill_grid` for any budget, streamed; answers the TTFT SLOs `slos` (seconds, or None for none)."""
    per = len(ATTN_TP_CHOICES) * len(MICROBATCH_CHOICES) * len(PREFILL_TOKENS_CHOICES)  # at most: small token counts drop out
    return streamed(lambda st: prefill_grid(hw, model, budget, input_len, eplb_perfect, prefix_hit, st=st),
                    structures(hw, model, budget), per, slos, top, keep, chunk_bytes=chunk_bytes)
