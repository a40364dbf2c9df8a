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
from cmperf.compose.ops import (
    Die, Op, Outer, in_slices, layer_time_and_fill_s, operator_detail, outcome, pipelined_layer_time_s, placement_arrays, placement_free,
    stream_time_s, total,
)
from cmperf.costs import attention
from cmperf.costs.roofline import LATENCY
from cmperf.costs.elementwise import elementwise_cost
from cmperf.costs.moe import busiest_link_messages, expected_destinations, message_bytes, hottest_rank_load, placement, popularity_cv
from cmperf.errors import SpecError
from cmperf.specs import derived as dv
from cmperf.specs.loader import Spec
from cmperf.units import DTYPE_BYTES

STREAMS = ("attention", "moe")
#: Microbatch counts a decode deployment may use: serial, or two or three overlapped on two streams.
MICROBATCH_CHOICES = (1, 2, 3)


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
    attn_cores: object = 0  # matrix cores of the attention stream (n >= 2); 0: the hardware file's split
    eplb_perfect: object = False
    extra: dict = field(default_factory=dict)


def expected_tokens_per_step(mtp, acceptance):
    """1 + a + a^2 + ... + a^k: tokens a step yields with k speculative tokens accepted in order.

    Summed term by term (powers by repeated multiplication), so a deployment evaluated alone and
    the same deployment inside a grid add the same numbers in the same order: numpy's vectorised
    `power` and the scalar one may differ in the last bit, and a plan's saved deployment must
    reproduce its numbers exactly. k is a whole number (speculative tokens per step)."""
    k = np.asarray(mtp, dtype=float)
    a = np.asarray(acceptance, dtype=float)
    total = np.ones(np.broadcast(k, a).shape)
    term = total
    for i in range(1, int(k.max(initial=0.0)) + 1):
        term = term * a
        total = total + np.where(k >= i, term, 0.0)
    return total


def _attention_ops(die: Die, model: Spec, scope, t, r, kv_len, tp, extra_proj=False):
    """Stream-0 operators for t tokens of r requests on one die: the model's attention kind
    (`costs.attention`: absorbed MLA, sparse MLA or GQA, tensor-parallel over `tp` dies)."""
    return placement_free(("attention", id(die.hw), id(model), scope, extra_proj),
                           lambda: attention.decode_ops(die, model, scope, t, r, kv_len, tp, extra_proj),
                           t, r, kv_len, tp, die.matrix_share, die.vector_share)


def straggler_wait_s(hw: Spec, work_s, ranks, formed=True):
    """Expected wait of a synchronous all-to-all for its slowest rank.

        W = T_pre x c x sqrt(2 ln R)
    T_pre: the work each rank does before it reaches the exchange; c: the run-to-run spread of
    that work on one rank (coefficient of variation); R: ranks in the exchange. The exchange
    starts when the last of R near-normal arrivals is in, mu + sigma sqrt(2 ln R) (Gumbel tail,
    as for the hottest expert rank). Load imbalance between ranks is priced where it arises (the
    hottest expert rank); this is the spread left when every rank has the same work. Not `formed`: an `Outer`.
    """
    c = hw.get("overhead.rank_jitter_cv", 0.0)
    z = np.sqrt(2.0 * np.log(np.maximum(np.asarray(ranks, dtype=float), 1.0)))
    x = np.asarray(work_s, dtype=float) * c
    return x * z if formed else Outer(x, z)


def _wait_op(stream, scope, name, time_s):
    if isinstance(time_s, Outer):  # a search's grid: no bytes, no work, no bound for a report
        return Op(name, stream, scope, time_s, 0.0, 0.0, None, engine="sync", full_die_time_s=0.0)
    t = np.asarray(time_s, dtype=float)
    zero = np.broadcast_to(np.float64(0.0), t.shape)  # a wait moves no data and does no work
    bound = np.broadcast_to(np.int64(LATENCY), t.shape) if operator_detail() else None
    return Op(name, stream, scope, t, zero, zero, bound, engine="sync", full_die_time_s=0.0)


def _moe_ops(die: Die, model: Spec, scope, t, inp: DecodeInputs, r, pre_sync_s=0.0):
    """Stream-1 operators of a MoE layer for t tokens of r requests per die in one microbatch;
    `pre_sync_s` is the work a rank does before the dispatch (its attention), which sets the
    straggler wait."""
    hw = die.hw
    d, inter = model["arch.hidden_size"], model["moe.moe_intermediate_size"]
    E, S, k = model["moe.n_routed_experts"], model["moe.n_shared_experts"], model["moe.num_experts_per_tok"]
    mm, act = model["precision.matmul"], model["precision.activation"]
    ab = DTYPE_BYTES[act]
    s = "moe"
    pl = placement(E, S, inp.ep, inp.redundant)
    ep = np.asarray(inp.ep, float)
    requests = ep * r  # requests mixed in this microbatch (the MTP module runs one token of each)
    skew = popularity_cv(model["routing.popularity_skew"], model["routing.eplb_residual_frac"], model["routing.request_skew"], requests, inp.eplb_perfect)
    tokens_in_group = ep * t
    mean_rank = tokens_in_group * k * pl["routed_per_rank"] / (E + np.asarray(inp.redundant, float))
    hot = hottest_rank_load(mean_rank, pl["routed_per_rank"], pl["routed_ranks"], skew, tokens_in_group, k)
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
        die.vector("routing init (sort token-expert pairs)", s, scope, t * k, *elementwise_cost("routing_init", model)),
    ]
    pre = pre_sync_s + total(o.time_s for o in ops)
    ops += [
        _wait_op(s, scope, "wait for the slowest rank (dispatch)", straggler_wait_s(hw, pre, ep, formed=operator_detail())),
        die.comm("dispatch", s, scope, fused_moe_comm_time_s(hw, msgs, 1.0, dmsg, ep, "dispatch", die.vector_share, local_tokens=t), msgs * dmsg),
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
    ] if S else r_ops  # no shared expert: the routed experts always bind
    r_total = total(o.time_s for o in r_ops)
    sh_total = np.where(pl["dedicated"] & (S > 0), total(o.time_s for o in sh_ops), 0.0)
    routed_binds = r_total >= sh_total
    detail = operator_detail()  # FLOPs and what binds: for a report of the operators only
    for ro, so in zip(r_ops, sh_ops):
        ops.append(Op(
            ro.name, s, scope,
            np.where(routed_binds, ro.time_s, so.time_s), np.where(routed_binds, ro.flops, so.flops) if detail else None,
            np.where(routed_binds, ro.hbm_bytes, so.hbm_bytes), np.where(routed_binds, ro.bound, so.bound) if detail else None,
            engine=ro.engine, full_die_time_s=np.where(routed_binds, ro.full_die_time_s, so.full_die_time_s),
        ))
    expert_s = np.where(routed_binds, r_total, sh_total)
    ops += [
        _wait_op(s, scope, "wait for the slowest rank (combine)", straggler_wait_s(hw, expert_s, ep)),
        die.comm("combine", s, scope, fused_moe_comm_time_s(hw, msgs, 1.0, cmsg, ep, "combine", die.vector_share, local_tokens=t), msgs * cmsg),
        die.vector("weighted sum of expert outputs", s, scope, t * (k + S) * d, *elementwise_cost("weighted_sum", model)),
        die.vector("residual add", s, scope, t * d, *elementwise_cost("residual_add", model)),
    ]
    aux = {"placement": pl, "hot_rank_tokens": hot, "mean_rank_tokens": mean_rank, "destinations": dest, "shared_rows": shared_rows}
    return ops, aux


def _ffn_ops(die: Die, model: Spec, scope, t, inp: DecodeInputs, r, pre_sync_s=0.0):
    """The FFN of a MoE layer, or of a dense model's layer (no experts: nothing to place or route)."""
    if dv.has_moe(model):
        return _moe_ops(die, model, scope, t, inp, r, pre_sync_s)
    zero = 0.0 * np.asarray(t, float)
    aux = {"placement": placement(0, 0, inp.ep, inp.redundant), "hot_rank_tokens": zero, "mean_rank_tokens": zero, "destinations": zero, "shared_rows": zero}
    return _dense_ffn_ops(die, model, scope, t, dv.dense_ffn_tp(model, inp.attn_tp)), aux


def _dense_ffn_ops(die: Die, model: Spec, scope, t, tp=1):
    """Dense SwiGLU FFN for t tokens per die. With tp > 1 (a dense model's FFN shares the attention
    TP group, `derived.dense_ffn_tp`): the group's t tp tokens through a 1/tp slice of the weights
    (gate/up split by columns, down by rows), then all-gather in and reduce-scatter out, 2 (tp - 1) t d."""
    d, inter = model["arch.hidden_size"], model["arch.intermediate_size"]
    mm, ab = model["precision.matmul"], DTYPE_BYTES[model["precision.activation"]]
    s = "moe"
    mt = t * tp
    ops = [
        die.vector("norm, quantisation", s, scope, t * d, *elementwise_cost("norm_quant", model)),
        die.matmul("dense FFN gate/up", s, scope, mt, d, 2 * inter / tp, mm, mm),
        die.vector("SwiGLU, quantisation", s, scope, mt * 2 * inter / tp, *elementwise_cost("swiglu_quant", model)),
        die.matmul("dense FFN down", s, scope, mt, inter / tp, d, mm, mm),
        die.vector("residual add", s, scope, t * d, *elementwise_cost("residual_add", model)),
    ]
    if np.any(np.asarray(tp) > 1):
        tp_bytes = 2.0 * (tp - 1) * t * d * ab
        ops.append(die.comm("FFN TP all-gather + reduce-scatter", s, scope, bulk_comm_time_s(die.hw, tp_bytes, tp), tp_bytes))
    return ops


def split_choices(hw: Spec) -> list[int]:
    """Matrix cores the attention stream may hold when microbatches overlap (0: the file's split).

    From `overlap.decode_split_min_attention_matrix_cores` to `..._max_...` in steps of
    `overlap.decode_split_step_matrix_cores`; without those keys only the hardware file's split."""
    if not hw.has("overlap.decode_split_min_attention_matrix_cores"):
        return [0]
    return list(range(hw["overlap.decode_split_min_attention_matrix_cores"], hw["overlap.decode_split_max_attention_matrix_cores"] + 1,
                      hw["overlap.decode_split_step_matrix_cores"]))


def pipelines(hw: Spec) -> list[tuple[int, int]]:
    """(microbatches, attention matrix cores) pairs a decode deployment may use: one microbatch on
    the whole die, two on two streams at each allowed split, three at the hardware file's split
    (a third microbatch only adds per-call costs where two already balance the streams)."""
    return [(1, 0)] + [(2, a) for a in split_choices(hw)] + [(n, 0) for n in MICROBATCH_CHOICES if n >= 3]


def stream_shares(hw: Spec, microbatches, attn_cores=0):
    """((matrix, vector) share of the attention stream, (matrix, vector) share of the MoE stream).

    One microbatch runs each operator on the whole die. With two or more, the streams hold the
    hardware file's split (attn_cores = 0) or `attn_cores` matrix cores for attention and the rest
    for the MoE path, vector cores in the die's own proportion (the paper's 16/32 and 8/16).
    """
    n = np.asarray(microbatches, dtype=float)
    a = np.asarray(attn_cores, dtype=float)
    m, v = hw["die.matrix_cores"], hw["die.vector_cores"]
    split, chosen = n >= 2, a > 0
    att_m = np.where(chosen, a / m, hw["overlap.decode_attention_matrix_cores"] / m)
    att_v = np.where(chosen, a / m, hw["overlap.decode_attention_vector_cores"] / v)
    moe_m = np.where(chosen, 1.0 - a / m, hw["overlap.decode_moe_matrix_cores"] / m)
    moe_v = np.where(chosen, 1.0 - a / m, hw["overlap.decode_moe_vector_cores"] / v)
    one = np.ones(np.broadcast(n, a).shape)
    return ((np.where(split, att_m, one), np.where(split, att_v, one)),
            (np.where(split, moe_m, one), np.where(split, moe_v, one)))


def less(x, y):
    """x - y, without a pass over x where y is the number 0 (x - 0 is x, to the bit)."""
    return x if np.ndim(y) == 0 and y == 0 else x - y


def single_batch_hidden_s(die: Die, model: Spec, ops, t, dedicated, microbatches):
    """Communication one microbatch hides behind its own shared expert (per layer), where the
    hardware file says the fused dispatch/combine run in the background (overlap.decode_single_batch).

        hidden = min(T_dispatch + T_combine, T_shared)   for n = 1;   0 otherwise
    The shared expert needs neither the dispatched tokens nor the combined result, so it computes
    while the sends are in flight; nothing else of the same layer can (every other MoE operator
    waits for dispatch). Dedicated shared-expert dies leave nothing to hide behind on routed dies.
    Source: DeepEP low-latency kernels' background receive (no SMs held while data is in flight).
    """
    sh = dv.moe_shape(model)
    if not die.hw.get("overlap.decode_single_batch", 0) or sh["S"] == 0 or np.all(np.asarray(microbatches) > 1):
        return 0.0
    d, inter, S = model["arch.hidden_size"], sh["inter"], sh["S"]
    mm = model["precision.matmul"]
    rows = np.asarray(t, float) * S
    shared = sum(op.time_s for op in (
        die.matmul("shared expert gate/up", "moe", "", rows, d, 2 * inter, mm, mm),
        die.vector("shared expert SwiGLU", "moe", "", rows * 2 * inter, *elementwise_cost("swiglu_quant", model)),
        die.matmul("shared expert down", "moe", "", rows, inter, d, mm, mm),
    ))
    comm = sum((op.time_s for op in ops if op.engine == "link" and op.stream == "moe"), start=np.float64(0.0))
    hidden = np.where(np.asarray(dedicated) | (S == 0), 0.0, np.minimum(comm, shared))
    return np.where(np.asarray(microbatches) <= 1, hidden, 0.0)


def validate_decode(hw: Spec, model: Spec, inp: DecodeInputs) -> None:
    """Scalar checks of a single deployment, with messages naming the option."""
    for name in ("devices", "ep", "batch", "microbatches", "attn_tp"):
        if np.any(np.asarray(getattr(inp, name)) < 1):
            raise SpecError(f"must be >= 1, got {getattr(inp, name)}", where=f"--{name.replace('_', '-')}")
    if np.any(np.asarray(inp.mtp) < 0) or np.any(np.asarray(inp.redundant) < 0):
        raise SpecError("must be >= 0", where="--mtp/--redundant")
    a = np.asarray(inp.attn_cores)
    if np.any((a < 0) | (a >= hw["die.matrix_cores"])):
        raise SpecError(f"expected 1 to {hw['die.matrix_cores'] - 1} matrix cores for the attention stream (0: the hardware file's split), got {inp.attn_cores}", where="--attn-cores")
    if np.any(np.asarray(inp.kv_len) < 1):
        raise SpecError(f"must be >= 1, got {inp.kv_len}", where="--kv-len")
    a = np.asarray(inp.mtp_acceptance)
    if np.any((a < 0) | (a > 1)):
        raise SpecError(f"must lie in [0, 1], got {inp.mtp_acceptance}", where="--mtp-acceptance")


def decode_memory(hw: Spec, model: Spec, inp: DecodeInputs):
    """HBM per die of the (broadcast) deployments in `inp`: (the parts by name, used, capacity,
    largest batch per device that fits, the expert placement). Every batch-dependent part is linear
    in the batch, so `used` never falls as the batch grows."""
    dies_pkg = hw["package.dies"]
    tp = np.asarray(inp.attn_tp, float)
    k = np.asarray(inp.mtp, float)
    b = np.asarray(inp.batch, float) / dies_pkg
    q = k + 1.0
    sh = (model["moe.n_routed_experts"], model["moe.n_shared_experts"]) if dv.has_moe(model) else (0, 0)
    pl = placement(*sh, inp.ep, inp.redundant)
    mtp_layers = model["mtp.num_nextn_predict_layers"] * (k > 0)  # every module's weights and KV cache are resident
    weights = weight_bytes_per_die(model, pl["experts_per_rank"], tp, mtp_layers)
    dmsg, cmsg = message_bytes(model)
    max_ctx = np.asarray(inp.extra.get("max_context", inp.kv_len), float)
    mem = dict(weights)
    mem["KV cache"] = b * tp * max_ctx * kv_bytes_per_token(model, mtp_layers) * dv.kv_share_per_die(model, tp)
    mem["dispatch/combine buffers"] = comm_buffer_bytes(inp.ep, b * q, pl["experts_per_rank"], dv.moe_shape(model)["k"], dmsg, cmsg)
    mem["activations"] = activation_bytes(model, b * q)
    mem["reserve"] = hw["memory.reserve_bytes_per_die"]
    used = total(mem.values())
    cap = hw["die.hbm_capacity_bytes"]
    # Largest batch per device that fits: every batch-dependent term is linear in b.
    per_req = (mem["KV cache"] + mem["dispatch/combine buffers"] + mem["activations"]) / np.maximum(b, 1e-12)
    fixed = used - per_req * b
    max_batch = np.floor(np.maximum(cap - fixed, 0.0) / per_req) * dies_pkg
    return mem, used, cap, max_batch, pl


def decode_valid(hw: Spec, model: Spec, inp: DecodeInputs, pl: dict):
    """Which deployments can be built: the expert placement, EP and attention TP dividing the dies,
    and the heads splitting over the TP group."""
    _, dies, _, tp = placement_arrays(hw, inp)
    return pl["valid"] & (np.mod(dies, inp.ep) == 0) & (np.mod(dies, tp) == 0) & (np.asarray(inp.ep) <= dies) & dv.heads_fit_tp(model, tp)


def evaluate_decode(hw: Spec, model: Spec, inp: DecodeInputs) -> dict:
    """Evaluate decode for the (broadcast) deployments in `inp`. Returns arrays and operator rows; a
    search's grid (`without_operator_detail`) only the latency, the rates and memory."""
    detail = operator_detail()
    dies_pkg, dies, n, tp = placement_arrays(hw, inp)
    k = np.asarray(inp.mtp, float)
    b = np.asarray(inp.batch, float) / dies_pkg  # requests per die
    q = k + 1.0
    t = b * q / n  # tokens per die per microbatch
    r = b / n
    (att_m, att_v), (moe_m, moe_v) = stream_shares(hw, n, inp.attn_cores)
    att_die, moe_die, full = Die(hw, att_m, att_v), Die(hw, moe_m, moe_v), Die(hw)
    L_dense, L_moe = dv.layer_counts(model)
    n_mtp_modules = model["mtp.num_nextn_predict_layers"]
    # Each draft token is one run of one MTP module: k runs per step however many modules there are.
    mtp_runs = min(n_mtp_modules, 1)
    kv_len = np.asarray(inp.kv_len, float)

    ffn_tp = dv.dense_ffn_tp(model, tp)
    dense_ops = _attention_ops(att_die, model, "dense layers", t, r, kv_len, tp) + placement_free(
        ("dense FFN", id(hw), id(model)), lambda: _dense_ffn_ops(moe_die, model, "dense layers", t, ffn_tp), t, ffn_tp, moe_die.matrix_share, moe_die.vector_share)
    hbm_bw = full.hbm_bw
    w_dense = pipelined_layer_time_s(dense_ops, STREAMS, n, hbm_bw)
    moe_att = _attention_ops(att_die, model, "MoE layers", t, r, kv_len, tp)
    moe_ffn, aux = _ffn_ops(moe_die, model, "MoE layers", t, inp, r, stream_time_s(moe_att, "attention"))
    hidden_moe = single_batch_hidden_s(moe_die, model, moe_ffn, t, aux["placement"]["dedicated"], n)
    # The MTP module drafts one token per request per run, k runs per step.
    mtp_att = _attention_ops(att_die, model, "MTP module", r, r, kv_len, tp, extra_proj=True)
    mtp_ffn, _ = _ffn_ops(moe_die, model, "MTP module", r, inp, r, stream_time_s(mtp_att, "attention"))
    hidden_mtp = single_batch_hidden_s(moe_die, model, mtp_ffn, r, aux["placement"]["dedicated"], n)
    moe_ops, mtp_ops = moe_att + moe_ffn, mtp_att + mtp_ffn

    d, V = model["arch.hidden_size"], model["arch.vocab_size"]
    tokens = b * q
    serial = [
        full.matmul("LM head", "serial", "step", tokens, d, V, model["precision.lm_head"], model["precision.lm_head"], out_dtype="fp32"),
        full.matmul("MTP LM head", "serial", "step", b, d, V, model["precision.lm_head"], model["precision.lm_head"], out_dtype="fp32"),
        full.vector("sampling", "serial", "step", (tokens + k * b) * V, *elementwise_cost("sampling", model)),
    ]
    serial[1].calls = k
    overhead = hw["overhead.decode_step_s"]
    ept = expected_tokens_per_step(k, inp.mtp_acceptance)

    def compose(moe_ops, mtp_ops, serial, n, k, hidden_moe, hidden_mtp, w_dense, ept, batch):
        """(TPOT, tokens/s per device, the layers' walls, fill, step, MoE-layer time, its two streams)."""
        streams = []  # the MoE layer's attention and MoE stream times, per microbatch
        w_moe, fill_moe = layer_time_and_fill_s(moe_ops, STREAMS, n, hbm_bw, streams)
        w_moe = less(w_moe, hidden_moe)
        w_mtp, fill_mtp = layer_time_and_fill_s(mtp_ops, STREAMS, n, hbm_bw)
        w_mtp = less(w_mtp, hidden_mtp)
        fill = fill_moe + k * fill_mtp
        walls = {"dense layers": L_dense * w_dense, "MoE layers": L_moe * w_moe, "MTP module": k * mtp_runs * w_mtp}
        layers_wall = walls["dense layers"] + walls["MoE layers"] + walls["MTP module"]
        step = layers_wall + fill + sum(op.calls * op.time_s for op in serial) + overhead
        tpot = step / ept
        return tpot, batch / tpot, walls, fill, step, w_moe, *streams

    args = (moe_ops, mtp_ops, serial, n, k, hidden_moe, hidden_mtp, w_dense, ept, np.asarray(inp.batch, float))
    if detail:
        tpot, per_device, walls, fill, step, w_moe, *moe_streams = compose(*args)
    else:  # a search's grid: formed a slice of structures at a time, and no report reads the step's parts
        shape = np.broadcast_shapes(*(np.shape(getattr(inp, f)) for f in DecodeInputs.__dataclass_fields__ if f != "extra"))
        tpot, per_device = in_slices(shape, lambda *a: compose(*a)[:2], *args)
        walls = fill = step = w_moe = None
        moe_streams, moe_ops, mtp_ops = [None, None], [], []  # nor its operators' arrays
    for ops, calls in ((dense_ops, L_dense * n), (moe_ops, L_moe * n), (mtp_ops, k * n * mtp_runs)):
        for op in ops:
            op.calls = calls

    mem, used, cap, max_batch, pl = decode_memory(hw, model, inp)

    valid = decode_valid(hw, model, inp, pl)
    return {
        "phase": "decode",
        "inputs": inp,
        "ops": dense_ops + moe_ops + mtp_ops + serial,
        "layer_wall_s": walls,
        "fill_s": fill,
        "overhead_s": overhead,
        "step_s": step,
        "layer_s": w_moe,
        "tpot_s": tpot,
        "tokens_per_step": ept,
        **outcome(per_device, dies_pkg, mem, used, cap, valid),
        "max_batch_per_device": max_batch,
        "aux": aux,
        "attention_stream_s": moe_streams[0],
        "moe_stream_s": moe_streams[1],
    }
