"""What if the UB (scale-up) network had half the bandwidth? The paper's decode deployment, re-evaluated.

Run: python examples/what_if_half_ub_bandwidth.py
"""

import cmperf

paper = cmperf.load_deployment("cm384-paper-decode")
print("deployment:", paper.describe())

# Every key that carries UB bandwidth, scaled together (the model uses their ratios).
half_ub = {"scaleup.*bandwidth*": 0.5, "moe_comm.*bandwidth*": 0.5, "pool.read_bandwidth*": 0.5}
result = cmperf.compare("cm384-paper-decode", variant_scale=half_ub)

frame = result.to_frame()
print(frame.to_string(index=False))

tps = frame.set_index("metric").loc["tokens_per_s_per_device"]
print(f"tokens/s per device: {tps['baseline']:,.0f} -> {tps['variant']:,.0f} ({tps['delta_pct']:+.1f}%)")
