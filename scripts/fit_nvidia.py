"""Re-derive every fitted constant of the NVIDIA hardware files (hardware/h800.toml, h100.toml).

H800 (DeepSeek's own kernel measurements, as compiled in the comparison-systems reference):
  - DeepGEMM FP8 GEMM table (9 dense rows) -> efficiency.matmul_compute_frac,
    matmul_k_overhead_elements, matmul_kernel_fixed_s (the model's own GEMM cost, Die.matmul)
  - DeepEP low-latency table (V1, pure RDMA, 128 tokens per GPU, EP8-256) -> moe_comm.*_startup_s,
    *_bandwidth_bytes_per_s, through cmperf.comm.collectives.fused_benchmark_time_s (the function
    the CloudMatrix384 Table 7 fit uses). One token count: only the whole start-up at 128 tokens is
    identified, not a per-call and a per-token part.
H100 (tests/data/h100-gemm-measured.csv, 146 kernel times):
  - cmperf calibrate -> efficiency.matmul_compute_frac (FP8/INT8), bf16_matmul_compute_frac,
    matmul_k_overhead_elements, matmul_kernel_fixed_s, die.core_bandwidth_bytes_per_s
Run: python scripts/fit_nvidia.py   (prints the values; edit the TOML files by hand)
"""

from pathlib import Path

import numpy as np
from scipy.optimize import least_squares

from cmperf.comm.collectives import fused_benchmark_time_s
from cmperf.compose.ops import Die
from cmperf.specs import load_hardware, load_model
from cmperf.units import GB, TFLOPS, US
from cmperf.validation.calibrate import calibrate

REPO = Path(__file__).resolve().parents[1]
# DeepGEMM README, FP8 GEMM on H800: (M, N, K, TFLOPS).
DEEPGEMM = np.array([
    (64, 2112, 7168, 206), (64, 24576, 1536, 289), (64, 7168, 16384, 336),
    (128, 2112, 7168, 352), (128, 24576, 1536, 535), (128, 7168, 16384, 645),
    (4096, 2112, 7168, 1058), (4096, 24576, 1536, 990), (4096, 7168, 16384, 1358),
], dtype=float)
# DeepEP low-latency kernels (legacy docs), H800, pure RDMA, 128 tokens per GPU: EP, dispatch us, combine us.
DEEPEP_LL = np.array([(8, 77, 114), (16, 118, 195), (32, 155, 273), (64, 173, 314), (128, 192, 369), (256, 194, 360)], dtype=float)
LL_TOKENS = 128
H100_GEMM = REPO / "tests" / "data" / "h100-gemm-measured.csv"
H100_PARAMS = ["efficiency.matmul_compute_frac", "efficiency.bf16_matmul_compute_frac", "efficiency.matmul_k_overhead_elements",
               "efficiency.matmul_kernel_fixed_s", "die.core_bandwidth_bytes_per_s"]


def gemm_tflops(hw, m, n, k, groups=1.0, dtype="fp8"):
    """Achieved TFLOPS of the model's GEMM cost, less the gap between kernels (kernel time alone)."""
    op = Die(hw).matmul("gemm", "fit", "fit", m, k, n, dtype, dtype, groups=groups)
    return op.flops / (op.time_s - hw["overhead.op_latency_s"]) / TFLOPS


def deepgemm_values(p):
    return {"efficiency.matmul_compute_frac": p[0], "efficiency.matmul_k_overhead_elements": p[1], "efficiency.matmul_kernel_fixed_s": p[2] * US}


def fit_deepgemm(hw):
    m, n, k, meas = DEEPGEMM.T
    fit = least_squares(lambda p: gemm_tflops(hw.with_values(deepgemm_values(p)), m, n, k) / meas - 1.0,
                        [0.7, 300.0, 2.0], bounds=([0.01, 0.0, 0.0], [1.0, 1e5, 50.0]))
    return fit


def fit_deepep_ll(hw, model, which):
    ep, meas = DEEPEP_LL[:, 0], DEEPEP_LL[:, 1 if which == "dispatch" else 2]
    peak = hw["scaleup.links_per_die"] * hw["scaleup.link_bandwidth_bytes_per_s"]

    def resid(p):
        h = hw.with_values({f"moe_comm.{which}_startup_s": p[0] * US, f"moe_comm.{which}_bandwidth_bytes_per_s": p[1] * GB})
        return fused_benchmark_time_s(h, model, which, ep, LL_TOKENS) / US / meas - 1.0

    return least_squares(resid, [50.0, 100.0], bounds=([0.0, 1.0], [1e3, peak / GB]))


def main():
    hw, model = load_hardware(str(REPO / "hardware" / "h800.toml")), load_model()
    f = fit_deepgemm(hw)
    print(f"h800 efficiency.matmul_compute_frac = {f.x[0]:.4f}; matmul_k_overhead_elements = {f.x[1]:.1f}; "
          f"matmul_kernel_fixed_s = {f.x[2] * US:.3g}")
    print("  DeepGEMM dense errors %: " + ", ".join(f"{100 * e:+.1f}" for e in f.fun))
    fitted = hw.with_values(deepgemm_values(f.x))
    for label, (m, n, k, g, published) in (("grouped prefill layout", (8192, 4096, 7168, 4, 1300)), ("grouped decode masked layout", (256, 4096, 7168, 4, 932))):
        print(f"  {label}: {100 * (float(gemm_tflops(fitted, float(m), float(n), float(k), float(g))) / published - 1):+.1f}% (not in the fit)")
    for which in ("dispatch", "combine"):
        f = fit_deepep_ll(hw, model, which)
        print(f"h800 moe_comm.{which}_startup_s = {f.x[0] * US:.3g}; {which}_bandwidth_bytes_per_s = {f.x[1] * GB:.3g}")
        print(f"  errors % at EP {', '.join(str(int(e)) for e in DEEPEP_LL[:, 0])}: " + ", ".join(f"{100 * e:+.1f}" for e in f.fun))
    cal = calibrate(H100_GEMM, str(REPO / "hardware" / "h100.toml"), params=H100_PARAMS)
    print("h100 (cmperf calibrate " + str(H100_GEMM.relative_to(REPO)) + " --hardware h100 --params " + ",".join(H100_PARAMS) + "):")
    for key in cal.fitted:
        print(f"  {key} = {cal.after[key]:.6g}")
    err = np.abs(cal.errors("after"))
    cls = np.array(["grouped" if m.params.get("groups", 1) > 1 else m.params["dtype"] for m in cal.measurements])
    for c in ("all", "fp8", "bf16", "grouped"):
        e = err if c == "all" else err[cls == c]
        print(f"  {c}: median |error| {100 * np.median(e):.1f}%, max {100 * e.max():.1f}% ({e.size} rows)")


if __name__ == "__main__":
    main()
