"""Figures derived from a spec: per-die peaks, ridge points, parameter counts, KV bytes per token.

These are read-only: `show` prints them under `derived.*`, and `--set` refuses them.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from cmperf.errors import SpecError
from cmperf.units import DTYPE_BYTES


class Spec(Protocol):
    """A hardware or model description as these functions read it (`cmperf.specs.loader.Spec`, or
    the values the loader checks through these functions, so this module does not import it)."""

    def __getitem__(self, key: str) -> Any: ...

    def get(self, key: str, default: Any = None) -> Any: ...

    def has(self, key: str) -> bool: ...


def matrix_peak_flops_per_s(hw: Spec, dtype: str) -> float:
    """Dense matrix-engine peak of one die at a data type; an unsupported type is an input error."""
    key = f"die.{dtype}_matrix_flops_per_s"
    if not hw.has(key):
        have = [d for d in DTYPE_BYTES if hw.has(f"die.{d}_matrix_flops_per_s")]
        raise SpecError(
            f"hardware '{hw.name}' has no {dtype} matrix engine (has {', '.join(have)}); "
            f"set the model's precision.* keys to one of those",
            where=hw.path,
        )
    return hw[key]


def matmul_compute_frac(hw: Spec, dtype: str) -> float:
    """Large-GEMM efficiency at a data type: efficiency.<dtype>_matmul_compute_frac where the file
    gives one (FP8 and BF16 kernels reach different fractions of their peaks), else the generic
    efficiency.matmul_compute_frac."""
    return hw.get(f"efficiency.{dtype}_matmul_compute_frac", hw["efficiency.matmul_compute_frac"])


def small_m_tile_rows(hw: Spec) -> int:
    """Rows M pads to at M <= die.matrix_tile_rows: the swap-AB layout's step where the file names
    one, else the engine tile itself (no separate small-M layout)."""
    return hw.get("die.matrix_small_m_tile_rows", hw["die.matrix_tile_rows"])


def matmul_kernel_fixed_s(hw: Spec) -> float:
    """Fixed time of one GEMM kernel beyond its roofline; a file without the key has none."""
    return hw.get("efficiency.matmul_kernel_fixed_s", 0.0)


def prefill_matrix_rate_frac(hw: Spec) -> float:
    """What a long prefill batch keeps of the matrix engines' rate, from the file's mechanisms:

        f = c_sustained x d_duty
    c_sustained: die.sustained_matrix_clock_frac, the clock held under continuous tensor load
    (absent: the quoted clock); d_duty: efficiency.prefill_matrix_duty_frac, an end-to-end fitted
    residual (absent: none). The cores communication holds are a separate share (overlap.*).
    """
    return hw.get("die.sustained_matrix_clock_frac", 1.0) * hw.get("efficiency.prefill_matrix_duty_frac", 1.0)


def dtype_bytes(model: Spec, key: str) -> float:
    return DTYPE_BYTES[model[f"precision.{key}"]]


def die_scaleup_bandwidth_bytes_per_s(hw: Spec) -> float:
    return hw["scaleup.links_per_die"] * hw["scaleup.link_bandwidth_bytes_per_s"]


def dies_per_system(hw: Spec) -> int:
    return hw["system.nodes"] * hw["node.packages"] * hw["package.dies"]


def hardware_derived(hw: Spec) -> dict[str, float]:
    out: dict[str, float] = {}
    bw = hw["die.hbm_bandwidth_bytes_per_s"]
    for dt in DTYPE_BYTES:
        key = f"die.{dt}_matrix_flops_per_s"
        if hw.has(key):
            out[f"derived.{dt}_matrix_flops_per_s_per_package"] = hw[key] * hw["package.dies"]
            out[f"derived.{dt}_ridge_flops_per_byte"] = hw[key] / bw
    out["derived.hbm_capacity_bytes_per_package"] = hw["die.hbm_capacity_bytes"] * hw["package.dies"]
    out["derived.hbm_bandwidth_bytes_per_s_per_package"] = bw * hw["package.dies"]
    out["derived.scaleup_bandwidth_bytes_per_s_per_die"] = die_scaleup_bandwidth_bytes_per_s(hw)
    out["derived.scaleup_bandwidth_bytes_per_s_per_package"] = die_scaleup_bandwidth_bytes_per_s(hw) * hw["package.dies"]
    out["derived.scaleout_bandwidth_bytes_per_s_per_die"] = hw["scaleout.bandwidth_bytes_per_s_per_die"]
    out["derived.packages"] = hw["system.nodes"] * hw["node.packages"]
    out["derived.dies"] = dies_per_system(hw)
    out["derived.cpus"] = hw["system.nodes"] * hw["node.cpus"]
    # Prefill matrix rate: the clock held under load (x a fitted duty where the file has one) and
    # the share of matrix cores left to compute while communication holds its own.
    out["derived.prefill_matrix_rate_frac"] = prefill_matrix_rate_frac(hw)
    out["derived.prefill_compute_matrix_core_frac"] = 1.0 - hw["overlap.prefill_comm_matrix_cores"] / hw["die.matrix_cores"]
    return out


# ---- model shapes -------------------------------------------------------------------------------
#
# One formula per attention kind, chosen by `attention.kind` (mla, mla_sparse, gqa); element counts
# of weight matrices as (rows x cols). A model without a [moe] table is dense.


def is_gqa(m: Spec) -> bool:
    return m["attention.kind"] == "gqa"


def is_sparse(m: Spec) -> bool:
    return m["attention.kind"] == "mla_sparse"


def has_moe(m: Spec) -> bool:
    return m.has("moe.n_routed_experts")


def moe_shape(m: Spec) -> dict[str, int]:
    """Routed experts E, shared experts S, top-k k, groups; a dense model has none (plain top-k shape)."""
    if not has_moe(m):
        return {"E": 0, "S": 0, "k": 0, "n_group": 1, "topk_group": 1, "inter": 0}
    return {"E": m["moe.n_routed_experts"], "S": m["moe.n_shared_experts"], "k": m["moe.num_experts_per_tok"],
            "n_group": m["moe.n_group"], "topk_group": m["moe.topk_group"], "inter": m["moe.moe_intermediate_size"]}


def attention_params_per_layer(m: Spec) -> dict[str, int]:
    """Attention weight matrices of one layer, as (rows x cols) element counts.

    mla:        q_a = d x d_q, q_b = d_q x h (d_nope + d_rope), kv_a = d x (d_c + d_rope),
                kv_b = d_c x h (d_nope + d_v), o = h d_v x d          (DeepSeek-V2/V3 MLA)
    mla_sparse: mla plus the indexer: index_q = d_q x H_I d_I, index_k = d x d_I,
                index_weights = d x H_I                               (DeepSeek-V3.2 DSA)
    gqa:        q = d x h d_h, k = v = d x g d_h, o = h d_h x d, plus (h + 2g) d_h biases when
                the projections carry them and 2 d_h QK-norm weights  (g: key-value heads)
    """
    d = m["arch.hidden_size"]
    h = m["attention.num_attention_heads"]
    if is_gqa(m):
        g, hd = m["attention.num_key_value_heads"], m["attention.head_dim"]
        out = {"q": d * h * hd, "k": d * g * hd, "v": d * g * hd, "o": h * hd * d}
        if m.get("attention.qkv_bias", 0):
            out["qkv_bias"] = (h + 2 * g) * hd
        if m.get("attention.qk_norm", 0):
            out["qk_norm"] = 2 * hd
        return out
    qr, kvr = m["attention.q_lora_rank"], m["attention.kv_lora_rank"]
    nope, rope, v = m["attention.qk_nope_head_dim"], m["attention.qk_rope_head_dim"], m["attention.v_head_dim"]
    out = {
        "q_a": d * qr,
        "q_b": qr * h * (nope + rope),
        "kv_a": d * (kvr + rope),
        "kv_b": kvr * h * (nope + v),
        "o": h * v * d,
    }
    if is_sparse(m):
        hi, di = m["attention.index_n_heads"], m["attention.index_head_dim"]
        out.update({"index_q": qr * hi * di, "index_k": d * di, "index_weights": d * hi})
    return out


def attention_params_per_die(m: Spec, attn_tp, phase: str = "decode"):
    """Attention weights of one layer held by one die of a tensor-parallel group of `attn_tp` dies.

    mla (decode): whole q_a, kv_a (and the indexer); q_b, kv_b, o split over the group.
    mla (prefill, SP-TP-SP): whole q_a, kv_a, o (and the indexer); q_b, kv_b split.
    gqa (both phases, Megatron-style): q and o split; k, v split over min(tp, g) dies: key-value
    heads are replicated when fewer than the group (g / tp < 1 -> one head per die).
    """
    p = attention_params_per_layer(m)
    tp = np.asarray(attn_tp, dtype=float)
    if is_gqa(m):
        g = m["attention.num_key_value_heads"]
        return (p["q"] + p["o"] + p.get("qkv_bias", 0)) / tp + (p["k"] + p["v"]) * (np.maximum(g / tp, 1.0) / g) + p.get("qk_norm", 0)
    split = ("q_b", "kv_b", "o") if phase == "decode" else ("q_b", "kv_b")
    whole = sum(v for k, v in p.items() if k not in split)
    return whole + sum(p[k] for k in split) / tp


def heads_fit_tp(m: Spec, attn_tp):
    """Attention TP splits the query heads evenly over its dies."""
    return np.mod(m["attention.num_attention_heads"], np.asarray(attn_tp, dtype=float)) == 0


def dense_ffn_tp(m: Spec, attn_tp):
    """Dies the dense FFN is split over: a dense model's FFN shares the attention TP group
    (Megatron-style tensor parallelism); an MoE model's leading dense layers stay replicated."""
    return 1 if has_moe(m) else np.asarray(attn_tp, dtype=float)


def expert_params(m: Spec) -> int:
    """One SwiGLU expert: gate, up and down matrices."""
    return 3 * m["arch.hidden_size"] * moe_shape(m)["inter"]


def dense_ffn_params(m: Spec) -> int:
    return 3 * m["arch.hidden_size"] * m["arch.intermediate_size"]


def gate_params(m: Spec) -> int:
    return m["arch.hidden_size"] * moe_shape(m)["E"]


def embedding_params(m: Spec) -> int:
    return m["arch.vocab_size"] * m["arch.hidden_size"]


def mtp_extra_params(m: Spec) -> int:
    """The MTP module's own projection (2d -> d); its layer is counted as a MoE layer."""
    d = m["arch.hidden_size"]
    return 2 * d * d


def layer_counts(m: Spec) -> tuple[int, int]:
    """(dense layers, MoE layers) of the main model; a dense model has no MoE layers."""
    dense = m["arch.first_k_dense_replace"] if has_moe(m) else m["arch.num_hidden_layers"]
    return dense, m["arch.num_hidden_layers"] - dense


def kv_elements_per_token_per_layer(m: Spec) -> int:
    """Cached elements per token and layer.

    mla, mla_sparse: the latent and the shared RoPE key, d_c + d_rope; gqa: K and V of every
    key-value head, 2 g d_h. (The sparse indexer's key is counted in `kv_bytes_per_token_per_layer`.)
    """
    if is_gqa(m):
        return 2 * m["attention.num_key_value_heads"] * m["attention.head_dim"]
    return m["attention.kv_lora_rank"] + m["attention.qk_rope_head_dim"]


def kv_bytes_per_token_per_layer(m: Spec):
    """KV-cache bytes per token and layer: the elements above at precision.kv_cache, plus for
    mla_sparse one indexer key of d_I elements at precision.index_cache (scales not counted)."""
    b = kv_elements_per_token_per_layer(m) * DTYPE_BYTES[m["precision.kv_cache"]]
    if is_sparse(m):
        b = b + m["attention.index_head_dim"] * DTYPE_BYTES[m["precision.index_cache"]]
    return b


def kv_share_per_die(m: Spec, attn_tp):
    """Fraction of a request's KV cache one die of the attention TP group holds: MLA's latent is
    shared by all heads, so every die keeps all of it (1); GQA keeps its key-value heads,
    max(g / tp, 1) / g."""
    tp = np.asarray(attn_tp, dtype=float)
    if is_gqa(m):
        g = m["attention.num_key_value_heads"]
        return np.maximum(g / tp, 1.0) / g
    return np.ones_like(tp)


def attention_activation_elements_per_token(m: Spec) -> int:
    """Widest attention intermediate per token: mla (un-absorbed) q, k, v and output per head,
    h (2 (d_nope + d_rope) + 2 d_v); gqa: q and output per head plus k and v, 2 (h + g) d_h."""
    h = m["attention.num_attention_heads"]
    if is_gqa(m):
        return 2 * (h + m["attention.num_key_value_heads"]) * m["attention.head_dim"]
    return h * (2 * (m["attention.qk_nope_head_dim"] + m["attention.qk_rope_head_dim"]) + 2 * m["attention.v_head_dim"])


def attention_flops_per_context_token(m: Spec, phase: str) -> int:
    """Attention-core FLOPs per query token per attended context token, one layer.

    mla decode (absorbed): 2 h (d_c + d_rope + d_c); mla prefill (un-absorbed): 2 h (d_nope + d_rope + d_v);
    gqa: 2 h d_h (scores) + 2 h d_h (values) = 4 h d_h. mla_sparse as mla, over min(context, top-k) tokens.
    """
    h = m["attention.num_attention_heads"]
    if is_gqa(m):
        return 4 * h * m["attention.head_dim"]
    kvr, rope = m["attention.kv_lora_rank"], m["attention.qk_rope_head_dim"]
    if phase == "decode":
        return 2 * h * (kvr + rope + kvr)
    return 2 * h * (m["attention.qk_nope_head_dim"] + rope + m["attention.v_head_dim"])


def indexer_flops_per_context_token(m: Spec) -> int:
    """mla_sparse: the indexer scores every cached token with H_I heads of width d_I, 2 H_I d_I
    FLOPs per query token per context token and layer (0 for the other kinds)."""
    return 2 * m["attention.index_n_heads"] * m["attention.index_head_dim"] if is_sparse(m) else 0


def stated_count(m: Spec, total: float, emb: float, mtp: float) -> float:
    """A parameter count the way the model's authors count it (stated.counts_* flags; all counted
    when the file does not say)."""
    return (total - emb * (1 - m.get("stated.counts_embedding", 1)) - emb * (1 - m.get("stated.counts_lm_head", 1))
            + mtp * m.get("stated.counts_mtp", 0))


def model_derived(m: Spec) -> dict[str, float]:
    attn = sum(attention_params_per_layer(m).values())
    dense_layers, moe_layers = layer_counts(m)
    sh = moe_shape(m)
    routed = sh["E"] * expert_params(m)
    shared = sh["S"] * expert_params(m)
    active_moe = (sh["k"] + sh["S"]) * expert_params(m)
    emb = embedding_params(m)
    layers = m["arch.num_hidden_layers"]
    total = 2 * emb + layers * attn + dense_layers * dense_ffn_params(m) + moe_layers * (routed + shared + gate_params(m))
    active_no_emb = layers * attn + dense_layers * dense_ffn_params(m) + moe_layers * (active_moe + gate_params(m))
    n_mtp = m["mtp.num_nextn_predict_layers"]
    ffn, active_ffn = (routed + shared + gate_params(m), active_moe + gate_params(m)) if has_moe(m) else (dense_ffn_params(m),) * 2
    mtp = n_mtp * (mtp_extra_params(m) + attn + ffn)
    mtp_active = n_mtp * (mtp_extra_params(m) + attn + active_ffn)
    kvpl = kv_bytes_per_token_per_layer(m)
    out = {
        "derived.params_total": total,
        "derived.params_mtp_module": mtp,
        "derived.params_total_with_mtp": total + mtp,
        "derived.params_activated_per_token": active_no_emb + 2 * emb,
        "derived.params_activated_per_token_no_embedding": active_no_emb + emb,
        "derived.params_attention_per_layer": attn,
        "derived.params_per_expert": expert_params(m),
        "derived.kv_cache_bytes_per_token_per_layer": kvpl,
        "derived.kv_cache_bytes_per_token": kvpl * layers,
        "derived.matmul_flops_per_token": 2 * (active_no_emb + emb),
        "derived.decode_attention_flops_per_token_per_context_token": attention_flops_per_context_token(m, "decode") * layers,
        "derived.prefill_attention_flops_per_token_per_context_token": attention_flops_per_context_token(m, "prefill") * layers,
        "derived.dense_layers": dense_layers,
        "derived.moe_layers": moe_layers,
    }
    if is_sparse(m):
        out["derived.indexer_flops_per_token_per_context_token"] = indexer_flops_per_context_token(m) * layers
    if m.has("stated.params_total"):
        out["derived.params_total_as_stated"] = stated_count(m, total, emb, mtp)
        out["derived.params_total_vs_stated"] = out["derived.params_total_as_stated"] / m["stated.params_total"]
    if m.has("stated.params_activated"):
        out["derived.params_activated_as_stated"] = stated_count(m, active_no_emb + 2 * emb, emb, mtp_active)
        out["derived.params_activated_vs_stated"] = out["derived.params_activated_as_stated"] / m["stated.params_activated"]
    return out


class _AnyValues:
    """Stands in for a spec holding every key: 1 for numbers, a data type for precision keys."""

    def __getitem__(self, key: str):
        return next(iter(DTYPE_BYTES)) if key.startswith("precision.") else 1

    def has(self, key: str) -> bool:
        return True

    def get(self, key: str, default=None):
        return self[key]


def derived_key_names() -> set[str]:
    """Every `derived.*` key `show` can print, for any hardware or model."""
    return set(hardware_derived(_AnyValues())) | set(model_derived(_AnyValues()))
