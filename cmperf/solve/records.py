"""Records of chosen deployments and what binds them: the one place the solver's answers are written down.

A record is one grid point as a flat dict (phase, SLO, throughput, latency, the deployment's
choices, what stops a larger batch), carrying the `Deployment` itself under "deployment_obj".
`explain` re-evaluates that deployment alone with `cmperf.evaluation.evaluate` (what
`cmperf estimate --deployment` runs), checks it agrees with the grid, and attaches what binds.
"""

from __future__ import annotations

import numpy as np

from cmperf.evaluation import evaluate
from cmperf.solve.search import Grid, deployment_at, limit_reason
from cmperf.specs.deployment import Workload, as_int
from cmperf.specs.loader import Spec

#: Relative agreement required between a grid point and the same deployment evaluated alone.
GRID_AGREEMENT_RTOL = 1e-9


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
    """Evaluate the record's deployment alone, attach what binds, and take the single evaluation's
    numbers (the ones `cmperf estimate --deployment` reproduces) after checking the grid agrees.
    `workload` is the whole workload asked for (default: the grid's, which holds what the phase reads)."""
    if rec is None:
        return None
    ev = evaluate(hw, model, workload or grid.workload, rec["deployment_obj"])
    latency_ms = float(np.asarray(ev.latency_s)) * 1e3
    if not np.isclose(latency_ms, rec["latency_ms"], rtol=GRID_AGREEMENT_RTOL):
        raise AssertionError(f"the grid and a single evaluation disagree: {rec['latency_ms']} vs {latency_ms} ms for {rec['deployment']}")
    rec["latency_ms"] = latency_ms
    rec["tokens_per_s_per_device"] = float(np.asarray(ev.tokens_per_s_per_device))
    rec["deployment_obj"] = ev.deployment
    rec["workload"] = ev.workload
    rec["step_bound"] = ev.binding
    rec["binding"] = f"{rec['limit']}; step bound by {rec['step_bound']}"
    rec["hbm_used_gb_per_die"] = float(np.asarray(ev.hbm_used_bytes_per_die)) / 1e9
    return rec
