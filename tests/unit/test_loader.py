"""Unit tests of cmperf.specs.loader: every bad file is a SpecError naming file, key and expectation."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cmperf.errors import CmperfError, SpecError
from cmperf.specs.loader import Spec, known_names, load_hardware, load_model, parse_spec
from cmperf.specs.schema import DTYPES, HARDWARE_FIELDS, KINDS, MODEL_FIELDS

REPO = Path(__file__).resolve().parents[2]
HW_FILE = REPO / "hardware" / "cloudmatrix384.toml"
MODEL_FILE = REPO / "models" / "deepseek-r1.toml"
HW_TEXT = HW_FILE.read_text(encoding="utf-8")
MODEL_TEXT = MODEL_FILE.read_text(encoding="utf-8")

HBM_LINE = 'hbm_bandwidth_bytes_per_s = { value = 1.6e12, source = "cm384"'


def mutate(text: str, old: str, new: str) -> str:
    """Replace exactly one occurrence, so a mutation can never silently do nothing."""
    assert text.count(old) == 1, f"mutation anchor {old!r} found {text.count(old)} times"
    return text.replace(old, new)


def write(tmp_path: Path, text: str, name: str = "bad.toml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def expect_error(path: Path, kind: str, *fragments: str) -> str:
    """Load `path`; it must raise a SpecError whose message names the file and every fragment."""
    loader = load_hardware if kind == "hardware" else load_model
    with pytest.raises(SpecError) as info:
        loader(str(path))
    msg = str(info.value)
    assert str(path) in msg, msg
    for frag in fragments:
        assert frag in msg, f"{frag!r} not in {msg!r}"
    assert isinstance(info.value, CmperfError) and info.value.exit_code == 2
    return msg


# ---- bad files ----------------------------------------------------------------------------------


def test_typo_key_suggests_correct_key(tmp_path):
    p = write(tmp_path, mutate(HW_TEXT, "\nhbm_bandwidth_bytes_per_s =", "\nhbm_bandwith_bytes_per_s ="))
    expect_error(p, "hardware", "unknown key", "die.hbm_bandwith_bytes_per_s", "did you mean", "die.hbm_bandwidth_bytes_per_s")


def test_key_in_wrong_table_suggests_right_table(tmp_path):
    text = mutate(HW_TEXT, "[package]\n", '[package]\nhbm_frac = { value = 0.8, source = "cm384" }\n')
    p = write(tmp_path, text)
    expect_error(p, "hardware", "unknown key 'package.hbm_frac'", "efficiency.hbm_frac")


def test_unknown_table(tmp_path):
    p = write(tmp_path, mutate(HW_TEXT, "[efficiency]", "[efficency]"))
    expect_error(p, "hardware", "unknown table 'efficency'", "did you mean", "efficiency")


def test_top_level_value_instead_of_table(tmp_path):
    vpc = '[vpc]\nbandwidth_bytes_per_s_per_node = { value = 5e10, source = "cm384", note = "400 Gbps per node through the Qingtian DPU" }\n'
    text = mutate(HW_TEXT, vpc, "")
    text = mutate(text, "[meta]", "vpc = 5\n[meta]")
    expect_error(write(tmp_path, text), "hardware", "'vpc' must be a table")


def test_same_name_as_value_and_table_is_a_toml_error(tmp_path):
    p = write(tmp_path, mutate(HW_TEXT, "[meta]", "die = 5\n[meta]"))
    expect_error(p, "hardware", "TOML syntax error")


def test_missing_required_key(tmp_path):
    text = "\n".join(line for line in HW_TEXT.splitlines() if not line.startswith("vector_flops_per_s ="))
    assert text != HW_TEXT
    p = write(tmp_path, text)
    expect_error(p, "hardware", "missing key", "die.vector_flops_per_s")


def test_missing_optional_key_is_fine(tmp_path):
    text = "\n".join(line for line in HW_TEXT.splitlines() if not line.startswith("fp16_matrix_flops_per_s ="))
    assert HARDWARE_FIELDS["die.fp16_matrix_flops_per_s"].optional
    hw = load_hardware(str(write(tmp_path, text, "ok.toml")))
    assert not hw.has("die.fp16_matrix_flops_per_s")
    assert hw.has("die.bf16_matrix_flops_per_s")


def test_missing_required_model_key(tmp_path):
    text = "\n".join(line for line in MODEL_TEXT.splitlines() if not line.startswith("kv_lora_rank ="))
    assert text != MODEL_TEXT
    expect_error(write(tmp_path, text), "model", "needs key", "attention.kv_lora_rank")


def test_string_where_number_expected(tmp_path):
    p = write(tmp_path, mutate(HW_TEXT, "matrix_cores = { value = 24,", 'matrix_cores = { value = "many",'))
    expect_error(p, "hardware", "die.matrix_cores", "expected a number", "'many'")


def test_bool_where_number_expected(tmp_path):
    p = write(tmp_path, mutate(HW_TEXT, "matrix_cores = { value = 24,", "matrix_cores = { value = true,"))
    expect_error(p, "hardware", "die.matrix_cores", "expected a number", "True")


@pytest.mark.parametrize("value", ["-1.6e12", "0", "0.0", "-0.0"])
def test_non_positive_bandwidth(tmp_path, value):
    p = write(tmp_path, mutate(HW_TEXT, "value = 1.6e12,", f"value = {value},"))
    expect_error(p, "hardware", "die.hbm_bandwidth_bytes_per_s", "expected a positive number")


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_value(tmp_path, value):
    p = write(tmp_path, mutate(HW_TEXT, "value = 1.6e12,", f"value = {value},"))
    expect_error(p, "hardware", "die.hbm_bandwidth_bytes_per_s", "finite")


def test_nonneg_field_accepts_zero_rejects_negative(tmp_path):
    ok = load_hardware(str(write(tmp_path, mutate(HW_TEXT, "op_latency_s = { value = 2e-6", "op_latency_s = { value = 0.0"), "ok.toml")))
    assert ok["overhead.op_latency_s"] == 0.0
    p = write(tmp_path, mutate(HW_TEXT, "op_latency_s = { value = 2e-6", "op_latency_s = { value = -1e-6"))
    expect_error(p, "hardware", "overhead.op_latency_s", "expected a number >= 0")


@pytest.mark.parametrize("value", ["0", "0.0", "1.2", "-0.5", "1.0000001"])
def test_fraction_outside_unit_interval(tmp_path, value):
    p = write(tmp_path, mutate(HW_TEXT, "hbm_frac = { value = 0.841", f"hbm_frac = {{ value = {value}"))
    expect_error(p, "hardware", "efficiency.hbm_frac", "fraction in (0, 1]")


def test_fraction_of_exactly_one_is_allowed(tmp_path):
    hw = load_hardware(str(write(tmp_path, mutate(HW_TEXT, "hbm_frac = { value = 0.841", "hbm_frac = { value = 1"), "ok.toml")))
    assert hw["efficiency.hbm_frac"] == 1.0
    assert isinstance(hw["efficiency.hbm_frac"], float)


def test_dangling_source(tmp_path):
    p = write(tmp_path, mutate(HW_TEXT, HBM_LINE, HBM_LINE.replace('"cm384"', '"nosuch"')))
    expect_error(p, "hardware", "die.hbm_bandwidth_bytes_per_s", "source 'nosuch'", "not in [sources]", "cm384")


def test_entry_without_source(tmp_path):
    p = write(tmp_path, mutate(HW_TEXT, HBM_LINE, HBM_LINE.replace(', source = "cm384"', "")))
    expect_error(p, "hardware", "die.hbm_bandwidth_bytes_per_s", "missing 'source'", "[sources]")


def test_bad_kind(tmp_path):
    old = 'latency_s = { value = 5e-6, source = "cmperf", kind = "assumed"'
    p = write(tmp_path, mutate(HW_TEXT, old, old.replace('"assumed"', '"guessed"')))
    msg = expect_error(p, "hardware", "scaleout.latency_s", "kind must be one of", "'guessed'")
    assert all(k in msg for k in KINDS)


def test_bare_value_instead_of_entry_table(tmp_path):
    p = write(tmp_path, mutate(HW_TEXT, 'matrix_cores = { value = 24, source = "cm384", note = "AI cube cores (AIC)" }', "matrix_cores = 24"))
    expect_error(p, "hardware", "die.matrix_cores", "value = ", "source = ")


def test_unexpected_entry_field(tmp_path):
    p = write(tmp_path, mutate(HW_TEXT, HBM_LINE, HBM_LINE + ', unit = "B/s"'))
    expect_error(p, "hardware", "die.hbm_bandwidth_bytes_per_s", "unexpected field(s) unit", "expected value, source, kind, note")


def test_toml_syntax_error(tmp_path):
    p = write(tmp_path, mutate(HW_TEXT, "[die]\n", "[die\n"))
    expect_error(p, "hardware", "TOML syntax error", "line")


def test_float_where_int_required(tmp_path):
    p = write(tmp_path, mutate(HW_TEXT, "matrix_cores = { value = 24,", "matrix_cores = { value = 24.5,"))
    expect_error(p, "hardware", "die.matrix_cores", "whole number", "24.5")


def test_whole_float_for_int_becomes_int(tmp_path):
    hw = load_hardware(str(write(tmp_path, mutate(HW_TEXT, "matrix_cores = { value = 24,", "matrix_cores = { value = 24.0,"), "ok.toml")))
    assert hw["die.matrix_cores"] == 24
    assert type(hw["die.matrix_cores"]) is int


def test_bad_dtype_in_model_precision(tmp_path):
    p = write(tmp_path, mutate(MODEL_TEXT, 'kv_cache = { value = "bf16"', 'kv_cache = { value = "bf17"'))
    msg = expect_error(p, "model", "precision.kv_cache", "'bf17'", "expected one of")
    assert all(d in msg for d in DTYPES)


def test_missing_meta(tmp_path):
    text = mutate(HW_TEXT, '[meta]\nname = "cloudmatrix384"\n', "[meta]\n")
    expect_error(write(tmp_path, text), "hardware", "meta.name", "non-empty string")


def test_empty_sources(tmp_path):
    start = HW_TEXT.index("[sources]")
    end = HW_TEXT.index("[die]")
    text = HW_TEXT[:start] + "[sources]\n\n" + HW_TEXT[end:]
    expect_error(write(tmp_path, text), "hardware", "[sources]")


def test_hardware_file_loaded_as_model_is_rejected(tmp_path):
    expect_error(write(tmp_path, HW_TEXT), "model", "unknown table")


# ---- the shipped files ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["hardware", "model"])
def test_shipped_files_load(kind):
    names = known_names(kind)
    assert names, f"no {kind} files found"
    loader = load_hardware if kind == "hardware" else load_model
    fields = HARDWARE_FIELDS if kind == "hardware" else MODEL_FIELDS
    for name in names:
        spec = loader(name)
        assert isinstance(spec, Spec)
        assert spec.name == name == Path(spec.path).stem
        required = {k for k, f in fields.items() if not f.optional}
        assert required <= set(spec.values)
        assert set(spec.values) == set(spec.provenance)
        for key, prov in spec.provenance.items():
            assert prov.source in spec.sources, key
            assert prov.kind in KINDS, key


def test_known_names():
    assert "cloudmatrix384" in known_names("hardware")
    assert {"deepseek-r1", "deepseek-v3"} <= set(known_names("model"))


def test_hardware_values_are_what_the_file_says():
    hw = load_hardware()
    assert hw.kind == "hardware"
    assert hw.name == "cloudmatrix384"
    assert hw["die.hbm_bandwidth_bytes_per_s"] == 1.6e12
    assert hw["die.int8_matrix_flops_per_s"] == 7.52e14
    assert hw["die.matrix_cores"] == 24 and type(hw["die.matrix_cores"]) is int
    assert hw["package.dies"] == 2
    assert hw["system.nodes"] == 48
    assert hw["efficiency.hbm_frac"] == 0.841
    assert hw["overlap.prefill_comm_matrix_cores"] == 0
    assert hw.get("no.such.key", "dflt") == "dflt"
    # provenance: explicit kind, default kind "paper", notes
    p = hw.provenance["efficiency.matmul_compute_frac"]
    assert (p.source, p.kind) == ("cm384", "fitted")
    assert hw.provenance["die.matrix_cores"].kind == "paper"
    assert hw.provenance["die.matrix_cores"].note == "AI cube cores (AIC)"
    assert hw.provenance["scaleout.latency_s"].kind == "assumed"
    assert hw.sources["cm384"]["url"] == "https://arxiv.org/abs/2506.12708"
    assert hw.overridden == ()


def test_model_values_are_what_the_file_says():
    m = load_model()
    assert m.kind == "model"
    assert m.name == "deepseek-r1"
    assert m["arch.hidden_size"] == 7168
    assert m["arch.num_hidden_layers"] == 61
    assert m["moe.n_routed_experts"] == 256
    assert m["precision.kv_cache"] == "bf16"
    assert m["precision.matmul"] == "int8"
    assert m.provenance["arch.hidden_size"].kind == "config"


def test_spec_is_frozen():
    hw = load_hardware()
    with pytest.raises(dataclasses.FrozenInstanceError):
        hw.name = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        hw.values = {}  # type: ignore[misc]
    with pytest.raises(TypeError):
        hw.values["die.matrix_cores"] = 1  # type: ignore[index]
    with pytest.raises(TypeError):
        hw.provenance["die.matrix_cores"] = None  # type: ignore[index]
    assert hw["die.matrix_cores"] == 24


# ---- with_values ---------------------------------------------------------------------------------


def test_with_values_records_provenance_and_leaves_original():
    hw = load_hardware()
    new = hw.with_values({"die.hbm_bandwidth_bytes_per_s": "2e12"})
    assert new["die.hbm_bandwidth_bytes_per_s"] == 2e12
    assert hw["die.hbm_bandwidth_bytes_per_s"] == 1.6e12
    prov = new.provenance["die.hbm_bandwidth_bytes_per_s"]
    assert prov.kind == "assumed"
    assert prov.source == "override"
    assert new.overridden == ("die.hbm_bandwidth_bytes_per_s",)
    assert hw.provenance["die.hbm_bandwidth_bytes_per_s"].source == "cm384"
    # a second override of the same key is not listed twice
    again = new.with_values({"die.hbm_bandwidth_bytes_per_s": 3e12, "package.dies": "4"})
    assert again.overridden == ("die.hbm_bandwidth_bytes_per_s", "package.dies")
    assert again["package.dies"] == 4 and type(again["package.dies"]) is int


@pytest.mark.parametrize(
    "key, value, fragment",
    [
        ("die.hbm_bandwidth_bytes_per_s", -5, "positive"),
        ("die.hbm_bandwidth_bytes_per_s", "-5", "positive"),
        ("die.hbm_bandwidth_bytes_per_s", "0", "positive"),
        ("die.hbm_bandwidth_bytes_per_s", "fast", "expected a number"),
        ("die.matrix_cores", "24.5", "whole number"),
        ("efficiency.hbm_frac", "1.5", "fraction"),
        ("die.hbm_bandwith_bytes_per_s", 1, "did you mean die.hbm_bandwidth_bytes_per_s"),
    ],
)
def test_with_values_validates(key, value, fragment):
    hw = load_hardware()
    with pytest.raises(SpecError) as info:
        hw.with_values({key: value})
    assert fragment in str(info.value)
    assert key in str(info.value)


def test_with_values_validates_model_dtype():
    m = load_model()
    assert m.with_values({"precision.kv_cache": "int8"})["precision.kv_cache"] == "int8"
    with pytest.raises(SpecError, match="precision.kv_cache.*expected one of"):
        m.with_values({"precision.kv_cache": "int4"})


@settings(max_examples=60, deadline=None)
@given(st.floats(min_value=1e-30, max_value=1e30, allow_nan=False, allow_infinity=False))
def test_with_values_positive_roundtrip(x):
    hw = load_hardware()
    assert hw.with_values({"die.hbm_bandwidth_bytes_per_s": x})["die.hbm_bandwidth_bytes_per_s"] == x
    assert hw.with_values({"die.hbm_bandwidth_bytes_per_s": repr(x)})["die.hbm_bandwidth_bytes_per_s"] == x


@settings(max_examples=60, deadline=None)
@given(st.floats(max_value=0.0, allow_nan=False))
def test_with_values_non_positive_always_rejected(x):
    with pytest.raises(SpecError):
        load_hardware().with_values({"die.hbm_bandwidth_bytes_per_s": x})


@settings(max_examples=60, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True))
def test_with_values_fraction_accepts_exactly_unit_interval(x):
    # Fractions lie in (0, 1]; like every quantity, a non-zero one below 1e-30 is rejected as a typo.
    hw = load_hardware()
    if 1e-30 <= x <= 1:
        assert hw.with_values({"efficiency.hbm_frac": x})["efficiency.hbm_frac"] == x
    else:
        with pytest.raises(SpecError, match="efficiency.hbm_frac"):
            hw.with_values({"efficiency.hbm_frac": x})


# ---- name lookup ---------------------------------------------------------------------------------


def test_lookup_by_name_and_by_path():
    by_name = load_hardware("cloudmatrix384")
    by_path = load_hardware(str(HW_FILE))
    assert by_name.values == by_path.values
    assert Path(by_path.path).resolve() == HW_FILE.resolve()
    assert load_model("deepseek-v3").name == "deepseek-v3"


def test_unknown_hardware_name_lists_known():
    with pytest.raises(SpecError) as info:
        load_hardware("cloudmatrix999")
    msg = str(info.value)
    assert "cloudmatrix999" in msg and "known" in msg and "cloudmatrix384" in msg


def test_unknown_model_name_lists_known():
    with pytest.raises(SpecError) as info:
        load_model("llama-9")
    msg = str(info.value)
    assert "llama-9" in msg and "deepseek-r1" in msg and "deepseek-v3" in msg


def test_missing_path(tmp_path):
    missing = tmp_path / "nope.toml"
    with pytest.raises(SpecError, match="no such hardware file"):
        load_hardware(str(missing))


def test_cwd_hardware_dir_shadows_installed(tmp_path, monkeypatch):
    (tmp_path / "hardware").mkdir()
    (tmp_path / "hardware" / "cloudmatrix384.toml").write_text(mutate(HW_TEXT, "value = 1.6e12,", "value = 2.0e12,"), encoding="utf-8")
    (tmp_path / "hardware" / "mybox.toml").write_text(mutate(HW_TEXT, 'name = "cloudmatrix384"', 'name = "mybox"'), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    hw = load_hardware("cloudmatrix384")
    assert hw["die.hbm_bandwidth_bytes_per_s"] == 2.0e12
    assert Path(hw.path).resolve().parent == (tmp_path / "hardware").resolve()
    names = known_names("hardware")
    assert "mybox" in names and names.count("cloudmatrix384") == 1
    assert load_hardware("mybox").name == "mybox"


def test_cwd_without_hardware_dir_uses_installed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    hw = load_hardware("cloudmatrix384")
    assert hw["die.hbm_bandwidth_bytes_per_s"] == 1.6e12


def test_cache_sees_a_rewritten_file(tmp_path):
    p = write(tmp_path, HW_TEXT, "hw.toml")
    assert load_hardware(str(p))["die.hbm_bandwidth_bytes_per_s"] == 1.6e12
    p.write_text(mutate(HW_TEXT, "value = 1.6e12,", "value = 3e12,"), encoding="utf-8")
    st_ = p.stat()
    os.utime(p, ns=(st_.st_atime_ns, st_.st_mtime_ns + 2_000_000_000))
    assert load_hardware(str(p))["die.hbm_bandwidth_bytes_per_s"] == 3e12


def test_parse_spec_direct(tmp_path):
    spec = parse_spec(HW_FILE, "hardware")
    assert spec["die.hbm_bandwidth_bytes_per_s"] == 1.6e12
    with pytest.raises(SpecError, match="cannot read"):
        parse_spec(tmp_path / "absent.toml", "hardware")
