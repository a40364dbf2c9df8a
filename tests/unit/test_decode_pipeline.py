"""The decode pipeline's mechanisms: communication on a core share, the fused operators' per-call
and per-token start-up, the kernels around attention and the experts, the wait for the slowest
rank, and the microbatch count and core split as deployment choices.

Hand-computed cases use the CloudMatrix384 file's own constants; the properties hold for any
values within the file's bounds.
"""

from __future__ import annotations

import math
from dataclasses import replace
from types import MappingProxyType

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pytest import approx

from cmperf.comm.collectives import fused_moe_comm_time_s
from cmperf.comm.planes import transfer_time_s
from cmperf.compose.decode import (
    _attention_ops, _moe_ops, evaluate_decode, pipelines, split_choices, straggler_wait_s, stream_shares,
)
from cmperf.compose.ops import Die
from cmperf.costs.elementwise import elementwise_cost
from cmperf.evaluation import default_inputs
from cmperf.evaluation import estimate as evaluate_deployment
from cmperf.specs.loader import load_hardware, load_model


def DecodeInputs(**kw):  # noqa: N802  (the paper's decode inputs with some fields changed)
    return default_inputs("decode", **kw)


def scalar(x) -> float:
    return float(np.asarray(x).reshape(-1)[0])


def estimate(phase, opts=None):
    """The single-deployment result dict of `cmperf estimate PHASE` with some options."""
    return evaluate_deployment(phase, **(opts or {})).result


def Options(attn_cores=None, **kw):  # noqa: N802
    return {**kw, **({"attention_matrix_cores": attn_cores} if attn_cores is not None else {})}

HW = load_hardware("cloudmatrix384")
MODEL = load_model("deepseek-r1")
SET = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---- communication on a core share -----------------------------------------------------------------


@SET
@given(tokens=st.floats(1, 4096), dest=st.floats(1, 9), aiv=st.integers(1, 47), ep=st.sampled_from([8, 16, 64, 320]),
       which=st.sampled_from(["dispatch", "combine"]))
def test_comm_never_slower_with_more_vector_cores(tokens, dest, aiv, ep, which):
    t = lambda v: float(fused_moe_comm_time_s(HW, tokens, dest, 7680, ep, which, v / 48))
    assert t(aiv + 1) <= t(aiv) * (1 + 1e-12)


@SET
@given(tokens=st.floats(1, 4096), dest=st.floats(1, 9), aiv=st.integers(1, 48), ep=st.sampled_from([8, 16, 64, 320, 1024]),
       which=st.sampled_from(["dispatch", "combine"]), msg=st.sampled_from([7680, 14336]))
def test_comm_never_below_bytes_over_link(tokens, dest, aiv, ep, which, msg):
    payload = tokens * dest * msg
    peak = HW["scaleup.links_per_die"] * HW["scaleup.link_bandwidth_bytes_per_s"]
    floor = float(transfer_time_s(HW, payload, ep, peak, peak))
    assert float(fused_moe_comm_time_s(HW, tokens, dest, msg, ep, which, aiv / 48)) >= floor


def test_a_third_of_the_vector_cores_keeps_the_link_rate():
    # 48 tokens x 9 destinations x 14 KB on 16 of 48 AIVs: only the per-token bookkeeping slows
    # (x3); the transfer stays at the link rate, because 16 AIVs fill the links.
    full = float(fused_moe_comm_time_s(HW, 48, 9, 14336, 320, "combine"))
    third = float(fused_moe_comm_time_s(HW, 48, 9, 14336, 320, "combine", 16 / 48))
    assert third - full == approx(2 * 48 * HW["moe_comm.combine_startup_per_token_s"])


def test_start_up_splits_into_per_call_and_per_token():
    # Fewer tokens cut only the per-token part: 128 -> 8 tokens (no payload) saves 120 t_tok.
    t = lambda n: float(fused_moe_comm_time_s(HW, n, 0.0, 7680, 8, "dispatch"))
    assert t(128) - t(8) == approx(120 * HW["moe_comm.dispatch_startup_per_token_s"])
    assert t(0) == approx(HW["moe_comm.dispatch_startup_s"] + HW["scaleup.latency_intra_s"])


def test_without_an_issue_rate_the_links_alone_bound():
    values = dict(HW.values)
    values.pop("moe_comm.issue_bandwidth_bytes_per_s_per_core")
    hw = replace(HW, values=MappingProxyType(values))
    few = float(fused_moe_comm_time_s(hw, 64, 8, 14336, 8, "combine", 4 / 48))
    many = float(fused_moe_comm_time_s(hw, 64, 8, 14336, 8, "combine", 1.0))
    assert few - many == approx((12 - 1) * 64 * HW["moe_comm.combine_startup_per_token_s"])


# ---- the missing kernels and the straggler wait -----------------------------------------------------


def test_straggler_wait_by_hand():
    c = HW["overhead.rank_jitter_cv"]
    assert float(straggler_wait_s(HW, 500e-6, 320)) == approx(500e-6 * c * math.sqrt(2 * math.log(320)))
    assert float(straggler_wait_s(HW, 500e-6, 1)) == 0.0


@SET
@given(work=st.floats(0, 1e-2), r=st.integers(1, 10_000))
def test_straggler_wait_grows_with_ranks_and_work(work, r):
    assert float(straggler_wait_s(HW, work, r + 1)) >= float(straggler_wait_s(HW, work, r))
    assert float(straggler_wait_s(HW, work * 2, r)) >= float(straggler_wait_s(HW, work, r))


def test_new_elementwise_kernels_by_hand():
    # bf16 activations (2 B), bf16 KV cache, 4-byte indices, top-8.
    assert elementwise_cost("kv_write", MODEL) == (1.0, 4.0)
    assert elementwise_cost("residual_add", MODEL) == (1.0, 6.0)
    assert elementwise_cost("routing_init", MODEL) == (2.0, 8.0)
    assert elementwise_cost("weighted_sum", MODEL) == (2.0, approx(2.0 * (1 + 1 / 8)))


def test_breakdown_names_the_new_rows():
    res = estimate("decode")
    names = {o.name for o in res["ops"]}
    for row in ("KV-cache write", "residual add", "routing init (sort token-expert pairs)", "weighted sum of expert outputs",
                "wait for the slowest rank (dispatch)", "wait for the slowest rank (combine)"):
        assert row in names
    waits = [o for o in res["ops"] if o.name.startswith("wait") and o.scope == "MoE layers"]
    assert all(scalar(o.time_s) > 0 for o in waits)


def test_dispatch_wait_is_the_attention_work_times_the_gumbel_tail():
    die = Die(HW)
    att = _attention_ops(die, MODEL, "s", 48.0, 24.0, 4224.0, 1.0)
    a = sum(float(o.time_s) for o in att)
    ops, _ = _moe_ops(die, MODEL, "s", 48.0, DecodeInputs(), 320.0, a)
    pre = a + sum(float(o.time_s) for o in ops[:4])
    wait = next(o for o in ops if o.name == "wait for the slowest rank (dispatch)")
    assert float(wait.time_s) == approx(float(straggler_wait_s(HW, pre, 320)))


# ---- microbatches and the core split --------------------------------------------------------------


def test_split_choices_and_pipelines_come_from_the_hardware_file():
    assert split_choices(HW) == list(range(4, 23, 2))  # min 4, max 22, step 2
    assert 16 in split_choices(HW)  # the paper's split
    assert pipelines(HW)[0] == (1, 0) and (2, 16) in pipelines(HW) and (3, 0) in pipelines(HW)
    assert len(pipelines(HW)) == 1 + 10 + 1
    # GPU files have no split keys: one split, the file's own.
    assert split_choices(load_hardware("h800")) == [0]


def test_stream_shares_by_hand():
    (am, av), (mm, mv) = stream_shares(HW, 2, 0)  # the file's 16/8 and 32/16
    assert (float(am), float(av), float(mm), float(mv)) == (approx(16 / 24), approx(32 / 48), approx(8 / 24), approx(16 / 48))
    (am, av), (mm, mv) = stream_shares(HW, 2, 15)
    assert (float(am), float(av), float(mm), float(mv)) == (approx(15 / 24), approx(15 / 24), approx(9 / 24), approx(9 / 24))
    assert all(float(x) == 1.0 for pair in stream_shares(HW, 1, 15) for x in pair)


@SET
@given(batch=st.integers(1, 256), n=st.integers(2, 4), mtp=st.integers(0, 2))
def test_more_microbatches_never_speed_up_a_single_stream(batch, n, mtp):
    """All of a layer's operators on one stream of the whole die: splitting the batch into n
    microbatches run one after another never beats running it whole (fixed costs repeat)."""
    die = Die(HW)
    dies_pkg = HW["package.dies"]
    b = batch / dies_pkg
    inp = DecodeInputs(batch=batch, mtp=mtp)

    def layer(tokens, requests):
        att = _attention_ops(die, MODEL, "s", tokens, requests, 4224.0, 1.0)
        moe, _ = _moe_ops(die, MODEL, "s", tokens, inp, 320.0, sum(o.time_s for o in att))
        return sum(float(o.time_s) for o in att + moe)

    whole = layer(b * (mtp + 1), b)
    split = n * layer(b * (mtp + 1) / n, b / n)
    assert split >= whole * (1 - 1e-12)


def test_two_microbatches_beat_one_at_the_papers_point():
    best = estimate("decode")
    one = estimate("decode", opts=Options(microbatches=1))
    assert best["inputs"].microbatches == 2
    gain = scalar(one["tpot_s"]) / scalar(best["tpot_s"]) - 1
    assert gain > 0.02, gain
    # ... and the paper's own 16/8 split balances the streams within 20% of each other.
    paper = estimate("decode", opts=Options(microbatches=2, attn_cores=16))
    a, m = scalar(paper["attention_stream_s"]), scalar(paper["moe_stream_s"])
    assert abs(a / m - 1) < 0.2


def test_one_microbatch_at_small_batch():
    res = estimate("decode", opts=Options(batch=8))
    assert res["inputs"].microbatches == 1


def test_estimate_says_which_choice_it_used():
    from cmperf.report.explain import summary

    rec = summary(estimate("decode"))
    assert rec["pipeline_chosen"] and rec["microbatches"] == 2 and rec["core_split"] == f"{rec['attn_cores']}/{24 - rec['attn_cores']}"
    rec = summary(estimate("decode", opts=Options(microbatches=2, attn_cores=16)))
    assert not rec["pipeline_chosen"] and rec["core_split"] == "16/8"


def test_best_choice_is_the_minimum_over_all_allowed():
    best = scalar(estimate("decode")["tpot_s"])
    every = [scalar(evaluate_decode(HW, MODEL, DecodeInputs(microbatches=n, attn_cores=a))["tpot_s"]) for n, a in pipelines(HW)]
    assert best == approx(min(every))


def _cmperf(*args):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "cmperf", *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("bad", ["-1", "24"])
def test_attn_cores_out_of_range_is_a_usage_error(bad):
    r = _cmperf("estimate", "decode", "--microbatches", "2", "--attn-cores", bad)
    assert r.returncode == 2 and "--attn-cores" in r.stderr and "Traceback" not in r.stderr


def test_attn_cores_zero_is_the_hardware_files_split():
    """0 attention cores names the hardware file's split (16/8 on CloudMatrix384): what a plan's
    record at that split prints in its estimate command, so the command reproduces it."""
    import json

    r = _cmperf("estimate", "decode", "--microbatches", "3", "--attn-cores", "0", "--format", "json")
    rec = json.loads(r.stdout)
    assert r.returncode == 0 and rec["core_split"] == "16/8" and not rec["pipeline_chosen"]
    from cmperf.solve.plan import PlanRequest, estimate_command

    rec = {"phase": "decode", "devices": 160, "ep": 320, "redundant": 32, "attn_tp": 1, "microbatches": 3, "mtp": 1, "batch": 64, "attn_cores": 0}
    assert "--attn-cores 0" in estimate_command(rec, PlanRequest())
    assert "--attn-cores" not in estimate_command({**rec, "microbatches": 1}, PlanRequest())


def test_attn_cores_refused_for_prefill():
    r = _cmperf("estimate", "prefill", "--attn-cores", "16")
    assert r.returncode == 2 and "--attn-cores" in r.stderr


def test_vectorised_split_equals_scalar():
    a = np.array([7.0, 15.0, 20.0])[:, None]
    b = np.array([8.0, 96.0])[None, :]
    grid = evaluate_decode(HW, MODEL, DecodeInputs(microbatches=2, attn_cores=a, batch=b))["tpot_s"]
    for i, ai in enumerate(a[:, 0]):
        for j, bj in enumerate(b[0]):
            one = evaluate_decode(HW, MODEL, DecodeInputs(microbatches=2, attn_cores=float(ai), batch=float(bj)))["tpot_s"]
            assert float(grid[i, j]) == approx(float(one), rel=1e-12)


@pytest.mark.parametrize("input_len, fewer", [(1024, True), (16384, False)])
def test_the_split_adapts_to_the_context(input_len, fewer):
    """Short contexts (attention cheap, MoE heavy) move cores to the MoE stream; long ones to
    attention; either way the adapted split beats the paper's fixed 16/8."""
    best = estimate("decode", opts=Options(input_len=input_len))
    fixed = estimate("decode", opts=Options(input_len=input_len, microbatches=2, attn_cores=16))
    a = int(best["inputs"].attn_cores)
    assert best["inputs"].microbatches == 2
    assert (a < 16) if fewer else (a > 16)
    assert scalar(best["tpot_s"]) < scalar(fixed["tpot_s"])


def test_split_keys_go_together(tmp_path):
    from cmperf.errors import SpecError

    with pytest.raises(SpecError, match="go together"):
        load_hardware(_without_step(tmp_path))


def _without_step(tmp_path):
    from cmperf.specs.loader import resolve

    text = resolve("cloudmatrix384", "hardware").read_text()
    lines = [ln for ln in text.splitlines() if not ln.startswith("decode_split_step_matrix_cores")]
    p = tmp_path / "cm.toml"
    p.write_text("\n".join(lines))
    return str(p)


def test_a_grid_of_core_splits_equals_each_split_alone():
    from cmperf.evaluation import evaluate
    from cmperf.specs.deployment_file import load_deployment

    src = load_deployment("cm384-paper-decode")
    cores = np.array([8.0, 16.0, 20.0])
    grid = evaluate(HW, MODEL, src.workload, src.deployment.with_fields(microbatches=2, attention_matrix_cores=cores))
    for i, a in enumerate(cores):
        one = evaluate_deployment("decode", microbatches=2, attention_matrix_cores=int(a))
        assert float(np.asarray(grid.latency_s)[i]) == approx(float(one.latency_s), rel=1e-12)
        assert not one.result["pipeline_chosen"]


def test_a_grid_leaving_the_pipeline_open_chooses_as_each_deployment_alone():
    from cmperf.evaluation import evaluate
    from cmperf.specs.deployment_file import load_deployment

    src = load_deployment("cm384-paper-decode")
    batches = np.array([8.0, 96.0])
    grid = evaluate(HW, MODEL, src.workload, src.deployment.with_fields(batch=batches))
    for i, b in enumerate(batches):
        one = evaluate_deployment("decode", batch=int(b))
        assert one.result["pipeline_chosen"]
        assert float(np.asarray(grid.latency_s)[i]) == approx(float(one.latency_s), rel=1e-12)
        assert float(np.asarray(grid.deployment.microbatches)[i]) == one.deployment.microbatches
        assert float(np.asarray(grid.deployment.attention_matrix_cores)[i]) == one.deployment.attention_matrix_cores


@pytest.mark.parametrize("changes", [{}, {"batch": 8}, {"microbatches": 2}, {"devices": 32, "ep": None, "redundant": None}])
@pytest.mark.parametrize("phase", ["decode", "prefill"])
def test_the_choices_alone_are_those_the_evaluation_takes(phase, changes):
    """`choose` (what a plan asks of the paper's deployments) picks what `estimate` evaluates,
    without evaluating the deployment it picks."""
    from cmperf.evaluation import choose, estimate_inputs

    if phase == "prefill":
        changes = {k: v for k, v in changes.items() if k != "batch"}
    d, chosen = choose(*estimate_inputs(phase, **changes))
    one = evaluate_deployment(phase, **changes)
    assert d == one.deployment
    assert phase == "prefill" or chosen == one.result["pipeline_chosen"]
