"""Figures derived from a spec: per-die peaks, ridge points, parameter counts, KV bytes per token.

These are read-only: `show` prints them under `derived.*`, and `--set` refuses them.
"""

from __future__ import annotations

from cmperf.errors import SpecError
from cmperf.specs.loader import Spec
from cmperf.units import DTYPE_BYTES


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
    return out


# ---- model shapes -------------------------------------------------------------------------------


def attention_params_per_layer(m: Spec) -> dict[str, int]:
    """MLA weight matrices of one layer, as (rows x cols) element counts."""
    d = m["arch.hidden_size"]
    h = m["attention.num_attention_heads"]
    qr, kvr = m["attention.q_lora_rank"], m["attention.kv_lora_rank"]
    nope, rope, v = m["attention.qk_nope_head_dim"], m["attention.qk_rope_head_dim"], m["attention.v_head_dim"]
    return {
        "q_a": d * qr,
        "q_b": qr * h * (nope + rope),
        "kv_a": d * (kvr + rope),
        "kv_b": kvr * h * (nope + v),
        "o": h * v * d,
    }


def expert_params(m: Spec) -> int:
    """One SwiGLU expert: gate, up and down matrices."""
    return 3 * m["arch.hidden_size"] * m["moe.moe_intermediate_size"]


def dense_ffn_params(m: Spec) -> int:
    return 3 * m["arch.hidden_size"] * m["arch.intermediate_size"]


def gate_params(m: Spec) -> int:
    return m["arch.hidden_size"] * m["moe.n_routed_experts"]


def embedding_params(m: Spec) -> int:
    return m["arch.vocab_size"] * m["arch.hidden_size"]


def mtp_extra_params(m: Spec) -> int:
    """The MTP module's own projection (2d -> d); its layer is counted as a MoE layer."""
    d = m["arch.hidden_size"]
    return 2 * d * d


def layer_counts(m: Spec) -> tuple[int, int]:
    """(dense layers, MoE layers) of the main model."""
    dense = m["arch.first_k_dense_replace"]
    return dense, m["arch.num_hidden_layers"] - dense


def kv_elements_per_token_per_layer(m: Spec) -> int:
    """MLA caches the latent and the shared RoPE key: d_c + d_rope elements."""
    return m["attention.kv_lora_rank"] + m["attention.qk_rope_head_dim"]


def model_derived(m: Spec) -> dict[str, float]:
    attn = sum(attention_params_per_layer(m).values())
    dense_layers, moe_layers = layer_counts(m)
    routed = m["moe.n_routed_experts"] * expert_params(m)
    shared = m["moe.n_shared_experts"] * expert_params(m)
    active_moe = (m["moe.num_experts_per_tok"] + m["moe.n_shared_experts"]) * expert_params(m)
    emb = embedding_params(m)
    layers = m["arch.num_hidden_layers"]
    total = 2 * emb + layers * attn + dense_layers * dense_ffn_params(m) + moe_layers * (routed + shared + gate_params(m))
    active_no_emb = layers * attn + dense_layers * dense_ffn_params(m) + moe_layers * (active_moe + gate_params(m))
    n_mtp = m["mtp.num_nextn_predict_layers"]
    mtp = n_mtp * (mtp_extra_params(m) + attn + routed + shared + gate_params(m))
    kv_el = kv_elements_per_token_per_layer(m)
    kvb = DTYPE_BYTES[m["precision.kv_cache"]]
    h = m["attention.num_attention_heads"]
    return {
        "derived.params_total": total,
        "derived.params_mtp_module": mtp,
        "derived.params_total_with_mtp": total + mtp,
        "derived.params_activated_per_token": active_no_emb + 2 * emb,
        "derived.params_activated_per_token_no_embedding": active_no_emb + emb,
        "derived.params_attention_per_layer": attn,
        "derived.params_per_expert": expert_params(m),
        "derived.kv_cache_bytes_per_token_per_layer": kv_el * kvb,
        "derived.kv_cache_bytes_per_token": kv_el * kvb * layers,
        "derived.matmul_flops_per_token": 2 * (active_no_emb + emb),
        "derived.decode_attention_flops_per_token_per_context_token": 2 * h * (kv_el + m["attention.kv_lora_rank"]) * layers,
        "derived.prefill_attention_flops_per_token_per_context_token": 2
        * h
        * (m["attention.qk_nope_head_dim"] + m["attention.qk_rope_head_dim"] + m["attention.v_head_dim"])
        * layers,
        "derived.dense_layers": dense_layers,
        "derived.moe_layers": moe_layers,
    }


class _AnyValues:
    """Stands in for a spec holding every key: 1 for numbers, a data type for precision keys."""

    def __getitem__(self, key: str):
        return next(iter(DTYPE_BYTES)) if key.startswith("precision.") else 1

    def has(self, key: str) -> bool:
        return True


def derived_key_names() -> set[str]:
    """Every `derived.*` key `show` can print, for any hardware or model."""
    return set(hardware_derived(_AnyValues())) | set(model_derived(_AnyValues()))
