"""One test per numbered finding of "Hostile input, full disks and crashes": each one reproduces the
finding and checks the promise it broke (bad input: exit 2 and one `cmperf: error:` line naming
the file, key or option; good input: correct, finite numbers; nothing hangs, nothing half-written)."""

from __future__ import annotations

import errno
import math
import multiprocessing
import os
import signal
import stat
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cmperf.errors import SpecError
from tests.hostile.conftest import HW_TEXT, MODEL_TEXT, PUBLISHED, assert_one_error, assert_terminal_safe, run_cli, write_spec

FILES = {"plan.md": "# plan\n", "deployments.csv": "a,b\n1,2\n"}


# ---- tracebacks -------------------------------------------------------------------------------


@pytest.mark.parametrize("opener,closer", [("[", "]"), ("{a = ", "}")])
def test_item_01_deeply_nested_toml_is_one_error(tmp_path, opener, closer):
    text = HW_TEXT + "\n[die]\ndeep = " + opener * 500 + "1" * (opener == "{a = ") + closer * 500 + "\n"
    path = write_spec(tmp_path, text)
    code, _, err = run_cli("hardware", "show", str(path))
    assert_one_error(code, err, str(path), "nested 500 deep", "at most")


def test_item_02_shapes_whose_products_overflow_are_refused():
    code, _, err = run_cli("estimate", "prefill", "--set", "attention.num_attention_heads=2147483647",
                           "--set", "attention.qk_nope_head_dim=2147483647")
    assert_one_error(code, err, "--set", "derived.params_total", "attention.num_attention_heads")


def test_item_03_plan_with_no_placeable_deployment_says_why():
    code, _, err = run_cli("plan", "--no-write", "--set", "moe.n_routed_experts=1001", "--set", "moe.n_group=7", "--set", "moe.topk_group=4")
    assert_one_error(code, err, "no decode deployment", "1001 routed")


def test_item_04_csv_cell_beyond_the_field_limit(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("kind,ep,tokens,value,unit,note\ndispatch,8,128,116,us," + "x" * 200_000 + "\n")
    code, _, err = run_cli("calibrate", str(path), "--no-write")
    assert_one_error(code, err, "m.csv: line 2", "longer than")


def _published(tmp_path: Path, edit) -> Path:
    lines = PUBLISHED.read_text(encoding="utf-8").splitlines()
    header = next(ln for ln in lines if ln.startswith("case,"))
    row = next(ln for ln in lines if ",decode,predicted,batch=96," in ln).replace("batch=96", "batch=96;microbatches=2")
    path = tmp_path / "mine.csv"
    path.write_text(header + "\n" + edit(row) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("edit,fragment", [
    (lambda r: r.replace("batch=96", "batch=abc"), "params batch"),
    (lambda r: r.replace(",49.4,", ",0,"), "column 'published'"),
])
def test_item_05_bad_published_rows_are_one_error(tmp_path, edit, fragment):
    path = _published(tmp_path, edit)
    code, _, err = run_cli("validate", "--published", str(path))
    assert_one_error(code, err, f"{path}: line 2", fragment)


def test_item_06_unwritable_or_full_destinations(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run_cli("capacity", "--rate", "1", "--out", str(blocker / "sub"))
    assert_one_error(code, err, f"cannot write the report to {blocker / 'sub'}: not a directory")
    code, _, err = run_cli("capacity", "--rate", "1", "--out", "/proc/self")
    assert_one_error(code, err, "cannot write the report to /proc/self: ")

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    code, _, err = run_cli("capacity", "--rate", "1", "--out", str(tmp_path / "r"))
    assert_one_error(code, err, f"cannot write the report to {tmp_path / 'r'}: no space left on device", exit_code=1)
    assert not list((tmp_path / "r").iterdir())  # nothing half-written

    def read_only(*a, **k):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(os, "fsync", read_only)
    code, _, err = run_cli("capacity", "--rate", "1", "--out", str(tmp_path / "r"))
    assert_one_error(code, err, "read-only file system", exit_code=2)


def test_item_06_calibrate_out_onto_a_directory_or_a_full_disk(tmp_path, monkeypatch):
    meas = tmp_path / "m.csv"
    meas.write_text("kind,ep,tokens,value,unit\ndispatch,8,128,116,us\ndispatch,16,128,125,us\n")
    (tmp_path / "d.toml").mkdir()
    code, _, err = run_cli("calibrate", str(meas), "--params", "moe_comm.dispatch_startup_s", "--out", str(tmp_path / "d.toml"), "--overwrite")
    assert_one_error(code, err, "--out", "is a directory")

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    code, _, err = run_cli("calibrate", str(meas), "--params", "moe_comm.dispatch_startup_s", "--out", str(tmp_path / "c.toml"))
    assert_one_error(code, err, f"cannot write the calibrated file to {tmp_path / 'c.toml'}: no space left on device", exit_code=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.toml", "m.csv"]


def _overwrite_many(out: str, n: int, barrier) -> None:
    from cmperf.report.files import write_run_dir

    os.fsync = lambda fd: None  # tight loops: the runs meet in the swap far more often
    barrier.wait()
    for i in range(n):
        write_run_dir(out, "plan", {**FILES, "who": f"{os.getpid()} {i}\n"}, "ow", True)


def test_item_07_concurrent_overwrite_with_one_tag(tmp_path):
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(4)
    procs = [ctx.Process(target=_overwrite_many, args=(str(tmp_path), 60, barrier)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan-ow"]  # no plan-ow-2, nothing hidden left
    assert sorted(p.name for p in (tmp_path / "plan-ow").iterdir()) == sorted([*FILES, "who"])


def test_item_08_python_entry_points_raise_spec_errors():
    from cmperf.evaluation import estimate

    for opts, where in [(dict(attn_tp=0), "--attn-tp"), (dict(batch="96"), "--batch")]:
        with pytest.raises(SpecError, match=where):
            estimate("decode", **opts)
    assert estimate("decode", sets=None).result["tokens_per_s_per_device"] > 0


# ---- silent wrong numbers ---------------------------------------------------------------------


def test_item_09_huge_hidden_size_is_refused_from_set_and_file(tmp_path):
    code, out, err = run_cli("estimate", "decode", "--set", "arch.hidden_size=2147483647")
    assert_one_error(code, err, "--set", "derived.")
    path = write_spec(tmp_path, MODEL_TEXT.replace("hidden_size = { value = 7168", "hidden_size = { value = 2147483647"), "m.toml")
    code, out, err = run_cli("estimate", "decode", "--model", str(path))
    assert_one_error(code, err, str(path), "derived.")


def test_item_10_hottest_die_never_exceeds_what_top_k_allows():
    from cmperf.evaluation import estimate
    from cmperf.report.explain import summary

    for skew in ("60", "1000"):
        res = estimate("decode", sets={"routing.popularity_skew": skew}).result
        # EP320 places 288 routed experts one per die; with top-8 a die sees each token at most
        # once, so the hottest die holds at most 288 / 8 = 36x the mean load.
        assert summary(res)["hot_rank_load_ratio"] <= 288 / 8 + 1e-9


@pytest.mark.parametrize("field,value", [("batch", math.nan), ("kv_len", math.nan), ("mtp_acceptance", math.nan), ("prefix_hit", math.nan),
                                         ("batch", 0), ("devices", 0), ("ep", 0), ("microbatches", 0), ("mtp", 100), ("microbatches", 1000)])
def test_item_11_nan_zero_and_out_of_range_python_values(field, value):
    from cmperf.evaluation import estimate
    from cmperf.solve.plan import PlanRequest, plan

    phase = "prefill" if field == "prefix_hit" else "decode"
    with pytest.raises(SpecError, match="--" + field.replace("_", "-")):
        estimate(phase, **{field: value})
    with pytest.raises(SpecError, match="--prefix-hit"):
        plan(PlanRequest(prefix_hit=1))


def test_item_12_validate_exit_code_and_row_checks(tmp_path):
    path = _published(tmp_path, lambda r: r.replace(",49.4,", ",10,"))
    code, out, err = run_cli("validate", "--published", str(path))
    assert code == 1 and "0/1 rows within tolerance" in out
    for edit, col in [(lambda r: r.replace(",49.4,", ",nan,"), "published"), (lambda r: r.replace(",49.4,", ",-5,"), "published"),
                      (lambda r: r.replace(",ms,10,", ",ms,nan,"), "tolerance_pct"), (lambda r: r.replace(",ms,", ",furlongs,"), "unit")]:
        path = _published(tmp_path, edit)
        code, _, err = run_cli("validate", "--published", str(path))
        assert_one_error(code, err, f"{path}: line 2, column '{col}'")
    path = _published(tmp_path, lambda r: r.replace("batch=96", "batch=96;devices=0"))
    code, _, err = run_cli("validate", "--published", str(path))
    assert_one_error(code, err, f"{path}: line 2", "params devices")


def test_item_13_a_million_devices_never_prints_zero_tokens_per_second():
    code, out, err = run_cli("estimate", "decode", "--devices", "1000000")
    assert code == 0
    headline = next(ln for ln in out.splitlines() if ln.startswith("TPOT"))
    assert "| 0 tokens/s" not in headline and "(0 per die)" not in headline
    assert re.search(r"\| 0\.\d\d\d tokens/s per device", headline), headline


# ---- hangs ------------------------------------------------------------------------------------


def _cli_subprocess(*args: str, timeout: float) -> subprocess.CompletedProcess:
    """`cmperf ARGS` as its own process, killed (and the test failed) past `timeout` seconds."""
    try:
        return subprocess.run([sys.executable, "-m", "cmperf", *args], capture_output=True, text=True, timeout=timeout,
                              cwd=Path(__file__).resolve().parents[2])
    except subprocess.TimeoutExpired:
        pytest.fail(f"cmperf {' '.join(args)[:80]} ran past {timeout} s")


def test_item_14_redundant_expert_default_is_immediate():
    code = "from cmperf.evaluation import default_redundant as d\nclass M(dict):\n    has = dict.__contains__\n" + "".join(
        f"d(M({{'moe.n_routed_experts': {E}, 'moe.n_shared_experts': 1, 'moe.num_experts_per_tok': 8, 'moe.n_group': 1, 'moe.topk_group': 1, 'moe.moe_intermediate_size': 1}}), 320)\n"
        for E in (16_777_215, 2_147_483_647, 2_147_483_632))
    try:
        subprocess.run([sys.executable, "-c", code], check=True, timeout=20, cwd=Path(__file__).resolve().parents[2])
    except subprocess.TimeoutExpired:
        pytest.fail("the redundant-expert default ran past 20 s")
    p = _cli_subprocess("estimate", "decode", "--set", "moe.n_routed_experts=16777215", "--set", "moe.n_group=1",
                        "--set", "moe.topk_group=1", "--set", "moe.moe_intermediate_size=1", timeout=20)
    assert_one_error(p.returncode, p.stderr, "--ep/--redundant")


def test_item_15_calibrate_on_a_million_rows_is_refused_at_once(tmp_path):
    path = tmp_path / "m.csv"
    with open(path, "w") as fh:
        fh.write("kind,ep,tokens,value,unit\n")
        fh.write("dispatch,8,128,116,us\n" * 1_000_000)
    p = _cli_subprocess("calibrate", str(path), "--no-write", timeout=30)
    assert_one_error(p.returncode, p.stderr, "m.csv", "more than 2,000 measurements")


# ---- inconsistent and unclear -----------------------------------------------------------------


def test_item_16_related_keys_are_checked_together_everywhere():
    from cmperf.whatif.core import scenario

    keys = {"die.matrix_block_rows": "128", "die.matrix_block_cols": "128", "die.core_bandwidth_bytes_per_s": "1e11"}
    sc = scenario(layers=[({}, "--set"), (keys, "--variant-set")])
    assert sc.hw["die.matrix_block_rows"] == 128
    sc = scenario(layers=[({"moe.n_routed_experts": "300", "moe.n_group": "6"}, "--set")])
    assert sc.model["moe.n_routed_experts"] == 300


def test_item_17_messages_name_the_real_bound_and_thing(tmp_path):
    code, _, err = run_cli("plan", "--no-write", "--tpot", "2e9")
    assert_one_error(code, err, "--tpot", "0.001 ms to 1e+09 ms")
    code, _, err = run_cli("estimate", "decode", "--kv-len", "nan")
    assert_one_error(code, err, "--kv-len", "[1, 1e+07]", "'nan'")
    code, out, _ = run_cli("hardware", "show", str(write_spec(tmp_path, "\ufeff" + HW_TEXT, "bom.toml")))
    assert code == 0 and "cloudmatrix384" in out
    (tmp_path / "hardware").mkdir()
    (tmp_path / "hardware" / "dir.toml").mkdir()
    (tmp_path / "hardware" / "dangling.toml").symlink_to(tmp_path / "nowhere.toml")
    code, out, _ = run_cli("hardware", "list", "--format", "csv", cwd=tmp_path)
    assert code == 0 and "dir," not in out and "dangling" not in out
    code, _, err = run_cli("hardware", "show", "nosuch")
    assert_one_error(code, err, "NAME: unknown hardware 'nosuch'")
    code, _, err = run_cli("estimate", "decode", "--set", "derived.nosuch=1")
    assert_one_error(code, err, "unknown key 'derived.nosuch'")
    for cmd in (["plan", "--no-write"], ["capacity", "--rate", "1", "--no-write"]):
        code, _, err = run_cli(*cmd, "--tag", "a\\b")
        assert_one_error(code, err, "--tag", "plain folder name")


def test_item_18_escape_sequences_never_reach_terminal_or_markdown(tmp_path):
    from cmperf.report.files import write_run_dir

    path = write_spec(tmp_path, HW_TEXT.replace('name = "', 'name = "\\u001b]0;x\\u0007', 1))
    code, out, err = run_cli("hardware", "show", str(path))
    assert_one_error(code, err, "control characters")
    assert_terminal_safe(out + err)
    odd = write_spec(tmp_path, HW_TEXT, "\x1b[31mred.toml")
    code, out, err = run_cli("estimate", "decode", "--hardware", str(odd), "--set", "routing.popularity_skew=0.5")
    assert code == 0
    assert_terminal_safe(out + err)
    d = write_run_dir(tmp_path / "r", "plan", {"plan.md": "title \x1b]0;x\x07 here\n"}, "t")
    assert_terminal_safe((d / "plan.md").read_text())


_SLOW_WRITER = textwrap.dedent("""
    import os, sys, time
    from cmperf.report import files
    def stall(fd):
        print("writing", flush=True)
        time.sleep(60)
    os.fsync = stall
    files.write_run_dir(sys.argv[1], "plan", {"plan.md": "# half\\n"}, "killed")
""")


def test_item_19_temp_folders_of_killed_runs_are_cleaned(tmp_path):
    from cmperf.report.files import write_run_dir

    p = subprocess.Popen([sys.executable, "-c", _SLOW_WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert p.stdout.readline().strip() == "writing"
    os.kill(p.pid, signal.SIGKILL)
    p.wait(10)
    left = [d for d in tmp_path.iterdir() if d.name.startswith(".plan-")]
    assert left  # the killed run's temporary folder
    write_run_dir(tmp_path, "plan", FILES, "next")
    assert sorted(d.name for d in tmp_path.iterdir()) == ["plan-next"]


def test_item_19_calibrated_file_follows_the_umask(tmp_path):
    meas = tmp_path / "m.csv"
    meas.write_text("kind,ep,tokens,value,unit\ndispatch,8,128,116,us\ndispatch,16,128,125,us\n")
    old = os.umask(0o022)
    try:
        code, _, err = run_cli("calibrate", str(meas), "--params", "moe_comm.dispatch_startup_s", "--out", str(tmp_path / "c.toml"))
    finally:
        os.umask(old)
    assert code == 0, err
    report = tmp_path / "r"
    from cmperf.report.files import write_run_dir

    os.umask(0o022)
    try:
        d = write_run_dir(report, "plan", FILES, "u")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "c.toml").stat().st_mode) == stat.S_IMODE((d / "plan.md").stat().st_mode) == 0o644
