"""NVIDIA comparison hardware files: they load, they are internally consistent, the H800 efficiencies
reproduce the DeepGEMM table they were fitted to, and the cost model never branches on a hardware name
(what differs between systems is data, not code).
"""

from __future__ import annotations

import ast
import io
import math
import re
import tokenize
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import least_squares

from cmperf.evaluation import estimate as _estimate
from cmperf.specs.loader import load_hardware
from cmperf.specs.schema import HARDWARE_FIELDS


def estimate(phase, hardware=None, model=None, opts=None):
    """The result arrays of `cmperf.evaluation.estimate` for a phase, with fields given as a dict."""
    return _estimate(phase, hardware, model, **(opts or {})).result


REPO = Path(__file__).resolve().parents[2]
NVIDIA = ("h800", "h100", "h20", "h200", "b200", "gb200-nvl72")


def hw_path(name: str) -> str:
    return str(REPO / "hardware" / f"{name}.toml")


def load(name: str):
    return load_hardware(hw_path(name))


# ---- every file ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NVIDIA)
def test_file_loads_with_every_required_key(name):
    hw = load(name)
    assert hw.name == name
    missing = [k for k, f in HARDWARE_FIELDS.items() if not f.optional and not hw.has(k)]
    assert not missing


@pytest.mark.parametrize("name", NVIDIA)
def test_one_gpu_is_one_die_and_precisions_are_ordered(name):
    hw = load(name)
    assert hw["package.dies"] == 1
    assert not hw.has("package.die_to_die_bandwidth_bytes_per_s")
    assert hw["die.fp8_matrix_flops_per_s"] > hw["die.bf16_matrix_flops_per_s"]
    # Hopper/Blackwell dense INT8 equals dense FP8; FP16 equals BF16.
    assert hw["die.int8_matrix_flops_per_s"] == hw["die.fp8_matrix_flops_per_s"]
    assert hw["die.fp16_matrix_flops_per_s"] == hw["die.bf16_matrix_flops_per_s"]
    assert hw["die.matrix_cores"] == hw["die.vector_cores"]
    # Decode overlap time-slices the whole GPU.
    for key in ("decode_attention_matrix_cores", "decode_moe_matrix_cores"):
        assert hw[f"overlap.{key}"] == hw["die.matrix_cores"]
    for key in ("decode_attention_vector_cores", "decode_moe_vector_cores"):
        assert hw[f"overlap.{key}"] == hw["die.vector_cores"]


@pytest.mark.parametrize("name", NVIDIA)
def test_achieved_scaleup_does_not_exceed_link_peak(name):
    hw = load(name)
    peak = hw["scaleup.links_per_die"] * hw["scaleup.link_bandwidth_bytes_per_s"]
    for key in ("write_bandwidth_intra", "write_bandwidth_inter", "read_bandwidth_intra", "read_bandwidth_inter"):
        assert hw[f"scaleup.{key}_bytes_per_s"] <= peak
    assert hw["moe_comm.dispatch_bandwidth_bytes_per_s"] <= peak
    assert hw["moe_comm.combine_bandwidth_bytes_per_s"] <= peak


@pytest.mark.parametrize("name", NVIDIA)
def test_every_value_cites_a_declared_source(name):
    hw = load(name)
    for key, prov in hw.provenance.items():
        assert prov.source in hw.sources, key
    fitted_or_measured = {k for k, p in hw.provenance.items() if p.kind in ("fitted", "measured")}
    # Only the H800 (DeepSeek's kernel measurements) and the H100 (tests/data/h100-gemm-measured.csv)
    # have measurements of their own; the H100's fitted efficiencies all cite that file.
    if name == "h100":
        assert all(hw.provenance[k].source == "h100-gemm" for k in fitted_or_measured if k.startswith("efficiency."))
    elif name != "h800":
        assert not any(k.startswith("efficiency.") for k in fitted_or_measured)


def _size(name: str) -> int:
    hw = load(name)
    return 72 if hw["system.scaleup_domain_packages"] == 72 else 64


@pytest.mark.parametrize("name", NVIDIA)
def test_decode_estimate_is_finite_on_every_file(name):
    n = _size(name)
    res = estimate("decode", hw_path(name), "deepseek-r1", dict(devices=n, ep=n))
    for key in ("tokens_per_s_per_device", "tpot_s", "step_s"):
        v = float(np.asarray(res[key]).reshape(-1)[0])
        assert math.isfinite(v) and v > 0, (key, v)


@pytest.mark.parametrize("name", NVIDIA)
def test_prefill_estimate_is_finite_on_every_file(name):
    res = estimate("prefill", hw_path(name), "deepseek-r1", dict(devices=32, ep=32))
    v = float(np.asarray(res["tokens_per_s_per_device"]).reshape(-1)[0])
    assert math.isfinite(v) and v > 0


# ---- H800 against DeepSeek's own deployment -----------------------------------------------------


def test_h800_decode_deepseek_profile_setting_is_finite_and_positive():
    # DeepSeek's profile run: EP128, 128 requests per GPU, KV 4,096 (here without MTP).
    res = estimate("decode", hw_path("h800"), "deepseek-r1", dict(devices=128, ep=128, batch=128, kv_len=4096, mtp=0))
    tps = float(np.asarray(res["tokens_per_s_per_device"]).reshape(-1)[0])
    tpot = float(np.asarray(res["tpot_s"]).reshape(-1)[0])
    assert math.isfinite(tps) and tps > 0
    assert math.isfinite(tpot) and tpot > 0
    assert bool(np.asarray(res["fits"]).reshape(-1)[0])
    # Same order as DeepSeek's published ~1,850 output tokens/s per H800 (production, with MTP).
    assert 500 < tps < 10_000


def test_h800_prefill_deepseek_profile_setting_is_finite_and_positive():
    # DeepSeek's prefill unit: EP32, 16,384 tokens per GPU, 4,096-token prompts.
    res = estimate("prefill", hw_path("h800"), "deepseek-r1", dict(devices=32, ep=32))
    tps = float(np.asarray(res["tokens_per_s_per_device"]).reshape(-1)[0])
    assert math.isfinite(tps) and tps > 0
    assert bool(np.asarray(res["fits"]).reshape(-1)[0])
    assert 1_000 < tps < 20_000  # "several thousand tokens/s per GPU"


# ---- the DeepGEMM fit ---------------------------------------------------------------------------

# DeepGEMM README, FP8 GEMM on H800: (M, N, K, TFLOPS).
DEEPGEMM = np.array([
    (64, 2112, 7168, 206), (64, 24576, 1536, 289), (64, 7168, 16384, 336),
    (128, 2112, 7168, 352), (128, 24576, 1536, 535), (128, 7168, 16384, 645),
    (4096, 2112, 7168, 1058), (4096, 24576, 1536, 990), (4096, 7168, 16384, 1358),
], dtype=float)
# Errors stated in the h800.toml note on efficiency.matmul_compute_frac.
REPORTED_ERR = [-0.163, 0.057, 0.067, -0.021, 0.069, 0.094, 0.148, -0.007, -0.034]
REPORTED_MAX_ERR = 0.17


def predicted_tflops(hw, m, n, k, groups=1.0):
    """The model's own cost of an FP8 GEMM (Die.matmul), as achieved TFLOPS."""
    from cmperf.compose.ops import Die

    op = Die(hw).matmul("gemm", "s", "s", m, k, n, "fp8", "fp8", groups=groups)
    return op.flops / (op.time_s - hw["overhead.op_latency_s"]) / 1e12


def _with(hw, e, k0, fixed_us):
    return hw.with_values({"efficiency.matmul_compute_frac": e, "efficiency.matmul_k_overhead_elements": k0, "efficiency.matmul_kernel_fixed_s": fixed_us * 1e-6})


def test_deepgemm_fit_reproduces_each_row_within_the_reported_error():
    hw = load("h800")
    m, n, k, meas = DEEPGEMM.T
    err = predicted_tflops(hw, m, n, k) / meas - 1.0
    assert np.max(np.abs(err)) <= REPORTED_MAX_ERR
    np.testing.assert_allclose(err, REPORTED_ERR, atol=0.005)


def test_deepgemm_fit_is_the_least_squares_optimum():
    hw = load("h800")
    m, n, k, meas = DEEPGEMM.T
    fit = least_squares(lambda p: predicted_tflops(_with(hw, *p), m, n, k) / meas - 1.0, [0.8, 300.0, 1.0], bounds=([0.01, 0.0, 0.0], [1.0, 1e5, 50.0]))
    assert fit.x[0] == pytest.approx(hw["efficiency.matmul_compute_frac"], rel=0.01)
    assert fit.x[1] == pytest.approx(hw["efficiency.matmul_k_overhead_elements"], rel=0.05)
    assert fit.x[2] * 1e-6 == pytest.approx(hw["efficiency.matmul_kernel_fixed_s"], rel=0.05)


def test_deepgemm_grouped_rows_match_the_reported_errors():
    hw = load("h800")
    prefill = float(predicted_tflops(hw, 8192.0, 4096.0, 7168.0, groups=4))
    decode = float(predicted_tflops(hw, 256.0, 4096.0, 7168.0, groups=4))
    assert prefill / 1300 - 1 == pytest.approx(-0.018, abs=0.01)
    assert decode / 932 - 1 == pytest.approx(0.147, abs=0.01)


def test_wave_quantisation_slows_few_block_gemms():
    """With only 22 blocks for 132 SMs, an M=64, N=2112 GEMM pulls HBM through 22 SMs."""
    hw = load("h800")
    no_waves = hw.with_values({"die.matrix_block_rows": 1, "die.matrix_block_cols": 1})  # enough blocks to fill every SM
    assert float(predicted_tflops(hw, 64.0, 2112.0, 7168.0)) < float(predicted_tflops(no_waves, 64.0, 2112.0, 7168.0))


# ---- no formula branches on a hardware name -----------------------------------------------------

NAME_RE = re.compile(r"h800|h100|h200|\bh20\b|b200|gb200|nvl72|cloudmatrix|ascend|910c|nvidia|hopper|blackwell")
CMPERF = REPO / "cmperf"


def _docstring_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = getattr(node, "body", [])
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
                lines.update(range(body[0].lineno, body[0].end_lineno + 1))
    return lines


def _suspicious_tokens(path: Path, root: Path = REPO) -> list[str]:
    """Identifiers and string literals naming a hardware system, outside comments and docstrings.

    Allowed: the default hardware name in a signature or default (`= "cloudmatrix384"`), and prose
    strings (help texts with spaces), which cannot be the key of a branch.
    """
    text = path.read_text(encoding="utf-8")
    doc = _docstring_lines(ast.parse(text))
    lines = text.splitlines()
    out = []
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type not in (tokenize.NAME, tokenize.STRING) or tok.start[0] in doc:
            continue
        if not NAME_RE.search(tok.string):  # case-sensitive: code names are lowercase
            continue
        line = lines[tok.start[0] - 1]
        if tok.type == tokenize.STRING:
            if '= "cloudmatrix384"' in line or tok.string.strip("\"'") == "cloudmatrix384" and "def " in line:
                continue
            if re.search(r"\s", tok.string.strip("\"'")):
                continue  # prose (help text, messages)
        out.append(f"{path.relative_to(root)}:{tok.start[0]}: {line.strip()}")
    return out


def test_no_cmperf_code_branches_on_a_hardware_name():
    bad = [hit for p in sorted(CMPERF.rglob("*.py")) for hit in _suspicious_tokens(p)]
    assert not bad, "hardware names in cmperf code:\n" + "\n".join(bad)


def test_name_scan_catches_a_branch(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text('"""Docstring naming h800 is fine."""\n# so is a comment on cloudmatrix\ndef f(hw, hardware: str = "cloudmatrix384"):\n    if hw.name == "h800":\n        return 1\n', encoding="utf-8")
    hits = _suspicious_tokens(probe, tmp_path)
    assert len(hits) == 1 and '"h800"' in hits[0]

