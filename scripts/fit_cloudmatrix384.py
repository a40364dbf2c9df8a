"""Re-derive every fitted constant of hardware/cloudmatrix384.toml and models/deepseek-r1.toml.

Operator level (the paper's kernel tables):
  - Table 10 INT8 grouped GEMM -> efficiency.matmul_compute_frac, matmul_k_overhead_elements
  - Table 7 fused dispatch/combine -> moe_comm.*_startup_s, *_bandwidth_bytes_per_s
End to end (the two physical factors, both from the prefill pair of section 5):
  - 6,688 tokens/s per NPU with perfect EPLB -> efficiency.prefill_matrix_duty_frac
  - 5,655 measured -> routing.request_skew
Run: python scripts/fit_cloudmatrix384.py   (prints the values; edit the TOML files by hand)
"""

import numpy as np
from scipy.optimize import brentq, least_squares

from cmperf.comm.collectives import fused_benchmark_time_s
from cmperf.costs.roofline import matmul_efficiency
from cmperf.estimate import Options, estimate
from cmperf.specs import load_hardware, load_model

TABLE10 = [(7168, 4096, 4096, 0.794), (2048, 7168, 4096, 0.774), (7168, 4096, 8192, 0.827),
           (2048, 7168, 8192, 0.811), (7168, 4096, 4096, 0.796), (2048, 7168, 4096, 0.779)]
EP = np.array([8, 16, 32, 64, 128, 256.0])
DISPATCH_US = np.array([116, 131, 133, 141, 152, 152.0])
COMBINE_US = np.array([118, 132, 146, 150, 150, 149.0])
TOKENS = 128


def main():
    hw, model = load_hardware(), load_model()
    m, n, k, util = map(np.array, zip(*TABLE10))
    tile = hw["die.matrix_tile_rows"]
    fit = least_squares(lambda p: matmul_efficiency(m, k, tile, p[0], p[1]) - util, [0.85, 300], bounds=([0.1, 0], [1, 1e4]))
    print(f"efficiency.matmul_compute_frac = {fit.x[0]:.3f}; matmul_k_overhead_elements = {fit.x[1]:.0f}; max residual {np.abs(fit.fun).max() * 100:.1f} points")

    link = hw["scaleup.links_per_die"] * hw["scaleup.link_bandwidth_bytes_per_s"]
    for which, meas in (("dispatch", DISPATCH_US), ("combine", COMBINE_US)):
        def resid(p):
            h = hw.with_values({f"moe_comm.{which}_startup_s": p[0] * 1e-6, f"moe_comm.{which}_bandwidth_bytes_per_s": p[1] * 1e9})
            return fused_benchmark_time_s(h, model, which, EP, TOKENS) * 1e6 / meas - 1
        f = least_squares(resid, [50, 100], bounds=([0, 1], [1e3, link / 1e9]))
        print(f"moe_comm.{which}_startup_s = {f.x[0] * 1e-6:.3g}; {which}_bandwidth_bytes_per_s = {f.x[1] * 1e9:.3g}; max error {np.abs(f.fun).max() * 100:.1f}%")

    def prefill(duty, skew, eplb):
        sets = {"efficiency.prefill_matrix_duty_frac": str(duty), "routing.request_skew": str(skew)}
        return float(estimate("prefill", opts=Options(eplb=eplb, sets=sets))["tokens_per_s_per_device"])

    duty = brentq(lambda x: prefill(x, 1.0, "perfect") - 6688, 0.2, 1.0, xtol=1e-5)
    skew = brentq(lambda x: prefill(duty, x, "default") - 5655, 1e-3, 20.0, xtol=1e-4)
    print(f"efficiency.prefill_matrix_duty_frac = {duty:.3f}; routing.request_skew = {skew:.2f}")


if __name__ == "__main__":
    main()
