"""Unit tests of the GPU-side cost terms: per-data-type GEMM efficiency, small-M padding of swap-AB
kernels, the GEMM kernel's fixed time, the prefill matrix rate (sustained clock), and single-batch
decode overlap. Expected values are written out from the docstring formulas and the numbers in
hardware/h100.toml / h800.toml, never by calling the function under test a second time.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from cmperf.compose.decode import evaluate_decode
from cmperf.compose.ops import Die
from cmperf.costs.elementwise import elementwise_cost
from cmperf.costs.roofline import COMPUTE, MEMORY, matmul_efficiency, padded_rows
from cmperf.specs import derived as dv
from cmperf.specs.loader import load_hardware, load_model
from cmperf.errors import SpecError
from cmperf.evaluation import default_inputs


def DecodeInputs(**kw):  # noqa: N802  (the paper's decode inputs with some fields changed)
    return default_inputs("decode", **kw)

REPO = Path(__file__).resolve().parents[2]
NVIDIA = ("h800", "h100", "h20", "h200", "b200", "gb200-nvl72")
REL = 1e-12


@pytest.fixture(scope="module")
def h100():
    return load_hardware(str(REPO / "hardware" / "h100.toml"))


@pytest.fixture(scope="module")
def r1():
    return load_model("deepseek-r1")


# ---- small-M padding ------------------------------------------------------------------------------


def test_padded_rows_swap_ab_pads_small_m_to_the_small_tile():
    # t = 64, t_s = 8: M <= 64 pads to a multiple of 8, larger M to a multiple of 64.
    got = padded_rows([1, 8, 9, 63, 64, 65, 100, 128], 64, 8)
    np.testing.assert_array_equal(got, [8, 8, 16, 64, 64, 128, 128, 128])
    # Without a small-M layout the engine tile applies everywhere (the old behaviour).
    np.testing.assert_array_equal(padded_rows([1, 63, 65], 64), [64, 64, 128])


def test_matmul_efficiency_with_the_small_tile_hand_case():
    # e = 0.7 x 12 / 16 x 800 / (800 + 200) = 0.42
    assert float(matmul_efficiency(12, 800, 64, 0.7, 200.0, 8)) == pytest.approx(0.42, rel=REL)
    # Padded to 64 instead: 0.7 x 12 / 64 x 0.8 = 0.105
    assert float(matmul_efficiency(12, 800, 64, 0.7, 200.0)) == pytest.approx(0.105, rel=REL)


def test_small_tile_must_divide_the_engine_tile(h100):
    with pytest.raises(SpecError, match="must divide"):
        h100.with_values({"die.matrix_small_m_tile_rows": 24})


# ---- per-data-type efficiency ---------------------------------------------------------------------


def test_per_dtype_efficiency_falls_back_to_the_generic_key(h100):
    assert dv.matmul_compute_frac(h100, "bf16") == h100["efficiency.bf16_matmul_compute_frac"]
    assert not h100.has("efficiency.fp8_matmul_compute_frac")
    assert dv.matmul_compute_frac(h100, "fp8") == h100["efficiency.matmul_compute_frac"]
    assert dv.matmul_compute_frac(h100, "int8") == h100["efficiency.matmul_compute_frac"]
    cm = load_hardware("cloudmatrix384")
    assert dv.matmul_compute_frac(cm, "bf16") == cm["efficiency.matmul_compute_frac"]


def test_compute_bound_gemm_uses_its_dtypes_efficiency_hand_case(h100):
    # M = N = 4096, K = 7168 on the whole H100, BF16 then FP8.
    m, n, k = 4096.0, 4096.0, 7168.0
    k0 = h100["efficiency.matmul_k_overhead_elements"]
    tiles = math.ceil(m / h100["die.matrix_block_rows"]) * math.ceil(n / h100["die.matrix_block_cols"])  # 64 x 43
    cores = h100["die.matrix_cores"]
    occ = tiles / (math.ceil(tiles / cores) * cores)
    fixed = h100["efficiency.matmul_kernel_fixed_s"] + h100["overhead.op_latency_s"]
    for dtype, peak, e in (("bf16", h100["die.bf16_matrix_flops_per_s"], h100["efficiency.bf16_matmul_compute_frac"]),
                           ("fp8", h100["die.fp8_matrix_flops_per_s"], h100["efficiency.matmul_compute_frac"])):
        want = 2 * m * n * k / (peak * e * k / (k + k0) * occ) + fixed
        op = Die(h100).matmul("g", "s", "s", m, k, n, dtype, dtype)
        assert float(op.time_s) == pytest.approx(want, rel=REL)
        assert int(op.bound) == COMPUTE


def test_memory_bound_small_m_gemm_pays_the_kernel_fixed_time_hand_case(h100):
    # M = 1, N = 4096, K = 7168, FP8: the weights stream at min(W_hbm e_hbm, min(tiles, SMs) W_core).
    m, n, k = 1.0, 4096.0, 7168.0
    tiles = math.ceil(m / h100["die.matrix_block_rows"]) * math.ceil(n / h100["die.matrix_block_cols"])  # 43
    bw = min(h100["die.hbm_bandwidth_bytes_per_s"] * h100["efficiency.hbm_frac"], min(tiles, h100["die.matrix_cores"]) * h100["die.core_bandwidth_bytes_per_s"])
    bytes_ = k * n * 1 + m * (k * 1 + n * 2)
    want = bytes_ / bw + h100["efficiency.matmul_kernel_fixed_s"] + h100["overhead.op_latency_s"]
    op = Die(h100).matmul("g", "s", "s", m, k, n, "fp8", "fp8")
    assert float(op.time_s) == pytest.approx(want, rel=REL)
    assert int(op.bound) == MEMORY


def test_a_file_without_the_fixed_time_has_none():
    cm = load_hardware("cloudmatrix384")
    assert not cm.has("efficiency.matmul_kernel_fixed_s")
    assert dv.matmul_kernel_fixed_s(cm) == 0.0


# ---- prefill: what replaced the duty factor on the GPU files ---------------------------------------


@pytest.mark.parametrize("name", NVIDIA)
def test_no_gpu_file_carries_the_cloudmatrix_duty_factor(name):
    text = (REPO / "hardware" / f"{name}.toml").read_text(encoding="utf-8")
    assert "prefill_matrix_duty_frac" not in text
    hw = load_hardware(str(REPO / "hardware" / f"{name}.toml"))
    assert not hw.has("efficiency.prefill_matrix_duty_frac")
    # What replaced it: the clock held under load, and the SMs communication holds.
    assert hw.has("die.sustained_matrix_clock_frac")
    assert 0 < hw["overlap.prefill_comm_matrix_cores"] < hw["die.matrix_cores"]


def test_prefill_matrix_rate_is_clock_times_duty():
    h800 = load_hardware(str(REPO / "hardware" / "h800.toml"))
    assert dv.prefill_matrix_rate_frac(h800) == pytest.approx(865 / 989, rel=1e-3)  # the H800's 865 of 989 TFLOPS
    cm = load_hardware("cloudmatrix384")
    assert dv.prefill_matrix_rate_frac(cm) == cm["efficiency.prefill_matrix_duty_frac"]  # fitted there, no clock key


def test_clock_fraction_scales_the_compute_bound_time(h100):
    m, n, k = 4096.0, 7168.0, 16384.0
    fixed = h100["efficiency.matmul_kernel_fixed_s"] + h100["overhead.op_latency_s"]
    t1 = float(Die(h100).matmul("g", "s", "s", m, k, n, "fp8", "fp8").time_s) - fixed
    t2 = float(Die(h100, clock_frac=0.5).matmul("g", "s", "s", m, k, n, "fp8", "fp8").time_s) - fixed
    assert t2 == pytest.approx(2 * t1, rel=REL)


# ---- decode: single-batch overlap ------------------------------------------------------------------


def _decode(hw, **kw):
    inp = DecodeInputs(devices=64, ep=64, batch=64, microbatches=1, mtp=0, **kw)
    return evaluate_decode(hw, load_model("deepseek-r1"), inp)


def _moe_layer_ops(res):
    return [op for op in res["ops"] if op.scope == "MoE layers"]


def test_single_batch_hides_communication_behind_the_shared_expert_hand_case(h100, r1):
    on = _decode(h100)
    off = _decode(h100.with_values({"overlap.decode_single_batch": 0}))
    L_moe = dv.layer_counts(r1)[1]
    serial = sum(float(op.time_s) for op in _moe_layer_ops(off))
    assert float(off["layer_wall_s"]["MoE layers"]) / L_moe == pytest.approx(serial, rel=1e-9)
    # hidden = min(dispatch + combine, shared expert) with t = 64 tokens through one shared expert.
    comm = sum(float(op.time_s) for op in _moe_layer_ops(on) if op.engine == "link")
    d, inter = r1["arch.hidden_size"], r1["moe.moe_intermediate_size"]
    die = Die(h100)
    t = 64.0 * r1["moe.n_shared_experts"]
    mm = r1["precision.matmul"]
    shared = float(die.matmul("a", "moe", "", t, d, 2 * inter, mm, mm).time_s + die.matmul("b", "moe", "", t, inter, d, mm, mm).time_s)
    swiglu = float(die.vector("c", "moe", "", t * 2 * inter, *elementwise_cost("swiglu_quant", r1)).time_s)
    want = serial - min(comm, shared + swiglu)
    assert float(on["layer_wall_s"]["MoE layers"]) / L_moe == pytest.approx(want, rel=1e-9)
    assert want < serial


def test_single_batch_overlap_leaves_two_microbatches_alone(h100):
    kw = dict(devices=64, ep=64, batch=64, microbatches=2, mtp=0)
    model = load_model("deepseek-r1")
    a = evaluate_decode(h100, model, DecodeInputs(**kw))
    b = evaluate_decode(h100.with_values({"overlap.decode_single_batch": 0}), model, DecodeInputs(**kw))
    assert float(a["step_s"]) == float(b["step_s"])
