"""The Python API (`import cmperf`), the deployment files, and the examples that use them."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import cmperf
from cmperf.cli import app

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def test_import_cmperf_imports_no_pandas_scipy_or_rich():
    code = "import sys, cmperf; cmperf.estimate; print(sorted(m for m in ('pandas', 'scipy', 'rich') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_estimate_returns_a_typed_evaluation():
    ev = cmperf.estimate("decode")
    assert isinstance(ev, cmperf.Evaluation)
    assert ev.phase == "decode" and ev.deployment.devices == 160 and ev.deployment.ep == 320
    assert 0 < float(ev.tpot_s) < 1 and ev.ttft_s is None
    assert ev.kv_len_tokens == ev.workload.input_len + ev.workload.output_len / 2
    assert isinstance(ev.binding, str) and "stream" in ev.binding
    (rec,) = ev.to_records()
    assert rec["latency_s"] == float(ev.latency_s) and rec["binding"] == ev.binding and rec["batch"] == 96
    frame = ev.to_frame()
    assert list(frame["tokens_per_s_per_device"]) == [float(ev.tokens_per_s_per_device)]


def test_estimate_fields_override_single_values_and_match_the_cli():
    ev = cmperf.estimate("cm384-paper-decode", batch=64, microbatches=1)
    cli = json.loads(runner.invoke(app, ["estimate", "decode", "--batch", "64", "--microbatches", "1", "-f", "json"]).stdout)
    assert cli["tpot_ms"] == float(ev.tpot_s) * 1e3


def test_a_grid_of_deployments_evaluates_to_arrays():
    import numpy as np

    hw, model = cmperf.load_hardware("cloudmatrix384"), cmperf.load_model("deepseek-r1")
    from cmperf.evaluation import evaluate

    d = cmperf.load_deployment("cm384-paper-decode")
    grid = evaluate(hw, model, cmperf.Workload(), d.with_fields(batch=np.array([8.0, 96.0, 192.0])))
    assert np.shape(grid.latency_s) == (3,)
    assert len(grid.to_records()) == 3
    assert grid.to_records()[1]["latency_s"] == pytest.approx(float(cmperf.estimate("decode").latency_s), rel=1e-12)


def test_plan_to_frame_and_deployments():
    result = cmperf.plan(workload=cmperf.Workload(tpot_ms=(50.0,)), top=1)
    frame = result.to_frame()
    assert len(frame) == len(result.records) >= 2 and "binding" in frame.columns
    best = result.deployments()[0]
    assert float(cmperf.estimate(best).tpot_s) * 1e3 == result.records[0]["tpot_ms"]


def test_compare_sweep_capacity_return_tables():
    c = cmperf.compare("cm384-paper-decode", variant_scale={"scaleup.*bandwidth*": 0.5, "moe_comm.*bandwidth*": 0.5})
    row = c.to_frame().set_index("metric").loc["tokens_per_s_per_device"]
    assert row["variant"] < row["baseline"]
    s = cmperf.sweep("workload.input_len=1024:4096:2", workload=cmperf.Workload(tpot_ms=(50.0,)))
    assert len(s.to_records()) == 2
    cap = cmperf.capacity(50.0, workload=cmperf.Workload(tpot_ms=(50.0,)))
    assert [r["phase"] for r in cap.to_records()] == ["prefill", "decode"]


@pytest.mark.parametrize("call", [
    lambda: cmperf.plan(devices="x"),
    lambda: cmperf.plan(top=0),
    lambda: cmperf.plan(eplb="best"),
    lambda: cmperf.estimate("decode", batch=0),
    lambda: cmperf.estimate("decode", batch="many"),
    lambda: cmperf.estimate("decode", colour="red"),
    lambda: cmperf.estimate("no-such-deployment"),
    lambda: cmperf.estimate("decode", tokens_per_device=1024),
    lambda: cmperf.estimate(42),
    lambda: cmperf.load_hardware(None),
    lambda: cmperf.capacity(-1.0),
    lambda: cmperf.sweep("nonsense"),
    lambda: cmperf.Workload(input_len=0),
    lambda: cmperf.Deployment("decode", devices=16),
    lambda: cmperf.estimate("decode", workload="long prompts"),
    lambda: cmperf.estimate("decode", sets=["die.hbm_bandwidth_bytes_per_s=1e12"]),
    lambda: cmperf.estimate("decode", hardware=3),
    lambda: cmperf.estimate("decode", sets={"die.hbm_bandwidth_bytes_per_s": "fast"}),
    lambda: cmperf.compare("decode", variant_scale="half"),
    lambda: cmperf.compare("decode", variant_scale={"no.such.*": 0.5}),
    lambda: cmperf.compare("decode", variant_hardware="no-such-machine"),
])
def test_bad_arguments_raise_spec_error(call):
    with pytest.raises(cmperf.SpecError):
        call()


# ---- deployment files ----------------------------------------------------------------------------------


def test_every_shipped_deployment_file_loads_and_evaluates():
    from cmperf.specs.loader import known_names

    names = known_names("deployment")
    assert {"cm384-paper-decode", "cm384-paper-prefill", "h800-deepseek-decode", "h800-deepseek-prefill",
            "h100-sglang-decode", "h100-sglang-prefill"} <= set(names)
    for name in names:
        ev = cmperf.estimate(name)
        assert bool(ev.feasible), name


def test_the_papers_deployment_numbers_live_in_files_not_code():
    text = (REPO / "deployments" / "cm384-paper-decode.toml").read_text() + (REPO / "deployments" / "cm384-paper-prefill.toml").read_text()
    for number in ("160", "320", "96", "16", "32", "16384"):
        assert f"value = {number}," in text, number
    found = []
    for path in (REPO / "cmperf").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and type(node.value) in (int, float) and node.value in (320, 16384):
                found.append(f"{path.name}:{node.lineno}")
    assert not found


def test_a_bad_deployment_file_is_one_line_and_exit_2(tmp_path):
    bad = tmp_path / "bad.toml"
    text = (REPO / "deployments" / "cm384-paper-decode.toml").read_text().replace("batch_requests_per_device", "batch_per_device")
    bad.write_text(text)
    p = subprocess.run([sys.executable, "-m", "cmperf", "estimate", "--deployment", str(bad)], capture_output=True, text=True)
    assert p.returncode == 2 and p.stderr.startswith("cmperf: error: ") and p.stderr.count("\n") == 1
    assert "decode.batch_per_device" in p.stderr and "Traceback" not in p.stderr


def test_compare_two_deployment_files_on_the_command_line(tmp_path):
    out = runner.invoke(app, ["compare", "--deployment", "cm384-paper-decode", "--deployment", "h800-deepseek-decode", "--no-write", "-f", "json"])
    assert out.exit_code == 0, out.output
    rows = {r["metric"]: r for r in json.loads(out.stdout)}
    assert rows["hardware"]["baseline"] == "cloudmatrix384" and rows["hardware"]["variant"] == "h800"
    assert rows["tokens_per_s_per_device"]["baseline"] == float(cmperf.estimate("cm384-paper-decode").tokens_per_s_per_device)
    p = subprocess.run([sys.executable, "-m", "cmperf", "compare", "--deployment", "cm384-paper-decode", "--no-write"], capture_output=True, text=True)
    assert p.returncode == 2 and "--deployment" in p.stderr and "Traceback" not in p.stderr


# ---- examples ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("script", sorted((REPO / "examples").glob("*.py")), ids=lambda p: p.name)
def test_examples_run(script, tmp_path):
    p = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "COLUMNS": "200"},
                       timeout=120)
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr and p.stdout.strip()


def test_the_readme_python_example_runs(tmp_path):
    text = (REPO / "README.md").read_text()
    section = text.split("## Python API", 1)[1]
    code = section.split("```python", 1)[1].split("```", 1)[0]
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "TPOT" in p.stdout


def test_the_papers_deployment_on_other_hardware_takes_one_rank_per_die():
    ev = cmperf.estimate("decode", hardware="h800")
    assert ev.deployment.devices == 160 and ev.deployment.ep == 160  # one die per H800
    assert bool(ev.feasible)
