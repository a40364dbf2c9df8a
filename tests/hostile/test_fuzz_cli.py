"""Fuzz: hostile CLI options. Every run ends with exit 0, or with exit 1/2 and exactly one
`cmperf: error:` line; never a traceback, never a raw control character on the terminal."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tests.hostile.conftest import HOSTILE_NUMBERS, check_contract, run_cli, settings_for

ESTIMATE_OPTIONS = ["--devices", "--ep", "--batch", "--input-len", "--output-len", "--kv-len", "--tokens-per-device", "--microbatches", "--mtp",
                    "--mtp-acceptance", "--redundant", "--attn-tp", "--prefix-hit", "--eplb", "--cache-path", "--hardware", "--model",
                    "--format", "--set", "--nosuch"]
WORDS = ["decode", "prefill", "perfect", "vpc", "json", "md", "csv", "h100", "nosuch", "a=b", "workload.input_len=nan", "/dev/null",
         "hardware/x.toml", "\x1b]0;x\x07", "--", "-1e9"]
VALUES = st.sampled_from(HOSTILE_NUMBERS + WORDS)


@settings_for(70)
@given(st.sampled_from(["decode", "prefill"]), st.lists(st.tuples(st.sampled_from(ESTIMATE_OPTIONS), VALUES), max_size=3))
def test_fuzz_estimate_options(phase, pairs):
    args = ["estimate", phase, *[x for pair in pairs for x in pair]]
    assert check_contract(*run_cli(*args)) in (0, 1, 2)


PLAN_OPTIONS = ["--tpot", "--ttft", "--input-len", "--output-len", "--mtp-acceptance", "--devices", "--top", "--eplb", "--prefix-hit",
                "--tag", "--format", "--set"]


@settings_for(15)
@given(st.lists(st.tuples(st.sampled_from(PLAN_OPTIONS), VALUES), min_size=1, max_size=2),
       st.sampled_from(["plan", "capacity", "cache"]))
def test_fuzz_plan_and_whatif_options(pairs, command):
    extra = ["--rate", "1"] if command == "capacity" else []
    if command == "cache":
        pairs = [(o, v) for o, v in pairs if o in ("--input-len", "--set", "--tag", "--format", "--eplb")] or [("--hits", "nan")]
    if command == "capacity":
        pairs = [(o if o != "--top" else "--rate", v) for o, v in pairs if o != "--devices"]
    args = [command, "--no-write", *extra, *[x for pair in pairs for x in pair]]
    assert check_contract(*run_cli(*args)) in (0, 1, 2)


@settings_for(25)
@given(st.sampled_from([["hardware", "show"], ["model", "show"], ["hardware", "list"], ["validate", "--published"],
                        ["calibrate"], ["sweep"], ["compare", "--variant-set"], ["compare", "--variant-scale"]]), VALUES)
def test_fuzz_other_commands(cmd, value):
    assert check_contract(*run_cli(*cmd, value, *(["--no-write"] if cmd[0] in ("calibrate", "sweep", "compare") else []))) in (0, 1, 2)
