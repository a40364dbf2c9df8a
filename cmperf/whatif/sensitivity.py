"""`cmperf sensitivity`: which hardware parameters pay off, by the elasticity of the best throughput.

For a parameter p and the best tokens/s per device X(p) meeting an SLO (re-optimised over every
deployment at each value of p):

    e = d ln X / d ln p ~ (ln X(p (1 + h)) - ln X(p (1 - h))) / (ln(1 + h) - ln(1 - h))

a central finite difference at h = 10%. A fraction whose p (1 + h) would leave (0, 1] takes the
one-sided difference between p (1 - h) and p instead. Only physical capacities and rates are
perturbed (bandwidths, FLOP/s, capacities, latencies, start-ups, overheads, efficiencies); whole-
number counts (cores, links, dies) are skipped, since a 10% step of a count is not a count.

The optimum is taken with the last search axis made continuous (`core.refined_best`): the grid's
5% batch steps would make X(p) a staircase, whose differences are noise.
"""

from __future__ import annotations

import fnmatch
import math

from cmperf.errors import SpecError
from cmperf.specs.schema import HARDWARE_FIELDS
from cmperf.whatif.core import Scenario, refined_best, set_value

#: Units of the keys that are physical capacities, rates or times.
PHYSICAL_UNITS = ("B/s", "FLOP/s", "OP/s", "B", "s", "fraction")
NEGLIGIBLE = 0.02


def candidate_keys(sc: Scenario, only=None) -> list[str]:
    keys = [k for k, f in HARDWARE_FIELDS.items() if f.type == "float" and f.unit in PHYSICAL_UNITS and sc.hw.has(k)]
    if only:
        picked = [k for k in keys if any(k == p or k.startswith(p) or fnmatch.fnmatchcase(k, p) for p in only)]
        if not picked:
            raise SpecError(f"no perturbable hardware key matches {', '.join(only)} (keys are float capacities, rates, "
                            f"times and efficiencies, e.g. die.hbm_bandwidth_bytes_per_s, moe_comm.*)", where="--key")
        return picked
    return keys


def _throughputs(sc: Scenario) -> list[float]:
    return [refined_best(sc, "decode", t) for t in sc.tpot_ms] + [refined_best(sc, "prefill", sc.ttft_ms)]


def verdict(es: list[float], unused: bool, unit: str = "") -> str:
    finite = [e for e in es if e is not None and math.isfinite(e)]
    if unused:
        return "does not matter (no effect at all here)"
    if not finite:
        return "unknown (an SLO is not met)"
    e = max(finite, key=abs)
    if abs(e) < NEGLIGIBLE:
        return "does not matter"
    if e > 0:
        return "pays off"
    if unit == "s":
        return "pays off to cut"
    # More of a rate or a capacity costing throughput is not physics; say so rather than advise it.
    return "hurts when raised (a model artefact? see the notes)"


def _plan_points(sc: Scenario, keys, step: float) -> tuple[list, list]:
    """(per key: value, up, down, method or None when skipped) and the scenarios to evaluate, base first."""
    points, scenarios = [], [sc]
    for key in keys:
        p = float(sc.value(key))
        if p == 0:
            points.append((key, p, None, None, None))
            continue
        up, down = p * (1 + step), p * (1 - step)
        method = "central"
        if HARDWARE_FIELDS[key].check == "fraction" and up > 1:
            up, method = p, "one-sided"
        points.append((key, p, up, down, method))
        if up != p:
            scenarios.append(set_value(sc, key, up, "--key", record=False))
        scenarios.append(set_value(sc, key, down, "--key", record=False))
    return points, scenarios


def sensitivity(sc: Scenario, step: float = 0.1, only=None, progress=None, workers: int | None = 1) -> dict:
    """Rows per key, ranked by the largest |elasticity| over the decode SLOs and prefill.

    The re-plans are independent and spread over `workers` processes (None: the cores available).
    """
    from cmperf.whatif.parallel import run

    keys = candidate_keys(sc, only)
    points, scenarios = _plan_points(sc, keys, step)
    done = iter(run(_throughputs, scenarios, workers, progress))
    base = next(done)
    cols = [f"decode @ {t:g} ms" for t in sc.tpot_ms] + ["prefill"]
    notes = [f"{c}: no deployment meets the SLO at the base point" for c, x in zip(cols, base) if not math.isfinite(x)]
    rows = []
    for key, p, up, down, method in points:
        if method is None:
            if progress:
                progress()
                progress()
            rows.append({"key": key, "unit": HARDWARE_FIELDS[key].unit, "value": p, "method": "skipped (value 0)",
                         **{f"e {c}": None for c in cols}, "verdict": "not perturbed (value is 0)", "_rank": -1.0})
            continue
        if up == p and progress:
            progress()
        xs_up = base if up == p else next(done)
        xs_down = next(done)
        es = []
        for x0, xu, xd in zip(base, xs_up, xs_down):
            if all(math.isfinite(x) and x > 0 for x in (xu, xd)):
                es.append((math.log(xu) - math.log(xd)) / (math.log(up) - math.log(down)))
            else:
                es.append(None)
        unused = all(xu == x0 and xd == x0 for x0, xu, xd in zip(base, xs_up, xs_down) if math.isfinite(x0))
        finite = [abs(e) for e in es if e is not None]
        rows.append({"key": key, "unit": HARDWARE_FIELDS[key].unit, "value": p, "method": method,
                     **{f"e {c}": e for c, e in zip(cols, es)}, "verdict": verdict(es, unused, HARDWARE_FIELDS[key].unit),
                     "_rank": max(finite) if finite else -1.0})
    odd = [r["key"] for r in rows if r["verdict"].startswith("hurts")]
    if odd:
        notes.append(f"{', '.join(odd)}: more of it lowers the best throughput. Where a key sets both a bandwidth and a "
                     f"ratio to another key (e.g. the measured intra/inter-node UB bandwidths, whose ratio derates the fitted "
                     f"dispatch/combine bandwidth to other nodes), scale the related keys together (`compare --variant-scale`).")
    rows.sort(key=lambda r: -r["_rank"])
    for i, r in enumerate(rows, start=1):
        del r["_rank"]
        r["rank"] = i
    rows = [{"rank": r.pop("rank"), **r} for r in rows]
    return {"rows": rows, "columns": cols, "base": dict(zip(cols, base)), "notes": notes, "scenario": sc, "step": step}


def n_evaluations(sc: Scenario, only=None) -> int:
    return 1 + 2 * len(candidate_keys(sc, only))
