"""Decode attention against context length, one case per attention kind, and the per-kind checks.

mla and gqa: the core's FLOPs are exactly (FLOPs per context token) x L and its bytes affine in L,
so the attention stream grows linearly. mla_sparse: the core reads min(L, k) tokens, so beyond the
indexer's top-k it is flat, and all the growth is the indexer's (scores and top-k selection),
linear in L.
"""

from __future__ import annotations

import numpy as np
import pytest

from cmperf.compose.ops import Die
from cmperf.costs.attention import decode_ops, mean_attended
from cmperf.errors import SpecError
from cmperf.specs.derived import attention_flops_per_context_token, indexer_flops_per_context_token
from cmperf.specs.loader import load_hardware, load_model

HW = load_hardware("cloudmatrix384")
T, R = 96.0, 48.0  # tokens and requests per die


def ops_at(model, kv_len, tp=1.0):
    return {o.name: o for o in decode_ops(Die(HW), model, "MoE layers", T, R, np.asarray(kv_len, float), tp)}


def stream_s(model, kv_len):
    return sum(o.time_s for o in ops_at(model, kv_len).values())


@pytest.mark.parametrize("name,core", [("kimi-k2", "attention core (absorbed MLA)"), ("qwen3-235b-a22b", "attention core (GQA)"),
                                       ("llama-3.1-405b", "attention core (GQA)")])
def test_dense_kinds_grow_linearly(name, core):
    m = load_model(name)
    L = np.array([8192.0, 16384.0, 24576.0, 32768.0])
    o = ops_at(m, L)[core]
    np.testing.assert_allclose(o.flops, attention_flops_per_context_token(m, "decode") * L * T, rtol=1e-12)
    slope = np.diff(o.hbm_bytes)
    np.testing.assert_allclose(slope, slope[0], rtol=1e-12)  # bytes affine in L
    t = stream_s(m, L)
    assert np.all(np.diff(t) > 0)
    np.testing.assert_allclose(np.diff(t), np.diff(t)[0], rtol=1e-9)  # linear


def test_sparse_core_is_flat_past_top_k_and_the_indexer_grows():
    m = load_model("deepseek-v3.2")
    k = m["attention.index_topk"]
    L = np.array([k / 2, k, 2.0 * k, 4.0 * k, 8.0 * k])
    ops = ops_at(m, L)
    core = ops["attention core (absorbed MLA, top-k tokens)"]
    assert core.flops[0] < core.flops[1]  # below k: grows with L
    np.testing.assert_allclose(core.flops[1:], core.flops[1], rtol=1e-12)  # past k: flat
    np.testing.assert_allclose(core.hbm_bytes[1:], core.hbm_bytes[1], rtol=1e-12)
    scores = ops["indexer scores (every cached token)"]
    np.testing.assert_allclose(scores.flops, indexer_flops_per_context_token(m) * L * T, rtol=1e-12)
    # Past k, everything that grows is the indexer's: scores and top-k selection.
    growing = {"indexer scores (every cached token)", "indexer top-k selection"}
    rest = sum(o.time_s for n, o in ops.items() if n not in growing)
    np.testing.assert_allclose(rest[1:], rest[1], rtol=1e-12)
    t = stream_s(m, L)
    assert np.all(np.diff(t[1:]) > 0)
    np.testing.assert_allclose(np.diff(t[2:]) / np.diff(L[2:]), np.diff(t[2:])[0] / np.diff(L[2:])[0], rtol=1e-9)


def test_sparse_is_cheaper_than_dense_mla_at_long_context():
    sparse = load_model("deepseek-v3.2")
    dense = sparse.with_values({"attention.index_topk": 10**6})
    L = np.array([65536.0])
    core = "attention core (absorbed MLA, top-k tokens)"
    assert ops_at(sparse, L)[core].time_s < ops_at(dense, L)[core].time_s


def test_mean_attended_with_top_k():
    assert mean_attended(0.0, 100.0) == pytest.approx(50.5)
    assert mean_attended(0.0, 4.0, 2.0) == pytest.approx((2 + 2 * 2) / 4)  # integral of min(x, 2) over [0, 4] / 4
    assert mean_attended(10.0, 10.0, 4.0) == 4.0


def test_gqa_tensor_parallel_splits_heads_and_replicates_kv_heads():
    """Qwen3-235B: 64 query / 4 KV heads. TP8 keeps 8 query heads and one (replicated) KV head per die."""
    m = load_model("qwen3-235b-a22b")
    from cmperf.specs.derived import attention_params_per_die, kv_share_per_die

    d, hd = 4096, 128
    assert float(attention_params_per_die(m, 8)) == pytest.approx(2 * d * 8 * hd + 2 * d * 1 * hd + 2 * hd)
    assert float(kv_share_per_die(m, 2)) == pytest.approx(0.5)
    assert float(kv_share_per_die(m, 8)) == pytest.approx(0.25)  # one of four heads: replicated past TP4
    core = ops_at(m, np.array([4096.0]), tp=8.0)["attention core (GQA)"]
    one = ops_at(m, np.array([4096.0]), tp=1.0)["attention core (GQA)"]
    # The group handles 8x the tokens over 1/8 of the query heads: the same FLOPs per die.
    np.testing.assert_allclose(core.flops, one.flops, rtol=1e-12)


@pytest.mark.parametrize("sets,match", [
    ({"attention.kind": "gqa"}, "needs key"),
    ({"attention.kind": "sliding"}, "expected one of mla, mla_sparse, gqa"),
    ({"attention.head_dim": "128"}, "do not apply to attention.kind = 'mla'"),
    ({"attention.index_topk": "2048"}, "do not apply"),
])
def test_kind_cross_checks(sets, match):
    with pytest.raises(SpecError, match=match):
        load_model("deepseek-r1").with_values(sets)


def test_gqa_cross_checks():
    m = load_model("qwen3-30b-a3b")
    with pytest.raises(SpecError, match="must divide"):
        m.with_values({"attention.num_key_value_heads": "5"})
    with pytest.raises(SpecError, match="rotary_dim exceeds"):
        m.with_values({"attention.rotary_dim": "256"})
    with pytest.raises(SpecError, match="expected 0 or 1"):
        m.with_values({"attention.qk_norm": "2"})


def test_moe_table_whole_or_absent(tmp_path):
    text = open(load_model("qwen3-30b-a3b").path).read()
    p = tmp_path / "partial.toml"
    p.write_text("\n".join(line for line in text.splitlines() if not line.startswith("n_group =")))
    with pytest.raises(SpecError, match="needs every MoE key; missing moe.n_group"):
        load_model(str(p))
    dense = open(load_model("llama-3.1-405b").path).read().replace("first_k_dense_replace = { value = 126", "first_k_dense_replace = { value = 3")
    p2 = tmp_path / "dense.toml"
    p2.write_text(dense)
    with pytest.raises(SpecError, match="dense model"):
        load_model(str(p2))
