"""Explained records: many deployments evaluated in one broadcast call get, to the bit, what each
gives alone (what `cmperf estimate --deployment` prints for a plan's saved deployment)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from cmperf.evaluation import evaluate
from cmperf.solve.records import explain_all, record
from cmperf.solve.search import decode_grid, prefill_grid
from cmperf.specs.deployment import Deployment, Workload
from cmperf.specs.loader import load_hardware, load_model

ROOT = Path(__file__).resolve().parents[2]
HARDWARE = sorted(p.stem for p in (ROOT / "hardware").glob("*.toml"))
MODELS = sorted(p.stem for p in (ROOT / "models").glob("*.toml"))
POINTS = 8  # grid points per phase and pair


def _alone(hw, model, workload, rec) -> tuple:
    ev = evaluate(hw, model, workload, rec["deployment_obj"])
    return (float(np.asarray(ev.latency_s)) * 1e3, float(np.asarray(ev.tokens_per_s_per_device)),
            float(np.asarray(ev.hbm_used_bytes_per_die)) / 1e9, ev.binding)


def _explained(rec) -> tuple:
    return rec["latency_ms"], rec["tokens_per_s_per_device"], rec["hbm_used_gb_per_die"], rec["step_bound"]


@pytest.mark.parametrize("hardware, model", list(itertools.product(HARDWARE, MODELS)))
def test_broadcast_explanation_equals_each_deployment_alone(hardware, model):
    rng = np.random.default_rng(sum(map(ord, hardware + model)))
    hw, m = load_hardware(hardware), load_model(model)
    workload = Workload(input_len=int(rng.integers(100, 8000)), output_len=int(rng.integers(10, 2000)),
                        mtp_acceptance=float(rng.uniform(0.3, 1.0)))
    budget = int(min(hw["system.nodes"] * hw["node.packages"], 64))
    for grid in (decode_grid(hw, m, budget, workload.input_len, workload.output_len, workload.mtp_acceptance),
                 prefill_grid(hw, m, budget, workload.input_len)):
        ok = np.flatnonzero(grid.ok.reshape(-1))
        if not len(ok):
            continue
        recs = [record(grid, int(f), None, hw["package.dies"]) for f in rng.choice(ok, size=min(POINTS, len(ok)), replace=False)]
        explain_all(recs, hw, m, workload)
        for rec in recs:
            assert _explained(rec) == _alone(hw, m, workload, rec), rec["deployment"]


def test_a_speculative_acceptance_where_vectorised_power_differs():
    """numpy's vectorised `power` and its scalar one differ in the last bit at this acceptance; the
    tokens a step yields are summed term by term, so the broadcast and the single evaluation agree."""
    hw, m = load_hardware("h20"), load_model("deepseek-v3")
    workload = Workload(input_len=5576, output_len=1207, mtp_acceptance=0.959621446438579)
    grid = decode_grid(hw, m, 32, workload.input_len, workload.output_len, workload.mtp_acceptance)
    target = Deployment("decode", devices=32, ep=32, attn_tp=4, redundant=0, microbatches=1, attention_matrix_cores=0, mtp=1, batch=12)
    ok = np.flatnonzero(grid.ok.reshape(-1))
    recs = [record(grid, int(f), None, hw["package.dies"]) for f in ok[:: max(1, len(ok) // 40)]]
    recs += [r for r in (record(grid, int(f), None, hw["package.dies"]) for f in ok) if r["deployment_obj"] == target]
    assert recs[-1]["deployment_obj"] == target
    explain_all(recs, hw, m, workload)
    for rec in recs:
        assert _explained(rec) == _alone(hw, m, workload, rec), rec["deployment"]


def test_a_deployment_that_cannot_be_built_is_refused_as_when_evaluated_alone():
    """`explain_all` checks each deployment as `evaluate` checks a single one (placement, ranges)."""
    from cmperf.errors import SpecError

    hw, m = load_hardware("cloudmatrix384"), load_model("deepseek-r1")
    grid = decode_grid(hw, m, 16, 4096, 256, 0.7)
    rec = record(grid, int(np.flatnonzero(grid.ok.reshape(-1))[0]), None, hw["package.dies"])
    bad = {**rec, "deployment_obj": Deployment("decode", devices=16, ep=32, attn_tp=1, redundant=5, microbatches=1,
                                               attention_matrix_cores=0, mtp=1, batch=8)}
    with pytest.raises(SpecError) as alone:
        evaluate(hw, m, Workload(), bad["deployment_obj"])
    with pytest.raises(SpecError) as together:
        explain_all([rec, bad], hw, m, Workload())
    assert str(together.value) == str(alone.value)


@pytest.mark.parametrize("phase", ["decode", "prefill"])
def test_the_papers_deployment_is_what_estimate_takes(phase):
    """A plan compares its answers with the paper's deployment file, what the file leaves open (the
    decode microbatches) taken as `cmperf estimate` takes it; a file that gives every compared
    field is read, not evaluated."""
    from cmperf.evaluation import estimate
    from cmperf.solve.plan import PAPER_FIELDS, paper_deployment

    d = estimate(phase).deployment
    assert paper_deployment(phase) == {k: getattr(d, k) for k in PAPER_FIELDS[phase]}
