"""Print one evaluated deployment: headline, operator breakdown, memory budget, assumptions."""

from __future__ import annotations

from cmperf.inputs import safe_text
from cmperf.report.explain import assumptions, breakdown_rows, memory_rows, summary
from cmperf.report.render import emit, fmt_number, print_table, to_csv, to_json, to_markdown


def estimate_record(res: dict) -> dict:
    rec = summary(res)
    rec["breakdown"] = breakdown_rows(res)
    rec["memory"] = memory_rows(res)
    rec["assumptions"] = assumptions(res["hardware"], res["model"])
    return rec


def _rate(v: float) -> str:
    """Tokens/s: whole numbers from 10 up, else three significant digits (never a bare 0 for a
    slow but positive rate)."""
    return f"{v:,.0f}" if abs(v) >= 10 or v == 0 else f"{v:.3g}"


def _headline(rec: dict) -> list[str]:
    lines = []
    if rec["phase"] == "decode":
        lines.append(
            f"decode on {rec['hardware']} / {rec['model']}: {fmt_number(rec['devices'])} devices, EP{fmt_number(rec['ep'])}, "
            f"batch {fmt_number(rec['batch'])} per device, context {fmt_number(rec['kv_len'])}, MTP {fmt_number(rec['mtp'])} at "
            f"{rec['mtp_acceptance']:.0%}, {fmt_number(rec['microbatches'])} microbatch(es), matrix cores attention/MoE {rec['core_split']}"
            f"{' (the best allowed choice)' if rec['pipeline_chosen'] else ''}, EPLB {rec['eplb']}"
        )
        lines.append(f"per microbatch and MoE layer: attention stream {rec['attention_stream_us']:.0f} us, MoE stream {rec['moe_stream_us']:.0f} us")
        lines.append(
            f"TPOT {rec['tpot_ms']:.2f} ms | {_rate(rec['tokens_per_s_per_device'])} tokens/s per device "
            f"({_rate(rec['tokens_per_s_per_die'])} per die) | step {rec['step_ms']:.2f} ms = {rec['tokens_per_step']:.2f} tokens "
            f"per request | MoE layer {rec['layer_us']:.0f} us"
        )
    else:
        lines.append(
            f"prefill on {rec['hardware']} / {rec['model']}: {fmt_number(rec['devices'])} devices, EP{fmt_number(rec['ep'])}, "
            f"{fmt_number(rec['tokens_per_device'])} tokens per device per batch, {fmt_number(rec['input_len'])}-token prompts, "
            f"attention TP {fmt_number(rec['attn_tp'])}, {fmt_number(rec['microbatches'])} microbatch(es), EPLB {rec['eplb']}, prefix hit {rec['prefix_hit']:.0%}"
        )
        lines.append(
            f"{_rate(rec['tokens_per_s_per_device'])} tokens/s per device ({_rate(rec['tokens_per_s_per_die'])} per die) | "
            f"batch {rec['step_ms']:.1f} ms | TTFT {rec['ttft_ms']:.1f} ms (KV transfer {rec['kv_transfer_ms']:.1f} ms) | MoE layer {rec['layer_us']:.0f} us"
        )
    used, cap = rec["hbm_used_bytes_per_die"] / 1e9, rec["hbm_capacity_bytes_per_die"] / 1e9
    fit = "fits" if used <= cap else f"DOES NOT FIT: {used - cap:.1f} GB over"
    extra = f"; largest batch that fits: {rec['max_batch_per_device']:,.0f} per device" if "max_batch_per_device" in rec else ""
    lines.append(f"HBM {used:.1f} of {cap:.1f} GB per die ({fit}){extra} | hottest expert die at {rec['hot_rank_load_ratio']:.2f}x the mean load | bound by {rec['binding']}")
    if not rec["feasible"]:
        lines.append("INFEASIBLE: " + ("out of HBM" if used > cap else "the placement is not valid"))
    return lines


def print_estimate(res: dict, fmt: str) -> None:
    rec = estimate_record(res)
    if fmt == "json":
        print(to_json(rec))
        return
    if fmt == "csv":
        print(to_csv(rec["breakdown"]), end="")
        return
    if fmt == "md":
        print(safe_text("\n\n".join(["  \n".join(_headline(rec)), to_markdown(rec["breakdown"]), to_markdown(rec["memory"])])))
        return
    from cmperf.report.render import make_console

    con = make_console()
    for line in _headline(rec):
        con.print(line, highlight=False)
    cols = ("operator", "scope", "stream", "calls_per_step", "us_per_call", "ms_per_step", "share_pct", "gflop_per_call", "mb_hbm_per_call", "bound")
    rows = [{c: r[c] for c in cols} for r in rec["breakdown"]]
    print_table(rows, "Per-operator breakdown (rows add up to the step)", ("operator", "scope", "stream", "calls", "us/call", "ms/step", "% step", "GFLOP/call", "MB HBM/call", "bound"), console=con)
    print_table(rec["memory"], "HBM budget per die", ("item", "GB/die"), console=con)
    fitted = [a for a in rec["assumptions"] if a["kind"] == "fitted"]
    con.print(f"Fitted constants in use ({len(fitted)}; {len(rec['assumptions']) - len(fitted)} more are assumed: --format json, key 'assumptions'):")
    for a in fitted:
        con.print(f"  {a['file']}: {a['key']} = {fmt_number(a['value'])}  ({a['note']})")
