"""`cmperf sweep KEY=START:STOP:STEPS [KEY2=...]`: re-plan at every point of a one- or two-key grid.

Every point is a light re-plan (`core.best`): the best decode deployment per TPOT SLO and the
best prefill deployment. A point where an SLO cannot be met gives None and a note. Whole-number
keys are rounded, and points that round to the same value are evaluated once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from cmperf.errors import SpecError
from cmperf.whatif.core import SLO_FIELDS, Scenario, best, check_scenario, key_info, set_value, settable_keys
from cmperf.specs.loader import parse_finite, unknown_key_message

MAX_STEPS = 1000
MAX_POINTS = 10_000


@dataclass(frozen=True)
class Axis:
    key: str
    values: tuple
    integer: bool
    unit: str
    text: str  # the argument as given

    @property
    def where(self) -> str:
        return f"sweep argument {self.text!r}"


def sweepable_keys() -> list[str]:
    return [k for k in settable_keys(allow_slo=True) if k.startswith("slo.") or key_info(k)[0] in ("int", "float")]


def _number(text: str, what: str, where: str, unit: str | None = None) -> float:
    return parse_finite(text, where, what, unit=unit)


def parse_axis(text: str, base: Scenario) -> Axis:
    """Parse and validate KEY=START:STOP:STEPS against the base scenario."""
    where = f"sweep argument {text!r}"
    key, sep, rng = text.partition("=")
    key = key.strip()
    parts = rng.split(":")
    if not sep or not key or len(parts) != 3 or not all(p.strip() for p in parts):
        raise SpecError("expected KEY=START:STOP:STEPS, e.g. die.hbm_bandwidth_bytes_per_s=0.8e12:3.2e12:10", where=where)
    if key.startswith("derived."):
        raise SpecError(f"'{key}' is derived from other keys and cannot be swept; sweep its inputs instead", where=where)
    valid = sweepable_keys()
    if key not in valid:
        if key in settable_keys():
            raise SpecError(f"'{key}' is not numeric (a data type); use --set to change it", where=where)
        raise SpecError(unknown_key_message(key, valid), where=where)
    unit = key_info(key)[1]
    start = _number(parts[0], "START", where, unit)
    stop = _number(parts[1], "STOP", where, unit)
    steps_f = _number(parts[2], "STEPS", where)
    if not steps_f.is_integer():
        raise SpecError(f"expected a whole number of STEPS, got {parts[2]!r}", where=where)
    steps = int(steps_f)
    if not 2 <= steps <= MAX_STEPS:
        raise SpecError(f"expected STEPS between 2 and {MAX_STEPS}, got {steps}", where=where)
    if start == stop:
        raise SpecError(f"expected START != STOP, got {parts[0]} twice", where=where)
    typ, unit = key_info(key)
    values = np.linspace(start, stop, steps)
    if typ == "int":
        values = np.round(values)
        # Rounding may merge neighbouring points; keep each whole number once, in sweep order.
        seen: list[int] = []
        for v in values.astype(int).tolist():
            if v not in seen:
                seen.append(v)
        out = tuple(seen)
    else:
        out = tuple(float(v) for v in values)
    # Validate the end points as --set would (every valid range is an interval, so the points between are valid too).
    for v in (out[0], out[-1]):
        set_value(base, key, v, where, allow_slo=True)
    return Axis(key, out, typ == "int", unit, text)


def parse_axes(texts: list[str], base: Scenario) -> list[Axis]:
    if not texts:
        raise SpecError("expected one or two KEY=START:STOP:STEPS arguments", where="SPEC")
    if len(texts) > 2:
        raise SpecError(f"expected one or two KEY=START:STOP:STEPS arguments, got {len(texts)}", where="SPEC")
    axes = [parse_axis(t, base) for t in texts]
    if len(axes) == 2 and axes[0].key == axes[1].key:
        raise SpecError(f"the two sweep keys must differ; got {axes[0].key} twice", where=axes[1].where)
    n = math.prod(len(a.values) for a in axes)
    if n > MAX_POINTS:
        raise SpecError(f"{n:,} points exceed the limit of {MAX_POINTS:,}; use fewer STEPS", where=axes[-1].where)
    # Cross-key checks (context length, budget) at the corners of the grid, naming the arguments.
    corners = [(a,) for a in (axes[0].values[0], axes[0].values[-1])]
    if len(axes) == 2:
        corners = [(a, b) for (a,) in corners for b in (axes[1].values[0], axes[1].values[-1])]
    where = " and ".join(a.where for a in axes)
    for c in corners:
        sc = base
        for ax, v in zip(axes, c):
            sc = set_value(sc, ax.key, v, ax.where, allow_slo=True)
        check_scenario(sc, where_len=where, where_devices=where)
    return axes


def _points(axes: list[Axis]) -> list[tuple]:
    """(index tuple, value tuple) in evaluation order: keys that leave the grids alone (SLOs) vary fastest."""
    if len(axes) == 1:
        return [((i,), (v,)) for i, v in enumerate(axes[0].values)]
    a, b = axes
    pts = [((i, j), (va, vb)) for i, va in enumerate(a.values) for j, vb in enumerate(b.values)]
    if a.key in SLO_FIELDS and b.key not in SLO_FIELDS:
        pts.sort(key=lambda p: (p[0][1], p[0][0]))
    return pts


def _evaluate(sc: Scenario) -> dict:
    """One point's light re-plan; a point the end-point checks could not foresee becomes a note."""
    try:
        return best(sc)
    except SpecError as exc:
        return {"decode": [None] * len(sc.tpot_ms), "prefill": None, "notes": [f"invalid point: {exc}"]}


def run_sweep(base: Scenario, axes: list[Axis], progress=None, workers: int | None = 1) -> dict:
    """Evaluate every point. Returns {"axes", "slos", "rows" (one per point and TPOT SLO), "notes"}.

    `progress` (optional) is called once per point, for a progress bar; `workers` processes
    share the points (None: the cores available), with the same result as one.
    """
    from cmperf.whatif.parallel import run

    points = _points(axes)
    slo_values = [v for ax in axes if ax.key == "slo.tpot_ms" for v in ax.values]
    if slo_values:  # every point's decode search answers every swept SLO: one search serves them all
        base = replace(base, answer_tpot_ms=tuple(float(v) for v in slo_values))
    scenarios = []
    for idx, vals in points:
        sc = base
        for ax, v in zip(axes, vals):
            sc = set_value(sc, ax.key, v, ax.where, allow_slo=True, record=False)
        scenarios.append(sc)
    answers = run(_evaluate, scenarios, workers, progress)
    results = {idx: (vals, sc, res) for (idx, vals), sc, res in zip(points, scenarios, answers)}
    rows, notes = [], []
    for idx in sorted(results):
        vals, sc, res = results[idx]
        point = {ax.key: v for ax, v in zip(axes, vals)}
        if res["notes"]:
            notes.append(", ".join(f"{k}={v:g}" for k, v in point.items()) + ": " + "; ".join(res["notes"]))
        p = res["prefill"]
        for t, d in zip(sc.tpot_ms, res["decode"]):
            rows.append({**point, "slo_tpot_ms": t,
                         "decode_tokens_per_s_per_device": d and d["tokens_per_s_per_device"],
                         "decode_tpot_ms": d and d["latency_ms"],
                         "decode_deployment": d and d["deployment"], "decode_limit": d and d["limit"],
                         "slo_ttft_ms": sc.ttft_ms,
                         "prefill_tokens_per_s_per_device": p and p["tokens_per_s_per_device"],
                         "prefill_ttft_ms": p and p["latency_ms"],
                         "prefill_deployment": p and p["deployment"],
                         "note": "; ".join(res["notes"]) or None})
    slos = sorted({r["slo_tpot_ms"] for r in rows})
    return {"axes": axes, "slos": slos, "rows": rows, "notes": notes, "base": base}


def n_points(axes: list[Axis]) -> int:
    return math.prod(len(a.values) for a in axes)
