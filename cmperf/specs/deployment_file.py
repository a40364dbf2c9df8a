"""Deployment files: read and write a `Deployment` (and the workload it was set for) as TOML.

Same conventions as the hardware and model files: a `[meta]` table, a `[sources]` table, and every
value a table `{ value = ..., source = "...", kind = "...", note = "..." }` under a key that says
its unit. Optional tables: `[workload]`, the workload the deployment was set for (used where the
user gives none), and `[target]`, the hardware, model and overrides it was set for.

    [meta]      name, description, phase ("decode" or "prefill")
    [instance]  devices, expert_parallel_ranks, attention_tp_dies, redundant_experts
    [overlap]   microbatches, attention_matrix_cores
    [speculation] mtp_tokens
    [decode]    batch_requests_per_device
    [prefill]   tokens_per_device, prefix_cache_path ("ub" or "vpc")
    [balance]   eplb ("default" or "perfect")
    [workload]  input_tokens, output_tokens, mtp_acceptance_frac, prefix_hit_frac, mean_context_tokens
    [target]    hardware = "NAME", model = "NAME", overrides = ["KEY=VALUE", ...]   (plain values)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cmperf.errors import SpecError
from cmperf.specs.deployment import Deployment, Workload, as_int
from cmperf.specs.loader import check_entry, read_toml, resolve, unknown_key_message

#: File key -> Deployment field.
DEPLOYMENT_KEYS = {
    "instance.devices": "devices",
    "instance.expert_parallel_ranks": "ep",
    "instance.attention_tp_dies": "attn_tp",
    "instance.redundant_experts": "redundant",
    "overlap.microbatches": "microbatches",
    "overlap.attention_matrix_cores": "attention_matrix_cores",
    "speculation.mtp_tokens": "mtp",
    "decode.batch_requests_per_device": "batch",
    "prefill.tokens_per_device": "tokens_per_device",
    "prefill.prefix_cache_path": "cache_path",
    "balance.eplb": "eplb",
}
#: File key -> Workload field.
WORKLOAD_KEYS = {
    "workload.input_tokens": "input_len",
    "workload.output_tokens": "output_len",
    "workload.mtp_acceptance_frac": "mtp_acceptance",
    "workload.prefix_hit_frac": "prefix_hit",
    "workload.mean_context_tokens": "kv_len",
}
_WORDS = {"cache_path", "eplb"}
_META_KEYS = {"name", "description", "phase"}
_TARGET_KEYS = {"hardware", "model", "overrides"}


@dataclass(frozen=True)
class DeploymentFile:
    """A deployment read from a file, with the workload and target it names (if any)."""

    deployment: Deployment
    workload: Workload | None
    hardware: str | None = None
    model: str | None = None
    overrides: dict = field(default_factory=dict)
    path: str = ""
    description: str = ""


def parse_deployment(path: Path) -> DeploymentFile:
    """Parse and validate one deployment file; every failure names the file and the key."""
    where = str(path)
    doc = read_toml(path)
    meta = doc.pop("meta", None)
    if not isinstance(meta, dict) or set(meta) - _META_KEYS or not all(isinstance(meta.get(k), str) for k in _META_KEYS):
        raise SpecError("expected a [meta] table with name, description and phase (strings)", where=where)
    sources = doc.pop("sources", None)
    if not isinstance(sources, dict) or not sources or not all(isinstance(s, dict) and isinstance(s.get("title"), str) for s in sources.values()):
        raise SpecError('expected a [sources] table of { title = "...", url = "..." } entries', where=where)
    target = doc.pop("target", {})
    if not isinstance(target, dict) or set(target) - _TARGET_KEYS:
        raise SpecError(f"expected [target] with only {', '.join(sorted(_TARGET_KEYS))}", where=where)
    overrides = target.get("overrides", [])
    if not isinstance(overrides, list) or not all(isinstance(o, str) and "=" in o for o in overrides):
        raise SpecError('target.overrides: expected a list of "KEY=VALUE" strings', where=where)
    for key in ("hardware", "model"):
        if key in target and not isinstance(target[key], str):
            raise SpecError(f"target.{key}: expected a name or a path", where=where)

    dep, wl = {}, {}
    known = {**DEPLOYMENT_KEYS, **WORKLOAD_KEYS}
    for section, table in doc.items():
        if not isinstance(table, dict):
            raise SpecError(f"'{section}' must be a table [{section}]", where=where)
        for key, entry in table.items():
            dotted = f"{section}.{key}"
            if dotted not in known:
                raise SpecError(unknown_key_message(dotted, list(known)), where=where)
            check_entry(entry, sources, f"{where}: {dotted}", must_say_kind=section)
            value = entry["value"]
            attr = known[dotted]
            if attr not in _WORDS and isinstance(value, str):
                raise SpecError(f"expected a number, got {value!r}", where=f"{where}: {dotted}")
            (dep if dotted in DEPLOYMENT_KEYS else wl)[attr] = value
    name = meta["name"]
    try:
        deployment = Deployment(phase=meta["phase"], name=name, **dep)
        workload = Workload(**wl) if wl else None
    except SpecError as exc:
        raise SpecError(str(exc), where=where) from None
    pairs = dict(o.split("=", 1) for o in overrides)
    return DeploymentFile(deployment, workload, target.get("hardware"), target.get("model"), pairs, where, meta["description"])


_CACHE: dict[tuple[str, float], DeploymentFile] = {}


def load_deployment(name_or_path: str) -> DeploymentFile:
    """A deployment by name (see `deployments/`) or by path to a .toml file (parsed once per file version)."""
    path = resolve(name_or_path, "deployment")
    key = (str(path.resolve()), path.stat().st_mtime)
    if key not in _CACHE:
        _CACHE[key] = parse_deployment(path)
    return _CACHE[key]


# ---- writing ------------------------------------------------------------------------------------------


def _toml_value(v) -> str:
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    return str(v)


def deployment_toml(deployment: Deployment, *, name: str, description: str, source: tuple[str, str, str], kind: str, note: str = "",
                    workload: Workload | None = None, workload_kind: str = "config", workload_note: str = "",
                    hardware: str | None = None, model: str | None = None, overrides: dict | None = None) -> str:
    """The text of a deployment file. `source` is (id, title, url) of the one source every value cites;
    the deployment's values have `kind` and `note`, the workload's `workload_kind` and `workload_note`.
    Choices that do not apply (the cache path in decode, the core split without overlap) are left out."""
    sid, title, url = source
    lines = ["[meta]", f"name = {_toml_value(name)}", f"description = {_toml_value(description)}", f"phase = {_toml_value(deployment.phase)}", "",
             "[sources]", f"{sid} = {{ title = {_toml_value(title)}, url = {_toml_value(url)} }}"]
    skip = set()
    if deployment.phase == "decode":
        skip.add("cache_path")
    if deployment.phase == "prefill" or deployment.microbatches == 1:
        skip.add("attention_matrix_cores")

    def section(keys: dict, obj, kind: str, note: str) -> None:
        tail = f", note = {_toml_value(note)}" if note else ""
        current = None
        for dotted, attr in keys.items():
            value = getattr(obj, attr)
            if value is None or (obj is deployment and attr in skip):
                continue
            table, key = dotted.split(".")
            if table != current:
                lines.extend(["", f"[{table}]"])
                current = table
            value = value if attr in _WORDS else as_int(value)
            lines.append(f"{key} = {{ value = {_toml_value(value)}, source = \"{sid}\", kind = \"{kind}\"{tail} }}")

    section(DEPLOYMENT_KEYS, deployment, kind, note)
    if workload is not None:
        section(WORKLOAD_KEYS, workload, workload_kind, workload_note)
    if hardware or model or overrides:
        lines.extend(["", "[target]"])
        if hardware:
            lines.append(f"hardware = {_toml_value(hardware)}")
        if model:
            lines.append(f"model = {_toml_value(model)}")
        if overrides:
            lines.append("overrides = [" + ", ".join(_toml_value(f"{k}={v}") for k, v in overrides.items()) + "]")
    return "\n".join(lines) + "\n"
