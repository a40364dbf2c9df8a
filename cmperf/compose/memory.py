"""HBM budget of one die: weights, KV cache, communication buffers, activations, reserve.

Every term is affine in the batch, so the largest batch that fits has a closed form.
"""

from __future__ import annotations

import numpy as np

from cmperf.specs import derived as dv
from cmperf.specs.loader import Spec
from cmperf.units import DTYPE_BYTES


def weight_bytes_per_die(model: Spec, experts_per_rank, attn_tp, mtp_layers, phase="decode"):
    """Weights resident on one die.

    Attention and dense FFN are replicated per data-parallel rank (attention split over the TP
    group as `derived.attention_params_per_die` says for the phase); each rank holds its experts
    in every MoE layer (and the MTP module's); embedding and LM head are replicated.
    """
    wb = DTYPE_BYTES[model["precision.weights_resident"]]
    ab = DTYPE_BYTES[model["precision.activation"]]
    dense_layers, moe_layers = dv.layer_counts(model)
    layers = model["arch.num_hidden_layers"] + mtp_layers
    attn = dv.attention_params_per_die(model, attn_tp, phase) * layers * wb
    dense = dense_layers * dv.dense_ffn_params(model) * wb / dv.dense_ffn_tp(model, attn_tp)
    experts = np.asarray(experts_per_rank, float) * dv.expert_params(model) * (moe_layers + mtp_layers) * wb
    gate = dv.gate_params(model) * (moe_layers + mtp_layers) * ab
    emb = dv.embedding_params(model) * ab
    head = dv.embedding_params(model) * DTYPE_BYTES[model["precision.lm_head"]]
    mtp = mtp_layers * dv.mtp_extra_params(model) * wb
    return {"weights: attention": attn, "weights: dense FFN": dense, "weights: experts": experts,
            "weights: embedding, LM head, gate, MTP": emb + head + gate + mtp}


def kv_bytes_per_token(model: Spec, mtp_layers):
    layers = model["arch.num_hidden_layers"] + mtp_layers
    return dv.kv_bytes_per_token_per_layer(model) * layers


def comm_buffer_bytes(ep, tokens_per_die, experts_per_rank, top_k, dispatch_msg, combine_msg):
    """Dispatch/combine receive buffers.

        buffer = ranks x max_tokens x message,  max_tokens = tokens x min(top_k, experts per rank)
    Source: cm384 (about 225 MB + 420 MB = 645 MB per die at EP320 and 96 tokens per die).
    """
    max_tokens = np.asarray(tokens_per_die, float) * np.minimum(top_k, np.asarray(experts_per_rank, float))
    return np.asarray(ep, float) * max_tokens * (dispatch_msg + combine_msg)


def activation_bytes(model: Spec, tokens):
    """Working activations of one forward pass: the widest intermediate per token plus logits.

    Assumes: two such buffers live at once; logits in FP32.
    """
    ab = DTYPE_BYTES[model["precision.activation"]]
    per_token = 2 * ab * max(
        model["arch.hidden_size"] * 4,
        dv.attention_activation_elements_per_token(model),
        2 * model["arch.intermediate_size"],
    ) + 4 * model["arch.vocab_size"]
    return np.asarray(tokens, float) * per_token


def budget_rows(parts: dict, capacity: float) -> list[dict]:
    total = sum(parts.values())
    rows = [{"item": k, "gb_per_die": float(np.asarray(v).reshape(-1)[0]) / 1e9} for k, v in parts.items()]
    rows.append({"item": "total", "gb_per_die": float(np.asarray(total).reshape(-1)[0]) / 1e9})
    rows.append({"item": "HBM capacity", "gb_per_die": capacity / 1e9})
    return rows
