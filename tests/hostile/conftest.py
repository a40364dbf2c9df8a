"""Helpers for the hostile-input tests: run the CLI in-process and check the error contract."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HW_TEXT = (REPO / "hardware" / "cloudmatrix384.toml").read_text(encoding="utf-8")
MODEL_TEXT = (REPO / "models" / "deepseek-r1.toml").read_text(encoding="utf-8")
PUBLISHED = REPO / "cmperf" / "validation" / "published.csv"


def run_cli(*args: str, cwd: Path | None = None) -> tuple[int, str, str]:
    """`cmperf ARGS` through the console entry point, in this process: (exit code, stdout, stderr)."""
    from cmperf.cli import main

    out, err = io.StringIO(), io.StringIO()
    old_argv, old_cwd = sys.argv, os.getcwd()
    sys.argv = ["cmperf", *args]
    code = 0
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main()
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = old_argv
        os.chdir(old_cwd)
    return code, out.getvalue(), err.getvalue()


def assert_one_error(code: int, err: str, *fragments: str, exit_code: int = 2) -> str:
    """The contract for bad input: exit code 2 (or as given), one line `cmperf: error: ...`."""
    assert code == exit_code, (code, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cmperf: error: "), err
    assert "Traceback" not in err
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    return lines[0]


def assert_terminal_safe(text: str) -> None:
    """No raw escape or other control character (but tab and newline) reaches the output."""
    bad = [c for c in text if (ord(c) < 32 and c not in "\t\n") or 0x7F <= ord(c) <= 0x9F]
    assert not bad, [hex(ord(c)) for c in bad[:5]]


def write_spec(tmp_path: Path, text: str, name: str = "spec.toml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


@pytest.fixture
def hw_file(tmp_path):
    return lambda text, name="hw.toml": write_spec(tmp_path, text, name)


# ---- shared pieces of the fuzz tests ------------------------------------------------------------

#: Text a hostile user might type where a number belongs.
HOSTILE_NUMBERS = ["0", "-0", "-1", "1", "2", "7", "0.5", "1e-300", "5e-324", "1e-30", "1e30", "1e308", "1e400", "-1e400", "nan", "NaN", "-nan",
                   "inf", "-inf", "Infinity", "2147483647", "2147483648", "9223372036854775808", "1" + "0" * 40, "9" * 400, "0x10", "1_000",
                   "1__0", "_1", "1e", "", " ", "abc", "1,5", "١٢", "½", "\x1b[31m1", "1\x00", "1\u202e", "true", "None", "[1]"]


def settings_for(n: int):
    """Deterministic hypothesis settings for `n` examples; no deadline (first runs import numpy).
    CMPERF_FUZZ_EXAMPLES=N runs N randomly seeded examples per test instead (a deeper hunt)."""
    from hypothesis import HealthCheck, settings

    deep = int(os.environ.get("CMPERF_FUZZ_EXAMPLES", "0"))
    return settings(max_examples=deep or n, deadline=None, derandomize=not deep, suppress_health_check=list(HealthCheck), database=None)


def check_contract(code: int, out: str, err: str) -> int:
    """Any CLI run: exit 0, or exit 1/2 with exactly one `cmperf: error:` line; never a traceback or
    a raw control character. Returns the exit code."""
    assert "Traceback" not in err and "Traceback" not in out
    assert_terminal_safe(out + err)
    if code != 0:
        assert code in (1, 2), (code, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("cmperf: error: "), err
    return code


def finite_result(res: dict, phase: str) -> None:
    import numpy as np

    lat = "tpot_s" if phase == "decode" else "ttft_s"
    for key in (lat, "tokens_per_s_per_device", "hbm_used_bytes_per_die"):
        v = np.asarray(res[key], dtype=float)
        assert np.all(np.isfinite(v)) and np.all(v > 0), (key, v)
