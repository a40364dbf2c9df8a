"""Plots of the what-if reports (compare, sweep, cache), PNG and SVG through `report.plots`.

Kept apart from the tables and markdown of `report.whatif` so that printing never loads matplotlib.
"""

from __future__ import annotations

import math

from cmperf.report.numbers import si


def _series(xs, ys):
    """Drop the points with no value (an SLO not met), so a line joins the points that exist."""
    pts = [(x, y) for x, y in zip(xs, ys) if y is not None and isinstance(y, (int, float)) and math.isfinite(y)]
    return [p[0] for p in pts], [p[1] for p in pts]


def _fmt_key(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def compare_plot(result: dict) -> dict:
    """{'png', 'svg'}: the decode Pareto frontier (tokens/s per device against TPOT) of both, the best point at each SLO marked."""
    from cmperf.report.plots import line_plot

    series = {f"{side} frontier": _series([p[0] for p in pts], [p[1] for p in pts]) for side, pts in result["frontier"].items()}
    markers = {}
    for r in result["rows"]:
        if r["phase"] != "decode":
            continue
        for side in ("baseline", "variant"):
            if r[f"{side}_tokens_per_s_per_device"] is not None:
                markers[f"{side} best at TPOT <= {r['slo_ms']:g} ms"] = (r[f"{side}_latency_ms"], r[f"{side}_tokens_per_s_per_device"])
    vlines = {f"TPOT SLO {r['slo_ms']:g} ms": r["slo_ms"] for r in result["rows"] if r["phase"] == "decode"}
    series = {k: v for k, v in series.items() if v[0]}
    base, var = result["baseline"], result["variant"]
    title = (f"baseline {base.model.name} on {base.hw.name} vs variant on {var.hw.name}: decode frontier\n"
             f"{base.input_len:,}-token prompts, {base.output_len:,} output tokens" + (f"; variant: {', '.join(var.overrides)}" if var.overrides else ""))
    return line_plot(series, "TPOT (ms)", "decode tokens/s per device", title[:220], xunit="ms", markers=markers, vlines=vlines)


def _axis_title(ax) -> tuple[str, str]:
    """(label, unit for the ticks) of a swept key: its meaning from the schema, the key, and its unit."""
    from cmperf.specs.schema import HARDWARE_FIELDS, MODEL_FIELDS

    f = HARDWARE_FIELDS.get(ax.key) or MODEL_FIELDS.get(ax.key)
    meaning = f.help if f else ax.key.split(".", 1)[-1].replace("_", " ")
    tick_unit = ax.unit if ax.unit in ("B", "B/s", "OP/s", "FLOP/s", "s", "ms", "W") else ""
    return f"{meaning} ({ax.key}" + (f", {ax.unit})" if ax.unit and not tick_unit else ")"), tick_unit


def _sweep_plot(result: dict, series: dict, ax, ylabel: str, title: str) -> dict:
    from cmperf.report.plots import line_plot

    series = {k: v for k, v in series.items() if v[0]}
    base = result["base"]
    xlabel, xunit = _axis_title(ax)
    baseline = base.value(ax.key)
    full_title = f"{title}\n{base.model.name} on {base.hw.name}, {base.input_len:,}-token prompts, {base.output_len:,} output tokens"
    if not series:
        full_title += " (no point meets the SLO)"
    return line_plot(series, xlabel, ylabel, full_title, xunit=xunit,
                     baseline=(f"baseline {si(baseline, xunit)}", baseline) if isinstance(baseline, (int, float)) else None)


def sweep_plots(result: dict) -> dict[str, object]:
    """name -> SVG text or PNG bytes; every plot in both formats."""
    axes, rows = result["axes"], result["rows"]
    a = axes[0]
    figs = {}
    if len(axes) == 1:
        series = {}
        for t in result["slos"]:
            sel = [r for r in rows if r["slo_tpot_ms"] == t]
            name = "best decode" if a.key == "slo.tpot_ms" else f"decode, TPOT <= {t:g} ms"
            series[name] = _series([r[a.key] for r in sel], [r["decode_tokens_per_s_per_device"] for r in sel])
        figs["sweep"] = _sweep_plot(result, series, a, "best decode tokens/s per device", f"sweep of {a.key}")
        first = [r for r in rows if r["slo_tpot_ms"] == result["slos"][0]] if a.key != "slo.tpot_ms" else rows
        figs["sweep-prefill"] = _sweep_plot(result, {"prefill": _series([r[a.key] for r in first], [r["prefill_tokens_per_s_per_device"] for r in first])},
                                            a, "best prefill tokens/s per device", f"sweep of {a.key}: prefill")
    else:
        b = axes[1]
        slos = [None] if "slo.tpot_ms" in (a.key, b.key) else result["slos"]
        for i, t in enumerate(slos):
            series = {}
            for vb in b.values:
                sel = [r for r in rows if r[b.key] == vb and (t is None or r["slo_tpot_ms"] == t)]
                series[f"{b.key.split('.')[-1]} = {_fmt_key(vb)}"] = _series([r[a.key] for r in sel], [r["decode_tokens_per_s_per_device"] for r in sel])
            title = f"sweep of {a.key} by {b.key}" + (f", TPOT <= {t:g} ms" if t is not None else "")
            figs["sweep" if i == 0 else f"sweep-tpot{t:g}ms"] = _sweep_plot(result, series, a, "best decode tokens/s per device", title)
        series = {}
        t0 = result["slos"][0]
        for vb in b.values:
            sel = [r for r in rows if r[b.key] == vb and (r["slo_tpot_ms"] == t0 or "slo.tpot_ms" in (a.key, b.key))]
            seen, xs, ys = set(), [], []
            for r in sel:
                if r[a.key] not in seen:
                    seen.add(r[a.key])
                    xs.append(r[a.key])
                    ys.append(r["prefill_tokens_per_s_per_device"])
            series[f"{b.key.split('.')[-1]} = {_fmt_key(vb)}"] = _series(xs, ys)
        figs["sweep-prefill"] = _sweep_plot(result, series, a, "best prefill tokens/s per device", f"sweep of {a.key} by {b.key}: prefill")
    return {f"{name}.{ext}": fig[ext] for name, fig in figs.items() for ext in ("png", "svg")}


def cache_plots(result: dict) -> dict[str, object]:
    """cache.png/.svg (TTFT) and cache-throughput.png/.svg against the hit rate, for the three ways to get the cached KV."""
    from cmperf.report.plots import line_plot

    rows = result["rows"]
    xs = [r["prefix_hit"] for r in rows]
    ttft = {"load over UB": _series(xs, [r["ttft_ub_ms"] for r in rows]), "load over VPC": _series(xs, [r["ttft_vpc_ms"] for r in rows]),
            "recompute (hit 0)": _series(xs, [r["ttft_recompute_ms"] for r in rows])}
    thr = {"load over UB": _series(xs, [r["tokens_per_s_per_device_ub"] for r in rows]),
           "load over VPC": _series(xs, [r["tokens_per_s_per_device_vpc"] for r in rows]),
           "recompute (hit 0)": _series(xs, [r["tokens_per_s_per_device_recompute"] for r in rows])}
    sc = result["scenario"]
    where = f"\n{sc.model.name} on {sc.hw.name}; {result['deployment']}"
    figs = {"cache": line_plot(ttft, "prefix-cache hit rate (fraction of prompt tokens)", "TTFT (ms)", "TTFT against prefix-cache hit rate" + where, yunit="ms"),
            "cache-throughput": line_plot(thr, "prefix-cache hit rate (fraction of prompt tokens)", "prefill tokens/s per device",
                                          "prefill throughput against hit rate" + where)}
    return {f"{name}.{ext}": fig[ext] for name, fig in figs.items() for ext in ("png", "svg")}
