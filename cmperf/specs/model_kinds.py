"""Checks of a model description that depend on its kind: the attention kind's own keys, and a
[moe] table given whole or not at all (a dense model)."""

from __future__ import annotations

from typing import Any, Mapping

from cmperf.errors import SpecError
from cmperf.specs.schema import ATTENTION_KEYS, ATTENTION_OPTIONAL, KIND_SPECIFIC, MOE_KEYS


def cross_check_model_kinds(values: Mapping[str, Any], where: str) -> None:
    """The attention kind's own keys, and a [moe] table given whole or not at all (dense model)."""
    kind = values.get("attention.kind")
    if kind is None:
        return  # reported as a missing key
    if kind not in ATTENTION_KEYS:
        raise SpecError(f"attention.kind: expected one of {', '.join(ATTENTION_KEYS)}, got {kind!r}", where=where)
    allowed = ATTENTION_KEYS[kind] + ATTENTION_OPTIONAL[kind]
    missing = [k for k in ATTENTION_KEYS[kind] if k not in values]
    if missing:
        raise SpecError(f"attention.kind = {kind!r} needs key(s): {', '.join(missing)}", where=where)
    foreign = [k for k in KIND_SPECIFIC if k in values and k not in allowed]
    if foreign:
        raise SpecError(f"key(s) {', '.join(foreign)} do not apply to attention.kind = {kind!r}; "
                        f"expected only {', '.join(allowed)} beside the common keys", where=where)
    for flag in ("attention.qk_norm", "attention.qkv_bias"):
        if values.get(flag, 0) not in (0, 1):
            raise SpecError(f"{flag}: expected 0 or 1, got {values[flag]}", where=where)
    if kind == "gqa":
        h, kv, hd = values.get("attention.num_attention_heads", 1), values["attention.num_key_value_heads"], values["attention.head_dim"]
        if h % kv:
            raise SpecError(f"attention.num_key_value_heads = {kv} must divide attention.num_attention_heads = {h}", where=where)
        if values.get("attention.rotary_dim", 0) > hd:
            raise SpecError(f"attention.rotary_dim exceeds attention.head_dim = {hd}", where=where)
    given = [k for k in MOE_KEYS if k in values]
    if given and len(given) < len(MOE_KEYS):
        absent = [k for k in MOE_KEYS if k not in values]
        raise SpecError(f"a model with routed experts needs every MoE key; missing {', '.join(absent)} "
                        "(leave out all of them for a dense model)", where=where)
    if not given and values.get("arch.first_k_dense_replace") != values.get("arch.num_hidden_layers"):
        raise SpecError("a dense model (no [moe] table) has a dense FFN in every layer: expected "
                        "arch.first_k_dense_replace = arch.num_hidden_layers", where=where)
