"""`cmperf compare`: re-plan a baseline and a variant and line the answers up with deltas."""

from __future__ import annotations

import math

from cmperf.costs.economics import economics
from cmperf.errors import InfeasibleError
from cmperf.whatif.core import Scenario, best, decode_grid_for, explain


def _delta_pct(a, b):
    if a is None or b is None or not a:
        return None
    return 100.0 * (b / a - 1.0)


def _side(rec: dict | None, prefix: str) -> dict:
    if rec is None:
        return {f"{prefix}_tokens_per_s_per_device": None, f"{prefix}_latency_ms": None, f"{prefix}_deployment": None,
                f"{prefix}_binding": "SLO not met"}
    return {f"{prefix}_tokens_per_s_per_device": rec["tokens_per_s_per_device"], f"{prefix}_latency_ms": rec["latency_ms"],
            f"{prefix}_deployment": rec["deployment"], f"{prefix}_binding": rec["binding"]}


def _binding_change(a: dict | None, b: dict | None) -> str:
    if a is None and b is None:
        return "neither meets the SLO"
    if a is None:
        return "variant meets the SLO, baseline does not"
    if b is None:
        return "variant no longer meets the SLO"
    parts = []
    if a["limit"] != b["limit"]:
        parts.append(f"limit: {a['limit']} -> {b['limit']}")
    if a["step_bound"] != b["step_bound"]:
        parts.append(f"step bound: {a['step_bound']} -> {b['step_bound']}")
    return "; ".join(parts) if parts else "unchanged"


def _answers(sc: Scenario) -> tuple[dict, list]:
    """One side: the best deployments, explained, and the decode frontier."""
    out = best(sc)
    out["decode"] = [explain(sc, r) for r in out["decode"]]
    out["prefill"] = explain(sc, out["prefill"])
    return out, frontier(sc)


def compare(base: Scenario, variant: Scenario, workers: int | None = 1) -> dict:
    """Rows per TPOT SLO (decode) and one prefill row, each with both answers and the delta.

    The two sides re-plan in `workers` processes (None: the cores available; two are used)."""
    from cmperf.whatif.parallel import run

    (a, front_a), (b, front_b) = run(_answers, [base, variant], workers)
    rows = []
    for i, t in enumerate(base.tpot_ms):
        ra, rb = a["decode"][i], b["decode"][i]
        rows.append({"phase": "decode", "slo": f"TPOT <= {t:g} ms", "slo_ms": t, **_side(ra, "baseline"), **_side(rb, "variant"),
                     "delta_pct": _delta_pct(ra and ra["tokens_per_s_per_device"], rb and rb["tokens_per_s_per_device"]),
                     "binding_change": _binding_change(ra, rb)})
    ra, rb = a["prefill"], b["prefill"]
    slo = f"TTFT <= {base.ttft_ms:g} ms" if base.ttft_ms is not None else "TTFT unconstrained"
    rows.append({"phase": "prefill", "slo": slo, "slo_ms": base.ttft_ms, **_side(ra, "baseline"), **_side(rb, "variant"),
                 "delta_pct": _delta_pct(ra and ra["tokens_per_s_per_device"], rb and rb["tokens_per_s_per_device"]),
                 "binding_change": _binding_change(ra, rb)})
    if all(r["baseline_tokens_per_s_per_device"] is None and r["variant_tokens_per_s_per_device"] is None
           for r in rows if r["phase"] == "decode"):
        raise InfeasibleError("neither the baseline nor the variant meets any TPOT SLO: " + "; ".join(a["notes"]), where="--tpot")
    for r in rows:
        for side, sc in (("baseline", base), ("variant", variant)):
            x = r[f"{side}_tokens_per_s_per_device"]
            e = economics(sc.hw).per_token(x) if x else {"dollars_per_m_tokens": None, "tokens_per_joule": None}
            r[f"{side}_dollars_per_m_tokens"], r[f"{side}_tokens_per_joule"] = e["dollars_per_m_tokens"], e["tokens_per_joule"]
    notes = [f"baseline: {n}" for n in a["notes"]] + [f"variant: {n}" for n in b["notes"]]
    return {"baseline": base, "variant": variant, "rows": rows, "notes": notes,
            "frontier": {"baseline": front_a, "variant": front_b}}


def frontier(sc: Scenario, span: float = 2.0) -> list[tuple[float, float]]:
    """(TPOT ms, tokens/s per device) of the decode Pareto frontier up to `span` x the largest SLO."""
    from cmperf.solve.search import pareto_front

    grid = decode_grid_for(sc)
    lat = grid.latency_s.reshape(-1)
    met = grid.metric.reshape(-1)
    top = span * max(sc.tpot_ms) * 1e-3
    return [(float(lat[i]) * 1e3, float(met[i])) for i in pareto_front(grid) if lat[i] <= top]


def headline(result: dict) -> list[str]:
    """One sentence per row: what the variant does to the best throughput."""
    out = []
    for r in result["rows"]:
        d = r["delta_pct"]
        if d is None or not math.isfinite(d):
            out.append(f"{r['phase']} at {r['slo']}: {r['binding_change']}")
        else:
            out.append(f"{r['phase']} at {r['slo']}: {r['baseline_tokens_per_s_per_device']:,.0f} -> "
                       f"{r['variant_tokens_per_s_per_device']:,.0f} tokens/s per device ({d:+.1f}%); binding {r['binding_change']}")
    return out


# ---- two deployments, evaluated as they are ---------------------------------------------------------

#: What a deployment comparison lines up: (label, Evaluation attribute, scale to the unit shown).
DEPLOYMENT_METRICS = (
    ("latency_ms", "latency_s", 1e3), ("step_ms", "step_s", 1e3), ("tokens_per_s_per_device", "tokens_per_s_per_device", 1.0),
    ("tokens_per_s_per_die", "tokens_per_s_per_die", 1.0), ("hbm_used_gb_per_die", "hbm_used_bytes_per_die", 1e-9),
)


def compare_deployments(baseline, variant) -> dict:
    """Line up two evaluated deployments (`cmperf.evaluation.Evaluation`): one row per metric with
    both values and the change, then the deployments and what binds each."""
    rows = []
    for label, attr, scale in DEPLOYMENT_METRICS:
        a, b = float(getattr(baseline, attr)) * scale, float(getattr(variant, attr)) * scale
        rows.append({"metric": label, "baseline": a, "variant": b, "delta_pct": _delta_pct(a, b)})
    for label, fn in (("deployment", lambda e: f"{e.phase}: {e.deployment.describe()}"), ("hardware", lambda e: e.hardware.name),
                      ("feasible", lambda e: bool(e.feasible)), ("binding", lambda e: e.binding)):
        rows.append({"metric": label, "baseline": fn(baseline), "variant": fn(variant), "delta_pct": None})
    notes = []
    if baseline.phase != variant.phase:
        notes.append(f"the sides are different phases ({baseline.phase} and {variant.phase}): latency is TPOT on one side, TTFT on the other")
    return {"rows": rows, "notes": notes, "baseline": baseline, "variant": variant}
