"""Present what-if results: terminal tables, JSON/CSV rows, markdown reports and SVG plots."""

from __future__ import annotations

import math

from cmperf import __version__
from cmperf.inputs import safe_text
from cmperf.report.render import fmt_number, make_console, print_table, to_csv, to_json, to_markdown
from cmperf.report.svg import line_chart


def _r(v, nd=1):
    """Round for display; None and NaN become '-'."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return int(round(v)) if nd == 0 else round(v, nd)


def _series(xs, ys):
    """Drop the points with no value (an SLO not met), so a line joins the points that exist."""
    pts = [(x, y) for x, y in zip(xs, ys) if y is not None and isinstance(y, (int, float)) and math.isfinite(y)]
    return [p[0] for p in pts], [p[1] for p in pts]


def _chart(series: dict, xlabel: str, ylabel: str, title: str, empty_x: float = 0.0) -> str:
    series = {k: v for k, v in series.items() if v[0]}
    if not series:
        return line_chart({}, xlabel, ylabel, title + " (no SLO met)", vlines={"no point meets the SLO": empty_x})
    return line_chart(series, xlabel, ylabel, title)


def _emit_simple(rows: list[dict], fmt: str) -> bool:
    if fmt == "json":
        print(to_json(rows))
        return True
    if fmt == "csv":
        print(to_csv(rows), end="")
        return True
    return False


def _footer(con, path):
    if path:
        con.print(f"reports written to {path}/")


def _print_report(fmt: str, rows: list[dict], markdown, lines, tables, notes=(), path=None, trailer=()) -> None:
    """The shape every what-if report prints in: json/csv rows, markdown, or a terminal page of
    question lines, tables, trailing lines, notes and where the files went."""
    if _emit_simple(rows, fmt):
        return
    if fmt == "md":
        print(safe_text(markdown()))
        return
    con = make_console()
    for line in lines:
        con.print(line)
    for table_rows, title in tables:
        print_table(table_rows, title, console=con)
    for line in trailer:
        con.print(line)
    for n in notes:
        con.print(f"note: {n}")
    _footer(con, path)


def _scenario_lines(sc, label: str | None = None, short: bool = False, budget: bool = True) -> list[str]:
    lines = [(f"{label}: " if label else "") + (f"{sc.model.name} on {sc.hw.name}" if short else sc.describe(budget))]
    if sc.overrides:
        lines.append((f"{label} " if label else "") + "overrides: " + ", ".join(sc.overrides))
    return lines


# ---- compare -------------------------------------------------------------------------------------


def compare_table(result: dict) -> list[dict]:
    """Display rows; the latency column is TPOT for decode and TTFT for prefill."""
    return [{"phase": r["phase"], "SLO": r["slo"],
             "baseline": r["baseline_deployment"] or "SLO not met",
             "base TPOT/TTFT ms": _r(r["baseline_latency_ms"], 2), "base tok/s/dev": _r(r["baseline_tokens_per_s_per_device"]),
             "variant": r["variant_deployment"] or "SLO not met",
             "var TPOT/TTFT ms": _r(r["variant_latency_ms"], 2), "var tok/s/dev": _r(r["variant_tokens_per_s_per_device"]),
             "delta": "-" if r["delta_pct"] is None else f"{r['delta_pct']:+.1f}%",
             "binding change": r["binding_change"]} for r in result["rows"]]


def _binding_rows(result: dict) -> list[dict]:
    return [{"phase": r["phase"], "SLO": r["slo"], "baseline binding": r["baseline_binding"], "variant binding": r["variant_binding"]}
            for r in result["rows"]]


def compare_markdown(result: dict, plot: str) -> str:
    from cmperf.whatif.compare import headline

    parts = ["# cmperf compare", "", "## The question", ""]
    parts += [f"- {line}" for line in _scenario_lines(result["baseline"], "baseline") + _scenario_lines(result["variant"], "variant")]
    parts += ["", "## The answer", ""] + [f"- {line}" for line in headline(result)]
    parts += ["", to_markdown(compare_table(result)), ""]
    parts += ["### What binds", "", to_markdown(_binding_rows(result)), ""]
    if result["notes"]:
        parts += ["### Notes", ""] + [f"- {n}" for n in result["notes"]] + [""]
    parts += [f"![decode tokens/s per device per TPOT SLO]({plot})", "", f"cmperf {__version__}", ""]
    return "\n".join(parts)


def compare_svg(result: dict) -> str:
    """The decode Pareto frontier (tokens/s per device against TPOT) of both, the best point at each SLO marked."""
    series = {f"{side} frontier": _series([p[0] for p in pts], [p[1] for p in pts]) for side, pts in result["frontier"].items()}
    markers = {}
    for r in result["rows"]:
        if r["phase"] != "decode":
            continue
        for side in ("baseline", "variant"):
            if r[f"{side}_tokens_per_s_per_device"] is not None:
                markers[f"{side} @ {r['slo_ms']:g} ms"] = (r[f"{side}_latency_ms"], r[f"{side}_tokens_per_s_per_device"])
    vlines = {f"SLO {r['slo_ms']:g} ms": r["slo_ms"] for r in result["rows"] if r["phase"] == "decode"}
    series = {k: v for k, v in series.items() if v[0]}
    return line_chart(series, "TPOT (ms)", "decode tokens/s per device", "baseline vs variant: decode frontier and best per TPOT SLO",
                      markers=markers, vlines=vlines)


def compare_files(result: dict) -> dict[str, str]:
    return {"compare.md": compare_markdown(result, "compare.svg"), "compare.csv": to_csv(result["rows"]), "compare.svg": compare_svg(result)}


def print_compare(result: dict, fmt: str, path=None) -> None:
    from cmperf.whatif.compare import headline

    _print_report(fmt, result["rows"], lambda: compare_markdown(result, "compare.svg"),
                  _scenario_lines(result["baseline"], "baseline") + _scenario_lines(result["variant"], "variant"),
                  [(compare_table(result), "Best deployment per SLO: baseline vs variant"), (_binding_rows(result), "What binds")],
                  result["notes"], path, trailer=headline(result))


# ---- sweep ---------------------------------------------------------------------------------------


def _label(ax) -> str:
    return f"{ax.key} ({ax.unit})" if ax.unit else ax.key


def _fmt_key(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _short(text: str | None) -> str:
    """'176 dev, EP352, TP4, red 64, 1 mb, MTP 2, batch 16' -> '176 dev EP352 TP4 1mb MTP2 b16' (the full text is in the CSV)."""
    if not text:
        return "SLO not met"
    keep = [p.replace(" mb", "mb").replace("MTP ", "MTP").replace("batch ", "b").replace(" tok/dev", " tok")
            for p in text.split(", ") if not p.startswith("red ")]
    return " ".join(keep)


def sweep_table(result: dict) -> list[dict]:
    axes = result["axes"]
    keys = [a.key for a in axes]
    slo_axis = "slo.tpot_ms" in keys
    wide: dict[tuple, dict] = {}
    for r in result["rows"]:
        k = tuple(r[a] for a in keys)
        row = wide.setdefault(k, {**{a: _fmt_key(r[a]) for a in keys}, "_decode": {}, "_prefill": {}})
        suffix = "" if slo_axis else f" @ {r['slo_tpot_ms']:g} ms"
        row["_decode"][f"tok/s/dev{suffix}"] = _r(r["decode_tokens_per_s_per_device"])
        row["_decode"][f"best{suffix}"] = _short(r["decode_deployment"])
        row["_prefill"] = {"prefill tok/s/dev": _r(r["prefill_tokens_per_s_per_device"]), "TTFT ms": _r(r["prefill_ttft_ms"], 0),
                           "best prefill": _short(r["prefill_deployment"])}
        row["note"] = r["note"] or ""
    out = []
    for row in wide.values():
        note = row.pop("note")
        out.append({**{k: v for k, v in row.items() if not k.startswith("_")}, **row["_decode"], **row["_prefill"], "note": note})
    return out


def sweep_svgs(result: dict) -> dict[str, str]:
    axes, rows = result["axes"], result["rows"]
    a = axes[0]
    files = {}
    if len(axes) == 1:
        series = {}
        for t in result["slos"]:
            sel = [r for r in rows if r["slo_tpot_ms"] == t]
            name = "best decode" if a.key == "slo.tpot_ms" else f"decode, TPOT <= {t:g} ms"
            series[name] = _series([r[a.key] for r in sel], [r["decode_tokens_per_s_per_device"] for r in sel])
        files["sweep.svg"] = _chart(series, _label(a), "best decode tokens/s per device", f"sweep of {a.key}", a.values[0])
        first = [r for r in rows if r["slo_tpot_ms"] == result["slos"][0]] if a.key != "slo.tpot_ms" else rows
        files["sweep-prefill.svg"] = _chart({"prefill": _series([r[a.key] for r in first], [r["prefill_tokens_per_s_per_device"] for r in first])},
                                            _label(a), "best prefill tokens/s per device", f"sweep of {a.key}: prefill", a.values[0])
        return files
    b = axes[1]
    slos = [None] if "slo.tpot_ms" in (a.key, b.key) else result["slos"]
    for i, t in enumerate(slos):
        series = {}
        for vb in b.values:
            sel = [r for r in rows if r[b.key] == vb and (t is None or r["slo_tpot_ms"] == t)]
            series[f"{b.key.split('.')[-1]} = {_fmt_key(vb)}"] = _series([r[a.key] for r in sel], [r["decode_tokens_per_s_per_device"] for r in sel])
        title = f"sweep of {a.key} by {b.key}" + (f", TPOT <= {t:g} ms" if t is not None else "")
        name = "sweep.svg" if i == 0 else f"sweep-tpot{t:g}ms.svg"
        files[name] = _chart(series, _label(a), "best decode tokens/s per device", title, a.values[0])
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
    files["sweep-prefill.svg"] = _chart(series, _label(a), "best prefill tokens/s per device", f"sweep of {a.key} by {b.key}: prefill", a.values[0])
    return files


def _sweep_question(result: dict) -> list[str]:
    lines = _scenario_lines(result["base"], "base")
    for ax in result["axes"]:
        lines.append(f"swept {ax.key}: {len(ax.values)} values from {_fmt_key(ax.values[0])} to {_fmt_key(ax.values[-1])}"
                     + (" (rounded to whole numbers)" if ax.integer else ""))
    if "slo.tpot_ms" not in [a.key for a in result["axes"]]:
        lines.append("TPOT SLOs: " + ", ".join(f"{t:g} ms" for t in result["slos"]))
    return lines


def sweep_markdown(result: dict, plots: list[str]) -> str:
    parts = ["# cmperf sweep", "", "## The question", ""] + [f"- {l}" for l in _sweep_question(result)]
    parts += ["", "## The answer", "", to_markdown(sweep_table(result)), ""]
    if result["notes"]:
        parts += ["### Notes", ""] + [f"- {n}" for n in result["notes"]] + [""]
    parts += [f"![{p}]({p})" for p in plots] + ["", "Every point in `sweep.csv`, one row per point and TPOT SLO.", "", f"cmperf {__version__}", ""]
    return "\n".join(parts)


def sweep_files(result: dict) -> dict[str, str]:
    svgs = sweep_svgs(result)
    return {"sweep.md": sweep_markdown(result, list(svgs)), "sweep.csv": to_csv(result["rows"]), **svgs}


def print_sweep(result: dict, fmt: str, path=None) -> None:
    _print_report(fmt, result["rows"], lambda: sweep_markdown(result, list(sweep_svgs(result))), _sweep_question(result),
                  [(sweep_table(result), "Best deployment at every point (all columns in sweep.csv)")], result["notes"], path)


# ---- sensitivity ---------------------------------------------------------------------------------


def sensitivity_table(result: dict) -> list[dict]:
    out = []
    for r in result["rows"]:
        row = {"rank": r["rank"], "key": r["key"], "unit": r["unit"], "value": fmt_number(r["value"])}
        for c in result["columns"]:
            e = r[f"e {c}"]
            row[f"e {c}"] = "-" if e is None else f"{e:+.3f}"
        row["verdict"] = r["verdict"]
        row["method"] = r["method"]
        out.append(row)
    return out


def _sensitivity_question(result: dict) -> list[str]:
    sc = result["scenario"]
    base = ", ".join(f"{c}: {fmt_number(x)} tokens/s per device" for c, x in result["base"].items())
    return _scenario_lines(sc) + [
        f"elasticity e = d ln(best tokens/s per device) / d ln(parameter), central differences at +-{result['step']:.0%}"
        f" (one-sided where a fraction would pass 1); best re-optimised over every deployment",
        f"base point: {base}",
        f"verdict: 'does not matter' when |e| < 0.02 everywhere; 'pays off to cut' for a negative e (latencies, start-ups)",
    ]


def sensitivity_markdown(result: dict) -> str:
    parts = ["# cmperf sensitivity", "", "## The question", ""] + [f"- {l}" for l in _sensitivity_question(result)]
    parts += ["", "## The answer", "", to_markdown(sensitivity_table(result)), ""]
    if result["notes"]:
        parts += ["### Notes", ""] + [f"- {n}" for n in result["notes"]] + [""]
    parts += [f"cmperf {__version__}", ""]
    return "\n".join(parts)


def sensitivity_files(result: dict) -> dict[str, str]:
    return {"sensitivity.md": sensitivity_markdown(result), "sensitivity.csv": to_csv(result["rows"])}


def print_sensitivity(result: dict, fmt: str, path=None) -> None:
    _print_report(fmt, result["rows"], lambda: sensitivity_markdown(result), _sensitivity_question(result),
                  [(sensitivity_table(result), "Hardware parameters ranked by the elasticity of the best throughput")], result["notes"], path)


# ---- capacity ------------------------------------------------------------------------------------


def capacity_table(result: dict) -> list[dict]:
    rows = []
    for phase in ("prefill", "decode"):
        p = result[phase]
        rows.append({"phase": phase, "instances": p["instances"], "dev/instance": p["devices_per_instance"], "devices": p["devices"],
                     "deployment": p["deployment"], "TPOT/TTFT ms": _r(p["latency_ms"], 2),
                     "capacity tok/s/dev": _r(p["capacity_tokens_per_s_per_device"]), "load tok/s/dev": _r(p["load_tokens_per_s_per_device"]),
                     "req/s/instance": _r(p["requests_per_s_per_instance"], 2), "utilisation": f"{p['utilisation']:.0%}",
                     "headroom": f"{p['headroom']:.0%}", "binding": p["binding"]})
    return rows


def _capacity_lines(result: dict, sc) -> list[str]:
    ttft = f"TTFT <= {result['slo_ttft_ms']:g} ms" if result["slo_ttft_ms"] is not None else "TTFT unconstrained"
    return _scenario_lines(sc, budget=False) + [
        f"serve {result['rate_requests_per_s']:g} requests/s at TPOT <= {result['slo_tpot_ms']:g} ms, {ttft}",
        f"answer: {result['total_devices']:,} devices ({result['prefill_devices']:,} prefill + {result['decode_devices']:,} decode) in "
        f"{result['supernodes']} supernode(s) of {result['devices_per_supernode']} devices ({result['idle_devices_in_supernodes']:,} left idle); "
        f"{result['output_tokens_per_s_per_device']:,.1f} output tokens/s per device overall",
    ]


def capacity_markdown(result: dict, sc) -> str:
    parts = ["# cmperf capacity", "", "## The question and the answer", ""] + [f"- {l}" for l in _capacity_lines(result, sc)]
    parts += ["", to_markdown(capacity_table(result)), "", f"cmperf {__version__}", ""]
    return "\n".join(parts)


def capacity_rows(result: dict) -> list[dict]:
    """One flat row per phase (every number, deployment parameters as param_*), for CSV."""
    flat = []
    for phase in ("prefill", "decode"):
        p = result[phase]
        flat.append({"phase": phase, **{k: v for k, v in p.items() if k != "params"}, **{f"param_{k}": v for k, v in p["params"].items()},
                     "total_devices": result["total_devices"], "supernodes": result["supernodes"]})
    cols = list(dict.fromkeys(k for row in flat for k in row))
    return [{k: row.get(k) for k in cols} for row in flat]


def capacity_files(result: dict, sc) -> dict[str, str]:
    return {"capacity.md": capacity_markdown(result, sc), "capacity.csv": to_csv(capacity_rows(result)), "capacity.json": to_json(result) + "\n"}


def print_capacity(result: dict, sc, fmt: str, path=None) -> None:
    if fmt == "json":
        print(to_json(result))
        return
    if fmt == "csv":
        print(to_csv(capacity_rows(result)), end="")
        return
    if fmt == "md":
        print(safe_text(capacity_markdown(result, sc)))
        return
    con = make_console()
    for line in _capacity_lines(result, sc):
        con.print(line)
    print_table(capacity_table(result), "Instances per phase, with per-device load and headroom", console=con)
    _footer(con, path)


# ---- cache ---------------------------------------------------------------------------------------


def cache_table_rows(result: dict) -> list[dict]:
    return [{"hit": f"{r['prefix_hit']:g}", "cached tok/die": _r(r["cached_tokens_per_die"], 0), "KV MB/die": _r(r["cached_kv_mb_per_die"]),
             "load UB ms": _r(r["load_ub_ms"], 2), "load VPC ms": _r(r["load_vpc_ms"], 1), "recompute ms": _r(r["recompute_ms"], 1),
             "TTFT UB ms": _r(r["ttft_ub_ms"]), "TTFT VPC ms": _r(r["ttft_vpc_ms"]), "TTFT recompute ms": _r(r["ttft_recompute_ms"]),
             "tok/s/dev UB": _r(r["tokens_per_s_per_device_ub"]), "tok/s/dev VPC": _r(r["tokens_per_s_per_device_vpc"]),
             "tok/s/dev recompute": _r(r["tokens_per_s_per_device_recompute"])} for r in result["rows"]]


def _cache_lines(result: dict) -> list[str]:
    from cmperf.whatif.cache import summary

    return _scenario_lines(result["scenario"], short=True) + [
        f"deployment: {result['deployment']}",
        f"cache loads: UB pool read {result['ub_bandwidth'] / 1e9:g} GB/s per die; VPC {result['vpc_bandwidth_per_die'] / 1e9:.3g} GB/s per die "
        f"(the node's VPC bandwidth shared by its dies); recompute = prefill the cached tokens again (hit 0)",
    ] + summary(result)


def cache_svgs(result: dict) -> dict[str, str]:
    rows = result["rows"]
    xs = [r["prefix_hit"] for r in rows]
    ttft = {"load over UB": _series(xs, [r["ttft_ub_ms"] for r in rows]), "load over VPC": _series(xs, [r["ttft_vpc_ms"] for r in rows]),
            "recompute (hit 0)": _series(xs, [r["ttft_recompute_ms"] for r in rows])}
    thr = {"load over UB": _series(xs, [r["tokens_per_s_per_device_ub"] for r in rows]),
           "load over VPC": _series(xs, [r["tokens_per_s_per_device_vpc"] for r in rows]),
           "recompute (hit 0)": _series(xs, [r["tokens_per_s_per_device_recompute"] for r in rows])}
    return {"cache.svg": _chart(ttft, "prefix-cache hit rate", "TTFT (ms)", "TTFT against prefix-cache hit rate"),
            "cache-throughput.svg": _chart(thr, "prefix-cache hit rate", "prefill tokens/s per device", "prefill throughput against hit rate")}


def cache_markdown(result: dict) -> str:
    parts = ["# cmperf cache", "", "## The question and the answer", ""] + [f"- {l}" for l in _cache_lines(result)]
    parts += ["", to_markdown(cache_table_rows(result)), "", "![TTFT](cache.svg)", "", "![throughput](cache-throughput.svg)", ""]
    parts += [f"- {n}" for n in result["notes"]] + [f"cmperf {__version__}", ""]
    return "\n".join(parts)


def cache_files(result: dict) -> dict[str, str]:
    return {"cache.md": cache_markdown(result), "cache.csv": to_csv(result["rows"]), **cache_svgs(result)}


def print_cache(result: dict, fmt: str, path=None) -> None:
    _print_report(fmt, result["rows"], lambda: cache_markdown(result), _cache_lines(result),
                  [(cache_table_rows(result), "Prefix caching: load the cached KV over UB or VPC, or recompute it")], result["notes"], path)
