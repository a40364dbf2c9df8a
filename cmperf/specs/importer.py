"""Write a model TOML from a Hugging Face `config.json` on disk (no network).

Architecture keys come from the config (kind "config"), or follow from it (kind "derived", with a
note saying how). The deployment keys a config cannot hold (precision per operator class, MoE
dispatch scale, routing skew) are copied from a reference model file (`--precision-from`,
DeepSeek-R1's CloudMatrix-Infer deployment by default) and marked "assumed". Config keys that were
not mapped are named; an architecture cmperf cannot describe is refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cmperf.errors import SpecError
from cmperf.specs.loader import Spec
from cmperf.specs.schema import MODEL_FIELDS, MOE_KEYS

#: Hugging Face architecture -> attention kind, and the config keys that differ from the common names.
ARCHITECTURES: dict[str, dict[str, Any]] = {
    "DeepseekV3ForCausalLM": {"kind": "mla"},
    "DeepseekV32ForCausalLM": {"kind": "mla_sparse"},
    "Qwen3MoeForCausalLM": {"kind": "gqa", "qk_norm": "always (q_norm and k_norm in every Qwen3 attention layer, transformers modeling_qwen3_moe.py)"},
    "Glm4MoeForCausalLM": {"kind": "gqa"},
    "LlamaForCausalLM": {"kind": "gqa"},
    # MiniMax-M2 names its expert width `intermediate_size` and its dense width `mlp_intermediate_size`.
    "MiniMaxM2ForCausalLM": {"kind": "gqa", "rename": {"arch.intermediate_size": "mlp_intermediate_size", "moe.moe_intermediate_size": "intermediate_size"}},
}
#: Architectures seen but not describable by the attention kinds, and why.
REFUSED = {
    "GptOssForCausalLM": "alternating sliding-window attention with attention sinks and MXFP4 experts are not an attention kind cmperf describes",
}

_COMMON = {
    "arch.hidden_size": "hidden_size",
    "arch.num_hidden_layers": "num_hidden_layers",
    "arch.intermediate_size": "intermediate_size",
    "arch.vocab_size": "vocab_size",
    "arch.max_position_embeddings": "max_position_embeddings",
    "attention.num_attention_heads": "num_attention_heads",
}
_MLA = {k: k.split(".")[1] for k in ("attention.q_lora_rank", "attention.kv_lora_rank", "attention.qk_nope_head_dim",
                                      "attention.qk_rope_head_dim", "attention.v_head_dim")}
_DSA = {k: k.split(".")[1] for k in ("attention.index_n_heads", "attention.index_head_dim", "attention.index_topk")}
_MOE = {
    "moe.moe_intermediate_size": "moe_intermediate_size",
    "moe.n_routed_experts": ("n_routed_experts", "num_experts", "num_local_experts"),
    "moe.num_experts_per_tok": "num_experts_per_tok",
}
#: Keys read to decide something (and so mapped) without being copied.
_CONSULTED = {"architectures", "decoder_sparse_step", "mlp_only_layers", "use_mtp", "shared_intermediate_size",
              "partial_rotary_factor", "use_qk_norm", "attention_bias", "num_key_value_heads", "head_dim", "rotary_dim",
              "num_nextn_predict_layers", "num_mtp_modules", "first_k_dense_replace", "n_shared_experts", "n_group", "topk_group"}


@dataclass
class Imported:
    """What an import produced: (dotted key -> (value, kind, note)) and the config keys left out."""

    name: str
    architecture: str
    values: dict[str, tuple[Any, str, str]] = field(default_factory=dict)
    unmapped: list[str] = field(default_factory=list)


def _get(cfg: dict, names, where: str, what: str):
    for n in (names,) if isinstance(names, str) else names:
        if n in cfg and cfg[n] is not None:
            return n, cfg[n]
    raise SpecError(f"config has no {' or '.join((names,) if isinstance(names, str) else names)} ({what})", where=where)


def read_config(path: Path) -> dict:
    where = str(path)
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read the file: {exc}", where=where) from None
    except json.JSONDecodeError as exc:
        raise SpecError(f"not valid JSON: {exc}", where=where) from None
    if not isinstance(cfg, dict):
        raise SpecError("expected a JSON object (a Hugging Face config.json)", where=where)
    return cfg


def import_config(cfg: dict, name: str, where: str) -> Imported:
    """Map a config dict onto model keys; a SpecError for what cannot be described."""
    archs = cfg.get("architectures")
    arch = archs[0] if isinstance(archs, list) and archs and isinstance(archs[0], str) else None
    if arch in REFUSED:
        raise SpecError(f"architecture {arch} cannot be imported: {REFUSED[arch]}", where=where)
    if arch not in ARCHITECTURES:
        raise SpecError(f"unknown architecture {arch!r}; expected one of {', '.join(ARCHITECTURES)}", where=where)
    spec = ARCHITECTURES[arch]
    kind = spec["kind"]
    out = Imported(name, arch)
    used: set[str] = set()

    def put(key, names, note=""):
        n, v = _get(cfg, spec.get("rename", {}).get(key, names), where, key)
        used.add(n)
        out.values[key] = (v, "config", note)

    def derive(key, value, note):
        out.values[key] = (value, "derived", note)

    for key, names in _COMMON.items():
        put(key, names)
    derive("attention.kind", kind, f"architecture {arch}")
    if kind in ("mla", "mla_sparse"):
        for key, names in _MLA.items():
            put(key, names)
    if kind == "mla_sparse":
        for key, names in _DSA.items():
            put(key, names)
    if kind == "gqa":
        put("attention.num_key_value_heads", "num_key_value_heads")
        h, d = cfg["num_attention_heads"], cfg["hidden_size"]
        if cfg.get("head_dim") is not None:
            put("attention.head_dim", "head_dim")
        else:
            derive("attention.head_dim", d // h, "hidden_size / num_attention_heads (no head_dim in the config)")
        hd = out.values["attention.head_dim"][0]
        if cfg.get("rotary_dim") is not None:
            put("attention.rotary_dim", "rotary_dim", "partial RoPE")
        elif cfg.get("partial_rotary_factor") is not None:
            derive("attention.rotary_dim", int(round(cfg["partial_rotary_factor"] * hd)), f"partial_rotary_factor {cfg['partial_rotary_factor']} x head_dim")
        if "qk_norm" in spec:
            derive("attention.qk_norm", 1, spec["qk_norm"])
        elif cfg.get("use_qk_norm") is not None:
            derive("attention.qk_norm", int(bool(cfg["use_qk_norm"])), "use_qk_norm")
        if cfg.get("attention_bias") is not None:
            derive("attention.qkv_bias", int(bool(cfg["attention_bias"])), "attention_bias")
    _moe(cfg, spec, out, put, derive, where)
    _mtp(cfg, derive)
    out.unmapped = sorted(k for k in cfg if k not in used and k not in _CONSULTED)
    return out


def _moe(cfg, spec, out, put, derive, where):
    experts = next((cfg[n] for n in ("n_routed_experts", "num_experts", "num_local_experts") if cfg.get(n)), None)
    layers = cfg["num_hidden_layers"]
    if not experts:
        derive("arch.first_k_dense_replace", layers, "dense model: no routed experts, every layer has the dense FFN")
        return
    for key, names in _MOE.items():
        put(key, names)
    if cfg.get("first_k_dense_replace") is not None:
        put("arch.first_k_dense_replace", "first_k_dense_replace")
    elif cfg.get("mlp_only_layers") in ([], None) and cfg.get("decoder_sparse_step", 1) == 1:
        derive("arch.first_k_dense_replace", 0, "MoE in every layer (no first_k_dense_replace; decoder_sparse_step 1, no mlp_only_layers)")
    else:
        raise SpecError("dense layers interleaved with MoE layers (decoder_sparse_step, mlp_only_layers) cannot be described; "
                        "expected leading dense layers only", where=where)
    if cfg.get("n_shared_experts") is not None:
        put("moe.n_shared_experts", "n_shared_experts")
    else:
        derive("moe.n_shared_experts", 0, "no shared expert (no n_shared_experts" + (", shared_intermediate_size 0)" if cfg.get("shared_intermediate_size") == 0 else ")"))
    for key in ("moe.n_group", "moe.topk_group"):
        name = key.split(".")[1]
        if cfg.get(name) is not None:
            put(key, name, "1: plain top-k" if cfg[name] == 1 else "")
        else:
            derive(key, 1, f"plain top-k routing (no {name})")


def _mtp(cfg, derive):
    if cfg.get("num_nextn_predict_layers") is not None:
        derive("mtp.num_nextn_predict_layers", cfg["num_nextn_predict_layers"], "num_nextn_predict_layers")
    elif cfg.get("use_mtp") and cfg.get("num_mtp_modules") is not None:
        derive("mtp.num_nextn_predict_layers", cfg["num_mtp_modules"], "use_mtp, num_mtp_modules")
    else:
        derive("mtp.num_nextn_predict_layers", 0, "no multi-token-prediction module in the config")


#: Deployment tables copied from the reference model (not in any config.json).
DEPLOYMENT_TABLES = ("precision", "quant", "routing")


def deployment_values(reference: Spec, kind: str, dense: bool) -> dict[str, tuple[Any, str, str]]:
    """The reference model's precision, dispatch-scale and routing values, marked assumed."""
    out = {}
    for key, value in reference.values.items():
        if key.split(".")[0] not in DEPLOYMENT_TABLES:
            continue
        if dense and key in MOE_KEYS:
            continue
        if key == "precision.index_cache" and kind != "mla_sparse":
            continue
        note = reference.provenance[key].note
        out[key] = (value, "assumed", f"as deployed for {reference.name}" + (f": {note}" if note else ""))
    if kind == "mla_sparse" and "precision.index_cache" not in out:
        out["precision.index_cache"] = (reference["precision.matmul"], "assumed", f"the matmul precision of {reference.name}")
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, str):
        return json.dumps(v)
    return str(int(v)) if isinstance(v, bool) else repr(v)


def render_toml(imp: Imported, deployment: dict, config_source: str, reference: Spec) -> str:
    """The model file as TOML text, tables in the schema's order."""
    description = f"{imp.name} ({imp.architecture}, attention kind {imp.values['attention.kind'][0]})"
    lines = [f"# {imp.name}: imported from a Hugging Face config.json ({imp.architecture}) by `cmperf model import`.", "",
             "[meta]", f"name = {json.dumps(imp.name)}", f"description = {json.dumps(description)}", "",
             "[sources]", f"config = {{ title = {json.dumps(f'{imp.name} config.json')}, url = {json.dumps(config_source)} }}"]
    ref_src = reference.sources[reference.provenance["precision.matmul"].source]
    lines.append(f"deployment = {{ title = {json.dumps(f'deployment of {reference.name}: ' + ref_src['title'])}, url = {json.dumps(ref_src.get('url', ''))} }}")
    entries = {**imp.values, **deployment}
    table = None
    for key in MODEL_FIELDS:
        if key not in entries:
            continue
        section, name = key.split(".")
        if section != table:
            lines += ["", f"[{section}]"]
            table = section
        value, kind, note = entries[key]
        src = "config" if key in imp.values else "deployment"
        extra = f", note = {json.dumps(note)}" if note else ""
        lines.append(f"{name} = {{ value = {_fmt(value)}, source = \"{src}\", kind = \"{kind}\"{extra} }}")
    return "\n".join(lines) + "\n"
