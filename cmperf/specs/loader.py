"""Read hardware and model TOML files into frozen, validated `Spec` objects.

Every failure is a `SpecError` naming the file, the key and what was expected.
"""

from __future__ import annotations

import difflib
import math
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

import cmperf
from cmperf.errors import SpecError
from cmperf.inputs import MAX_DERIVED_COUNT, MAX_INT, MAX_MAGNITUDE, MAX_TOML_NESTING, MIN_MAGNITUDE, check_text, parse_finite, safe_text, toml_nesting  # noqa: F401 (parse_finite: re-exported)
from cmperf.specs.model_kinds import cross_check_model_kinds
from cmperf.specs.schema import DTYPES, HARDWARE_FIELDS, KINDS, MODEL_FIELDS, Field

_ENTRY_KEYS = {"value", "source", "kind", "note"}
#: Tables of efficiency and calibration factors: their values must say how they were obtained.
MUST_SAY_KIND = {"efficiency", "moe_comm", "overhead", "routing", "memory", "power", "cost"}
# Bounds that keep every later product finite (MAX_INT, MIN_MAGNITUDE, MAX_MAGNITUDE) live in
# cmperf.inputs, shared with every other entry point.
_META_KEYS = {"name", "description"}


@dataclass(frozen=True)
class Provenance:
    source: str
    kind: str
    note: str = ""


class ValueAccess:
    """Read access to a `values` mapping by dotted key."""

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def has(self, key: str) -> bool:
        return key in self.values


@dataclass(frozen=True)
class Spec(ValueAccess):
    """A validated description: flat dotted keys to values, each with its provenance."""

    kind: str  # "hardware" or "model"
    name: str
    description: str
    path: str
    values: Mapping[str, Any]
    provenance: Mapping[str, Provenance]
    sources: Mapping[str, Mapping[str, str]]
    overridden: tuple[str, ...] = field(default=())


    @property
    def fields(self) -> dict[str, Field]:
        return HARDWARE_FIELDS if self.kind == "hardware" else MODEL_FIELDS

    def with_values(self, updates: Mapping[str, Any], *, origin: str = "--set") -> "Spec":
        """A copy with some values replaced; each is validated as if read from a file."""
        values = dict(self.values)
        prov = dict(self.provenance)
        for key, raw in updates.items():
            spec_field = self.fields.get(key)
            if spec_field is None:
                raise SpecError(unknown_key_message(key, self.fields), where=origin)
            values[key] = _check_value(raw, spec_field, where=f"{origin} {key}", from_text=isinstance(raw, str))
            prov[key] = Provenance(source="override", kind="assumed", note=f"set by {origin}")
        cross_check(self.kind, values, origin, changed=tuple(updates))
        return replace(
            self,
            values=MappingProxyType(values),
            provenance=MappingProxyType(prov),
            overridden=self.overridden + tuple(k for k in updates if k not in self.overridden),
        )


def unknown_key_message(key: str, valid: Mapping[str, Any] | list[str]) -> str:
    close = difflib.get_close_matches(key, list(valid), n=3, cutoff=0.5)
    if not close:
        # Match on the last part alone, so a key in the wrong table is still found.
        tail = key.rsplit(".", 1)[-1]
        close = [k for k in valid if k.rsplit(".", 1)[-1] == tail][:3]
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return f"unknown key '{key}'{hint}"


def _check_value(raw: Any, f: Field, *, where: str, from_text: bool = False) -> Any:
    if f.type == "dtype":
        if not isinstance(raw, str) or raw not in DTYPES:
            raise SpecError(f"expected one of {', '.join(DTYPES)}, got {raw!r}", where=where)
        return raw
    if f.type == "str":
        return check_text(raw, where)
    if isinstance(raw, str) and from_text:
        raw = _parse_number(raw, where, f.unit)
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        raise SpecError(f"expected a number ({f.unit or 'count'}), got {raw!r}", where=where)
    if f.type == "int":
        if isinstance(raw, float):
            if not math.isfinite(raw) or not raw.is_integer():
                raise SpecError(f"expected a whole number, got {raw!r}", where=where)
            raw = int(raw)
        if abs(raw) > MAX_INT:
            digits = len(str(abs(raw)))
            raise SpecError(f"expected a whole number of at most {MAX_INT:,}, got one of {digits} digits", where=where)
    else:
        try:
            raw = float(raw)
        except OverflowError:
            raise SpecError(f"expected a finite number, got an integer of {len(str(raw))} digits", where=where) from None
    if isinstance(raw, float) and not math.isfinite(raw):
        raise SpecError(f"expected a finite number, got {raw!r}", where=where)
    if isinstance(raw, float) and raw != 0 and not MIN_MAGNITUDE <= abs(raw) <= MAX_MAGNITUDE:
        raise SpecError(f"expected a magnitude between {MIN_MAGNITUDE:g} and {MAX_MAGNITUDE:g} (or 0 where allowed), got {raw!r}", where=where)
    unit = f" {f.unit}" if f.unit and f.unit != "fraction" else ""
    if f.check == "positive" and not raw > 0:
        raise SpecError(f"expected a positive number{unit}, got {raw!r}", where=where)
    if f.check == "nonneg" and not raw >= 0:
        raise SpecError(f"expected a number >= 0{unit}, got {raw!r}", where=where)
    if f.check == "fraction" and not 0 < raw <= 1:
        raise SpecError(f"expected a fraction in (0, 1], got {raw!r}", where=where)
    return raw


def _parse_number(text: str, where: str, unit: str | None = None) -> float:
    value = parse_finite(text, where, unit=unit)
    return int(value) if value.is_integer() and "." not in text and "e" not in text.lower() else value


#: (part, whole): a stream or task cannot hold more cores than the die has.
_WITHIN = [
    ("overlap.decode_attention_matrix_cores", "die.matrix_cores"),
    ("overlap.decode_moe_matrix_cores", "die.matrix_cores"),
    ("overlap.decode_attention_vector_cores", "die.vector_cores"),
    ("overlap.decode_moe_vector_cores", "die.vector_cores"),
    ("overlap.prefill_comm_matrix_cores", "die.matrix_cores"),
    ("overlap.decode_split_min_attention_matrix_cores", "overlap.decode_split_max_attention_matrix_cores"),
]


class _Values(ValueAccess):
    """Just enough of a Spec for the functions of `derived` to run on values not yet checked."""

    def __init__(self, values: Mapping[str, Any]):
        self.values = values


def check_derived(kind: str, values: Mapping[str, Any], where: str, changed: tuple[str, ...] = ()) -> None:
    """Every figure derived from the values (parameter counts, bytes, FLOPs, dies) is finite and
    within the range its arithmetic holds: counts at most MAX_DERIVED_COUNT (exact in float64),
    other quantities finite. Python integers make the check itself exact."""
    from cmperf.specs.derived import hardware_derived, model_derived

    try:
        figures = (hardware_derived if kind == "hardware" else model_derived)(_Values(values))
    except KeyError:  # a required key is missing: reported by the caller's own check
        return
    for key, v in figures.items():
        inputs = f" (set: {', '.join(changed)})" if changed else ""
        if isinstance(v, int) and abs(v) > MAX_DERIVED_COUNT:
            raise SpecError(f"{key} = {float(v):.3g} exceeds {float(MAX_DERIVED_COUNT):.3g}, the largest count the model's arithmetic "
                            f"holds exactly{inputs}; expected smaller shapes or counts", where=where)
        if not isinstance(v, int) and not math.isfinite(v):
            raise SpecError(f"{key} is not a finite number{inputs}; expected smaller values", where=where)
        if v < 0:
            raise SpecError(f"{key} = {v:g} is negative; expected the values to describe a real {kind}", where=where)


def cross_check(kind: str, values: Mapping[str, Any], where: str, changed: tuple[str, ...] = ()) -> None:
    """Relations between keys that no single key's check can see."""
    if kind == "hardware":
        waves = [k for k in ("die.matrix_block_rows", "die.matrix_block_cols", "die.core_bandwidth_bytes_per_s") if k in values]
        if waves and len(waves) < 3:
            raise SpecError("die.matrix_block_rows, die.matrix_block_cols and die.core_bandwidth_bytes_per_s go together: give all three or none", where=where)
        small, tile = values.get("die.matrix_small_m_tile_rows"), values.get("die.matrix_tile_rows")
        if small is not None and tile is not None and tile % small:
            raise SpecError(f"die.matrix_small_m_tile_rows = {small} must divide die.matrix_tile_rows = {tile} (a small M pads to a step of the engine tile)", where=where)
        for part, whole in _WITHIN:
            if part in values and whole in values and values[part] > values[whole]:
                raise SpecError(f"{part} = {values[part]} exceeds {whole} = {values[whole]}; expected at most {values[whole]}", where=where)
        keys = ("overlap.decode_split_min_attention_matrix_cores", "overlap.decode_split_max_attention_matrix_cores", "overlap.decode_split_step_matrix_cores")
        split = [k for k in keys if k in values]
        if split and len(split) < len(keys):
            raise SpecError(f"{', '.join(keys)} go together: give all three or none", where=where)
        if split and values["overlap.decode_split_max_attention_matrix_cores"] >= values.get("die.matrix_cores", 1):
            raise SpecError("overlap.decode_split_max_attention_matrix_cores must leave at least one matrix core for the MoE stream", where=where)
        if values.get("overlap.prefill_comm_matrix_cores", 0) >= values.get("die.matrix_cores", 1):
            raise SpecError("overlap.prefill_comm_matrix_cores must leave at least one matrix core for compute", where=where)
    else:
        cross_check_model_kinds(values, where)
        if values.get("moe.topk_group", 0) > values.get("moe.n_group", 0):
            raise SpecError("moe.topk_group exceeds moe.n_group", where=where)
        if values.get("moe.n_routed_experts", 0) % max(values.get("moe.n_group", 1), 1):
            raise SpecError("moe.n_routed_experts must divide evenly into moe.n_group groups", where=where)
        cand = values.get("moe.topk_group", 0) * values.get("moe.n_routed_experts", 0) // max(values.get("moe.n_group", 1), 1)
        if values.get("moe.num_experts_per_tok", 0) > cand:
            raise SpecError(f"moe.num_experts_per_tok = {values.get('moe.num_experts_per_tok')} exceeds the {cand} experts a token may choose "
                            "from (moe.topk_group x moe.n_routed_experts / moe.n_group)", where=where)
        if values.get("arch.first_k_dense_replace", 0) > values.get("arch.num_hidden_layers", 0):
            raise SpecError("arch.first_k_dense_replace exceeds arch.num_hidden_layers", where=where)
    check_derived(kind, values, where, changed)


def read_toml(path: Path) -> dict:
    """The TOML document in a file; a syntax or read error is a SpecError naming the file."""
    where = safe_text(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # a leading byte-order mark is allowed
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read the file: {safe_text(exc)}", where=where) from None
    depth = toml_nesting(text)
    if depth > MAX_TOML_NESTING:
        raise SpecError(f"arrays or tables nested {depth} deep; expected at most {MAX_TOML_NESTING} "
                        "(a description needs two: a table of { value = ..., source = ... } entries)", where=where)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"TOML syntax error: {safe_text(exc)}", where=where) from None
    except RecursionError:
        raise SpecError(f"arrays or tables nested too deeply; expected at most {MAX_TOML_NESTING} levels", where=where) from None


def check_entry(entry: Any, sources: Mapping, where: str, must_say_kind: str | None = "this") -> Provenance:
    """A value table `{ value = ..., source = "...", kind = "...", note = "..." }`: its provenance,
    or a SpecError naming `where` (the file and key). `must_say_kind` names the table whose values
    must give their kind (None: the kind may be left out). The value itself is checked by the caller."""
    if not isinstance(entry, dict) or "value" not in entry:
        raise SpecError('expected { value = ..., source = "..." }', where=where)
    extra = set(entry) - _ENTRY_KEYS
    if extra:
        raise SpecError(f"unexpected field(s) {', '.join(sorted(extra))}; expected value, source, kind, note", where=where)
    src = entry.get("source")
    if not isinstance(src, str):
        raise SpecError("missing 'source': every value cites an entry of [sources]", where=where)
    if src not in sources:
        raise SpecError(f"source '{src}' is not in [sources] (known: {', '.join(sorted(sources))})", where=where)
    if "kind" not in entry and must_say_kind:
        raise SpecError(f"missing 'kind': a {must_say_kind}.* value must say how it was obtained ({', '.join(KINDS)})", where=where)
    kind_ = entry.get("kind", "paper")
    if kind_ not in KINDS:
        raise SpecError(f"kind must be one of {', '.join(KINDS)}, got {kind_!r}", where=where)
    note = entry.get("note", "")
    if not isinstance(note, str):
        raise SpecError("note must be a string", where=where)
    check_text(note, f"{where}: note")
    return Provenance(source=src, kind=kind_, note=note)


def parse_spec(path: Path, kind: str) -> Spec:
    """Parse and validate one file. `kind` is "hardware" or "model"."""
    where = safe_text(path)
    doc = read_toml(path)
    fields = HARDWARE_FIELDS if kind == "hardware" else MODEL_FIELDS
    sections = {k.split(".")[0] for k in fields}

    meta = doc.pop("meta", None)
    if not isinstance(meta, dict):
        raise SpecError("missing [meta] table with name and description", where=where)
    for key in meta:
        if key not in _META_KEYS:
            raise SpecError(f"unknown key 'meta.{key}'; expected {', '.join(sorted(_META_KEYS))}", where=where)
    for key in _META_KEYS:
        if not isinstance(meta.get(key), str) or not meta[key].strip():
            raise SpecError(f"meta.{key}: expected a non-empty string", where=where)
        check_text(meta[key], f"{where}: meta.{key}", "a one-line string" if key == "name" else "a string")
        if key == "name" and "\n" in meta[key]:
            raise SpecError("meta.name: expected a one-line string", where=where)

    sources = doc.pop("sources", None)
    if not isinstance(sources, dict) or not sources:
        raise SpecError("missing [sources] table: every value must cite one of its entries", where=where)
    for sid, src in sources.items():
        if not isinstance(src, dict) or not isinstance(src.get("title"), str):
            raise SpecError(f"sources.{sid}: expected {{ title = \"...\", url = \"...\" }}", where=where)
        check_text(sid, f"{where}: sources", "a source name")
        for k, v in src.items():
            check_text(k, f"{where}: sources.{sid}", "a key")
            if isinstance(v, str):
                check_text(v, f"{where}: sources.{sid}.{k}")

    values: dict[str, Any] = {}
    prov: dict[str, Provenance] = {}
    for section, table in doc.items():
        check_text(section, where, "a table name")
        if section not in sections:
            raise SpecError(unknown_key_message(section, sorted(sections)).replace("key", "table", 1), where=where)
        if not isinstance(table, dict):
            raise SpecError(f"'{section}' must be a table [{section}]", where=where)
        for key, entry in table.items():
            check_text(key, f"{where}: [{section}]", "a key")
            dotted = f"{section}.{key}"
            spec_field = fields.get(dotted)
            if spec_field is None:
                raise SpecError(unknown_key_message(dotted, fields), where=where)
            kw = f"{where}: {dotted}"
            prov[dotted] = check_entry(entry, sources, kw, must_say_kind=section if section in MUST_SAY_KIND else None)
            values[dotted] = _check_value(entry["value"], spec_field, where=kw)

    missing = [k for k, f in fields.items() if not f.optional and k not in values]
    if missing:
        raise SpecError(f"missing key(s): {', '.join(missing)}", where=where)
    cross_check(kind, values, where)
    return Spec(
        kind=kind,
        name=meta["name"],
        description=meta["description"],
        path=where,
        values=MappingProxyType(values),
        provenance=MappingProxyType(prov),
        sources=MappingProxyType({k: MappingProxyType(v) for k, v in sources.items()}),
    )


#: The folder of each kind of description file.
FOLDERS = {"hardware": "hardware", "model": "models", "deployment": "deployments"}


def search_dirs(kind: str) -> list[Path]:
    """Where names are looked up: ./hardware (./models, ./deployments) first, then the installed copies."""
    folder = FOLDERS[kind]
    pkg = Path(cmperf.__file__).parent
    dirs = [Path.cwd() / folder, pkg / folder, pkg.parent / folder]
    seen, out = set(), []
    for d in dirs:
        r = d.resolve()
        if r not in seen and d.is_dir():
            seen.add(r)
            out.append(d)
    return out


def known_names(kind: str) -> list[str]:
    names: set[str] = set()
    for d in search_dirs(kind):
        names.update(p.stem for p in d.glob("*.toml") if p.is_file())  # not a folder or a dangling link
    return sorted(names)


def _is_file(p: Path) -> bool:
    """A regular file (or a link to one); False for a name the system cannot even look up."""
    try:
        return p.is_file()
    except (OSError, ValueError):  # too long, a NUL byte, a loop of links
        return False


def resolve(name_or_path: str, kind: str, where: str | None = None) -> Path:
    """The file a name or path stands for; errors name `where` (default: the --hardware/--model option)."""
    where = where or f"--{kind}"
    if not isinstance(name_or_path, str) or not name_or_path:
        raise SpecError(f"expected a {kind} name or .toml path, got {name_or_path!r}", where=where)
    p = Path(name_or_path)
    if p.suffix == ".toml" or "/" in name_or_path or "\\" in name_or_path:
        if not _is_file(p):
            raise SpecError(f"no such {kind} file: {safe_text(name_or_path)}", where=where)
        return p
    for d in search_dirs(kind):
        cand = d / f"{name_or_path}.toml"
        if _is_file(cand):
            return cand
    names = known_names(kind)
    raise SpecError(
        f"unknown {kind} '{safe_text(name_or_path)}'; known: {', '.join(names) or '(none)'}", where=where
    )


_CACHE: dict[tuple[str, str, float], Spec] = {}


def _load(name_or_path: str, kind: str, where: str | None = None) -> Spec:
    path = resolve(name_or_path, kind, where)
    try:
        key = (str(path.resolve()), kind, path.stat().st_mtime)
    except OSError as exc:  # gone since it was found
        raise SpecError(f"cannot read the file: {safe_text(exc)}", where=safe_text(path)) from None
    if key not in _CACHE:
        _CACHE[key] = parse_spec(path, kind)
    return _CACHE[key]


def load_hardware(name_or_path: str = "cloudmatrix384", where: str | None = None) -> Spec:
    return _load(name_or_path, "hardware", where)


def load_model(name_or_path: str = "deepseek-r1", where: str | None = None) -> Spec:
    return _load(name_or_path, "model", where)
