"""Records of chosen deployments and what binds them: the one place the solver's answers are written down.

A record is one grid point as a flat dict (phase, SLO, throughput, latency, the deployment's
choices, what stops a larger batch), carrying the `Deployment` itself under "deployment_obj".
`explain_all` re-evaluates the deployments of many records with `cmperf.evaluation.evaluate`, in one
broadcast call per phase, each to the bit what `cmperf estimate --deployment` gives for it alone;
it checks each agrees with the grid and attaches what binds. `explain` does so for one record.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from cmperf.compose.binding import binding
from cmperf.evaluation import check_finite_result, check_single, evaluate
from cmperf.solve.search import Grid, deployment_at, limit_reason
from cmperf.specs.deployment import Workload, as_int
from cmperf.specs.loader import Spec

#: Relative agreement required between a grid point and the same deployment evaluated alone.
GRID_AGREEMENT_RTOL = 1e-9


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.number)) and not isinstance(v, bool)


def record(grid: Grid, flat: int, slo_ms: float | None, dies_per_device: int) -> dict:
    """One grid point as a flat record: phase, SLO, metric, latency, deployment, what limits it."""
    d = deployment_at(grid, flat)
    rec = {"phase": grid.phase, "slo_ms": slo_ms,
           "tokens_per_s_per_device": float(grid.metric.reshape(-1)[flat]),
           "latency_ms": float(grid.latency_s.reshape(-1)[flat]) * 1e3}
    rec.update({k: as_int(getattr(d, k)) for k in ("devices", "ep", "attn_tp", "redundant", "batch", "tokens_per_device", "microbatches", "mtp")})
    rec["attn_cores"] = as_int(d.attention_matrix_cores) if grid.phase == "decode" else None
    rec["dp"] = rec["devices"] * dies_per_device // rec["attn_tp"]
    rec["deployment"] = d.describe()
    rec["deployment_obj"] = d
    rec["limit"] = limit_reason(grid, flat, None if slo_ms is None else slo_ms * 1e-3)
    return rec


def explain(rec: dict | None, hw: Spec, model: Spec, grid: Grid, workload: Workload | None = None) -> dict | None:
    """Evaluate the record's deployment as `cmperf estimate --deployment` does (`explain_all`),
    attach what binds, and take those numbers after checking the grid agrees. `workload` is the
    whole workload asked for (default: the grid's, which holds what the phase reads)."""
    if rec is not None:
        explain_all([rec], hw, model, workload or grid.workload)
    return rec


def explain_all(recs: list[dict], hw: Spec, model: Spec, workload: Workload) -> None:
    """`explain` for many records, the deployments of a phase evaluated in one broadcast call.

    The cost model does the same arithmetic, in the same order, for a deployment alone and inside a
    broadcast: sums run over a fixed operator list (an operator a group adds for some of its
    deployments, such as a TP collective, costs the others an exact zero) and no formula uses a
    function whose vectorised and scalar results may differ (numpy's `power`). So each record gets,
    to the bit, what `cmperf estimate --deployment` gives for it alone (tests compare the two on
    every hardware and model file). Each deployment is first checked as a single one is."""
    groups: dict[tuple, list[dict]] = {}
    for rec in recs:
        d = rec["deployment_obj"]
        # Deployments evaluate together where they share the phase, the words (EPLB, cache path)
        # and which numbers are given; the numbers become the broadcast's arrays.
        common = tuple((k, float if _is_number(v) else v) for k, v in d.choices().items())
        groups.setdefault((d.phase, common), []).append(rec)
    for (phase, common), group in groups.items():
        deps = [r["deployment_obj"] for r in group]
        for d in deps:
            check_single(hw, model, workload, d)
        numbers = [k for k, v in common if v is float]
        grid = replace(deps[0], **{k: np.array([float(getattr(d, k)) for d in deps]) for k in numbers})
        ev = evaluate(hw, model, workload, grid)
        check_finite_result(ev.result, hw, model, ("tpot_s" if phase == "decode" else "ttft_s", "tokens_per_s_per_device", "hbm_used_bytes_per_die"))
        n = len(group)
        latency, throughput, used = (np.broadcast_to(np.asarray(x, float), (n,)) for x in
                                     (ev.latency_s, ev.tokens_per_s_per_device, ev.hbm_used_bytes_per_die))
        for i, rec in enumerate(group):
            latency_ms = float(latency[i]) * 1e3
            if not np.isclose(latency_ms, rec["latency_ms"], rtol=GRID_AGREEMENT_RTOL):
                raise AssertionError(f"the grid and a single evaluation disagree: {rec['latency_ms']} vs {latency_ms} ms for {rec['deployment']}")
            rec["latency_ms"] = latency_ms
            rec["tokens_per_s_per_device"] = float(throughput[i])
            rec["workload"] = ev.workload
            rec["step_bound"] = binding(ev.result, i)
            rec["binding"] = f"{rec['limit']}; step bound by {rec['step_bound']}"
            rec["hbm_used_gb_per_die"] = float(used[i]) / 1e9
