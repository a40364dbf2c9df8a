"""Attention operator lists, one per attention kind (`attention.kind` in the model file).

Each function returns the operators of one attention block as rows (`Op`s built by the die the
stream runs on: `die.matmul`, `die.attention`, `die.vector`, `die.comm`), so the same list gives
the time, the FLOPs, the HBM bytes and the per-operator breakdown. Shapes come from the model file;
weight bytes per die are `specs.derived.attention_params_per_die`.

Symbols: d model width; h query heads; t tokens of r requests on one die (per microbatch); tp dies
of the attention tensor-parallel group (they gather their tokens, mt = t tp, and each keeps h / tp
heads); L context (cached tokens) per request.
"""

from __future__ import annotations

import numpy as np

from cmperf.comm.collectives import bulk_comm_time_s
from cmperf.costs.elementwise import elementwise_cost
from cmperf.specs.loader import Spec
from cmperf.units import DTYPE_BYTES


def _tp_comm_decode(die, model, s, scope, t, tp):
    """Attention TP in decode: all-gather the tokens in, reduce-scatter the output, 2 (tp - 1) t d activations."""
    if not np.any(np.asarray(tp) > 1):
        return []
    tp_bytes = 2.0 * (tp - 1) * t * model["arch.hidden_size"] * DTYPE_BYTES[model["precision.activation"]]
    return [die.comm("attention TP all-gather + reduce-scatter", s, scope, bulk_comm_time_s(die.hw, tp_bytes, tp), tp_bytes)]


def mean_attended(start, end, top_k=None):
    """Mean keys a causal query attends to, over query positions spread evenly from `start` to `end`.

    Dense: (start + end) / 2 + 1/2. With a top-k limit, min(i, k) averaged over i:
        F(x) = x^2 / 2 (x < k),  k x - k^2 / 2 (x >= k);   mean = (F(end) - F(start)) / (end - start)
    """
    a, b = np.asarray(start, dtype=float), np.asarray(end, dtype=float)
    if top_k is None:
        return (a + b) / 2.0 + 0.5

    def F(x):
        return np.where(x < top_k, x * x / 2.0, top_k * x - top_k * top_k / 2.0)

    span = b - a
    return np.where(span > 0, (F(b) - F(a)) / np.where(span > 0, span, 1.0), np.minimum(b, top_k))


# ---- decode ---------------------------------------------------------------------------------------


def mla_decode_ops(die, model: Spec, scope, t, r, kv_len, tp, extra_proj=False, s="attention", _sparse=False):
    """MLA, absorbed (DeepSeek-V2/V3): the cache holds the latent c_KV (d_c) and the RoPE key (d_rope).

        core FLOPs = 2 (h / tp) (d_c + d_rope + d_c) L mt     (scores over d_c + d_rope, values over d_c)
        core bytes = r tp L (d_c + d_rope) b_kv + mt (h / tp) (d_c + d_rope + d_c) b_act
    Down-projections stay whole under TP (every die needs the full latents of the gathered tokens);
    q_b, the absorbed W_UK / W_UV and o_proj split over the heads. Source: DeepSeek-V2 (arXiv
    2405.04434) section 2.1; the CloudMatrix384 paper's decode operators (arXiv 2506.12708).
    """
    d = model["arch.hidden_size"]
    h = model["attention.num_attention_heads"]
    qr, kvr = model["attention.q_lora_rank"], model["attention.kv_lora_rank"]
    nope, rope, v = model["attention.qk_nope_head_dim"], model["attention.qk_rope_head_dim"], model["attention.v_head_dim"]
    mm, act = model["precision.matmul"], model["precision.activation"]
    ab = DTYPE_BYTES[act]
    mt = t * tp  # tokens a die handles in the TP-split operators
    ops = []
    if extra_proj:  # MTP: concatenate embedding and hidden state, project 2d -> d
        ops.append(die.matmul("MTP eh_proj", s, scope, t, 2 * d, d, mm, mm))
    ops += [
        die.vector("norms, RoPE, quantisation", s, scope, t * (2 * d + qr + kvr + h * (rope + v)) , *elementwise_cost("norm_quant", model)),
        die.matmul("q_a + kv_a down-projection", s, scope, mt, d, qr + kvr + rope, mm, mm),
        die.matmul("q_b up-projection", s, scope, mt, qr, h * (nope + rope) / tp, mm, mm),
        die.matmul("q absorb (W_UK)", s, scope, mt, nope, kvr, mm, mm, groups=h / tp),
    ]
    attended = kv_len
    if _sparse:
        ops += _indexer_decode_ops(die, model, s, scope, t, r, kv_len)
        attended = np.minimum(kv_len, model["attention.index_topk"])
    kv_b = DTYPE_BYTES[model["precision.kv_cache"]]
    core_flops = 2.0 * (h / tp) * (kvr + rope + kvr) * attended * mt
    core_bytes = (r * tp) * attended * (kvr + rope) * kv_b + mt * (h / tp) * (kvr + rope + kvr) * ab
    name = "attention core (absorbed MLA, top-k tokens)" if _sparse else "attention core (absorbed MLA)"
    ops.append(die.attention(name, s, scope, core_flops, core_bytes, model["precision.attention_core"]))
    ops.append(die.vector("KV-cache write", s, scope, t * (kvr + rope), *elementwise_cost("kv_write", model)))
    ops += [
        die.matmul("out absorb (W_UV)", s, scope, mt, kvr, v, mm, mm, groups=h / tp),
        die.matmul("o_proj", s, scope, mt, h * v / tp, d, mm, mm),
        die.vector("residual add", s, scope, t * d, *elementwise_cost("residual_add", model)),
    ]
    return ops + _tp_comm_decode(die, model, s, scope, t, tp)


def _indexer_decode_ops(die, model, s, scope, t, r, kv_len):
    """DSA lightning indexer over every cached token, on the die's own t tokens (indices are tiny).

        scores FLOPs = 2 H_I d_I L t;   bytes = r L d_I b_idx + t H_I d_I b_idx
    then a top-k over L scores per token. Source: DeepSeek-V3.2-Exp (github.com/deepseek-ai/
    DeepSeek-V3.2-Exp, inference/model.py Indexer). Assumes: the indexer is not split over TP.
    """
    hi, di, idx, ib = _indexer_shape(model)
    return _indexer_projections(die, model, s, scope, t) + [
        die.vector("indexer key write", s, scope, t * di, *elementwise_cost("kv_write", model)),
        die.attention("indexer scores (every cached token)", s, scope, 2.0 * hi * di * kv_len * t,
                      r * kv_len * di * ib + t * hi * di * ib, idx),
        die.vector("indexer top-k selection", s, scope, t * kv_len, *elementwise_cost("topk", model)),
    ]


def mla_sparse_decode_ops(die, model: Spec, scope, t, r, kv_len, tp, extra_proj=False, s="attention"):
    """MLA with DeepSeek-V3.2's sparse attention (DSA): the indexer's cost grows with L, the
    attention core reads only min(L, k) cached tokens (k = attention.index_topk), so it is flat
    beyond k. Operators as `mla_decode_ops` plus `_indexer_decode_ops`."""
    return mla_decode_ops(die, model, scope, t, r, kv_len, tp, extra_proj, s, _sparse=True)


def gqa_decode_ops(die, model: Spec, scope, t, r, kv_len, tp, extra_proj=False, s="attention"):
    """Grouped-query attention (Llama, Qwen3, GLM-4.5, MiniMax-M2): h query heads share g key-value heads.

    Per die of the TP group: h / tp query heads and g_tp = max(g / tp, 1) key-value heads
    (replicated when fewer than tp).
        core FLOPs = 4 (h / tp) d_h L mt                     (2 for Q K^T, 2 for P V)
        core bytes = r tp L 2 g_tp d_h b_kv + 2 mt (h / tp) d_h b_act
    Source: Ainslie et al., GQA (arXiv 2305.13245); Megatron-LM tensor parallel attention.
    """
    d = model["arch.hidden_size"]
    h, g, hd = model["attention.num_attention_heads"], model["attention.num_key_value_heads"], model["attention.head_dim"]
    rot = model.get("attention.rotary_dim", hd)
    mm, ab = model["precision.matmul"], DTYPE_BYTES[model["precision.activation"]]
    mt = t * tp
    hq, gk = h / tp, np.maximum(g / tp, 1.0)
    ops = []
    if extra_proj:
        ops.append(die.matmul("MTP eh_proj", s, scope, t, 2 * d, d, mm, mm))
    qk_elems = (hq + gk) * (rot + model.get("attention.qk_norm", 0) * hd)
    ops += [
        die.vector("norm, QK-norm, RoPE, quantisation", s, scope, t * d + mt * qk_elems, *elementwise_cost("norm_quant", model)),
        die.matmul("qkv projection", s, scope, mt, d, (hq + 2 * gk) * hd, mm, mm),
    ]
    kv_b = DTYPE_BYTES[model["precision.kv_cache"]]
    core_flops = 4.0 * hq * hd * kv_len * mt
    core_bytes = (r * tp) * kv_len * 2 * gk * hd * kv_b + 2 * mt * hq * hd * ab
    ops += [
        die.attention("attention core (GQA)", s, scope, core_flops, core_bytes, model["precision.attention_core"]),
        die.vector("KV-cache write", s, scope, mt * 2 * gk * hd, *elementwise_cost("kv_write", model)),
        die.matmul("o_proj", s, scope, mt, hq * hd, d, mm, mm),
        die.vector("residual add", s, scope, t * d, *elementwise_cost("residual_add", model)),
    ]
    return ops + _tp_comm_decode(die, model, s, scope, t, tp)


# ---- prefill --------------------------------------------------------------------------------------


def mla_prefill_ops(die, model: Spec, scope, t, S, hit, tp, _sparse=False):
    """Hybrid SP-TP-SP MLA, un-absorbed, over t new tokens per die; prompts of S tokens with h S cached.

        core FLOPs = 2 (h / tp) (d_nope + d_rope + d_v) L_mean mt,   L_mean = (hS + S) / 2 + 1/2 (causal)
    Down-projections sequence-parallel, an all-gather of the latents into the TP group, q_b / kv_b
    and the core over h / tp heads (kv_b also up-projects the cached prefix), an all-to-all back,
    o_proj sequence-parallel. Source: the CloudMatrix384 paper's prefill (arXiv 2506.12708).
    """
    hw = die.hw
    d = model["arch.hidden_size"]
    h = model["attention.num_attention_heads"]
    qr, kvr = model["attention.q_lora_rank"], model["attention.kv_lora_rank"]
    nope, rope, v = model["attention.qk_nope_head_dim"], model["attention.qk_rope_head_dim"], model["attention.v_head_dim"]
    mm, ab = model["precision.matmul"], DTYPE_BYTES[model["precision.activation"]]
    c, x = "compute", "comm"
    mt = t * tp
    # Causal: a new token at position i attends to i keys; new tokens are positions hS..S.
    mean_ctx = mean_attended(S * hit, S)
    ops = [
        die.vector("norms, RoPE, quantisation", c, scope, t * (2 * d + qr + kvr + h * (nope + 2 * rope + v)), *elementwise_cost("norm_quant", model)),
        die.matmul("q_a + kv_a down-projection (SP)", c, scope, t, d, qr + kvr + rope, mm, mm),
    ]
    if np.any(np.asarray(tp) > 1):
        ag = (tp - 1) * t * (qr + kvr + rope) * ab
        ops.append(die.comm("all-gather latents (SP->TP)", x, scope, bulk_comm_time_s(hw, ag, tp), ag))
    ops += [
        die.matmul("q_b up-projection (TP)", c, scope, mt, qr, h * (nope + rope) / tp, mm, mm),
        # K and V of the cached prefix are up-projected from its latents as well (un-absorbed).
        die.matmul("kv_b up-projection (TP, new and cached tokens)", c, scope, mt / (1.0 - hit), kvr, h * (nope + v) / tp, mm, mm),
    ]
    attended = mean_ctx
    if _sparse:
        ops += _indexer_prefill_ops(die, model, c, scope, t, mean_ctx)
        attended = mean_attended(S * hit, S, model["attention.index_topk"])
    core_flops = 2.0 * (h / tp) * (nope + rope + v) * attended * mt
    core_bytes = mt * (h / tp) * (2 * (nope + rope) + 2 * v) * ab
    name = "attention core (causal MHA, top-k tokens)" if _sparse else "attention core (causal MHA)"
    ops.append(die.attention(name, c, scope, core_flops, core_bytes, model["precision.attention_core"]))
    if np.any(np.asarray(tp) > 1):
        a2a = t * h * v * ab * (tp - 1) / tp
        ops.append(die.comm("all-to-all heads->tokens (TP->SP)", x, scope, bulk_comm_time_s(hw, a2a, tp), a2a))
    ops.append(die.matmul("o_proj (SP)", c, scope, t, h * v, d, mm, mm))
    return ops


def _indexer_shape(model: Spec):
    """(indexer heads H_I, head dim d_I, index-cache dtype, its bytes per element)."""
    idx = model["precision.index_cache"]
    return model["attention.index_n_heads"], model["attention.index_head_dim"], idx, DTYPE_BYTES[idx]


def _indexer_projections(die, model: Spec, stream, scope, t, label=""):
    """The indexer's query up-projection (d_q -> H_I d_I) and key + head-weight projection (d -> d_I + H_I)."""
    hi, di, _, _ = _indexer_shape(model)
    mm = model["precision.matmul"]
    return [
        die.matmul(f"indexer q up-projection{label}", stream, scope, t, model["attention.q_lora_rank"], hi * di, mm, mm),
        die.matmul(f"indexer k + head weights{label}", stream, scope, t, model["arch.hidden_size"], di + hi, mm, mm),
    ]


def _indexer_prefill_ops(die, model, c, scope, t, mean_ctx):
    """DSA indexer in prefill: every new token scores the L_mean keys before it (causal),
    2 H_I d_I L_mean t FLOPs, then a top-k over L_mean scores; keys read once per token block."""
    hi, di, idx, ib = _indexer_shape(model)
    return _indexer_projections(die, model, c, scope, t, " (SP)") + [
        die.attention("indexer scores (causal)", c, scope, 2.0 * hi * di * mean_ctx * t, t * (hi + 1) * di * ib, idx),
        die.vector("indexer top-k selection", c, scope, t * mean_ctx, *elementwise_cost("topk", model)),
    ]


def mla_sparse_prefill_ops(die, model: Spec, scope, t, S, hit, tp):
    """DSA in prefill: `mla_prefill_ops` with the core over min(i, k) keys for the query at
    position i (`mean_attended` with top-k) and the indexer over all i keys."""
    return mla_prefill_ops(die, model, scope, t, S, hit, tp, _sparse=True)


def gqa_prefill_ops(die, model: Spec, scope, t, S, hit, tp):
    """Tensor-parallel grouped-query attention over t new tokens per die (Megatron-style).

        core FLOPs = 4 (h / tp) d_h L_mean mt;  bytes = mt (2 h / tp + 2 g_tp) d_h b_act (Q, O, K, V once)
    Hidden states all-gathered into the TP group ((tp - 1) t d), the qkv projection, the core and
    o_proj over h / tp query and g_tp = max(g / tp, 1) key-value heads, a reduce-scatter back
    ((tp - 1) t d). Cached prefix K and V are read from the cache, not recomputed.
    Source: Shoeybi et al., Megatron-LM (arXiv 1909.08053) section 3.
    """
    hw = die.hw
    d = model["arch.hidden_size"]
    h, g, hd = model["attention.num_attention_heads"], model["attention.num_key_value_heads"], model["attention.head_dim"]
    rot = model.get("attention.rotary_dim", hd)
    mm, ab = model["precision.matmul"], DTYPE_BYTES[model["precision.activation"]]
    c, x = "compute", "comm"
    mt = t * tp
    hq, gk = h / tp, np.maximum(g / tp, 1.0)
    mean_ctx = mean_attended(S * hit, S)
    qk_elems = (hq + gk) * (rot + model.get("attention.qk_norm", 0) * hd)
    ops = [die.vector("norm, QK-norm, RoPE, quantisation", c, scope, t * d + mt * qk_elems, *elementwise_cost("norm_quant", model))]
    split = np.any(np.asarray(tp) > 1)
    tp_bytes = (tp - 1) * t * d * ab
    if split:
        ops.append(die.comm("all-gather hidden states (TP)", x, scope, bulk_comm_time_s(hw, tp_bytes, tp), tp_bytes))
    ops += [
        die.matmul("qkv projection (TP)", c, scope, mt, d, (hq + 2 * gk) * hd, mm, mm),
        die.attention("attention core (causal GQA)", c, scope, 4.0 * hq * hd * mean_ctx * mt, mt * (2 * hq + 2 * gk) * hd * ab, model["precision.attention_core"]),
        die.matmul("o_proj (TP)", c, scope, mt, hq * hd, d, mm, mm),
    ]
    if split:
        ops.append(die.comm("reduce-scatter output (TP)", x, scope, bulk_comm_time_s(hw, tp_bytes, tp), tp_bytes))
    return ops


DECODE_OPS = {"mla": mla_decode_ops, "mla_sparse": mla_sparse_decode_ops, "gqa": gqa_decode_ops}
PREFILL_OPS = {"mla": mla_prefill_ops, "mla_sparse": mla_sparse_prefill_ops, "gqa": gqa_prefill_ops}


def decode_ops(die, model: Spec, scope, t, r, kv_len, tp, extra_proj=False):
    """The decode attention operators of the model's attention kind."""
    return DECODE_OPS[model["attention.kind"]](die, model, scope, t, r, kv_len, tp, extra_proj)


def prefill_ops(die, model: Spec, scope, t, S, hit, tp):
    """The prefill attention operators of the model's attention kind."""
    return PREFILL_OPS[model["attention.kind"]](die, model, scope, t, S, hit, tp)

