"""Fuzz: hostile hardware and model TOML files. A file loads into a spec whose estimate is finite,
or is refused with a SpecError naming the file; never another exception."""

from __future__ import annotations

import itertools
import re
import warnings

from hypothesis import given
from hypothesis import strategies as st

from cmperf.errors import CmperfError, SpecError
from tests.hostile.conftest import HOSTILE_NUMBERS, HW_TEXT, MODEL_TEXT, finite_result, settings_for

_n = itertools.count()
VALUE = re.compile(r"(value = )([^,}]+)")


@st.composite
def hostile_file(draw):
    kind = draw(st.sampled_from(["hardware", "model"]))
    text = HW_TEXT if kind == "hardware" else MODEL_TEXT
    lines = text.splitlines()
    for _ in range(draw(st.integers(1, 3))):
        how = draw(st.sampled_from(["number", "nest", "control", "bom", "truncate", "junk", "big-int"]))
        i = draw(st.integers(0, len(lines) - 1))
        if how == "number" and VALUE.search(lines[i]):
            lines[i] = VALUE.sub(lambda m: m.group(1) + draw(st.sampled_from([v for v in HOSTILE_NUMBERS if v.strip()])), lines[i], count=1)
        elif how == "nest":
            depth = draw(st.one_of(st.integers(1, 40), st.sampled_from([100, 333, 500, 1000, 5000])))
            o, c = draw(st.sampled_from([("[", "]"), ("{ a = ", " }")]))
            lines.insert(i, f"zz = {o * depth}1{c * depth}")
        elif how == "control":
            ch = draw(st.sampled_from(["\\u001b", "\\u0007", "\\u009b", "\\u202e", "\\u0000", "\\t"]))
            lines[i] = lines[i].replace('"', '"' + ch, 1)
        elif how == "bom":
            lines[0] = "\ufeff" + lines[0]
        elif how == "truncate":
            lines = lines[: i + 1]
            lines[-1] = lines[-1][: draw(st.integers(0, len(lines[-1])))]
        elif how == "junk":
            lines.insert(i, draw(st.text(min_size=1, max_size=20)))
        else:
            lines[i] = VALUE.sub(lambda m: m.group(1) + str(draw(st.integers(2**31 - 8, 2**70))), lines[i], count=1)
    return kind, "\n".join(lines) + "\n"


@settings_for(80)
@given(hostile_file())
def test_fuzz_toml_files(tmp_path_factory, case):
    from cmperf.evaluation import estimate
    from cmperf.specs.loader import parse_spec

    kind, text = case
    path = tmp_path_factory.getbasetemp() / f"fuzz-{next(_n)}.toml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        parse_spec(path, kind)
    except SpecError as exc:
        assert str(path) in str(exc)
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # an overflow is a failure, not a warning
            res = estimate("decode", str(path) if kind == "hardware" else "cloudmatrix384", str(path) if kind == "model" else "deepseek-r1").result
    except CmperfError:
        return
    finite_result(res, "decode")
