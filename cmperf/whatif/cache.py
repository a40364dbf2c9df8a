"""`cmperf cache`: prefix caching against recomputation, over UB and over VPC.

On one prefill deployment (the paper's by default, `deployments/cm384-paper-prefill.toml`), for each prefix-cache hit rate h a die computes T (1 - h) of its T
prompt tokens and loads the KV of the other T h from the CPU-DRAM pool (`cmperf.compose.prefill`):

    load = latency + T h x KV bytes per token / W_path
    W_path: the pool's per-die read bandwidth over UB, or the node's VPC bandwidth over its dies

Recomputing the cached part instead costs the batch-time difference between h = 0 and the
cached run without its load.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from cmperf.errors import SpecError
from cmperf.specs.deployment import MAX_PREFIX_HIT
from cmperf.whatif.core import Scenario


def parse_hits(text: str) -> list[float]:
    """START:STOP:STEPS or a comma list of hit rates in [0, 0.999]."""
    where = "--hits"
    try:
        if ":" in text:
            parts = text.split(":")
            if len(parts) != 3:
                raise ValueError
            a, b, n = float(parts[0]), float(parts[1]), float(parts[2])
            if not n.is_integer() or not 2 <= n <= 1000:
                raise SpecError(f"expected STEPS between 2 and 1000, got {parts[2]!r}", where=where)
            hits = np.linspace(a, b, int(n)).tolist()
        else:
            hits = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise SpecError(f"expected START:STOP:STEPS or a comma list of hit rates, got {text!r}", where=where) from None
    if not hits:
        raise SpecError(f"expected at least one hit rate, got {text!r}", where=where)
    bad = [h for h in hits if not (0.0 <= h <= MAX_PREFIX_HIT)]
    if bad:
        raise SpecError(f"expected hit rates in [0, {MAX_PREFIX_HIT:g}], got {bad[0]:g}", where=where)
    return [round(h, 12) for h in hits]


def cache_table(sc: Scenario, hits: list[float], devices: int | None = None, ep: int | None = None,
                tokens_per_device: int | None = None, microbatches: int | None = None) -> dict:
    from cmperf.compose.memory import kv_bytes_per_token
    from cmperf.compose.prefill import cache_load_time_s
    from cmperf.evaluation import DEFAULT_DEPLOYMENTS, evaluate
    from cmperf.specs.deployment_file import load_deployment

    paper = replace(load_deployment(DEFAULT_DEPLOYMENTS["prefill"]).deployment, mtp=None)  # MTP as the model has it
    base = paper.with_fields(devices=devices, ep=ep, tokens_per_device=tokens_per_device, microbatches=microbatches, attn_tp=1,
                             eplb=sc.eplb, cache_path="ub")
    if base.tokens_per_device < sc.hw["package.dies"]:
        raise SpecError(f"expected at least one token per die ({sc.hw['package.dies']}), got {base.tokens_per_device}", where="--tokens-per-device")
    first = evaluate(sc.hw, sc.model, sc.workload, base)  # checks the placement and fills what the deployment leaves open
    base = first.deployment
    devices, ep, redundant, tokens, mb, mtp = base.devices, base.ep, base.redundant, base.tokens_per_device, base.microbatches, base.mtp
    h = np.asarray(hits, float)

    def run(hit, path):
        return evaluate(sc.hw, sc.model, replace(sc.workload, prefix_hit=hit), replace(base, cache_path=path)).result

    ub, vpc, rec = run(h, "ub"), run(h, "vpc"), run(0.0, "ub")
    dies_pkg = sc.hw["package.dies"]
    cached = tokens / dies_pkg * h
    kv_tok = kv_bytes_per_token(sc.model, mtp)
    load_ub = cache_load_time_s(sc.hw, sc.model, cached, "ub", mtp)
    load_vpc = cache_load_time_s(sc.hw, sc.model, cached, "vpc", mtp)
    full = lambda x: np.broadcast_to(np.asarray(x, float), h.shape)  # noqa: E731
    step0 = float(np.asarray(rec["step_s"]).reshape(-1)[0])
    recompute = step0 - (full(ub["step_s"]) - load_ub)  # computing the cached tokens instead of loading them
    ttft0 = float(np.asarray(rec["ttft_s"]).reshape(-1)[0])
    x0 = float(np.asarray(rec["tokens_per_s_per_device"]).reshape(-1)[0])
    rows = []
    for i, hit in enumerate(hits):
        rows.append({
            "prefix_hit": hit, "cached_tokens_per_die": float(cached[i]), "cached_kv_mb_per_die": float(cached[i] * kv_tok / 1e6),
            "load_ub_ms": float(load_ub[i]) * 1e3, "load_vpc_ms": float(load_vpc[i]) * 1e3, "recompute_ms": float(recompute[i]) * 1e3,
            "ttft_ub_ms": float(full(ub["ttft_s"])[i]) * 1e3, "ttft_vpc_ms": float(full(vpc["ttft_s"])[i]) * 1e3, "ttft_recompute_ms": ttft0 * 1e3,
            "tokens_per_s_per_device_ub": float(full(ub["tokens_per_s_per_device"])[i]),
            "tokens_per_s_per_device_vpc": float(full(vpc["tokens_per_s_per_device"])[i]),
            "tokens_per_s_per_device_recompute": x0,
        })
    deployment = f"{devices} dev, EP{ep}, red {redundant}, {mb} mb, {tokens} tok/dev, {sc.input_len}-token prompts"
    fits = bool(np.all(ub["fits"])) and bool(np.all(rec["fits"]))
    notes = [] if fits else ["this deployment does not fit in HBM at some hit rates (its numbers are shown anyway)"]
    return {"rows": rows, "deployment": deployment, "scenario": sc, "notes": notes,
            "ub_bandwidth": sc.hw["pool.read_bandwidth_bytes_per_s_per_die"],
            "vpc_bandwidth_per_die": sc.hw["vpc.bandwidth_bytes_per_s_per_node"] / (sc.hw["node.packages"] * dies_pkg)}


def summary(result: dict) -> list[str]:
    rows = [r for r in result["rows"] if r["prefix_hit"] > 0]
    if not rows:
        return []
    r = max(rows, key=lambda r: r["prefix_hit"])
    out = [f"at hit {r['prefix_hit']:g}: loading {r['cached_kv_mb_per_die']:,.0f} MB of KV per die takes {r['load_ub_ms']:.1f} ms over UB "
           f"and {r['load_vpc_ms']:.1f} ms over VPC, against {r['recompute_ms']:.0f} ms to recompute it; "
           f"TTFT {r['ttft_recompute_ms']:.0f} -> {r['ttft_ub_ms']:.0f} ms (UB) / {r['ttft_vpc_ms']:.0f} ms (VPC)"]
    vpc_loses = [x["prefix_hit"] for x in rows if x["load_vpc_ms"] > x["recompute_ms"]]
    if vpc_loses:
        out.append(f"over VPC, loading is slower than recomputing from hit {min(vpc_loses):g}")
    ub_loses = [x["prefix_hit"] for x in rows if x["load_ub_ms"] > x["recompute_ms"]]
    if ub_loses:
        out.append(f"over UB, loading is slower than recomputing from hit {min(ub_loses):g}")
    return out
