"""`--set KEY=VALUE`: route each dotted key to the hardware, the model or the workload."""

from __future__ import annotations

from typing import Any, Iterable

from cmperf.errors import SpecError
from cmperf.specs.loader import Spec, unknown_key_message
from cmperf.specs.schema import HARDWARE_FIELDS, MODEL_FIELDS

#: Workload keys `--set` accepts, with (type, lower bound, upper bound, help).
WORKLOAD_FIELDS: dict[str, tuple[type, float, float, str]] = {
    "workload.input_len": (int, 1, 10_000_000, "prompt tokens per request"),
    "workload.output_len": (int, 1, 10_000_000, "generated tokens per request"),
    "workload.mtp_acceptance": (float, 0.0, 1.0, "probability a speculative token is accepted"),
    "workload.prefix_hit": (float, 0.0, 0.999, "fraction of prompt tokens found in the prefix cache"),
}


def parse_set(items: Iterable[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise SpecError(f"expected KEY=VALUE, got {item!r}", where="--set")
        out[key] = value
    return out


def refuse_derived(key: str, valid, where: str = "--set") -> None:
    """A `derived.*` key cannot be set: say so for a real one, call any other unknown."""
    from cmperf.specs.derived import derived_key_names

    if not key.startswith("derived."):
        return
    if key in derived_key_names():
        raise SpecError(f"'{key}' is derived from other keys and cannot be set; set its inputs instead", where=where)
    raise SpecError(unknown_key_message(key, valid), where=where)


def all_keys() -> list[str]:
    return [*HARDWARE_FIELDS, *MODEL_FIELDS, *WORKLOAD_FIELDS]


def check_workload_value(key: str, raw: Any, where: str = "--set") -> Any:
    from cmperf.inputs import check_number

    typ, lo, hi, _ = WORKLOAD_FIELDS[key]
    from cmperf.inputs import is_plain_number

    number = raw
    if isinstance(raw, str) and not is_plain_number(raw):
        from cmperf.units import parse_quantity

        try:
            number = parse_quantity(raw)  # prefixes and units: 32k, 4Ki
        except ValueError:
            number = raw  # not a quantity: the check below says what was expected
    return check_number(number, f"{where} {key}", whole=typ is int, lo=lo, hi=hi, text_ok=True)


def apply_overrides(hw: Spec, model: Spec, sets: dict[str, str]) -> tuple[Spec, Spec, dict[str, Any]]:
    """Split `--set` items by key space and validate each; returns (hardware, model, workload)."""
    hw_up, model_up, workload = {}, {}, {}
    for key, value in sets.items():
        refuse_derived(key, all_keys())
        if key in HARDWARE_FIELDS:
            hw_up[key] = value
        elif key in MODEL_FIELDS:
            model_up[key] = value
        elif key in WORKLOAD_FIELDS:
            workload[key] = check_workload_value(key, value)
        else:
            raise SpecError(unknown_key_message(key, all_keys()), where="--set")
    if hw_up:
        hw = hw.with_values(hw_up)
    if model_up:
        model = model.with_values(model_up)
    return hw, model, workload
