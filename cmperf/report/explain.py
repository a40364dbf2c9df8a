"""Turn an evaluated deployment into rows a reader can follow: operators, overlap, memory.

The breakdown rows add up to the step time: each operator's time over the step (calls x time per
call), then per scope the time hidden by overlapping streams (negative), the pipeline fill, and
the fixed per-step cost.
"""

from __future__ import annotations

import numpy as np

from cmperf.compose.binding import binding
from cmperf.costs.roofline import BOUND_NAMES


def _s(x) -> float:
    return float(np.asarray(x).reshape(-1)[0])


def breakdown_rows(res: dict) -> list[dict]:
    step = _s(res["step_s"])
    rows = []
    by_scope: dict[str, float] = {}
    for op in res["ops"]:
        calls = _s(op.calls)
        per = _s(op.time_s)
        total = calls * per
        if calls == 0:
            continue
        by_scope[op.scope] = by_scope.get(op.scope, 0.0) + total
        rows.append({
            "operator": op.name, "scope": op.scope, "stream": op.stream, "calls_per_step": calls,
            "us_per_call": per * 1e6, "ms_per_step": total * 1e3, "share_pct": 100 * total / step,
            "gflop_per_call": _s(op.flops) / 1e9, "mb_hbm_per_call": _s(op.hbm_bytes) / 1e6,
            "mb_link_per_call": _s(op.comm_bytes) / 1e6, "bound": BOUND_NAMES[int(_s(op.bound))],
        })
    for scope, wall in res["layer_wall_s"].items():
        hidden = _s(wall) - by_scope.get(scope, 0.0)
        if abs(hidden) > 1e-9 and by_scope.get(scope, 0.0) > 0:
            rows.append(_extra(f"overlap: hidden behind the other stream ({scope})", scope, hidden, step))
    fill = _s(res["fill_s"])
    if fill:
        rows.append(_extra("overlap: pipeline fill", "step", fill, step))
    rows.append(_extra("fixed per-step cost (scheduling, set-up)", "step", _s(res["overhead_s"]), step))
    return rows


def _extra(name, scope, seconds, step):
    return {"operator": name, "scope": scope, "stream": "-", "calls_per_step": 1.0, "us_per_call": seconds * 1e6,
            "ms_per_step": seconds * 1e3, "share_pct": 100 * seconds / step, "gflop_per_call": 0.0,
            "mb_hbm_per_call": 0.0, "mb_link_per_call": 0.0, "bound": "overlap" if "overlap" in name else "latency"}


def memory_rows(res: dict) -> list[dict]:
    rows = [{"item": k, "gb_per_die": _s(v) / 1e9} for k, v in res["memory"].items()]
    rows.append({"item": "total used", "gb_per_die": _s(res["hbm_used_bytes_per_die"]) / 1e9})
    rows.append({"item": "HBM capacity", "gb_per_die": _s(res["hbm_capacity_bytes_per_die"]) / 1e9})
    return rows


def assumptions(hw, model) -> list[dict]:
    """Every fitted or assumed constant in use, with its note: what a report must disclose."""
    out = []
    for spec in (hw, model):
        for key, p in spec.provenance.items():
            if p.kind in ("fitted", "assumed") or key in spec.overridden:
                out.append({"file": spec.name, "key": key, "value": spec[key], "kind": p.kind, "source": p.source, "note": p.note})
    return out


def _i(x):
    v = _s(x)
    return int(v) if float(v).is_integer() else v


def summary(res: dict) -> dict:
    phase = res["phase"]
    inp = res["inputs"]
    out = {"phase": phase, "hardware": res["hardware"].name, "model": res["model"].name}
    out.update({k: _i(getattr(inp, k)) for k in ("devices", "ep", "microbatches", "redundant", "attn_tp")})
    if phase == "decode":
        out.update({"batch": _i(inp.batch), "kv_len": _i(inp.kv_len), "mtp": _i(inp.mtp), "mtp_acceptance": _s(inp.mtp_acceptance)})
        out["tpot_ms"] = _s(res["tpot_s"]) * 1e3
        out["tokens_per_step"] = _s(res["tokens_per_step"])
        out["ttft_ms"] = None
        hw = res["hardware"]
        a = _i(inp.attn_cores)
        out["attn_cores"] = a if a else hw["overlap.decode_attention_matrix_cores"]
        out["core_split"] = (f"{out['attn_cores']}/{hw['die.matrix_cores'] - out['attn_cores'] if a else hw['overlap.decode_moe_matrix_cores']}"
                             if out["microbatches"] >= 2 else "whole die")
        out["pipeline_chosen"] = bool(res.get("pipeline_chosen", False))
        out["attention_stream_us"] = _s(res["attention_stream_s"]) * 1e6
        out["moe_stream_us"] = _s(res["moe_stream_s"]) * 1e6
    else:
        out.update({"tokens_per_device": _i(inp.tokens_per_device), "input_len": _i(inp.input_len), "prefix_hit": _s(inp.prefix_hit)})
        out["ttft_ms"] = _s(res["ttft_s"]) * 1e3
        out["kv_transfer_ms"] = _s(res["kv_transfer_s"]) * 1e3
    out["eplb"] = "perfect" if bool(np.all(inp.eplb_perfect)) else "default"
    out["step_ms"] = _s(res["step_s"]) * 1e3
    out["layer_us"] = _s(res["layer_s"]) * 1e6
    out["tokens_per_s_per_device"] = _s(res["tokens_per_s_per_device"])
    out["tokens_per_s_per_die"] = _s(res["tokens_per_s_per_die"])
    out["hbm_used_bytes_per_die"] = _s(res["hbm_used_bytes_per_die"])
    out["hbm_capacity_bytes_per_die"] = _s(res["hbm_capacity_bytes_per_die"])
    out["feasible"] = bool(np.all(res["feasible"]))
    if phase == "decode":
        out["max_batch_per_device"] = _i(res["max_batch_per_device"])
    aux = res["aux"]
    out["hot_rank_load_ratio"] = _s(aux["hot_rank_tokens"]) / max(_s(aux["mean_rank_tokens"]), 1e-12)
    out["binding"] = binding(res)
    return out
