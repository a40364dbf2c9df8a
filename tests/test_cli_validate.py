"""CLI tests of `cmperf validate` and `cmperf calibrate`.

Successful runs and typer usage errors go through CliRunner on `app`; domain errors (SpecError) become
exit code 2 only in `cmperf.cli.main`, so those run `main()` in-process with a patched argv (and one
through a real subprocess, to prove the exit code end to end).
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cmperf.cli import app, main

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()
ENV = {"COLUMNS": "250"}
RECORD_KEYS = {"case", "metric", "published", "predicted", "error_pct", "tolerance_pct", "within", "source", "note", "hardware", "kind", "unit"}


def invoke(*args: str):
    return runner.invoke(app, list(args), env=ENV)


def run_main(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["cmperf", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


# ---- validate ----------------------------------------------------------------------------------


def test_validate_json_records_have_the_keys():
    result = invoke("validate", "--format", "json")
    assert result.exit_code == 0, (result.output, result.exception)
    rows = json.loads(result.stdout)
    assert isinstance(rows, list) and len(rows) >= 40
    for r in rows:
        assert RECORD_KEYS <= set(r), set(r) ^ RECORD_KEYS
        assert isinstance(r["within"], bool) and isinstance(r["predicted"], float)
    kinds = {r["kind"] for r in rows}
    assert {"predicted", "fitted", "input"} <= kinds
    assert any(r["case"].startswith("FlashMLA") and r["kind"] == "input" for r in rows)
    assert f"{len(rows)}/{len(rows)} rows within tolerance" in result.stderr


def test_validate_table_prints_summary_and_filters_by_hardware():
    result = invoke("validate", "--hardware", "h800")
    assert result.exit_code == 0, (result.output, result.exception)
    assert "DeepGEMM" in result.stdout and "Table 7" not in result.stdout
    assert "rows within tolerance" in result.stdout.splitlines()[-1]


def test_validate_csv_and_md():
    result = invoke("validate", "--format", "csv", "--hardware", "cloudmatrix384")
    assert result.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert rows and all(r["hardware"] == "cloudmatrix384" for r in rows)
    assert any("Table 10" in r["case"] and r["error_basis"] == "points" for r in rows)
    md = invoke("validate", "--format", "md", "--hardware", "cloudmatrix384")
    assert md.exit_code == 0 and "| case" in md.stdout


def test_validate_unknown_hardware_exits_2(monkeypatch, capsys):
    code, out, err = run_main(monkeypatch, capsys, "validate", "--hardware", "h900")
    assert code == 2 and "--hardware" in err and "h900" in err and "Traceback" not in err


def test_validate_exits_1_when_a_row_is_outside_tolerance(tmp_path):
    from cmperf.validation.cases import PUBLISHED_CSV

    lines = PUBLISHED_CSV.read_text().splitlines()
    header = next(i for i, ln in enumerate(lines) if ln.startswith("case,"))
    row = next(ln for ln in lines if ln.startswith("cm384 Table 7 dispatch EP8,"))
    table = tmp_path / "published.csv"
    table.write_text("\n".join([lines[header], row, row.replace(",116,us,15,", ",160,us,15,").replace("EP8,", "EP8 doctored,", 1)]) + "\n")
    result = invoke("validate", "--published", str(table), "--format", "json")
    assert result.exit_code == 1
    rows = json.loads(result.stdout)
    assert [r["within"] for r in rows] == [True, False]
    assert "1/2 rows within tolerance; outside: cm384 Table 7 dispatch EP8 doctored" in result.stderr


def test_validate_bad_format_is_a_usage_error():
    result = invoke("validate", "--format", "xml")
    assert result.exit_code == 2


# ---- calibrate ---------------------------------------------------------------------------------

CSV = """kind,m,n,k,groups,dtype,ep,tokens,metric,value,unit
gemm,7168,4096,4096,4,int8,,,tflops,597,TFLOPS
gemm,2048,7168,8192,4,int8,,,tflops,610,TFLOPS
gemm,2048,7168,1024,4,int8,,,seconds,0.5,ms
dispatch,,,,,,8,128,seconds,116,us
dispatch,,,,,,64,128,,141,us
dispatch,,,,,,256,512,,400,us
"""


@pytest.fixture()
def setup(tmp_path):
    hw = tmp_path / "cm.toml"
    shutil.copyfile(REPO / "hardware" / "cloudmatrix384.toml", hw)
    meas = tmp_path / "meas.csv"
    meas.write_text(CSV)
    return tmp_path, hw, meas


def test_calibrate_writes_into_the_working_directory_and_reports(setup, monkeypatch):
    tmp, hw, meas = setup
    work = tmp / "work"
    work.mkdir()
    monkeypatch.chdir(work)  # never inside the installed package: ./hardware of where it runs
    original = hw.read_bytes()
    result = invoke("calibrate", str(meas), "--hardware", str(hw))
    assert result.exit_code == 0, (result.output, result.exception)
    out = work / "hardware" / "cm-calibrated.toml"
    assert out.is_file() and hw.read_bytes() == original
    assert "efficiency.matmul_compute_frac" in result.stdout and "kept: no measurement informs it" in result.stdout
    assert "err_after_pct" in result.stdout and f"wrote {out}" in result.stdout
    # The new file is a hardware file cmperf can use.
    shown = invoke("hardware", "show", str(out), "--format", "json")
    assert shown.exit_code == 0
    assert json.loads(shown.stdout)["efficiency.matmul_compute_frac"] != 0.855
    again = invoke("calibrate", str(meas), "--hardware", str(hw))
    assert again.exit_code != 0 and "--overwrite" in str(again.exception)
    assert invoke("calibrate", str(meas), "--hardware", str(hw), "--overwrite").exit_code == 0


def test_calibrate_json_and_params(setup):
    tmp, hw, meas = setup
    out = tmp / "fit.toml"
    result = invoke("calibrate", str(meas), "--hardware", str(hw), "--params", "moe_comm.dispatch_startup_s,moe_comm.dispatch_bandwidth_*", "--out", str(out), "--format", "json")
    assert result.exit_code == 0, (result.output, result.exception)
    rec = json.loads(result.stdout)
    assert rec["fitted"] == ["moe_comm.dispatch_startup_s", "moe_comm.dispatch_bandwidth_bytes_per_s"]
    assert rec["out"] == str(out) and out.is_file()
    assert rec["fit"]["rms_after_pct"] < rec["fit"]["rms_before_pct"]
    assert len(rec["measurements_fit"]) == 6 and {"measured", "before", "after"} <= set(rec["measurements_fit"][0])


def test_calibrate_no_write(setup):
    tmp, hw, meas = setup
    result = invoke("calibrate", str(meas), "--hardware", str(hw), "--no-write", "--format", "csv")
    assert result.exit_code == 0
    assert not (tmp / "cm-calibrated.toml").exists()
    assert "no file written" in result.stderr


@pytest.mark.parametrize("text, where", [
    ("kind,value\ngemm,1\n", "missing column 'unit'"),
    ("kind,value,unit\nmatmul,1,s\n", "row 1 (line 2), column 'kind'"),
    ("kind,ep,tokens,value,unit\ndispatch,8,128,1,us\ndispatch,8,128,n/a,us\n", "row 2 (line 3), column 'value'"),
    ("kind,ep,tokens,value,unit,colour\ndispatch,8,128,1,us,red\n", "column 'colour'"),
])
def test_calibrate_bad_csv_exits_2_naming_row_and_column(monkeypatch, capsys, setup, text, where):
    tmp, hw, meas = setup
    meas.write_text(text)
    code, out, err = run_main(monkeypatch, capsys, "calibrate", str(meas), "--hardware", str(hw))
    assert code == 2, (out, err)
    assert str(meas) in err and where in err and "Traceback" not in err
    assert not (tmp / "cm-calibrated.toml").exists()


def test_calibrate_uninformed_or_unknown_param_exits_2(monkeypatch, capsys, setup):
    tmp, hw, meas = setup
    code, _, err = run_main(monkeypatch, capsys, "calibrate", str(meas), "--hardware", str(hw), "--params", "efficiency.prefill_matrix_duty_frac")
    assert code == 2 and "--params" in err and "informs efficiency.prefill_matrix_duty_frac" in err
    code, _, err = run_main(monkeypatch, capsys, "calibrate", str(meas), "--hardware", str(hw), "--params", "efficiency.hbm_fraction")
    assert code == 2 and "unknown key 'efficiency.hbm_fraction'" in err


def test_calibrate_missing_file_exits_2_in_a_real_process(setup):
    tmp, hw, _ = setup
    proc = subprocess.run(
        [sys.executable, "-m", "cmperf", "calibrate", str(tmp / "nope.csv"), "--hardware", str(hw)],
        capture_output=True, text=True, env={**os.environ, **ENV}, timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "nope.csv" in proc.stderr and "Traceback" not in proc.stderr


def test_calibrate_help_documents_the_csv_format():
    result = invoke("calibrate", "--help")
    assert result.exit_code == 0
    for word in ("gemm", "dispatch", "decode", "prefill", "tpot_ms", "tokens_per_s", "TFLOPS", "--params", "--out", "--overwrite"):
        assert word in result.stdout, word


def test_validate_table_on_a_narrow_console_keeps_numbers_whole(monkeypatch):
    """At 80 and 120 columns the table leaves out notes, sources and the like (they stay in md, CSV
    and JSON) rather than breaking every cell: each row's numbers and verdict on one line."""
    for width in (80, 120):
        monkeypatch.setenv("COLUMNS", str(width))
        out = runner.invoke(app, ["validate", "--format", "table"]).output
        assert all(len(line) <= width for line in out.splitlines())
        header = next(l for l in out.splitlines() if "published" in l)
        assert "note" not in header and "source" not in header and "rows within tolerance" in out
        line = next(l for l in out.splitlines() if "tpot_ms" in l and "49.4" in l)
        assert "yes" in line and "%" in line
