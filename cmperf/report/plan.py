"""Present a plan: terminal tables, JSON/CSV records, and the markdown report with its files."""

from __future__ import annotations

from cmperf import __version__
from cmperf.inputs import safe_text
from cmperf.report.explain import assumptions
from cmperf.solve.queueing import FORMULA
from cmperf.report.render import fmt_number, make_console, print_table, to_csv, to_json, to_markdown
from cmperf.specs.deployment_file import deployment_toml

RECORD_KEYS = ("phase", "slo_tpot_ms", "slo_ttft_ms", "rank", "tpot_ms", "ttft_ms", "tokens_per_s_per_device", "devices", "ep", "dp",
               "attn_tp", "redundant", "batch", "tokens_per_device", "microbatches", "attn_cores", "mtp", "binding", "hbm_used_gb_per_die", "vs_paper",
               "estimate", "deployment_file")


#: Columns a narrow terminal leaves out of the deployment tables, least telling first (all stay in the CSV).
NARROW_DROP = ("redundant", "HBM GB/die", "attn cores", "DP", "ubatches", "attn TP", "EP")


def records(result) -> list[dict]:
    return [{k: r.get(k) for k in RECORD_KEYS} for r in result.records]


def _deploy_rows(recs: list[dict]) -> list[dict]:
    rows = []
    for r in recs:
        row = {"rank": r["rank"], "devices": r["devices"], "EP": r["ep"], "DP": r["dp"], "attn TP": r["attn_tp"], "redundant": r["redundant"]}
        if r["phase"] == "decode":
            row.update({"batch/dev": r["batch"], "ubatches": r["microbatches"], "attn cores": r.get("attn_cores") or "-", "MTP": r["mtp"], "TPOT ms": round(r["tpot_ms"], 2)})
        else:
            row.update({"tokens/dev": r["tokens_per_device"], "ubatches": r["microbatches"], "TTFT ms": round(r["ttft_ms"], 1)})
        row["tokens/s/dev"] = round(r["tokens_per_s_per_device"], 1)
        row["HBM GB/die"] = round(r["hbm_used_gb_per_die"], 1)
        row["binding"] = r["binding"]
        rows.append(row)
    return rows


def _sizing_rows(result) -> list[dict]:
    rows = []
    for s in result.sizing:
        e, q = s["economics"], s["under_load"]
        rows.append({
            "TPOT SLO ms": s["slo_tpot_ms"], "req/s": round(s["requests_per_s"], 1),
            "prefill": f"{s['prefill_instances']} x {s['prefill_devices_per_instance']}",
            "decode": f"{s['decode_instances']} x {s['decode_devices_per_instance']}",
            "idle": s["idle_devices"], "out tok/s/dev": round(s["output_tokens_per_s_per_device"], 1),
            "P50 TTFT ms": round(q["p50_ttft_ms"]), "P99 TTFT ms": round(q["p99_ttft_ms"]),
            "util P/D": f"{s['prefill_utilisation']:.0%}/{s['decode_utilisation']:.0%}",
            "$/M out tok": _money(e["whole"]["dollars_per_m_tokens"]), "out tok/J": _round(e["whole"]["tokens_per_joule"], 3),
        })
    return rows


def _economics_rows(result) -> list[dict]:
    """$/M tokens and tokens/J of prefill (per prompt token), decode and the whole split (per output token)."""
    rows = []
    for s in result.sizing:
        e = s["economics"]
        for part, label in (("prefill", "prefill (prompt tokens)"), ("decode", "decode (output tokens)"), ("whole", "whole split (output tokens)")):
            rows.append({"TPOT SLO ms": s["slo_tpot_ms"], "part": label, "$/M tokens": _money(e[part]["dollars_per_m_tokens"]),
                         "tokens/J": _round(e[part]["tokens_per_joule"], 3)})
    return rows


def _money(v):
    return "-" if v is None else f"${v:,.3f}"


def _round(v, nd):
    return "-" if v is None else round(v, nd)


def _load_lines(result, verbose: bool = False) -> list[str]:
    lines = []
    for s in result.sizing:
        e, q = s["economics"], s["under_load"]
        met = "meets" if q["p99_ttft_ms"] <= s["slo_ttft_ms"] else "MISSES"
        lines.append(f"TPOT {s['slo_tpot_ms']:g} ms split at {s['requests_per_s']:,.1f} requests/s: prefill P50 TTFT {q['p50_ttft_ms']:,.0f} ms, "
                     f"P99 {q['p99_ttft_ms']:,.0f} ms ({met} the {s['slo_ttft_ms']:,g} ms SLO) at {q['utilisation']:.0%} utilisation, headroom {q['headroom']:.0%}")
    if result.sizing:
        e = result.sizing[0]["economics"]
        price = result.hw.get("cost.package_dollars_per_hour")
        lines.append(f"cost: {'$' + format(price, ',.2f') + ' per device-hour (assumed; --set cost.package_dollars_per_hour=...)' if price else 'no price in the hardware file'}; "
                     f"power: {format(e['watts'] / result.budget, ',.0f') + ' W per device, ' + e['power_basis'] if e['watts'] else 'not in the hardware file'}")
        lines.append("queueing: prefill instances as an M/D/n batch queue, Poisson arrivals (Erlang C with the Allen-Cunneen tail); "
                     f"instances run at most {result.request.max_utilisation:.0%} utilisation")
        if verbose:
            lines.append(f"how: {FORMULA}")
    return lines


def _frontier_sample(front: list[dict], n: int = 12) -> list[dict]:
    if len(front) <= n:
        pick = front
    else:
        step = (len(front) - 1) / (n - 1)
        pick = [front[round(i * step)] for i in range(n)]
    return [{"TPOT ms": round(p["tpot_ms"], 2), "tokens/s/dev": round(p["tokens_per_s_per_device"], 1), "devices": p["devices"], "EP": p["ep"],
             "attn TP": p["attn_tp"], "batch": p["batch"], "ubatches": p["microbatches"], "MTP": p["mtp"]} for p in pick]


def _question(result) -> list[str]:
    q = result.request
    slos = ", ".join(f"{t:g} ms" for t in q.tpot_ms)
    lines = [
        f"cmperf {__version__} plan: {result.model.name} on {result.hw.name}, budget {result.budget} devices",
        f"workload: {q.input_len}-token prompts, {q.output_len} output tokens, MTP acceptance {q.mtp_acceptance:g}, prefix hit {q.prefix_hit:g}, EPLB {q.eplb}",
        f"SLOs: TPOT {slos}; TTFT {q.ttft_ms:,g} ms" + (" (default: the MLPerf Inference server-scenario limit; batch time here, P99 under load in the split)"
                                                         if result.ttft_default else " (batch time here, P99 under load in the split)"),
        f"searched {result.decode_grid_size:,} decode and {result.prefill_grid_size:,} prefill candidates",
    ]
    system = result.hw["system.nodes"] * result.hw["node.packages"]
    if result.budget > system:
        lines[-1] += f" (instances of up to one system, {system:,} devices; the budget runs several)"
    if q.sets:
        lines.append("overrides: " + ", ".join(f"{k}={v}" for k, v in q.sets.items()))
    return lines


def _paper_line(result, slo) -> str | None:
    for p in result.paper:
        if p["phase"] == "decode" and p["slo_tpot_ms"] == slo:
            return (f"the paper's deployment ({p['devices']} devices, EP{p['ep']}, MTP {p['mtp']}) at this SLO: {p['microbatches']} microbatch(es), batch {p['batch']}, "
                    f"TPOT {p['tpot_ms']:.2f} ms, {p['tokens_per_s_per_device']:,.0f} tokens/s per device")
        if p["phase"] == "prefill" and slo is None:
            return (f"the paper's deployment ({p['devices']} devices, EP{p['ep']}, {p['microbatches']} microbatches): {p['tokens_per_device']} tokens/device, "
                    f"TTFT {p['ttft_ms']:.0f} ms, {p['tokens_per_s_per_device']:,.0f} tokens/s per device")
    return None


def plan_json(result) -> dict:
    """The whole answer: best deployments, the prefill/decode split (with load, cost and energy) and the frontier."""
    return {"records": records(result), "split": result.sizing, "frontier": result.frontier,
            "slo": {"tpot_ms": list(result.request.tpot_ms), "ttft_ms": result.request.ttft_ms, "ttft_default": result.ttft_default}}


def print_plan(result, fmt: str, out_dir: str | None = None) -> None:
    if fmt == "json":
        print(to_json(plan_json(result)))
        return
    if fmt == "csv":
        print(to_csv(records(result)), end="")
        return
    if fmt == "md":
        print(safe_text(markdown(result, "frontier.png")))
        return
    con = make_console()
    for line in _question(result):
        con.print(line)
    q = result.request
    for slo in q.tpot_ms:
        recs = [r for r in result.records if r["phase"] == "decode" and r["slo_tpot_ms"] == slo]
        print_table(_deploy_rows(recs), f"Decode, TPOT <= {slo:g} ms: best deployments", console=con, drop_when_narrow=NARROW_DROP)
        if recs[0].get("vs_paper"):
            con.print(f"best vs the paper: {recs[0]['vs_paper']}")
        line = _paper_line(result, slo)
        if line:
            con.print(line)
    recs = [r for r in result.records if r["phase"] == "prefill"]
    print_table(_deploy_rows(recs), f"Prefill, TTFT <= {q.ttft_ms:,g} ms: best deployments", console=con, drop_when_narrow=NARROW_DROP)
    line = _paper_line(result, None)
    if line:
        con.print(line)
    print_table(_sizing_rows(result), f"Prefill/decode split of {result.budget:,} devices for the most requests/s meeting the SLOs", console=con,
                drop_when_narrow=("idle", "P50 TTFT ms", "out tok/s/dev", "util P/D"))
    for line in _load_lines(result):
        con.print(line)
    print_table(_economics_rows(result), "Cost and energy per token", console=con)
    print_table(_frontier_sample(result.frontier), f"Decode Pareto frontier ({len(result.frontier)} points; all in frontier.csv)", console=con)
    if out_dir:
        con.print(f"reports written to {out_dir}/")


def markdown(result, plot_name: str) -> str:
    q = result.request
    parts = ["# cmperf plan", "", "## The question", ""]
    parts += [f"- {line}" for line in _question(result)]
    parts += ["", "## The answer", ""]
    for slo in q.tpot_ms:
        recs = [r for r in result.records if r["phase"] == "decode" and r["slo_tpot_ms"] == slo]
        best = recs[0]
        parts += [f"### Decode at TPOT <= {slo:g} ms", "",
                  f"Best: {best['tokens_per_s_per_device']:,.0f} tokens/s per device at TPOT {best['tpot_ms']:.2f} ms. "
                  f"Binding: {best['binding']}.", ""] + ([f"What differs from the paper's deployment: {best['vs_paper']}.", ""] if best.get("vs_paper") else [])
        line = _paper_line(result, slo)
        if line:
            parts += [f"For comparison, {line}.", ""]
        parts += [to_markdown(_deploy_rows(recs)), "", f"Re-evaluate the best: `{best['estimate']}`", ""]
    recs = [r for r in result.records if r["phase"] == "prefill"]
    parts += ["### Prefill", "", to_markdown(_deploy_rows(recs)), "", f"Re-evaluate the best: `{recs[0]['estimate']}`", ""]
    line = _paper_line(result, None)
    if line:
        parts += [f"For comparison, {line}.", ""]
    parts += ["### Prefill/decode split", "", to_markdown(_sizing_rows(result)) if result.sizing else "(no feasible split)", ""]
    parts += [f"- {line}" for line in _load_lines(result, verbose=True)] + [""]
    if result.sizing:
        parts += ["### Cost and energy per token", "", to_markdown(_economics_rows(result)), ""]
    parts += ["## Decode Pareto frontier", "", f"![tokens/s per device against TPOT]({plot_name})", "", "(also as [frontier.svg](frontier.svg))", "",
              f"{len(result.frontier)} points in `frontier.csv`; a sample:", "", to_markdown(_frontier_sample(result.frontier)), ""]
    parts += ["## Assumptions", "", "Every fitted or assumed constant this plan used (all others are paper, datasheet or config values):", "",
              to_markdown([{**a, "value": fmt_number(a["value"])} for a in assumptions(result.hw, result.model)]), ""]
    parts += [f"cmperf {__version__}; hardware file {result.hw.path}; model file {result.model.path}.", ""]
    return "\n".join(parts)


def frontier_plot(result) -> dict:
    """{'png': bytes, 'svg': str}: the decode frontier, the best per SLO, the paper's deployment."""
    from cmperf.report.plots import line_plot

    f = result.frontier
    series = {"Pareto frontier (best tokens/s per device at each TPOT)": ([p["tpot_ms"] for p in f], [p["tokens_per_s_per_device"] for p in f])}
    markers = {}
    for r in result.records:
        if r["phase"] == "decode" and r["rank"] == 1:
            markers[f"best at TPOT <= {r['slo_tpot_ms']:g} ms"] = (r["tpot_ms"], r["tokens_per_s_per_device"])
    for p in result.paper:
        if p["phase"] == "decode":
            markers[f"paper's deployment at {p['slo_tpot_ms']:g} ms"] = (p["tpot_ms"], p["tokens_per_s_per_device"])
    vlines = {f"TPOT SLO {t:g} ms": t for t in result.request.tpot_ms}
    q = result.request
    title = (f"{result.model.name} on {result.hw.name} ({result.budget:,} devices): decode frontier\n"
             f"{q.input_len:,}-token prompts, {q.output_len:,} output tokens, MTP acceptance {q.mtp_acceptance:g}")
    return line_plot(series, "TPOT (ms)", "decode tokens/s per device", title, xunit="ms", markers=markers, vlines=vlines)


def deployment_file(rec: dict, result) -> str:
    """A record's deployment as a deployment file: `cmperf estimate --deployment FILE` reproduces it."""
    q = result.request
    slo = f"TPOT <= {rec['slo_tpot_ms']:g} ms" if rec["phase"] == "decode" else (
        f"TTFT <= {q.ttft_ms:g} ms" if q.ttft_ms is not None else "TTFT unconstrained")
    what = f"rank {rec['rank']}" if rec["rank"] else "the paper's structure"
    return deployment_toml(
        rec["deployment_obj"], name=rec["deployment_file"].removesuffix(".toml"),
        description=f"{rec['phase']} deployment planned by cmperf {__version__} ({what} at {slo}): {rec['deployment']}",
        source=("plan", f"cmperf {__version__} plan", "https://github.com/cmperf/cmperf"), kind="derived",
        note=f"searched by cmperf plan: {what} at {slo}", workload=rec["workload"], workload_note="the workload the plan was asked to serve", hardware=q.hardware, model=q.model, overrides=q.sets,
    )


def report_files(result) -> dict[str, str]:
    sizing = [{k: v for k, v in s.items() if k not in ("prefill", "decode")} | {f"prefill_{k}": v for k, v in s["prefill"].items()}
              | {f"decode_{k}": v for k, v in s["decode"].items()} for s in result.sizing]
    plot = frontier_plot(result)
    return {
        "plan.md": markdown(result, "frontier.png"),
        "deployments.csv": to_csv(records(result)),
        "frontier.csv": to_csv(result.frontier),
        "frontier.png": plot["png"],
        "frontier.svg": plot["svg"],
        "sizing.csv": to_csv(sizing),
        **{r["deployment_file"]: deployment_file(r, result) for r in result.records + result.paper},
    }
