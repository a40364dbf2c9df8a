"""`--set KEY=VALUE`: the one path by which a dotted key changes the hardware, the model or the workload.

Every command (estimate, plan, the what-if commands, `show`) and the Python API route their
overrides through `apply_overrides`, so a key is accepted, refused and validated the same way everywhere.
"""

from __future__ import annotations

from typing import Any, Iterable

from cmperf.errors import SpecError
from cmperf.specs.loader import Spec, load_hardware, load_model, unknown_key_message
from cmperf.specs.schema import HARDWARE_FIELDS, MODEL_FIELDS

#: Workload keys `--set` accepts, with (type, lower bound, upper bound, help).
WORKLOAD_FIELDS: dict[str, tuple[type, float, float, str]] = {
    "workload.input_len": (int, 1, 10_000_000, "prompt tokens per request"),
    "workload.output_len": (int, 1, 10_000_000, "generated tokens per request"),
    "workload.mtp_acceptance": (float, 0.0, 1.0, "probability a speculative token is accepted"),
    "workload.prefix_hit": (float, 0.0, 0.999, "fraction of prompt tokens found in the prefix cache"),
}


def parse_set(items: Iterable[str] | None, where: str = "--set") -> dict[str, str]:
    """KEY=VALUE items, with errors naming `where`."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise SpecError(f"expected KEY=VALUE, got {item!r}", where=where)
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


def apply_overrides(hw: Spec, model: Spec, sets: dict[str, Any], where: str = "--set",
                    valid_keys: list[str] | None = None) -> tuple[Spec, Spec, dict[str, Any]]:
    """`--set` items split by key space, validated, and applied to each description at once;
    returns (hardware, model, {workload field: value}). An unknown key's message suggests among
    `valid_keys` (default: every key `--set` accepts)."""
    hw_up, model_up, workload = {}, {}, {}
    for key, raw in sets.items():
        refuse_derived(key, all_keys(), where)
        if key in HARDWARE_FIELDS:
            hw_up[key] = raw
        elif key in MODEL_FIELDS:
            model_up[key] = raw
        elif key in WORKLOAD_FIELDS:
            workload[key.split(".", 1)[1]] = check_workload_value(key, raw, where)
        else:
            raise SpecError(unknown_key_message(key, valid_keys or all_keys()), where=where)
    if hw_up:
        hw = hw.with_values(hw_up, origin=where)
    if model_up:
        model = model.with_values(model_up, origin=where)
    return hw, model, workload


def apply_to_spec(spec: Spec, sets: dict[str, Any], where: str = "--set") -> Spec:
    """Overrides of one description (`hardware show`, `model show`): other keys are refused."""
    other = next((k for k in sets if k not in spec.fields), None)
    if other is not None:
        refuse_derived(other, spec.fields, where)
        raise SpecError(f"'{other}' is not a {spec.kind} key; " + unknown_key_message(other, spec.fields), where=where)
    hw, model, _ = apply_overrides(spec, spec, sets, where)
    return hw if spec.kind == "hardware" else model


def load_specs(hardware: str | Spec, model: str | Spec, sets: dict[str, Any]) -> tuple[Spec, Spec, dict[str, Any]]:
    """Load the hardware and model (by name or path, or as given) and apply `--set` overrides."""
    hw = hardware if isinstance(hardware, Spec) else load_hardware(hardware)
    m = model if isinstance(model, Spec) else load_model(model)
    return apply_overrides(hw, m, sets)
