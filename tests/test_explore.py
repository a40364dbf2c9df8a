"""`cmperf explore` on a two-worker local Dask cluster: the table, resuming after an interruption,
grid/random/Latin-hypercube sampling, and bad spec files refused with exit 2."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cmperf.cli import app
from cmperf.errors import SpecError
from cmperf.whatif.explore import check_output, design_points, load_spec, run

distributed = pytest.importorskip("dask.distributed")

SPEC = """
sampling = "latin-hypercube"
samples = 6
seed = 3
devices = 16
[keys]
"die.hbm_bandwidth_bytes_per_s" = { min = 1.0e12, max = 3.2e12 }
"workload.input_len" = [1024, 4096]
"slo.tpot_ms" = { min = 25, max = 60 }
"""


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        yield c


def _spec(tmp_path: Path, text: str = SPEC) -> str:
    p = tmp_path / "space.toml"
    p.write_text(text)
    return str(p)


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def whole(tmp_path_factory, cluster):
    """An uninterrupted run through the CLI: (spec path, table path, CLI result)."""
    d = tmp_path_factory.mktemp("explore")
    spec, out = _spec(d), d / "space.csv"
    return spec, out, CliRunner().invoke(app, ["explore", spec, "--out", str(out), "--scheduler", cluster.scheduler_address])


def test_explore_writes_one_row_per_point(whole, cluster):
    spec, out, r = whole
    assert r.exit_code == 0, r.output
    assert "explored 6 design points" in r.output
    rows = _rows(out)
    assert [int(x["point"]) for x in rows] == list(range(6))
    assert {x["workload.input_len"] for x in rows} <= {"1024", "4096"}
    assert all(float(x["decode_tokens_per_s_per_device"]) > 0 and x["decode_binding"] for x in rows)
    assert not out.with_name("space.csv.partial").exists()
    r = CliRunner().invoke(app, ["explore", spec, "--out", str(out), "--scheduler", cluster.scheduler_address])
    assert isinstance(r.exception, SpecError) and r.exception.exit_code == 2  # exists without --overwrite


def test_explore_resumes_after_an_interruption(tmp_path, cluster, whole):
    spec = load_spec(_spec(tmp_path))
    out = check_output(str(tmp_path / "space.parquet"), False)
    seen = []

    def stop_after_two():
        seen.append(1)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with distributed.Client(cluster.scheduler_address) as client:
        with pytest.raises(KeyboardInterrupt):
            run(spec, out, client, stop_after_two)
        assert not out.exists() and list((tmp_path / "space.parquet.partial").glob("block-*.json"))
        resumed = run(spec, out, client)
    assert resumed["resumed"] > 0 and resumed["points"] == 6
    import pyarrow.parquet as pq

    table = pq.read_table(out).to_pylist()
    assert [r["point"] for r in table] == list(range(6))
    # The same points as an uninterrupted run (the CLI's table, written as CSV).
    assert [float(r["decode_tokens_per_s_per_device"]) for r in _rows(whole[1])] == [r["decode_tokens_per_s_per_device"] for r in table]


def test_samplings(tmp_path):
    grid = load_spec(_spec(tmp_path, SPEC.replace('"latin-hypercube"', '"grid"').replace("max = 3.2e12 }", "max = 3.2e12, steps = 3 }")
                           .replace("max = 60 }", "max = 60, steps = 2 }")))
    assert len(design_points(grid)) == 3 * 2 * 2
    rnd = load_spec(_spec(tmp_path, SPEC.replace('"latin-hypercube"', '"random"')))
    pts = design_points(rnd)
    assert len(pts) == 6 and pts == design_points(rnd)
    assert all(1.0e12 <= p["die.hbm_bandwidth_bytes_per_s"] <= 3.2e12 and p["workload.input_len"] in (1024, 4096) for p in pts)


@pytest.mark.parametrize("text, says", [
    ("sampling = 'sobol'\n[keys]\n'workload.input_len' = [1024]", "sampling"),
    ("sampling = 'random'\n[keys]\n'workload.input_len' = [1024]", "samples"),
    ("[keys]\n'die.nonsense' = [1]", "die.nonsense"),
    ("[keys]\n'die.hbm_bandwidth_bytes_per_s' = { min = 2e12, max = 1e12, steps = 2 }", "min < max"),
    ("[keys]\n'die.hbm_bandwidth_bytes_per_s' = { min = 1e12, max = 2e12 }", "steps"),
    ("[keys]\n'workload.prefix_hit' = [0.5, 7]", "workload.prefix_hit"),
    ("colour = 'red'\n[keys]\n'workload.input_len' = [1024]", "colour"),
    ("[keys]", "[keys]"),
    ("sampling = 'grid\n", "TOML"),
])
def test_bad_spec_exits_2(tmp_path, text, says):
    with pytest.raises(SpecError) as exc:
        load_spec(_spec(tmp_path, text))
    assert says in str(exc.value) and exc.value.exit_code == 2


@pytest.mark.parametrize("case", ["bad spec", "missing spec", "bad output"])
def test_cli_refuses_with_exit_2_and_one_line(tmp_path, case):
    spec = _spec(tmp_path, "sampling = 'sobol'\n[keys]\n'workload.input_len' = [1024]") if case == "bad spec" else _spec(tmp_path)
    spec = str(tmp_path / "none.toml") if case == "missing spec" else spec
    out = str(tmp_path / ("x.xlsx" if case == "bad output" else "x.csv"))
    cp = subprocess.run([sys.executable, "-m", "cmperf", "explore", spec, "--out", out], capture_output=True, text=True, timeout=60)
    assert cp.returncode == 2 and cp.stdout == ""
    assert cp.stderr.startswith("cmperf: error: ") and cp.stderr.count("\n") == 1, cp.stderr
