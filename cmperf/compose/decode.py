"""Decode: per-layer and per-step time of one deployment (or many, as broadcast arrays).

Per die and per step: b requests, each processing q = k + 1 tokens (k speculative MTP tokens),
split into n microbatches. Attention is data-parallel (optionally tensor-parallel over heads in
groups of `attn_tp` dies); the MoE runs expert-parallel over `ep` dies.

    step = L_dense W_dense + L_moe W_moe + k W_mtp + fill + LM head + sampling + t_step
    TPOT = step / (1 + a + ... + a^k);   tokens/s per device = batch / TPOT
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cmperf.comm.collectives import bulk_comm_time_s, fused_moe_comm_time_s
from cmperf.compose.memory import activation_bytes, comm_buffer_bytes, kv_bytes_per_token, weight_bytes_per_die
from cmperf.compose.ops import Die, Op, pipeline_fill_s, pipelined_layer_time_s
from cmperf.costs.elementwise import elementwise_cost
from cmperf.costs.moe import busiest_link_messages, expected_destinations, message_bytes, hottest_rank_load, placement, popularity_cv
from cmperf.errors import SpecError
from cmperf.specs import derived as dv
from cmperf.specs.loader import Spec
from cmperf.units import DTYPE_BYTES

STREAMS = ("attention", "moe")


@dataclass(kw_only=True)
class DecodeInputs:
    """One deployment, or many: every field may be a numpy array; all broadcast together.

    Built from a `Workload` and a `Deployment` by `cmperf.evaluation.model_inputs`."""

    devices: object
    ep: object
    batch: object  # concurrent requests per device
    kv_len: object  # mean context per request
    microbatches: object
    mtp: object
    mtp_acceptance: object
    redundant: object
    attn_tp: object = 1
    eplb_perfect: object = False
    extra: dict = field(default_factory=dict)


def expected_tokens_per_step(mtp, acceptance):
    """1 + a + a^2 + ... + a^k: tokens a step yields with k speculative tokens accepted in order."""
    k = np.asarray(mtp, dtype=float)
    a = np.asarray(acceptance, dtype=float)
    geometric = np.where(np.isclose(a, 1.0), k + 1.0, (1.0 - a ** (k + 1.0)) / np.where(np.isclose(a, 1.0), 1.0, 1.0 - a))
    return np.where(k > 0, geometric, 1.0)


def _attention_ops(die: Die, model: Spec, scope, t, r, kv_len, tp, extra_proj=False):
    """Stream-0 operators for t tokens of r requests on one die (MLA, absorbed)."""
    d = model["arch.hidden_size"]
    h = model["attention.num_attention_heads"]
    qr, kvr = model["attention.q_lora_rank"], model["attention.kv_lora_rank"]
    nope, rope, v = model["attention.qk_nope_head_dim"], model["attention.qk_rope_head_dim"], model["attention.v_head_dim"]
    mm, act = model["precision.matmul"], model["precision.activation"]
    ab = DTYPE_BYTES[act]
    s = "attention"
    mt = t * tp  # tokens a die handles in the TP-split operators
    ops = []
    if extra_proj:  # MTP: concatenate embedding and hidden state, project 2d -> d
        ops.append(die.matmul("MTP eh_proj", s, scope, t, 2 * d, d, mm, mm))
    ops += [
        die.vector("norms, RoPE, quantisation", s, scope, t * (2 * d + qr + kvr + h * (rope + v)) , *elementwise_cost("norm_quant", model)),
        # Down-projections stay whole under TP: each die needs the full latents of the gathered tokens.
        die.matmul("q_a + kv_a down-projection", s, scope, mt, d, qr + kvr + rope, mm, mm),
        die.matmul("q_b up-projection", s, scope, mt, qr, h * (nope + rope) / tp, mm, mm),
        die.matmul("q absorb (W_UK)", s, scope, mt, nope, kvr, mm, mm, groups=h / tp),
    ]
    kv_b = DTYPE_BYTES[model["precision.kv_cache"]]
    core_flops = 2.0 * (h / tp) * (kvr + rope + kvr) * kv_len * mt
    core_bytes = (r * tp) * kv_len * (kvr + rope) * kv_b + mt * (h / tp) * (kvr + rope + kvr) * ab
    ops.append(die.attention("attention core (absorbed MLA)", s, scope, core_flops, core_bytes, model["precision.attention_core"]))
    ops += [
        die.matmul("out absorb (W_UV)", s, scope, mt, kvr, v, mm, mm, groups=h / tp),
        die.matmul("o_proj", s, scope, mt, h * v / tp, d, mm, mm),
    ]
    if np.any(np.asarray(tp) > 1):
        tp_bytes = 2.0 * (tp - 1) * t * d * ab
        ops.append(die.comm("attention TP all-gather + reduce-scatter", s, scope, bulk_comm_time_s(die.hw, tp_bytes, tp), tp_bytes))
    return ops


def _moe_ops(die: Die, model: Spec, scope, t, inp: DecodeInputs, dies):
    """Stream-1 operators of a MoE layer for t tokens per die in one microbatch."""
    hw = die.hw
    d, inter = model["arch.hidden_size"], model["moe.moe_intermediate_size"]
    E, S, k = model["moe.n_routed_experts"], model["moe.n_shared_experts"], model["moe.num_experts_per_tok"]
    mm, act = model["precision.matmul"], model["precision.activation"]
    ab = DTYPE_BYTES[act]
    s = "moe"
    pl = placement(E, S, inp.ep, inp.redundant)
    ep = np.asarray(inp.ep, float)
    requests = ep * t / (np.asarray(inp.mtp, float) + 1.0)  # requests mixed in this microbatch
    skew = popularity_cv(model["routing.popularity_skew"], model["routing.eplb_residual_frac"], model["routing.request_skew"], requests, inp.eplb_perfect)
    tokens_in_group = ep * t
    mean_rank = tokens_in_group * k * pl["routed_per_rank"] / (E + np.asarray(inp.redundant, float))
    hot = hottest_rank_load(mean_rank, pl["routed_per_rank"], pl["routed_ranks"], skew)
    c = pl["routed_per_rank"]
    shared_rows = np.where(pl["dedicated"], tokens_in_group * S / np.maximum(pl["shared_copies"], 1.0), t * S)
    dmsg, cmsg = message_bytes(model)
    routed_dest = expected_destinations(E, model["moe.n_group"], model["moe.topk_group"], k, ep)
    dest = routed_dest + np.where(pl["dedicated"], S, 0.0)
    msgs = busiest_link_messages(t, dest, hot, routed_dest, k, np.where(pl["dedicated"], shared_rows, 0.0))

    ops = [
        die.vector("norm, quantisation", s, scope, t * d, *elementwise_cost("norm_quant", model)),
        die.matmul("gate", s, scope, t, d, E, act, act, out_dtype="fp32"),
        die.vector("top-k routing", s, scope, t * E, *elementwise_cost("topk", model)),
        die.comm("dispatch", s, scope, fused_moe_comm_time_s(hw, msgs, 1.0, dmsg, ep, "dispatch", die.vector_share), msgs * dmsg),
    ]
    # The busiest die sets the MoE time: a routed-expert die at its hottest load, or a
    # shared-expert die (dedicated layout); in the replicated layout every die also runs its
    # own tokens through its shared-expert copy.
    routed_rows = hot + np.where(pl["dedicated"], 0.0, shared_rows)
    groups = c + np.where(pl["dedicated"], 0.0, S)
    per_group = routed_rows / groups
    r_ops = [
        die.matmul("experts gate/up (grouped)", s, scope, per_group, d, 2 * inter, mm, mm, groups=groups),
        die.vector("SwiGLU, quantisation", s, scope, routed_rows * 2 * inter, *elementwise_cost("swiglu_quant", model)),
        die.matmul("experts down (grouped)", s, scope, per_group, inter, d, mm, mm, groups=groups),
    ]
    sh_ops = [
        die.matmul("experts gate/up (grouped)", s, scope, shared_rows, d, 2 * inter, mm, mm),
        die.vector("SwiGLU, quantisation", s, scope, shared_rows * 2 * inter, *elementwise_cost("swiglu_quant", model)),
        die.matmul("experts down (grouped)", s, scope, shared_rows, inter, d, mm, mm),
    ]
    r_total = sum(o.time_s for o in r_ops)
    sh_total = np.where(pl["dedicated"] & (S > 0), sum(o.time_s for o in sh_ops), 0.0)
    routed_binds = r_total >= sh_total
    for ro, so in zip(r_ops, sh_ops):
        ops.append(Op(
            ro.name, s, scope,
            np.where(routed_binds, ro.time_s, so.time_s), np.where(routed_binds, ro.flops, so.flops),
            np.where(routed_binds, ro.hbm_bytes, so.hbm_bytes), np.where(routed_binds, ro.bound, so.bound),
            engine=ro.engine, full_die_time_s=np.where(routed_binds, ro.full_die_time_s, so.full_die_time_s),
        ))
    ops.append(die.comm("combine", s, scope, fused_moe_comm_time_s(hw, msgs, 1.0, cmsg, ep, "combine", die.vector_share), msgs * cmsg))
    aux = {"placement": pl, "hot_rank_tokens": hot, "mean_rank_tokens": mean_rank, "destinations": dest, "shared_rows": shared_rows}
    return ops, aux


def _dense_ffn_ops(die: Die, model: Spec, scope, t):
    d, inter = model["arch.hidden_size"], model["arch.intermediate_size"]
    mm, ab = model["precision.matmul"], DTYPE_BYTES[model["precision.activation"]]
    s = "moe"
    return [
        die.vector("norm, quantisation", s, scope, t * d, *elementwise_cost("norm_quant", model)),
        die.matmul("dense FFN gate/up", s, scope, t, d, 2 * inter, mm, mm),
        die.vector("SwiGLU, quantisation", s, scope, t * 2 * inter, *elementwise_cost("swiglu_quant", model)),
        die.matmul("dense FFN down", s, scope, t, inter, d, mm, mm),
    ]


def validate_decode(hw: Spec, model: Spec, inp: DecodeInputs) -> None:
    """Scalar checks of a single deployment, with messages naming the option."""
    for name in ("devices", "ep", "batch", "microbatches", "attn_tp"):
        if np.any(np.asarray(getattr(inp, name)) < 1):
            raise SpecError(f"must be >= 1, got {getattr(inp, name)}", where=f"--{name.replace('_', '-')}")
    if np.any(np.asarray(inp.mtp) < 0) or np.any(np.asarray(inp.redundant) < 0):
        raise SpecError("must be >= 0", where="--mtp/--redundant")
    if np.any(np.asarray(inp.kv_len) < 1):
        raise SpecError(f"must be >= 1, got {inp.kv_len}", where="--kv-len")
    a = np.asarray(inp.mtp_acceptance)
    if np.any((a < 0) | (a > 1)):
        raise SpecError(f"must lie in [0, 1], got {inp.mtp_acceptance}", where="--mtp-acceptance")


def evaluate_decode(hw: Spec, model: Spec, inp: DecodeInputs) -> dict:
    """Evaluate decode for the (broadcast) deployments in `inp`. Returns arrays and operator rows."""
    dies_pkg = hw["package.dies"]
    dies = np.asarray(inp.devices, float) * dies_pkg
    n = np.asarray(inp.microbatches, float)
    k = np.asarray(inp.mtp, float)
    tp = np.asarray(inp.attn_tp, float)
    b = np.asarray(inp.batch, float) / dies_pkg  # requests per die
    q = k + 1.0
    t = b * q / n  # tokens per die per microbatch
    r = b / n
    split = n >= 2
    att_die = Die(hw, np.where(split, hw["overlap.decode_attention_matrix_cores"] / hw["die.matrix_cores"], 1.0),
                  np.where(split, hw["overlap.decode_attention_vector_cores"] / hw["die.vector_cores"], 1.0))
    moe_die = Die(hw, np.where(split, hw["overlap.decode_moe_matrix_cores"] / hw["die.matrix_cores"], 1.0),
                  np.where(split, hw["overlap.decode_moe_vector_cores"] / hw["die.vector_cores"], 1.0))
    full = Die(hw)
    L_dense, L_moe = dv.layer_counts(model)
    n_mtp_modules = model["mtp.num_nextn_predict_layers"]
    kv_len = np.asarray(inp.kv_len, float)

    dense_ops = _attention_ops(att_die, model, "dense layers", t, r, kv_len, tp) + _dense_ffn_ops(moe_die, model, "dense layers", t)
    moe_att = _attention_ops(att_die, model, "MoE layers", t, r, kv_len, tp)
    moe_ffn, aux = _moe_ops(moe_die, model, "MoE layers", t, inp, dies)
    moe_ops = moe_att + moe_ffn
    # The MTP module drafts one token per request per run, k runs per step.
    mtp_att = _attention_ops(att_die, model, "MTP module", r, r, kv_len, tp, extra_proj=True)
    mtp_ffn, _ = _moe_ops(moe_die, model, "MTP module", r, inp, dies)
    mtp_ops = mtp_att + mtp_ffn

    hbm_bw = full.hbm_bw
    w_dense = pipelined_layer_time_s(dense_ops, STREAMS, n, hbm_bw)
    w_moe = pipelined_layer_time_s(moe_ops, STREAMS, n, hbm_bw)
    w_mtp = pipelined_layer_time_s(mtp_ops, STREAMS, n, hbm_bw)
    fill = pipeline_fill_s(moe_ops, STREAMS, n) + k * pipeline_fill_s(mtp_ops, STREAMS, n)

    d, V = model["arch.hidden_size"], model["arch.vocab_size"]
    tokens = b * q
    serial = [
        full.matmul("LM head", "serial", "step", tokens, d, V, model["precision.lm_head"], model["precision.lm_head"], out_dtype="fp32"),
        full.matmul("MTP LM head", "serial", "step", b, d, V, model["precision.lm_head"], model["precision.lm_head"], out_dtype="fp32"),
        full.vector("sampling", "serial", "step", (tokens + k * b) * V, *elementwise_cost("sampling", model)),
    ]
    serial[1].calls = k
    overhead = hw["overhead.decode_step_s"]

    for op in dense_ops:
        op.calls = L_dense * n
    for op in moe_ops:
        op.calls = L_moe * n
    for op in mtp_ops:
        op.calls = k * n * n_mtp_modules
    layers_wall = L_dense * w_dense + L_moe * w_moe + k * n_mtp_modules * w_mtp
    step = layers_wall + fill + sum(op.calls * op.time_s for op in serial) + overhead
    ept = expected_tokens_per_step(k, inp.mtp_acceptance)
    tpot = step / ept
    per_device = np.asarray(inp.batch, float) / tpot

    # Memory.
    pl = aux["placement"]
    mtp_layers = n_mtp_modules * (k > 0)
    weights = weight_bytes_per_die(model, pl["experts_per_rank"], tp, mtp_layers)
    dmsg, cmsg = message_bytes(model)
    max_ctx = np.asarray(inp.extra.get("max_context", kv_len), float)
    mem = dict(weights)
    mem["KV cache"] = b * tp * max_ctx * kv_bytes_per_token(model, mtp_layers)
    mem["dispatch/combine buffers"] = comm_buffer_bytes(inp.ep, b * q, pl["experts_per_rank"], model["moe.num_experts_per_tok"], dmsg, cmsg)
    mem["activations"] = activation_bytes(model, b * q)
    mem["reserve"] = hw["memory.reserve_bytes_per_die"]
    used = sum(mem.values())
    cap = hw["die.hbm_capacity_bytes"]
    # Largest batch per device that fits: every batch-dependent term is linear in b.
    per_req = (mem["KV cache"] + mem["dispatch/combine buffers"] + mem["activations"]) / np.maximum(b, 1e-12)
    fixed = used - per_req * b
    max_batch = np.floor(np.maximum(cap - fixed, 0.0) / per_req) * dies_pkg

    valid = pl["valid"] & (np.mod(dies, inp.ep) == 0) & (np.mod(dies, tp) == 0) & (np.asarray(inp.ep) <= dies)
    return {
        "phase": "decode",
        "inputs": inp,
        "ops": dense_ops + moe_ops + mtp_ops + serial,
        "layer_wall_s": {"dense layers": L_dense * w_dense, "MoE layers": L_moe * w_moe, "MTP module": k * n_mtp_modules * w_mtp},
        "fill_s": fill,
        "overhead_s": overhead,
        "step_s": step,
        "layer_s": w_moe,
        "tpot_s": tpot,
        "tokens_per_step": ept,
        "tokens_per_s_per_device": per_device,
        "tokens_per_s_per_die": per_device / dies_pkg,
        "memory": mem,
        "hbm_used_bytes_per_die": used,
        "hbm_capacity_bytes_per_die": cap,
        "fits": used <= cap,
        "max_batch_per_device": max_batch,
        "valid": valid,
        "feasible": valid & (used <= cap),
        "aux": aux,
        "attention_stream_s": sum(o.time_s for o in moe_att),
        "moe_stream_s": sum(o.time_s for o in moe_ffn),
    }
