"""Search decode and prefill deployments: evaluate the grid, mask the infeasible, rank, explain.

Decode maximises tokens/s per device subject to TPOT <= SLO and the HBM budget; prefill maximises
tokens/s per device subject to TTFT <= SLO (when given) and the HBM budget. Infeasibility is a
boolean array with a reason, never an exception.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cmperf.compose.decode import pipelines
from cmperf.compose.ops import without_operator_detail
from cmperf.evaluation import evaluate
from cmperf.solve.space import (
    ATTN_TP_CHOICES, MICROBATCH_CHOICES, PREFILL_TOKENS_CHOICES, Structures, axis, batch_grid, check_dense, mtp_axis, structures,
)
from cmperf.specs.deployment import Deployment, Workload
from cmperf.specs.loader import Spec

DECODE_AXES = ("structure", "attn_tp", "microbatches", "mtp", "batch")
PREFILL_AXES = ("structure", "attn_tp", "microbatches", "tokens_per_device")


@dataclass
class Grid:
    phase: str
    axes: dict  # name -> 1-D values (structure -> Structures)
    result: dict  # evaluated arrays, broadcast to the grid's shape
    shape: tuple
    metric: np.ndarray  # tokens/s per device
    latency_s: np.ndarray  # TPOT (decode) or TTFT (prefill)
    ok: np.ndarray  # valid placement and fits in HBM
    fits: np.ndarray
    fixed: dict | None = None  # parameters held constant over the grid
    searched: int | None = None  # candidates searched, where the grid keeps only some structures (a streamed search)
    workload: Workload | None = None  # what every point serves
    choices: dict | None = None  # deployment choices common to every point (EPLB, cache path)
    #: Answers already computed over this grid, by query: ("best", slo) -> `best_per_deployment`,
    #: "front" -> `pareto_front`, "ok_latency" -> `ok_latency_s`. A streamed search fills it from
    #: its chunks' answers.
    #: Not an init field: a copy made with `dataclasses.replace` starts with none.
    memo: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape)) if self.searched is None else self.searched


def _full(x, shape, dtype=float):
    return np.broadcast_to(np.asarray(x, dtype=dtype), shape)


def _decode_space(hw: Spec, model: Spec, input_len: int, output_len: int, acceptance: float, eplb_perfect: bool, mtp_choices,
                  st: Structures, batches) -> tuple:
    """(MTP axis, batch axis, (microbatches, attention cores) of each pipeline, workload, choices) of a decode grid."""
    mtp = list(mtp_axis(model, mtp_choices))
    n_mb, n_cores = (np.array(x, float) for x in zip(*pipelines(hw)))
    check_dense(len(st) * len(ATTN_TP_CHOICES) * len(n_mb) * len(mtp) * len(batches))
    workload = Workload(input_len=input_len, output_len=output_len, mtp_acceptance=acceptance)
    return mtp, np.asarray(batches, float), (n_mb, n_cores), workload, {"eplb": "perfect" if eplb_perfect else "default"}


def decode_grid_deployment(hw: Spec, model: Spec, budget: int, input_len: int, output_len: int, acceptance: float,
                           eplb_perfect: bool = False, max_batch: int = 1024, mtp_choices=None) -> tuple[Workload, Deployment]:
    """(workload, deployments) of `decode_grid`'s candidates as one outer product, every pipeline on
    its axis, for one `evaluate` call that keeps every intermediate (a grid keeps its answers only)."""
    st = structures(hw, model, budget)
    mtp, b, (n_mb, n_cores), workload, choices = _decode_space(hw, model, input_len, output_len, acceptance, eplb_perfect, mtp_choices,
                                                               st, batch_grid(max_batch))
    return workload, _decode_deployment(st, n_mb, n_cores, mtp, b, **choices)


def decode_grid(hw: Spec, model: Spec, budget: int, input_len: int, output_len: int, acceptance: float,
                eplb_perfect: bool = False, max_batch: int = 1024, mtp_choices=None, st: Structures | None = None,
                batches=None) -> Grid:
    """Every decode candidate of the budget (or of the structures `st`), evaluated in one call per
    group of pipelines (`pipeline_groups`); `batches`: the batch axis, default `batch_grid(max_batch)`."""
    st = structures(hw, model, budget) if st is None else st
    tp = list(ATTN_TP_CHOICES)
    mtp, b, (n_mb, n_cores), workload, choices = _decode_space(hw, model, input_len, output_len, acceptance, eplb_perfect, mtp_choices,
                                                               st, batch_grid(max_batch) if batches is None else batches)
    shape = (len(st), len(tp), len(n_mb), len(mtp), len(b))
    pipe = DECODE_AXES.index("microbatches")
    parts = []
    with without_operator_detail():  # a grid is never broken down by operator
        for idx, mb, cores in pipeline_groups(n_mb, n_cores):
            ev = evaluate(hw, model, workload, _decode_deployment(st, mb, cores, mtp, b, **choices))
            parts.append((idx, ev.tokens_per_s_per_device, ev.latency_s, ev.result["hbm_used_bytes_per_die"], ev.fits, ev.valid))

    def along_pipes(k: int, dtype=float) -> np.ndarray:
        """The groups' k-th arrays as one over the grid: the one group's, or the first group's where
        every group gives the same array along no pipeline axis (memory and validity), else the
        groups' arrays placed at their pipelines."""
        first = np.asarray(parts[0][k], dtype=dtype)
        if len(parts) == 1 or not any(_spans(p[k], pipe - len(shape)) for p in parts) and all(np.array_equal(p[k], first) for p in parts[1:]):
            return first
        out = np.empty(shape, dtype)
        for p in parts:
            out[(slice(None),) * pipe + (p[0],)] = p[k]
        return out

    metric, latency, used = along_pipes(1), along_pipes(2), along_pipes(3)
    fits = _full(along_pipes(4, bool), shape, bool)
    valid = along_pipes(5, bool)
    ok = _full(valid, shape, bool) & fits
    # The microbatch axis runs over (microbatches, attention cores) pairs: the split matters only
    # when microbatches overlap, so it is not an axis of its own.
    return Grid("decode", {"structure": st, "attn_tp": np.array(tp, float), "microbatches": n_mb, "attn_cores": n_cores,
                           "mtp": np.array(mtp, float), "batch": b},
                {"valid": valid, "hbm_used_bytes_per_die": used}, shape, _full(metric, shape), _full(latency, shape), ok, fits,
                workload=workload, choices=choices)


def _spans(a, axis: int) -> bool:
    """Whether the array `a` varies along `axis` (negative, counted from the last) of the grid it broadcasts to."""
    return np.ndim(a) >= -axis and np.shape(a)[axis] > 1


def pipeline_groups(microbatches: np.ndarray, attn_cores: np.ndarray) -> list[tuple[list[int], list[float], list[float]]]:
    """The pipelines (`microbatches`, `attn_cores` pairs, in order) in groups evaluated together:
    (their positions, microbatches, attention cores). A microbatch count with several core splits
    is a group of its own with the count given once, so that the per-microbatch work, which the
    split does not change (token counts, expert loads, messages, FLOPs and bytes), is computed
    once for all its splits; the other pipelines share one group."""
    groups, rest = [], []
    for n in dict.fromkeys(microbatches.tolist()):
        idx = [i for i, m in enumerate(microbatches.tolist()) if m == n]
        if len(idx) > 1:
            groups.append((idx, [n], attn_cores[idx].tolist()))
        else:
            rest += idx
    if rest:
        groups.append((rest, microbatches[rest].tolist(), attn_cores[rest].tolist()))
    return groups


def _decode_deployment(st: Structures, microbatches, attn_cores, mtp, batches, **choices) -> Deployment:
    """The decode deployments of the grid's outer product, each choice on its axis (DECODE_AXES)."""
    nd = len(DECODE_AXES)
    return Deployment("decode", devices=axis(st.devices, 0, nd), ep=axis(st.ep, 0, nd), redundant=axis(st.redundant, 0, nd),
                      attn_tp=axis(list(ATTN_TP_CHOICES), 1, nd), microbatches=axis(microbatches, 2, nd),
                      attention_matrix_cores=axis(attn_cores, 2, nd), mtp=axis(mtp, 3, nd), batch=axis(batches, 4, nd), **choices)


def _decode_memory(hw: Spec, model: Spec, input_len: int, output_len: int, st: Structures, mtp_choices, batches) -> tuple:
    """(the model inputs, `decode_memory`'s answer) of the decode candidates of the structures `st`
    at the given batches, with one pipeline (memory does not depend on it)."""
    from cmperf.compose.decode import decode_memory
    from cmperf.evaluation import model_inputs

    dep = _decode_deployment(st, [1.0], [0.0], list(mtp_choices), batches)
    inp = model_inputs(Workload(input_len=input_len, output_len=output_len), dep)
    return inp, decode_memory(hw, model, inp)


def decode_memory_grid(hw: Spec, model: Spec, input_len: int, output_len: int, st: Structures, mtp_choices, batches) -> tuple:
    """(HBM used per die, fits, valid) of every decode candidate of the structures `st` at the given
    batches, shaped as `decode_grid`'s with one pipeline (memory does not depend on it)."""
    from cmperf.compose.decode import decode_valid

    inp, (_, used, cap, _, pl) = _decode_memory(hw, model, input_len, output_len, st, mtp_choices, batches)
    shape = (len(st), len(ATTN_TP_CHOICES), 1, len(mtp_choices), len(batches))
    used = np.broadcast_to(used, shape)
    return used, used <= cap, np.broadcast_to(decode_valid(hw, model, inp, pl), shape)


def batches_that_fit(hw: Spec, model: Spec, input_len: int, output_len: int, st: Structures, mtp_choices, batches) -> int:
    """How many of the ascending `batches` there are up to the last at which some candidate of the
    structures `st` fits in HBM (memory grows with the batch, so none fits past it).

    Taken from the closed-form largest batch that fits (`decode_memory`, without evaluating every
    batch), then checked against `decode_memory_grid`'s own test at the boundary, which the closed
    form's rounding may miss by one step."""
    _, (_, _, _, largest, _) = _decode_memory(hw, model, input_len, output_len, st, mtp_choices, batches[:1])
    j = int(np.searchsorted(batches, np.max(largest), side="right"))

    def fits_at(i: int) -> bool:
        return bool(decode_memory_grid(hw, model, input_len, output_len, st, mtp_choices, batches[i:i + 1])[1].any())

    while j < len(batches) and fits_at(j):
        j += 1
    while j > 0 and not fits_at(j - 1):
        j -= 1
    return j


def prefill_grid(hw: Spec, model: Spec, budget: int, input_len: int, eplb_perfect: bool = False, prefix_hit: float = 0.0,
                 cache_path: str = "ub", st: Structures | None = None) -> Grid:
    """Every prefill candidate of the budget (or of the structures `st`), evaluated in one call."""
    st = structures(hw, model, budget) if st is None else st
    tp = list(ATTN_TP_CHOICES)
    toks = [t for t in PREFILL_TOKENS_CHOICES if t >= hw["package.dies"]]
    nd = len(PREFILL_AXES)
    mtp = 1 if model["mtp.num_nextn_predict_layers"] > 0 else 0
    check_dense(len(st) * len(tp) * len(MICROBATCH_CHOICES) * len(toks))
    workload = Workload(input_len=input_len, prefix_hit=prefix_hit)
    choices = {"eplb": "perfect" if eplb_perfect else "default", "cache_path": cache_path}
    dep = Deployment(
        "prefill", devices=axis(st.devices, 0, nd), ep=axis(st.ep, 0, nd), redundant=axis(st.redundant, 0, nd),
        attn_tp=axis(tp, 1, nd), microbatches=axis(MICROBATCH_CHOICES, 2, nd), tokens_per_device=axis(toks, 3, nd), mtp=mtp, **choices,
    )
    with without_operator_detail():
        ev = evaluate(hw, model, workload, dep)
    shape = (len(st), len(tp), len(MICROBATCH_CHOICES), len(toks))
    fits = _full(ev.fits, shape, bool)
    ok = _full(ev.valid, shape, bool) & fits
    return Grid("prefill", {"structure": st, "attn_tp": np.array(tp, float), "microbatches": np.array(MICROBATCH_CHOICES, float),
                            "tokens_per_device": np.array(toks, float)},
                ev.result, shape, _full(ev.tokens_per_s_per_device, shape), _full(ev.latency_s, shape), ok, fits, {"mtp": mtp},
                workload=workload, choices=choices)


def params_at(grid: Grid, flat_index: int) -> dict:
    """The deployment parameters of one grid point, as `cmperf estimate` options."""
    idx = np.unravel_index(flat_index, grid.shape)
    st: Structures = grid.axes["structure"]
    s = idx[0]
    out = {"devices": int(st.devices[s]), "ep": int(st.ep[s]), "redundant": int(st.redundant[s]), **(grid.fixed or {})}
    names = DECODE_AXES if grid.phase == "decode" else PREFILL_AXES
    for name, i in zip(names[1:], idx[1:]):
        out[name] = int(grid.axes[name][i])
    if "attn_cores" in grid.axes:
        out["attn_cores"] = int(grid.axes["attn_cores"][idx[names.index("microbatches")]])
    return out


def deployment_at(grid: Grid, flat_index: int) -> Deployment:
    """The deployment of one grid point, as a `Deployment` a user can save and evaluate alone."""
    p = params_at(grid, flat_index)
    if "attn_cores" in p:
        p["attention_matrix_cores"] = p.pop("attn_cores")
    return Deployment(grid.phase, **p, **(grid.choices or {}))


def best_per_deployment(grid: Grid, slo_s: float | None) -> tuple[np.ndarray, np.ndarray]:
    """For each deployment (all axes but the last), the best feasible point along the last axis.

    Returns (metric, flat index) arrays over the leading axes; metric is -inf where none is feasible.
    Computed once per grid and SLO (read-only arrays: ranking, per-size bests and the paper's point
    all read the same pass).
    """
    key = ("best", slo_s)
    if key not in grid.memo:
        if slo_s is None:
            feasible = grid.ok
        elif np.isfinite(slo_s):
            feasible = ok_latency_s(grid) <= slo_s  # ok and within the SLO (+inf where not ok)
        else:
            feasible = grid.ok & (grid.latency_s <= slo_s)
        m = np.where(feasible, grid.metric, -np.inf)
        j = np.argmax(m, axis=-1)
        best = np.take_along_axis(m, j[..., None], axis=-1)[..., 0]
        lead = np.indices(best.shape)
        flat = np.ravel_multi_index((*lead, j), grid.shape)
        grid.memo[key] = read_only(best, flat)
    return grid.memo[key]


def ok_latency_s(grid: Grid) -> np.ndarray:
    """Every point's latency where it is ok, +inf elsewhere: one pass per grid (kept in its memo,
    read-only) that the SLO masks, the fastest point and the frontier share."""
    if "ok_latency" not in grid.memo:
        grid.memo["ok_latency"] = read_only(np.where(grid.ok, grid.latency_s, np.inf))[0]
    return grid.memo["ok_latency"]


def read_only(*arrays):
    """The arrays, made read-only (shared answers nobody may change), as a tuple."""
    for a in arrays:
        a.setflags(write=False)
    return arrays


def ranked(grid: Grid, slo_s: float | None, top: int) -> list[int]:
    """Flat indices of the `top` best distinct deployments meeting the SLO (best first)."""
    best, flat = best_per_deployment(grid, slo_s)
    order = np.argsort(-best, axis=None, kind="stable")
    keep = [int(flat.reshape(-1)[i]) for i in order[:top] if np.isfinite(best.reshape(-1)[i])]
    return keep


def best_latency_s(grid: Grid) -> float:
    return float(ok_latency_s(grid).min())


def limit_reason(grid: Grid, flat_index: int, slo_s: float | None) -> str:
    """What stops the deployment from taking a larger last-axis value (a bigger batch)."""
    idx = list(np.unravel_index(flat_index, grid.shape))
    last = grid.shape[-1] - 1
    if idx[-1] == last:
        return "largest batch searched"
    idx[-1] += 1
    nxt = tuple(idx)
    if not grid.fits[nxt]:
        return "HBM capacity"
    if slo_s is not None and grid.latency_s[nxt] > slo_s:
        return "TPOT SLO" if grid.phase == "decode" else "TTFT SLO"
    return "throughput peaks here"


#: Latency bins of the frontier's pre-filter (any count gives the same frontier; more prune more).
PARETO_BINS = 4096
#: Fewest candidate points worth binning; below it the exact pass alone sorts them as fast.
PARETO_BIN_MIN_POINTS = 4096


def pareto_front(grid: Grid) -> np.ndarray:
    """Flat indices of the feasible decode points no other point beats on both TPOT and tokens/s."""
    if "front" not in grid.memo:
        grid.memo["front"] = read_only(_pareto_front(grid))[0]
    return grid.memo["front"]


def _pareto_front(grid: Grid) -> np.ndarray:
    # Decode throughput per device is batch / TPOT, so of the pipelines (microbatches and core
    # split) of one structure, TP, MTP and batch only the fastest can be on the frontier (the first
    # of equals, as the exact pass keeps): the pre-filter looks at that one.
    # (A point without a finite latency is on no latency frontier.)
    pipes = DECODE_AXES.index("microbatches")
    lat_ok = ok_latency_s(grid)
    lat_all = np.where(lat_ok > -np.inf, lat_ok, np.inf)  # NaN and -inf as +inf: ok and finite only
    pipe = np.expand_dims(np.argmin(lat_all, axis=pipes), pipes)
    lat = np.take_along_axis(lat_all, pipe, axis=pipes)
    ok = np.isfinite(lat)
    # Only a deployment's best point per latency matters: keep, per deployment, the points along
    # the batch axis whose throughput beats every smaller batch (monotone staircase), then merge.
    m = np.where(ok, np.take_along_axis(np.broadcast_to(grid.metric, grid.shape), pipe, axis=pipes), -np.inf)
    stair = m > np.concatenate([np.full(m.shape[:-1] + (1,), -np.inf), np.maximum.accumulate(m, axis=-1)[..., :-1]], axis=-1)
    sel = ok & stair
    lat, thr = lat[sel], m[sel]
    lead = np.nonzero(sel)
    idx = np.ravel_multi_index(lead[:pipes] + (pipe[sel],) + lead[pipes + 1:], grid.shape)
    order = np.argsort(idx, kind="stable")  # ascending, as the exact pass expects
    lat, thr, idx = lat[order], thr[order], idx[order]
    # Drop points that a point of a strictly lower latency bin already matches: a frontier point is
    # beaten by nothing, so it always survives; the exact pass then sorts few. Bins are a monotone
    # map of latency, so a lower bin means a strictly lower latency.
    if len(lat) > PARETO_BIN_MIN_POINTS:
        lo, span = lat.min(), lat.max() - lat.min()
        bins = ((lat - lo) * (PARETO_BINS / span)).astype(np.intp) if span > 0 else np.zeros(len(lat), np.intp)
        best = np.full(PARETO_BINS + 1, -np.inf)
        np.maximum.at(best, bins, thr)
        below = np.concatenate([[-np.inf], np.maximum.accumulate(best)[:-1]])
        beaten = thr <= below[bins]
        idx = idx[~beaten]
    return front_of(grid, idx)


def front_of(grid: Grid, idx: np.ndarray) -> np.ndarray:
    """The frontier among the feasible points `idx` (ascending flat indices): sorted by latency,
    then by throughput, a point stays if it beats the throughput of every point before it. Any
    ascending subset holding every frontier point of the grid gives the grid's frontier (a point
    beaten in the grid is beaten by the first point of the largest throughput before it, itself a
    frontier point)."""
    lat, thr = grid.latency_s.reshape(-1)[idx], grid.metric.reshape(-1)[idx]
    order = np.lexsort((-thr, lat))
    thr, idx = thr[order], idx[order]
    running = np.maximum.accumulate(thr)
    keep = np.concatenate([[True], thr[1:] > running[:-1]]) if len(thr) else np.array([], bool)
    return idx[keep]


def best_by_devices(grid: Grid, slo_s: float | None) -> list[tuple[int, float, int]]:
    """(devices, tokens/s per device, flat index) of the best deployment meeting the SLO, per instance size."""
    best, flat = best_per_deployment(grid, slo_s)
    st = grid.axes["structure"]
    b = best.reshape(len(st), -1)
    f = flat.reshape(len(st), -1)
    j = np.argmax(b, axis=1)
    top = b[np.arange(len(st)), j]
    out: dict[int, tuple[int, float, int]] = {}
    for s in np.flatnonzero(np.isfinite(top)):  # one row per structure (instance size x redundancy), not per candidate
        d = int(st.devices[s])
        if d not in out or top[s] > out[d][1]:
            out[d] = (d, float(top[s]), int(f[s, j[s]]))
    return sorted(out.values())
