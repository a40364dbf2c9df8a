"""CLI tests across models: `model show` and `model import`, `plan` for every shipped model on
cloudmatrix384, h200 and b200 (small device budget), `compare --variant-model`, and placement errors."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cmperf.cli import app
from cmperf.specs.loader import known_names

runner = CliRunner()
ENV = {"COLUMNS": "250"}
DATA = Path(__file__).resolve().parent / "data" / "configs"


def ok(*args: str) -> str:
    result = runner.invoke(app, list(args), env=ENV)
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def fails(*args: str) -> str:
    """A domain error: one line on stderr, exit code 2 (run through cmperf.cli.main)."""
    p = subprocess.run([sys.executable, "-m", "cmperf", *args], capture_output=True, text=True)
    assert p.returncode == 2, (p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cmperf: error: "), p.stderr
    return lines[0]


@pytest.mark.parametrize("name", ["kimi-k2", "glm-4.5", "llama-3.1-405b"])
def test_model_show_gives_counts_as_stated(name):
    d = json.loads(ok("model", "show", name, "--format", "json"))
    assert abs(d["derived.params_total_vs_stated"] - 1) <= 0.02
    assert abs(d["derived.params_activated_vs_stated"] - 1) <= 0.02
    assert d["derived.kv_cache_bytes_per_token"] > 0


@pytest.mark.parametrize("hardware", ["cloudmatrix384", "h200", "b200"])
def test_plan_runs_for_every_shipped_model(hardware):
    for model in known_names("model"):
        out = ok("plan", "--model", model, "--hardware", hardware, "--devices", "16", "--tpot", "50", "--no-write", "--format", "csv", "--top", "1")
        rows = list(csv.DictReader(io.StringIO(out)))
        decode = [r for r in rows if r["phase"] == "decode"]
        assert decode and float(decode[0]["tokens_per_s_per_device"]) > 0, (model, hardware)
        assert float(decode[0]["tpot_ms"]) <= 50.0


def test_compare_two_models_on_one_machine():
    out = ok("compare", "--model", "qwen3-30b-a3b", "--variant-model", "qwen3-235b-a22b", "--devices", "16", "--tpot", "50", "--no-write")
    assert "baseline: qwen3-30b-a3b on cloudmatrix384" in out and "variant: qwen3-235b-a22b on cloudmatrix384" in out
    line = fails("compare", "--variant-model", "no-such-model", "--devices", "16", "--no-write")
    assert "--variant-model" in line and "unknown model 'no-such-model'" in line


def test_model_import_writes_a_loadable_file(tmp_path):
    p = subprocess.run([sys.executable, "-m", "cmperf", "model", "import", str(DATA / "qwen3-30b-a3b.json"), "--name", "q3", "--out", str(tmp_path)],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert f"wrote {tmp_path / 'q3.toml'} (Qwen3MoeForCausalLM, attention kind gqa)" in p.stdout
    assert "not mapped: " in p.stdout and "rope_theta" in p.stdout
    shown = json.loads(ok("model", "show", str(tmp_path / "q3.toml"), "--format", "json"))
    assert shown["attention.kind"] == "gqa" and shown["moe.n_shared_experts"] == 0
    assert "exists" in fails("model", "import", str(DATA / "qwen3-30b-a3b.json"), "--name", "q3", "--out", str(tmp_path))


def test_model_import_refusals(tmp_path):
    assert "GptOssForCausalLM cannot be imported" in fails("model", "import", str(DATA / "gpt-oss-120b.json"), "--out", str(tmp_path))
    assert "no such file" in fails("model", "import", str(tmp_path / "missing.json"))
    assert "expected a plain file name" in fails("model", "import", str(DATA / "kimi-k2.json"), "--name", "a/b", "--out", str(tmp_path))


def test_placement_messages():
    line = fails("estimate", "decode", "--model", "minimax-m2", "--devices", "16", "--attn-tp", "32")
    assert "--attn-tp" in line and "48 query heads" in line
    line = fails("estimate", "decode", "--model", "llama-3.1-405b", "--devices", "16", "--redundant", "32")
    assert "--redundant" in line and "dense" in line
    line = fails("estimate", "decode", "--model", "qwen3-235b-a22b", "--devices", "16", "--ep", "24")
    assert "--ep" in line


def test_no_mtp_model_refuses_mtp():
    assert "has no MTP module" in fails("estimate", "decode", "--model", "kimi-k2", "--mtp", "1")
