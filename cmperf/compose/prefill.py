"""Prefill: time of one batch of prompts on one instance, and the TTFT it implies.

Per die: T tokens per batch (prompts of S tokens, a fraction h of each found in the prefix cache),
split into n microbatches. Attention is hybrid: sequence parallel for the down-projections, tensor
parallel over heads (groups of `attn_tp` dies) for the up-projections and the un-absorbed causal
attention, sequence parallel again for the output projection, joined by an all-gather and an
all-to-all. MoE is expert-parallel over `ep` dies with DMA-driven dispatch/combine.

    batch = L_dense W_dense + L_moe W_moe + W_mtp + fill + LM head + t_batch
    tokens/s per device = T x dies per device / batch;   TTFT = batch + KV transfer
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cmperf.comm.collectives import bulk_comm_time_s, kv_transfer_time_s
from cmperf.compose.memory import activation_bytes, kv_bytes_per_token, weight_bytes_per_die
from cmperf.compose.ops import Die, Op, layer_time_and_fill_s, operator_detail, outcome, pipelined_layer_time_s, placement_arrays
from cmperf.costs import attention
from cmperf.costs.elementwise import elementwise_cost
from cmperf.costs.roofline import COMM
from cmperf.costs.moe import busiest_link_messages, expected_destinations, message_bytes, hottest_rank_load, placement, popularity_cv
from cmperf.errors import SpecError
from cmperf.specs import derived as dv
from cmperf.specs.loader import Spec
from cmperf.units import DTYPE_BYTES

STREAMS = ("compute", "comm")


@dataclass(kw_only=True)
class PrefillInputs:
    """Built from a `Workload` and a `Deployment` by `cmperf.evaluation.model_inputs`."""

    devices: object
    ep: object
    tokens_per_device: object
    input_len: object
    microbatches: object
    redundant: object
    attn_tp: object = 1
    mtp: object  # an MTP module runs in prefill too, to fill its own KV cache
    prefix_hit: object = 0.0
    cache_path: str = "ub"
    eplb_perfect: object = False


def _attention_ops(die: Die, model: Spec, scope, t, S, hit, tp):
    """Hybrid SP-TP-SP attention of the model's kind (`costs.attention`) over t new tokens per die;
    prompts of S tokens with h*S cached."""
    return attention.prefill_ops(die, model, scope, t, S, hit, tp)


def _moe_ops(die: Die, model: Spec, scope, t, inp: PrefillInputs):
    hw = die.hw
    d, inter = model["arch.hidden_size"], model["moe.moe_intermediate_size"]
    E, S, k = model["moe.n_routed_experts"], model["moe.n_shared_experts"], model["moe.num_experts_per_tok"]
    mm, act = model["precision.matmul"], model["precision.activation"]
    ab = DTYPE_BYTES[act]
    c, x = "compute", "comm"
    ep = np.asarray(inp.ep, float)
    pl = placement(E, S, ep, inp.redundant)
    # Prompts (or prompt pieces) mixed in this microbatch of the EP group.
    requests = np.maximum(ep * t / (np.asarray(inp.input_len, float) * (1.0 - np.asarray(inp.prefix_hit, float))), 1.0)
    skew = popularity_cv(model["routing.popularity_skew"], model["routing.eplb_residual_frac"], model["routing.request_skew"], requests, inp.eplb_perfect)
    tokens_in_group = ep * t
    mean_rank = tokens_in_group * k * pl["routed_per_rank"] / (E + np.asarray(inp.redundant, float))
    hot = hottest_rank_load(mean_rank, pl["routed_per_rank"], pl["routed_ranks"], skew, tokens_in_group, k)
    shared_rows = np.where(pl["dedicated"], tokens_in_group * S / np.maximum(pl["shared_copies"], 1.0), t * S)
    rows = np.maximum(hot + np.where(pl["dedicated"], 0.0, shared_rows), np.where(pl["dedicated"], shared_rows, 0.0))
    groups = pl["routed_per_rank"] + np.where(pl["dedicated"], 0.0, S)
    dmsg, cmsg = message_bytes(model)
    routed_dest = expected_destinations(E, model["moe.n_group"], model["moe.topk_group"], k, ep)
    dest = routed_dest + np.where(pl["dedicated"], S, 0.0)
    msgs = busiest_link_messages(t, dest, hot, routed_dest, k, np.where(pl["dedicated"], shared_rows, 0.0))
    remote = (ep - 1.0) / np.maximum(ep, 1.0)
    disp_bytes = msgs * remote * dmsg
    comb_bytes = msgs * remote * cmsg
    out_msgs = None
    if hw.get("moe_comm.bulk_send_once_per_domain", 0):
        # Once per destination domain: domains act as coarse EP ranks in the same routing count.
        domain_dies = hw["system.scaleup_domain_packages"] * hw["package.dies"]
        domains = np.maximum(ep / domain_dies, 1.0)
        dom_dest = expected_destinations(E, model["moe.n_group"], model["moe.topk_group"], k, domains)
        out_msgs = np.where(domains > 1, t * dom_dest * (domains - 1.0) / domains, 0.0)
    ops = [
        die.vector("norm, quantisation", c, scope, t * d, *elementwise_cost("norm_quant", model)),
        die.matmul("gate", c, scope, t, d, E, act, act, out_dtype="fp32"),
        die.comm("dispatch (all-to-all)", x, scope, bulk_comm_time_s(hw, disp_bytes, ep, None if out_msgs is None else out_msgs * dmsg), disp_bytes),
        die.matmul("experts gate/up (grouped)", c, scope, rows / groups, d, 2 * inter, mm, mm, groups=groups),
        die.vector("SwiGLU, quantisation", c, scope, rows * 2 * inter, *elementwise_cost("swiglu_quant", model)),
        die.matmul("experts down (grouped)", c, scope, rows / groups, inter, d, mm, mm, groups=groups),
        die.comm("combine (all-to-all)", x, scope, bulk_comm_time_s(hw, comb_bytes, ep, None if out_msgs is None else out_msgs * cmsg), comb_bytes),
    ]
    return ops, {"placement": pl, "hot_rank_tokens": hot, "mean_rank_tokens": mean_rank, "destinations": dest}


def _ffn_ops(die: Die, model: Spec, scope, t, inp: PrefillInputs):
    """The FFN of a MoE layer, or of a dense model's layer (no experts: nothing to dispatch)."""
    if dv.has_moe(model):
        return _moe_ops(die, model, scope, t, inp)
    zero = 0.0 * np.asarray(t, float)
    return _dense_ops(die, model, scope, t, dv.dense_ffn_tp(model, inp.attn_tp)), {"placement": placement(0, 0, inp.ep, inp.redundant), "hot_rank_tokens": zero,
                                              "mean_rank_tokens": zero, "destinations": zero}


def _dense_ops(die: Die, model: Spec, scope, t, tp=1):
    """Dense SwiGLU FFN; with tp > 1 split over the TP group as in decode (`derived.dense_ffn_tp`)."""
    d, inter = model["arch.hidden_size"], model["arch.intermediate_size"]
    mm, ab = model["precision.matmul"], DTYPE_BYTES[model["precision.activation"]]
    mt = t * tp
    ops = [
        die.vector("norm, quantisation", "compute", scope, t * d, *elementwise_cost("norm_quant", model)),
        die.matmul("dense FFN gate/up", "compute", scope, mt, d, 2 * inter / tp, mm, mm),
        die.vector("SwiGLU, quantisation", "compute", scope, mt * 2 * inter / tp, *elementwise_cost("swiglu_quant", model)),
        die.matmul("dense FFN down", "compute", scope, mt, inter / tp, d, mm, mm),
    ]
    if np.any(np.asarray(tp) > 1):
        tp_bytes = 2.0 * (tp - 1) * t * d * ab
        ops.append(die.comm("FFN TP all-gather + reduce-scatter", "comm", scope, bulk_comm_time_s(die.hw, tp_bytes, tp), tp_bytes))
    return ops


def validate_prefill(inp: PrefillInputs) -> None:
    for name in ("devices", "ep", "tokens_per_device", "input_len", "microbatches", "attn_tp"):
        if np.any(np.asarray(getattr(inp, name)) < 1):
            raise SpecError(f"must be >= 1, got {getattr(inp, name)}", where=f"--{name.replace('_', '-')}")
    h = np.asarray(inp.prefix_hit)
    if np.any((h < 0) | (h >= 1)):
        raise SpecError(f"must lie in [0, 1), got {inp.prefix_hit}", where="--prefix-hit")


def cache_load_time_s(hw: Spec, model: Spec, cached_tokens_per_die, path: str, mtp_layers):
    """Loading cached prefix KV into HBM: from the CPU-DRAM pool over UB, or over the VPC network.

        T = latency + tokens x KV bytes per token / W_path
    VPC bandwidth is per node and shared by the node's dies.
    """
    b = np.asarray(cached_tokens_per_die, float) * kv_bytes_per_token(model, mtp_layers)
    if path == "vpc":
        bw = hw["vpc.bandwidth_bytes_per_s_per_node"] / (hw["node.packages"] * hw["package.dies"])
        lat = hw["scaleout.latency_s"]
    else:
        bw = hw["pool.read_bandwidth_bytes_per_s_per_die"]
        lat = hw["pool.latency_s"]
    return np.where(b > 0, lat + b / bw, 0.0)


def evaluate_prefill(hw: Spec, model: Spec, inp: PrefillInputs) -> dict:
    dies_pkg, dies, n, tp = placement_arrays(hw, inp)
    S = np.asarray(inp.input_len, float)
    hit = np.asarray(inp.prefix_hit, float)
    T = np.asarray(inp.tokens_per_device, float) / dies_pkg  # prompt tokens per die per batch
    new = T * (1.0 - hit)  # tokens actually computed
    t = new / n
    comm_cores = hw["overlap.prefill_comm_matrix_cores"] / hw["die.matrix_cores"]
    # Matrix engines at the rate a long batch sustains (clock under load; fitted duty where a file has one).
    die = Die(hw, np.where(n >= 2, 1.0 - comm_cores, 1.0), 1.0, clock_frac=dv.prefill_matrix_rate_frac(hw))
    full = Die(hw)
    L_dense, L_moe = dv.layer_counts(model)
    k = np.asarray(inp.mtp, float)
    n_mtp = model["mtp.num_nextn_predict_layers"] * (k > 0)

    dense_ops = _attention_ops(die, model, "dense layers", t, S, hit, tp) + _dense_ops(die, model, "dense layers", t, dv.dense_ffn_tp(model, tp))
    moe_att = _attention_ops(die, model, "MoE layers", t, S, hit, tp)
    moe_ffn, aux = _ffn_ops(die, model, "MoE layers", t, inp)
    moe_ops = moe_att + moe_ffn
    d = model["arch.hidden_size"]
    mtp_ops = [die.matmul("MTP eh_proj", "compute", "MTP module", t, 2 * d, d, model["precision.matmul"], model["precision.matmul"])]
    mtp_ops += _attention_ops(die, model, "MTP module", t, S, hit, tp) + _ffn_ops(die, model, "MTP module", t, inp)[0]

    hbm = full.hbm_bw
    w_dense = pipelined_layer_time_s(dense_ops, STREAMS, n, hbm)
    moe_streams = []  # the MoE layer's compute and communication stream times, per microbatch
    w_moe, fill = layer_time_and_fill_s(moe_ops, STREAMS, n, hbm, moe_streams)
    w_mtp = pipelined_layer_time_s(mtp_ops, STREAMS, n, hbm)
    for op in dense_ops:
        op.calls = L_dense * n
    for op in moe_ops:
        op.calls = L_moe * n
    for op in mtp_ops:
        op.calls = n_mtp * n

    prompts = T / S  # prompts per die per batch
    V = model["arch.vocab_size"]
    mtp_layers = model["mtp.num_nextn_predict_layers"] * (k > 0)
    serial = [
        full.matmul("LM head (last token of each prompt)", "serial", "step", prompts, d, V, model["precision.lm_head"], model["precision.lm_head"], out_dtype="fp32"),
        full.vector("sampling", "serial", "step", prompts * V, *elementwise_cost("sampling", model)),
    ]
    cached = T * hit
    load = cache_load_time_s(hw, model, cached, inp.cache_path, mtp_layers)
    serial.append(Op("prefix-cache KV load", "serial", "step", np.asarray(load, float) + 0.0 * T, 0.0 * T, cached * kv_bytes_per_token(model, mtp_layers), np.full(np.shape(load + 0.0 * T), COMM) if operator_detail() else None, engine="link"))
    overhead = hw["overhead.prefill_step_s"]
    batch_s = L_dense * w_dense + L_moe * w_moe + n_mtp * w_mtp + fill + sum(op.calls * op.time_s for op in serial) + overhead
    per_device = T * dies_pkg / batch_s
    kv_per_die = T * kv_bytes_per_token(model, mtp_layers)
    kv_s = kv_transfer_time_s(hw, kv_per_die)
    ttft = batch_s + kv_s

    pl = aux["placement"]
    # The head-split projections divide over the TP group; the rest of attention is replicated.
    weights = weight_bytes_per_die(model, pl["experts_per_rank"], tp, mtp_layers, phase="prefill")
    mem = dict(weights)
    mem["KV cache (batch in flight)"] = kv_per_die
    mem["dispatch/combine buffers"] = t * aux["destinations"] * sum(message_bytes(model)) * 2.0
    mem["activations"] = activation_bytes(model, t) * 2.0
    mem["reserve"] = hw["memory.reserve_bytes_per_die"]
    used = sum(mem.values())
    cap = hw["die.hbm_capacity_bytes"]
    valid = pl["valid"] & (np.mod(dies, inp.ep) == 0) & (np.mod(dies, tp) == 0) & dv.heads_fit_tp(model, tp) & (np.asarray(inp.ep) <= dies) & (np.asarray(h_ok := hit) < 1)
    return {
        "phase": "prefill",
        "inputs": inp,
        "ops": dense_ops + moe_ops + mtp_ops + serial,
        "layer_wall_s": {"dense layers": L_dense * w_dense, "MoE layers": L_moe * w_moe, "MTP module": n_mtp * w_mtp},
        "fill_s": fill,
        "overhead_s": overhead,
        "step_s": batch_s,
        "layer_s": w_moe,
        "ttft_s": ttft,
        "kv_transfer_s": kv_s,
        **outcome(per_device, dies_pkg, mem, used, cap, valid),
        "aux": aux,
        "compute_stream_s": moe_streams[0],
        "comm_stream_s": moe_streams[1],
    }
