"""Golden figures derived from the shipped files, checked against published numbers.

Model: DeepSeek-V3 model card / README_WEIGHTS (671B total, 37B activated per token, MTP module
about 11.5B unique parameters) and config_671B.json. Hardware: CloudMatrix384 paper and the
msmodeling device profile as cited in hardware/cloudmatrix384.toml.
"""

from __future__ import annotations

import pytest

from cmperf.specs.derived import (
    attention_params_per_layer,
    dies_per_system,
    expert_params,
    hardware_derived,
    matrix_peak_flops_per_s,
    model_derived,
)
from cmperf.errors import SpecError
from cmperf.specs.loader import load_hardware, load_model


@pytest.fixture(scope="module")
def r1():
    return model_derived(load_model("deepseek-r1"))


@pytest.fixture(scope="module")
def hwd():
    return hardware_derived(load_hardware())


def rel_err(got: float, want: float) -> float:
    return abs(got - want) / want


# ---- model ---------------------------------------------------------------------------------------


def test_total_params_671b(r1):
    assert rel_err(r1["derived.params_total"], 671e9) < 0.005, r1["derived.params_total"]


def test_activated_params_37b(r1):
    assert rel_err(r1["derived.params_activated_per_token"], 37e9) < 0.03, r1["derived.params_activated_per_token"]


def test_mtp_module_11_5b(r1):
    assert rel_err(r1["derived.params_mtp_module"], 11.5e9) < 0.03, r1["derived.params_mtp_module"]
    assert r1["derived.params_total_with_mtp"] == r1["derived.params_total"] + r1["derived.params_mtp_module"]


def test_kv_cache_bytes_per_token_exact(r1):
    assert r1["derived.kv_cache_bytes_per_token"] == 70272 == (512 + 64) * 2 * 61
    assert r1["derived.kv_cache_bytes_per_token_per_layer"] == 1152


def test_shape_components_exact(r1):
    m = load_model("deepseek-r1")
    d, h = 7168, 128
    assert expert_params(m) == r1["derived.params_per_expert"] == 3 * d * 2048 == 44_040_192
    attn = attention_params_per_layer(m)
    assert attn == {
        "q_a": d * 1536,
        "q_b": 1536 * h * (128 + 64),
        "kv_a": d * (512 + 64),
        "kv_b": 512 * h * (128 + 128),
        "o": h * 128 * d,
    }
    assert r1["derived.params_attention_per_layer"] == sum(attn.values()) == 187_105_280
    assert (r1["derived.dense_layers"], r1["derived.moe_layers"]) == (3, 58)


def test_activated_params_breakdown(r1):
    """Attention + dense FFN + (8 routed + 1 shared) experts + gate over all layers, plus embedding and head."""
    d, emb = 7168, 129280 * 7168
    attn, expert = r1["derived.params_attention_per_layer"], r1["derived.params_per_expert"]
    body = 61 * attn + 3 * 3 * d * 18432 + 58 * (9 * expert + d * 256)
    assert r1["derived.params_activated_per_token"] == body + 2 * emb
    assert r1["derived.params_activated_per_token_no_embedding"] == body + emb  # keeps the LM head matmul
    assert r1["derived.matmul_flops_per_token"] == 2 * (body + emb)


def test_total_params_breakdown(r1):
    d, emb = 7168, 129280 * 7168
    attn, expert = r1["derived.params_attention_per_layer"], r1["derived.params_per_expert"]
    total = 2 * emb + 61 * attn + 3 * 3 * d * 18432 + 58 * (257 * expert + d * 256)
    assert r1["derived.params_total"] == total
    assert r1["derived.params_mtp_module"] == 2 * d * d + attn + 257 * expert + d * 256


def test_attention_flops(r1):
    assert r1["derived.decode_attention_flops_per_token_per_context_token"] == 2 * 128 * (576 + 512) * 61
    assert r1["derived.prefill_attention_flops_per_token_per_context_token"] == 2 * 128 * (128 + 64 + 128) * 61


def test_deepseek_v3_identical(r1):
    assert model_derived(load_model("deepseek-v3")) == r1
    assert dict(load_model("deepseek-v3").values) == dict(load_model("deepseek-r1").values)


def test_kv_bytes_follow_precision():
    m = load_model("deepseek-r1").with_values({"precision.kv_cache": "int8"})
    assert model_derived(m)["derived.kv_cache_bytes_per_token"] == 70272 // 2
    m = m.with_values({"precision.kv_cache": "fp32"})
    assert model_derived(m)["derived.kv_cache_bytes_per_token"] == 70272 * 2


def test_no_mtp_means_zero_mtp_params():
    m = load_model("deepseek-r1").with_values({"mtp.num_nextn_predict_layers": 0})
    d = model_derived(m)
    assert d["derived.params_mtp_module"] == 0
    assert d["derived.params_total_with_mtp"] == d["derived.params_total"]


# ---- hardware ------------------------------------------------------------------------------------


def test_int8_per_package(hwd):
    assert hwd["derived.int8_matrix_flops_per_s_per_package"] == pytest.approx(1.504e15, rel=1e-12)


def test_int8_ridge_point(hwd):
    assert hwd["derived.int8_ridge_flops_per_byte"] == pytest.approx(7.52e14 / 1.6e12, rel=1e-12)
    assert hwd["derived.int8_ridge_flops_per_byte"] == pytest.approx(470.0, rel=1e-12)
    assert hwd["derived.bf16_ridge_flops_per_byte"] == pytest.approx(3.539e14 / 1.6e12, rel=1e-12)


def test_ub_bandwidth_per_die(hwd):
    assert hwd["derived.scaleup_bandwidth_bytes_per_s_per_die"] == pytest.approx(196e9, rel=1e-12)
    assert hwd["derived.scaleup_bandwidth_bytes_per_s_per_package"] == pytest.approx(392e9, rel=1e-12)


def test_system_counts(hwd):
    assert hwd["derived.dies"] == 768 == dies_per_system(load_hardware())
    assert hwd["derived.packages"] == 384
    assert hwd["derived.cpus"] == 192


def test_per_package_memory(hwd):
    assert hwd["derived.hbm_capacity_bytes_per_package"] == pytest.approx(128e9, rel=1e-12)
    assert hwd["derived.hbm_bandwidth_bytes_per_s_per_package"] == pytest.approx(3.2e12, rel=1e-12)


def test_only_present_dtypes_are_derived(hwd):
    assert "derived.fp8_matrix_flops_per_s_per_package" not in hwd  # the 910C file gives no FP8 peak
    hw = load_hardware()
    assert matrix_peak_flops_per_s(hw, "int8") == 7.52e14
    with pytest.raises(SpecError, match="no fp8 matrix engine"):
        matrix_peak_flops_per_s(hw, "fp8")


def test_derived_follow_overrides():
    hw = load_hardware().with_values({"die.hbm_bandwidth_bytes_per_s": 2e12, "scaleup.links_per_die": 8})
    d = hardware_derived(hw)
    assert d["derived.int8_ridge_flops_per_byte"] == pytest.approx(376.0)
    assert d["derived.scaleup_bandwidth_bytes_per_s_per_die"] == pytest.approx(224e9)
