"""`cmperf capacity`: devices (and supernodes) to serve R requests/s under the SLOs.

Instances are not budget-limited: every instance size up to one system is searched, and the
number of instances scales with the rate. For each instance size D the best deployment meeting
the SLO gives X(D) tokens/s per device, so one instance serves

    prefill: c_p = X_p D / I      decode: c_d = X_d D / O      requests/s

and n = ceil(R / c) instances serve R. The size chosen is the one needing the fewest devices
(ties: the higher tokens/s per device); at high rates this is the best tokens/s per device
deployment, at low rates it avoids a big instance mostly idle. Instances are packed into systems
(supernodes of `system.nodes * node.packages` devices) first-fit decreasing; an instance never
spans two systems.
"""

from __future__ import annotations

import math

from cmperf.errors import InfeasibleError, SpecError
from cmperf.solve.records import record
from cmperf.solve.search import best_by_devices, best_latency_s
from cmperf.whatif.core import Scenario, decode_grid_for, explain, prefill_grid_for


def _choose(options, rate: float, tokens_per_request: float) -> tuple | None:
    best = None
    for d, x, flat in options:
        cap = x * d / tokens_per_request
        n = max(1, math.ceil(rate / cap - 1e-9))
        key = (n * d, -x)
        if best is None or key < best[0]:
            best = (key, d, x, flat, cap, n)
    return best


def _phase(sc: Scenario, grid, options, rate: float, tokens_per_request: float, slo_ms, which: str) -> dict:
    pick = _choose(options, rate, tokens_per_request)
    _, d, x, flat, cap, n = pick
    rec = explain(sc, record(grid, flat, slo_ms, sc.hw["package.dies"]))
    lat_ms = rec["latency_ms"]
    util = rate / (n * cap)
    load = rate * tokens_per_request / (n * d)
    out = {
        "instances": n, "devices_per_instance": d, "devices": n * d,
        "deployment": rec["deployment"],
        "params": {k: rec[k] for k in ("devices", "ep", "attn_tp", "redundant", "microbatches", "attn_cores", "mtp", "batch", "tokens_per_device") if rec.get(k) is not None},
        "latency_ms": lat_ms,
        "capacity_tokens_per_s_per_device": x,
        "load_tokens_per_s_per_device": load,
        "requests_per_s_per_instance": cap,
        "utilisation": util, "headroom": 1.0 - util,
        "binding": rec["binding"],
    }
    if which == "decode":
        out["concurrent_requests_per_device"] = (rec["batch"] or 0) * util
    return out


def pack(groups: list[tuple[int, int]], system: int) -> int:
    """Systems needed to hold `count` instances of each `size`, first-fit decreasing by size.

    Counted arithmetically over groups of systems with equal free space, so a fleet of millions of
    instances packs as fast as one of ten.
    """
    bins: dict[int, int] = {}  # free devices -> systems with that much free
    for size, count in sorted(groups, reverse=True):
        left = count
        for free in sorted(bins, reverse=True):
            if left <= 0 or free < size or bins[free] == 0:
                continue
            per = free // size
            placed = min(left, bins[free] * per)
            full, rem = divmod(placed, per)
            bins[free] -= full + (1 if rem else 0)
            bins[free - per * size] = bins.get(free - per * size, 0) + full
            if rem:
                bins[free - rem * size] = bins.get(free - rem * size, 0) + 1
            left -= placed
        if left > 0:
            per = system // size
            full, rem = divmod(left, per)
            bins[system - per * size] = bins.get(system - per * size, 0) + full
            if rem:
                bins[system - rem * size] = bins.get(system - rem * size, 0) + 1
    return sum(bins.values())


def capacity(sc: Scenario, rate: float) -> dict:
    if not (math.isfinite(rate) and rate > 0):
        raise SpecError(f"expected a positive number of requests/s, got {rate!r}", where="--rate")
    if len(sc.tpot_ms) != 1:
        raise SpecError("expected one TPOT SLO", where="--tpot")
    system = sc.system_devices
    slo = sc.tpot_ms[0]
    dg = decode_grid_for(sc, system)
    pg = prefill_grid_for(sc, system)
    d_opts = best_by_devices(dg, slo * 1e-3)
    if not d_opts:
        raise InfeasibleError(f"no decode deployment of up to one system ({system} devices) meets TPOT <= {slo:g} ms; "
                              f"the best achievable TPOT is {best_latency_s(dg) * 1e3:.2f} ms", where="--tpot")
    ttft_s = sc.ttft_ms * 1e-3 if sc.ttft_ms is not None else None
    p_opts = best_by_devices(pg, ttft_s)
    if not p_opts:
        raise InfeasibleError(f"no prefill deployment of up to one system meets TTFT <= {sc.ttft_ms:g} ms; "
                              f"the best achievable TTFT is {best_latency_s(pg) * 1e3:.1f} ms", where="--ttft")
    pre = _phase(sc, pg, p_opts, rate, sc.input_len, sc.ttft_ms, "prefill")
    dec = _phase(sc, dg, d_opts, rate, sc.output_len, slo, "decode")
    total = pre["devices"] + dec["devices"]
    supernodes = pack([(pre["devices_per_instance"], pre["instances"]), (dec["devices_per_instance"], dec["instances"])], system)
    return {
        "rate_requests_per_s": rate, "input_len": sc.input_len, "output_len": sc.output_len,
        "slo_tpot_ms": slo, "slo_ttft_ms": sc.ttft_ms, "prefix_hit": sc.prefix_hit, "cache_path": sc.cache_path,
        "total_devices": total, "prefill_devices": pre["devices"], "decode_devices": dec["devices"],
        "supernodes": supernodes, "devices_per_supernode": system, "idle_devices_in_supernodes": supernodes * system - total,
        "output_tokens_per_s_per_device": rate * sc.output_len / total,
        "prefill": pre, "decode": dec, "hardware": sc.hw.name, "model": sc.model.name, "overrides": list(sc.overrides),
    }
