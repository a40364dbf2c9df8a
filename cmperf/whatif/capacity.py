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

Under load: decode instances run at most `max_utilisation` of their capacity; prefill instances
are a queue (`cmperf.solve.queueing`), sized so that P99 TTFT meets the TTFT SLO (the default one
where the user gives none) and utilisation stays under the same cap. `objective="cost"` picks the
prefill and decode sizes together for the fewest whole systems ($ per hour of what is provisioned),
then the fewest devices; `"devices"` picks each phase for the fewest devices.
"""

from __future__ import annotations

import math

from cmperf.costs.economics import economics
from cmperf.errors import InfeasibleError, SpecError
from cmperf.solve.queueing import DEFAULT_MAX_UTILISATION, DEFAULT_TTFT_MS, instances_for, load_report
from cmperf.solve.records import record
from cmperf.solve.search import best_by_devices, best_latency_s
from cmperf.whatif.core import Scenario, decode_grid_for, explain, prefill_grid_for

#: Batch-time caps, as fractions of the TTFT SLO, at which prefill deployments are considered.
PREFILL_BATCH_FRACTIONS = (1.0, 0.75, 0.5, 0.35, 0.25, 0.15)
#: Options per phase the cost objective pairs (the best few by devices hold the cheapest pair).
COST_SEARCH_TOP = 12


def _choose(options, rate: float, tokens_per_request: float, max_util: float) -> list[tuple]:
    """Every decode option with its instance count at the utilisation cap, best (fewest devices) first."""
    out = []
    for d, x, flat in options:
        cap = x * d / tokens_per_request
        n = max(1, math.ceil(rate / (cap * max_util) - 1e-9))
        out.append(((n * d, -x), d, x, flat, cap, n))
    return sorted(out, key=lambda o: o[0])


def _choose_prefill(grid, options, rate: float, tokens_per_request: float, max_util: float, ttft_s: float) -> list[tuple]:
    """Every prefill option whose pool meets P99 TTFT, with its instance count, best first."""
    out = []
    for d, x, flat in options:
        cap = x * d / tokens_per_request
        batch_s = float(grid.latency_s.reshape(-1)[flat])
        n = instances_for(rate, batch_s, cap, ttft_s, max_util)
        if n is not None:
            out.append(((n * d, -x), d, x, flat, cap, n))
    return sorted(out, key=lambda o: o[0])


def _phase(sc: Scenario, grid, pick, rate: float, tokens_per_request: float, slo_ms, which: str) -> dict:
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
    else:
        out.update(load_report(rate, n, lat_ms * 1e-3, cap))
    out.update(economics(sc.hw).per_token(load))  # what the provisioned devices cost per token they actually serve
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


def _prefill_options(pg, ttft_s: float) -> list[tuple]:
    """Per instance size, the best deployment at several batch-time caps below the SLO: queueing
    adds to the batch time, so a smaller, faster batch may be the one whose P99 meets the SLO."""
    seen, out = set(), []
    for frac in PREFILL_BATCH_FRACTIONS:
        for d, x, flat in best_by_devices(pg, ttft_s * frac):
            if flat not in seen:
                seen.add(flat)
                out.append((d, x, flat))
    return out


def capacity(sc: Scenario, rate: float, max_utilisation: float = DEFAULT_MAX_UTILISATION, objective: str = "devices") -> dict:
    if not (math.isfinite(rate) and rate > 0):
        raise SpecError(f"expected a positive number of requests/s, got {rate!r}", where="--rate")
    if not 0 < max_utilisation <= 1:
        raise SpecError(f"expected a fraction in (0, 1], got {max_utilisation!r}", where="--max-utilisation")
    if objective not in ("devices", "cost"):
        raise SpecError(f"expected devices or cost, got {objective!r}", where="--objective")
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
    ttft_ms = sc.ttft_ms if sc.ttft_ms is not None else DEFAULT_TTFT_MS
    p_picks = _choose_prefill(pg, _prefill_options(pg, ttft_ms * 1e-3), rate, sc.input_len, max_utilisation, ttft_ms * 1e-3)
    if not p_picks:
        raise InfeasibleError(f"no prefill deployment of up to one system meets P99 TTFT <= {ttft_ms:g} ms under load; "
                              f"the fastest batch alone takes {best_latency_s(pg) * 1e3:.1f} ms", where="--ttft")
    d_picks = _choose(d_opts, rate, sc.output_len, max_utilisation)
    p_pick, d_pick = p_picks[0], d_picks[0]
    if objective == "cost":
        def systems(pp, dp):
            return (pack([(pp[1], pp[5]), (dp[1], dp[5])], system), pp[1] * pp[5] + dp[1] * dp[5])
        p_pick, d_pick = min(((pp, dp) for pp in p_picks[:COST_SEARCH_TOP] for dp in d_picks[:COST_SEARCH_TOP]), key=lambda pd: systems(*pd))
    pre = _phase(sc, pg, p_pick, rate, sc.input_len, ttft_ms, "prefill")
    dec = _phase(sc, dg, d_pick, rate, sc.output_len, slo, "decode")
    total = pre["devices"] + dec["devices"]
    supernodes = pack([(pre["devices_per_instance"], pre["instances"]), (dec["devices_per_instance"], dec["instances"])], system)
    econ = economics(sc.hw)
    whole = econ.whole(total, rate * sc.output_len)
    return {
        "rate_requests_per_s": rate, "input_len": sc.input_len, "output_len": sc.output_len,
        "slo_tpot_ms": slo, "slo_ttft_ms": ttft_ms, "slo_ttft_default": sc.ttft_ms is None, "prefix_hit": sc.prefix_hit, "cache_path": sc.cache_path,
        "max_utilisation": max_utilisation, "objective": objective,
        "total_devices": total, "prefill_devices": pre["devices"], "decode_devices": dec["devices"],
        "supernodes": supernodes, "devices_per_supernode": system, "idle_devices_in_supernodes": supernodes * system - total,
        "output_tokens_per_s_per_device": rate * sc.output_len / total,
        "dollars_per_hour": econ.dollars_per_hour(total), "dollars_per_hour_supernodes": econ.dollars_per_hour(supernodes * system),
        "watts": econ.watts(total), "power_basis": econ.power_basis,
        "dollars_per_m_output_tokens": whole["dollars_per_m_tokens"], "output_tokens_per_joule": whole["tokens_per_joule"],
        "prefill": pre, "decode": dec, "hardware": sc.hw.name, "model": sc.model.name, "overrides": list(sc.overrides),
    }
