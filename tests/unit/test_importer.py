"""`cmperf model import` reproduces every shipped model file from its config.json copy (tests/data/configs).

The architecture keys come from the config; the deployment keys (precision, dispatch scale,
routing) from deepseek-r1.toml, marked assumed. The shipped files add only a [stated] table (the
authors' parameter counts) and their own [sources] titles.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cmperf.errors import SpecError
from cmperf.specs.importer import deployment_values, import_config, read_config, render_toml
from cmperf.specs.loader import load_model, parse_spec

DATA = Path(__file__).resolve().parents[1] / "data" / "configs"
SHIPPED = {
    "deepseek-v3.2": "deepseek-v3.2.json",
    "kimi-k2": "kimi-k2.json",
    "qwen3-235b-a22b": "qwen3-235b-a22b.json",
    "qwen3-30b-a3b": "qwen3-30b-a3b.json",
    "glm-4.5": "glm-4.5.assembled.json",
    "llama-3.1-405b": "llama-3.1-405b.json",
    "minimax-m2": "minimax-m2.json",
}


def imported(name: str, tmp_path: Path):
    path = DATA / SHIPPED[name]
    imp = import_config(read_config(path), name, str(path))
    ref = load_model("deepseek-r1")
    text = render_toml(imp, deployment_values(ref, imp.values["attention.kind"][0], "moe.n_routed_experts" not in imp.values), str(path), ref)
    out = tmp_path / f"{name}.toml"
    out.write_text(text)
    return parse_spec(out, "model"), imp


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_import_reproduces_the_shipped_file(name, tmp_path):
    got, _ = imported(name, tmp_path)
    shipped = load_model(name)
    keep = {k: v for k, v in shipped.values.items() if not k.startswith("stated.")}
    assert dict(got.values) == keep
    for key in keep:
        assert got.provenance[key].kind == shipped.provenance[key].kind, key
        assert got.provenance[key].note == shipped.provenance[key].note, key


def test_import_names_what_it_did_not_map(tmp_path):
    _, imp = imported("minimax-m2", tmp_path)
    assert "attn_type_list" in imp.unmapped and "rope_theta" in imp.unmapped
    assert "hidden_size" not in imp.unmapped and "num_mtp_modules" not in imp.unmapped


def test_unknown_and_refused_architectures():
    with pytest.raises(SpecError, match="GptOssForCausalLM cannot be imported: alternating sliding-window"):
        import_config(read_config(DATA / "gpt-oss-120b.json"), "x", "gpt-oss")
    with pytest.raises(SpecError, match="unknown architecture 'MambaForCausalLM'"):
        import_config({"architectures": ["MambaForCausalLM"]}, "x", "cfg")
    with pytest.raises(SpecError, match="unknown architecture None"):
        import_config({}, "x", "cfg")


def test_missing_key_and_interleaved_dense_layers_are_refused():
    cfg = json.loads((DATA / "qwen3-30b-a3b.json").read_text())
    with pytest.raises(SpecError, match="config has no num_key_value_heads"):
        import_config({k: v for k, v in cfg.items() if k != "num_key_value_heads"}, "x", "cfg")
    with pytest.raises(SpecError, match="interleaved"):
        import_config({**cfg, "mlp_only_layers": [0, 5]}, "x", "cfg")


def test_bad_json_is_an_input_error(tmp_path):
    p = tmp_path / "config.json"
    p.write_text("{not json")
    with pytest.raises(SpecError, match="not valid JSON"):
        read_config(p)
    p.write_text("[1, 2]")
    with pytest.raises(SpecError, match="expected a JSON object"):
        read_config(p)
