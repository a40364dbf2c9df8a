"""What limits an evaluated deployment: HBM capacity, or the stream and resource on the critical path."""

from __future__ import annotations

import numpy as np

from cmperf.costs.roofline import BOUND_NAMES


def _s(x) -> float:
    return float(np.asarray(x).reshape(-1)[0])


def binding(res: dict) -> str:
    """What limits this deployment: the stream or resource on the critical path of a MoE layer."""
    if not bool(np.all(res["fits"])):
        return "HBM capacity"
    ops = [o for o in res["ops"] if o.scope == "MoE layers"]
    streams = sorted({o.stream for o in ops})
    times = {s: sum(_s(o.time_s) for o in ops if o.stream == s) for s in streams}
    crit = max(times, key=times.get)
    by_bound: dict[str, float] = {}
    for o in ops:
        if o.stream == crit:
            b = BOUND_NAMES[int(_s(o.bound))]
            by_bound[b] = by_bound.get(b, 0.0) + _s(o.time_s)
    return f"{max(by_bound, key=by_bound.get)} ({crit} stream)"
