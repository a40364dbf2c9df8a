"""What limits an evaluated deployment: HBM capacity, or the stream and resource on the critical path."""

from __future__ import annotations

import numpy as np

from cmperf.costs.roofline import BOUND_NAMES


def binding(res: dict, index: int = 0) -> str:
    """What limits this deployment: the stream or resource on the critical path of a MoE layer.
    Of a broadcast evaluation over one axis (several deployments), of the deployment at `index`."""
    def at(x) -> float:
        a = np.asarray(x).reshape(-1)
        return float(a[index if a.size > 1 else 0])

    if not bool(at(res["fits"])):
        return "HBM capacity"
    ops = [o for o in res["ops"] if o.scope == "MoE layers"]
    streams = sorted({o.stream for o in ops})
    times = {s: sum(at(o.time_s) for o in ops if o.stream == s) for s in streams}
    crit = max(times, key=times.get)
    by_bound: dict[str, float] = {}
    for o in ops:
        if o.stream == crit:
            b = BOUND_NAMES[int(at(o.bound))]
            by_bound[b] = by_bound.get(b, 0.0) + at(o.time_s)
    return f"{max(by_bound, key=by_bound.get)} ({crit} stream)"
