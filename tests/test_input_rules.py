"""Input rules: each case exits 2 with one line naming the option; and the all-to-all, prefix-cache
and once-per-domain communication rules behave as intended."""

import subprocess
import sys

import numpy as np
import pytest

from cmperf.comm.collectives import bulk_comm_time_s
from cmperf.costs.moe import busiest_link_messages
from cmperf.evaluation import estimate as _estimate
from cmperf.specs.loader import load_hardware


def estimate(phase, hardware=None, model=None, opts=None):
    """The result arrays of `cmperf.evaluation.estimate` for a phase, with fields given as a dict."""
    return _estimate(phase, hardware, model, **(opts or {})).result


@pytest.mark.parametrize("args, where", [
    (["estimate", "decode", "--prefix-hit", "0.5"], "--prefix-hit"),
    (["estimate", "decode", "--tokens-per-device", "4096"], "--tokens-per-device"),
    (["estimate", "prefill", "--batch", "5"], "--batch"),
    (["estimate", "prefill", "--kv-len", "4096"], "--kv-len"),
    (["estimate", "decode", "--kv-len", "1e7"], "--kv-len"),
    (["plan", "--no-write", "--input-len", "200000"], "--input-len"),
    (["plan", "--no-write", "--set", "die.hbm_capacity_bytes=1e9"], "fits in HBM"),
    (["plan", "--no-write", "--devices", "4"], "--devices"),
    (["capacity", "--no-write", "--rate", "1e12"], "--rate"),
    (["estimate", "decode", "--batch", "-1"], "--batch"),
    (["estimate", "decod"], "phase"),
])
def test_one_line_exit_2(args, where):
    cp = subprocess.run([sys.executable, "-m", "cmperf", *args], capture_output=True, text=True, timeout=60)
    assert cp.returncode == 2, (cp.stdout, cp.stderr)
    assert cp.stderr.startswith("cmperf: error: ") and cp.stderr.count("\n") == 1, cp.stderr
    assert where in cp.stderr and "Traceback" not in cp.stderr


def test_busiest_receiver_can_bind_the_all_to_all():
    # 8 tokens to 9 destinations send 72 messages; a die receiving 113 rows (one expert) binds.
    assert busiest_link_messages(8, 9, 113, 8, 8) == 113
    assert busiest_link_messages(48, 9, 300, 8, 8) == 48 * 9
    assert busiest_link_messages(8, 9, 10, 8, 8, shared_rows=200) == 200


def test_cached_prefix_is_up_projected_but_not_recomputed():
    base = estimate("prefill")
    hit = estimate("prefill", opts=dict(prefix_hit=0.5))
    kvb = lambda r: next(o for o in r["ops"] if o.name.startswith("kv_b") and o.scope == "MoE layers")
    # Same new tokens' worth of other work halves; kv_b still covers every prompt token.
    assert float(kvb(hit).flops) == pytest.approx(float(kvb(base).flops), rel=1e-9)
    assert float(hit["step_s"]) < float(base["step_s"])


def test_bulk_all_to_all_sends_once_per_domain_over_rdma_when_the_hardware_says_so():
    h800 = load_hardware("h800")
    b = 100e6
    per_rank = float(bulk_comm_time_s(h800, b, 32))
    deduped = float(bulk_comm_time_s(h800, b, 32, scaleout_bytes=b * 0.4))
    assert deduped < per_rank
    assert np.isfinite(deduped)
