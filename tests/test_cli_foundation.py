"""CLI tests of the foundation commands: hardware/model list and show, --format, --set, errors.

Domain errors (CmperfError) become exit codes in `cmperf.cli.main`, not in `app`, so they are run
as a subprocess `python -m cmperf ...`; usage errors are typer's own and are tested on `app`.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cmperf.cli import app

REPO = Path(__file__).resolve().parents[1]
HW_TEXT = (REPO / "hardware" / "cloudmatrix384.toml").read_text(encoding="utf-8")

runner = CliRunner()
ENV = {"COLUMNS": "250"}


def invoke(*args: str):
    result = runner.invoke(app, list(args), env=ENV)
    return result


def ok(*args: str) -> str:
    result = invoke(*args)
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def cmperf(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **ENV}
    return subprocess.run(
        [sys.executable, "-m", "cmperf", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=60
    )


def domain_error(*args: str, cwd: Path | None = None) -> str:
    """Run; expect exit 2 with one clean message on stderr and nothing on stdout."""
    cp = cmperf(*args, cwd=cwd)
    assert cp.returncode == 2, (cp.returncode, cp.stdout, cp.stderr)
    assert "Traceback" not in cp.stderr and "Traceback" not in cp.stdout
    assert cp.stderr.startswith("cmperf: error: "), cp.stderr
    assert cp.stdout == ""
    return cp.stderr


# ---- list ----------------------------------------------------------------------------------------


def test_hardware_list_table():
    assert "cloudmatrix384" in ok("hardware", "list")


def test_hardware_list_json():
    rows = json.loads(ok("hardware", "list", "--format", "json"))
    assert "cloudmatrix384" in [r["name"] for r in rows]
    assert all(set(r) == {"name", "description", "path"} for r in rows)


def test_model_list():
    out = ok("model", "list")
    assert "deepseek-r1" in out and "deepseek-v3" in out
    names = [r["name"] for r in json.loads(ok("model", "list", "-f", "json"))]
    assert {"deepseek-r1", "deepseek-v3"} <= set(names)


# ---- show ----------------------------------------------------------------------------------------


def test_model_show_json():
    data = json.loads(ok("model", "show", "deepseek-r1", "--format", "json"))
    assert data["arch.hidden_size"] == 7168
    assert "derived.params_total" in data
    assert abs(data["derived.params_total"] - 671e9) / 671e9 < 0.005
    assert data["derived.kv_cache_bytes_per_token"] == 70272
    assert data["precision.kv_cache"] == "bf16"


def test_hardware_show_json():
    data = json.loads(ok("hardware", "show", "cloudmatrix384", "--format", "json"))
    assert data["die.hbm_bandwidth_bytes_per_s"] == 1.6e12
    assert "derived.scaleup_bandwidth_bytes_per_s_per_die" in data
    assert data["derived.scaleup_bandwidth_bytes_per_s_per_die"] == pytest.approx(196e9)
    assert data["derived.dies"] == 768


def test_show_defaults_to_shipped_names():
    assert json.loads(ok("hardware", "show", "-f", "json"))["package.dies"] == 2
    assert json.loads(ok("model", "show", "-f", "json"))["arch.num_hidden_layers"] == 61


def test_hardware_show_table_has_sources():
    out = ok("hardware", "show", "cloudmatrix384")
    assert "die.hbm_bandwidth_bytes_per_s" in out and "cm384" in out


@pytest.mark.parametrize("kind, name", [("hardware", "cloudmatrix384"), ("model", "deepseek-r1")])
def test_show_csv_header(kind, name):
    out = ok(kind, "show", name, "--format", "csv")
    lines = out.splitlines()
    assert lines[0] == "key,value,unit,source,kind,note"
    rows = list(csv.DictReader(io.StringIO(out)))
    keys = {r["key"] for r in rows}
    assert ("die.hbm_bandwidth_bytes_per_s" if kind == "hardware" else "arch.hidden_size") in keys
    assert any(r["kind"] == "derived" and r["key"].startswith("derived.") for r in rows)


@pytest.mark.parametrize("kind, name", [("hardware", "cloudmatrix384"), ("model", "deepseek-r1")])
def test_show_md_header(kind, name):
    out = ok(kind, "show", name, "--format", "md")
    header = next(line for line in out.splitlines() if line.startswith("|"))
    cells = [c.strip() for c in header.strip("|").split("|")]
    assert cells == ["key", "value", "unit", "source", "kind", "note"]
    assert out.count("\n|") > 10


def test_list_csv_and_md_header():
    assert ok("hardware", "list", "-f", "csv").splitlines()[0] == "name,description,path"
    md = ok("model", "list", "-f", "md")
    assert any(line.startswith("| name") for line in md.splitlines())


def test_show_set_changes_value_and_derived():
    data = json.loads(ok("hardware", "show", "--set", "die.hbm_bandwidth_bytes_per_s=2e12", "-f", "json"))
    assert data["die.hbm_bandwidth_bytes_per_s"] == 2e12
    assert data["derived.int8_ridge_flops_per_byte"] == pytest.approx(376.0)
    rows = list(csv.DictReader(io.StringIO(ok("hardware", "show", "--set", "die.hbm_bandwidth_bytes_per_s=2e12", "-f", "csv"))))
    row = next(r for r in rows if r["key"] == "die.hbm_bandwidth_bytes_per_s")
    assert (row["source"], row["kind"]) == ("override", "assumed")


def test_model_show_set_precision():
    data = json.loads(ok("model", "show", "--set", "precision.kv_cache=int8", "-f", "json"))
    assert data["derived.kv_cache_bytes_per_token"] == 70272 // 2


# ---- usage errors (typer) -------------------------------------------------------------------------


def test_bad_format_is_usage_error():
    result = invoke("hardware", "show", "--format", "xml")
    assert result.exit_code == 2
    assert "xml" in result.output
    assert "Traceback" not in result.output


def test_version():
    out = ok("--version")
    assert out.startswith("cmperf ")


# ---- domain errors (subprocess) -------------------------------------------------------------------


def test_unknown_hardware_name():
    err = domain_error("hardware", "show", "nosuch")
    assert "nosuch" in err and "cloudmatrix384" in err


def test_unknown_model_name():
    err = domain_error("model", "show", "nosuch")
    assert "deepseek-r1" in err and "deepseek-v3" in err


def test_set_typo_suggests():
    err = domain_error("hardware", "show", "--set", "die.hbm_bandwith_bytes_per_s=2e12")
    assert "did you mean" in err and "die.hbm_bandwidth_bytes_per_s" in err


def test_set_negative_bandwidth():
    err = domain_error("hardware", "show", "--set", "die.hbm_bandwidth_bytes_per_s=-5")
    assert "die.hbm_bandwidth_bytes_per_s" in err and "positive" in err


def test_set_malformed():
    err = domain_error("model", "show", "--set", "arch.hidden_size")
    assert "KEY=VALUE" in err


def test_hardware_file_with_typo_key(tmp_path):
    bad = tmp_path / "typo.toml"
    bad.write_text(HW_TEXT.replace("\nhbm_bandwidth_bytes_per_s =", "\nhbm_bandwith_bytes_per_s ="), encoding="utf-8")
    assert bad.read_text() != HW_TEXT
    err = domain_error("hardware", "show", str(bad))
    assert str(bad) in err
    assert "die.hbm_bandwith_bytes_per_s" in err and "did you mean die.hbm_bandwidth_bytes_per_s" in err


def test_missing_hardware_file(tmp_path):
    err = domain_error("hardware", "show", str(tmp_path / "absent.toml"))
    assert "absent.toml" in err


# ---- from another directory -----------------------------------------------------------------------


def test_runs_from_another_directory(tmp_path):
    cp = cmperf("hardware", "show", "cloudmatrix384", "-f", "json", cwd=tmp_path)
    assert cp.returncode == 0, cp.stderr
    assert json.loads(cp.stdout)["die.hbm_bandwidth_bytes_per_s"] == 1.6e12
    cp = cmperf("hardware", "list", "-f", "json", cwd=tmp_path)
    assert cp.returncode == 0, cp.stderr
    assert "cloudmatrix384" in [r["name"] for r in json.loads(cp.stdout)]


def test_local_hardware_dir_shadows_installed(tmp_path):
    (tmp_path / "hardware").mkdir()
    (tmp_path / "hardware" / "cloudmatrix384.toml").write_text(
        HW_TEXT.replace("value = 1.6e12,", "value = 2.0e12,"), encoding="utf-8"
    )
    cp = cmperf("hardware", "show", "cloudmatrix384", "-f", "json", cwd=tmp_path)
    assert cp.returncode == 0, cp.stderr
    assert json.loads(cp.stdout)["die.hbm_bandwidth_bytes_per_s"] == 2.0e12


# ---- one command built per start --------------------------------------------------------------------


def _names():
    from cmperf.cli import _command_name

    return [_command_name(c) for c in app.registered_commands] + [g.name for g in app.registered_groups]


def test_every_command_is_registered_and_named_as_help_lists_it():
    listed = ok("--help")
    assert len(_names()) >= 13
    for name in _names():
        assert f" {name} " in listed, name


@pytest.mark.parametrize("args", [["--help"], ["--bogus-option"], ["--help", "--bogus-option"]])
def test_an_app_of_one_command_answers_as_the_whole_app(args):
    """`cmperf NAME ...` builds only NAME's options; help, usage errors and their exit codes are the
    whole app's, for every command and group."""
    from cmperf.cli import _command_name, app_for

    for name in _names():
        one = app_for([name, *args])
        assert one is not app and [_command_name(c) for c in one.registered_commands] + [g.name for g in one.registered_groups] == [name]
        a, b = runner.invoke(app, [name, *args], env=ENV), runner.invoke(one, [name, *args], env=ENV)
        assert (a.exit_code, a.output) == (b.exit_code, b.output), name


@pytest.mark.parametrize("args", [[], ["--help"], ["--version"], ["paln"], ["--version", "plan"]])
def test_the_whole_app_runs_when_no_command_is_named_first(args):
    from cmperf.cli import app_for

    assert app_for(args) is app


def test_a_misspelt_command_still_gets_a_suggestion():
    p = cmperf("paln")
    assert p.returncode == 2 and "plan" in p.stderr
