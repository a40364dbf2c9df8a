"""Every shipped model against what its authors state, and its KV-cache bytes per token by hand.

Parameter counts follow each file's [stated] table: what the authors' figure counts (input
embedding, output layer, MTP modules) is data there, with the source and, where the authors do not
say, kind = "assumed". Tolerance: 2% (the figures are rounded to two or three digits).
"""

from __future__ import annotations

import pytest

from cmperf.specs.derived import model_derived
from cmperf.specs.loader import known_names, load_model

NEW_MODELS = ["deepseek-v3.2", "glm-4.5", "kimi-k2", "llama-3.1-405b", "minimax-m2", "qwen3-235b-a22b", "qwen3-30b-a3b"]


def test_every_new_model_is_shipped():
    assert set(NEW_MODELS) <= set(known_names("model"))


@pytest.mark.parametrize("name", NEW_MODELS)
def test_parameters_within_2_percent_of_the_authors(name):
    m = load_model(name)
    d = model_derived(m)
    for what in ("total", "activated"):
        got, want = d[f"derived.params_{what}_as_stated"], m[f"stated.params_{what}"]
        assert abs(got / want - 1.0) <= 0.02, (name, what, got, want)
        assert d[f"derived.params_{what}_vs_stated"] == pytest.approx(got / want)


def test_what_is_counted_follows_the_flags():
    """GLM-4.5 counts its MTP layer and neither embedding nor output layer (technical report Table 1)."""
    m = load_model("glm-4.5")
    d = model_derived(m)
    emb = 151552 * 5120
    assert d["derived.params_total_as_stated"] == d["derived.params_total"] - 2 * emb + d["derived.params_mtp_module"]


def test_dense_model_activates_everything():
    d = model_derived(load_model("llama-3.1-405b"))
    assert d["derived.params_activated_per_token"] == d["derived.params_total"]
    assert (d["derived.dense_layers"], d["derived.moe_layers"]) == (126, 0)


# ---- KV-cache bytes per token, by hand: one case per attention kind --------------------------------

KV_BY_HAND = {
    # mla: latent d_c + RoPE key d_rope, BF16, 61 layers
    "kimi-k2": (512 + 64) * 2 * 61,
    # mla_sparse: the MLA cache plus one 128-wide indexer key per token at the index precision (INT8 here)
    "deepseek-v3.2": ((512 + 64) * 2 + 128 * 1) * 61,
    # gqa: K and V of every key-value head: 2 x g x d_h x 2 bytes x layers
    "qwen3-235b-a22b": 2 * 4 * 128 * 2 * 94,
    "qwen3-30b-a3b": 2 * 4 * 128 * 2 * 48,
    "glm-4.5": 2 * 8 * 128 * 2 * 92,
    "minimax-m2": 2 * 8 * 128 * 2 * 62,
    "llama-3.1-405b": 2 * 8 * 128 * 2 * 126,
}


@pytest.mark.parametrize("name", sorted(KV_BY_HAND))
def test_kv_cache_bytes_per_token_by_hand(name):
    assert model_derived(load_model(name))["derived.kv_cache_bytes_per_token"] == KV_BY_HAND[name]


def test_kv_bytes_follow_the_index_precision():
    m = load_model("deepseek-v3.2").with_values({"precision.index_cache": "bf16"})
    assert model_derived(m)["derived.kv_cache_bytes_per_token"] == ((512 + 64) * 2 + 128 * 2) * 61


def test_gqa_attention_parameters_by_hand():
    """GLM-4.5: q and o 5120 x 96 x 128, k and v 5120 x 8 x 128, q/k/v biases, QK-norm weights."""
    from cmperf.specs.derived import attention_params_per_layer

    p = attention_params_per_layer(load_model("glm-4.5"))
    assert p == {"q": 5120 * 12288, "k": 5120 * 1024, "v": 5120 * 1024, "o": 12288 * 5120,
                 "qkv_bias": (96 + 16) * 128, "qk_norm": 2 * 128}


def test_indexer_parameters_by_hand():
    from cmperf.specs.derived import attention_params_per_layer

    p = attention_params_per_layer(load_model("deepseek-v3.2"))
    assert (p["index_q"], p["index_k"], p["index_weights"]) == (1536 * 64 * 128, 7168 * 128, 7168 * 64)
