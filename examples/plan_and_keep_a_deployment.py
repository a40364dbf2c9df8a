"""Plan, keep the best deployment, change one choice, and evaluate it again.

Run: python examples/plan_and_keep_a_deployment.py
"""

import cmperf

result = cmperf.plan(workload=cmperf.Workload(tpot_ms=(50.0,)), top=1)
best = result.deployments()[0]  # the best decode deployment at TPOT <= 50 ms
print("planned:", best.describe())

same = cmperf.estimate(best)
smaller_batch = cmperf.estimate(best.with_fields(batch=best.batch // 2))
frame = cmperf.compare(same, smaller_batch).to_frame()
print(frame.to_string(index=False))
print(f"TPOT {same.tpot_s * 1e3:.2f} ms -> {smaller_batch.tpot_s * 1e3:.2f} ms; bound by {same.binding}")
