"""A what-if scenario and the light re-plan every what-if command shares.

A `Scenario` is everything a plan depends on: the hardware and model specs (with overrides
applied), the workload, the SLOs, the device budget and the search limits. `best()` builds the
decode and prefill grids (the same `decode_grid`/`prefill_grid` as `cmperf plan`) and takes the
best deployment per SLO with `ranked(..., 1)`; an SLO no deployment meets gives None and a note,
never an exception. Grids are memoised on their inputs, so a sweep over a key that only one phase
reads (e.g. the prefix hit rate, or the SLO itself) rebuilds only what changed.
"""

from __future__ import annotations

import fnmatch
import math
from collections import OrderedDict
from dataclasses import dataclass, replace

import numpy as np

from cmperf.errors import SpecError
from cmperf.inputs import DEFAULT_INPUT_LEN, DEFAULT_MTP_ACCEPTANCE, DEFAULT_OUTPUT_LEN, TPOT_MS_RANGE, TTFT_MS_RANGE
from cmperf.overrides import WORKLOAD_FIELDS, apply_overrides, parse_set, refuse_derived
from cmperf.specs.deployment import MAX_PREFIX_HIT, Deployment, Workload
from cmperf.specs.loader import Spec, load_hardware, load_model, unknown_key_message
from cmperf.specs.schema import HARDWARE_FIELDS, MODEL_FIELDS

#: Keys only the what-if commands accept, besides the hardware, model and workload keys:
#: (type, lower bound, upper bound, help, unit).
SEARCH_FIELDS: dict[str, tuple] = {
    "search.max_mtp": (int, 0, 8, "largest number of speculative MTP tokens searched (the planner's default is 2)", "tokens"),
}
SLO_FIELDS: dict[str, tuple] = {
    "slo.tpot_ms": (float, *TPOT_MS_RANGE, "TPOT SLO", "ms"),
    "slo.ttft_ms": (float, *TTFT_MS_RANGE, "TTFT SLO (prefill)", "ms"),
}
WORKLOAD_ATTR = {
    "workload.input_len": "input_len", "workload.output_len": "output_len",
    "workload.mtp_acceptance": "mtp_acceptance", "workload.prefix_hit": "prefix_hit",
    "search.max_mtp": "max_mtp",
}
#: Every key that carries UB (scale-up) bandwidth: the link rate, the measured per-die read/write
#: bandwidths, the fitted fused dispatch/combine bandwidths, and the CPU-DRAM pool read (over UB).
#: For `--variant-scale PATTERN=FACTOR`; scale them together, since the model uses their ratios.
UB_BANDWIDTH_PATTERNS = ("scaleup.*bandwidth*", "moe_comm.*bandwidth*", "pool.read_bandwidth*")


def numeric_spec_keys() -> list[str]:
    """Every hardware and model key that holds a number (not a data type)."""
    return [k for k, f in {**HARDWARE_FIELDS, **MODEL_FIELDS}.items() if f.type in ("int", "float")]


def settable_keys(allow_slo: bool = False) -> list[str]:
    keys = [*HARDWARE_FIELDS, *MODEL_FIELDS, *WORKLOAD_FIELDS, *SEARCH_FIELDS]
    return keys + list(SLO_FIELDS) if allow_slo else keys


def key_info(key: str) -> tuple[str, str]:
    """(type, unit) of a key the what-if commands accept; type is 'int', 'float' or 'dtype'."""
    if key in HARDWARE_FIELDS or key in MODEL_FIELDS:
        f = HARDWARE_FIELDS.get(key) or MODEL_FIELDS[key]
        return f.type, f.unit
    if key in WORKLOAD_FIELDS:
        typ = WORKLOAD_FIELDS[key][0]
        return ("int" if typ is int else "float"), ("tokens" if typ is int else "fraction")
    spec = SEARCH_FIELDS.get(key) or SLO_FIELDS[key]
    return ("int" if spec[0] is int else "float"), spec[4]


@dataclass(frozen=True)
class Scenario:
    hw: Spec
    model: Spec
    input_len: int = DEFAULT_INPUT_LEN
    output_len: int = DEFAULT_OUTPUT_LEN
    mtp_acceptance: float = DEFAULT_MTP_ACCEPTANCE
    prefix_hit: float = 0.0
    cache_path: str = "ub"
    eplb: str = "default"
    max_mtp: int = 2
    devices: int | None = None  # budget; None = one system
    tpot_ms: tuple = (15.0, 50.0)
    ttft_ms: float | None = None
    overrides: tuple = ()  # "KEY=VALUE" strings, for reports
    answer_tpot_ms: tuple = ()  # more TPOT SLOs the decode search keeps answers for (a sweep over the SLO shares one search)

    @property
    def system_devices(self) -> int:
        return int(self.hw["system.nodes"] * self.hw["node.packages"])

    @property
    def budget(self) -> int:
        return int(self.devices or self.system_devices)

    @property
    def workload(self) -> Workload:
        return Workload(input_len=self.input_len, output_len=self.output_len, mtp_acceptance=self.mtp_acceptance,
                        prefix_hit=self.prefix_hit, tpot_ms=self.tpot_ms, ttft_ms=self.ttft_ms)

    def value(self, key: str):
        """The current value of a key (hardware, model, workload, search or SLO)."""
        if key in WORKLOAD_ATTR:
            return getattr(self, WORKLOAD_ATTR[key])
        if key == "slo.tpot_ms":
            return self.tpot_ms[0] if self.tpot_ms else None
        if key == "slo.ttft_ms":
            return self.ttft_ms
        spec = self.hw if key in HARDWARE_FIELDS else self.model
        return spec.get(key)

    def describe(self, budget: bool = True) -> str:
        s = (f"{self.model.name} on {self.hw.name}, {self.input_len}-token prompts, {self.output_len} output tokens, "
             f"MTP acceptance {self.mtp_acceptance:g}, prefix hit {self.prefix_hit:g} (cache over {self.cache_path.upper()}), "
             f"EPLB {self.eplb}")
        s += f", budget {self.budget} devices" if budget else f", instances of up to one system ({self.system_devices} devices)"
        if self.max_mtp != 2:
            s += f", MTP searched up to {self.max_mtp}"
        return s


def _check_extra(key: str, raw, where: str):
    from cmperf.inputs import check_number

    typ, lo, hi, _, unit = SEARCH_FIELDS.get(key) or SLO_FIELDS[key]
    from cmperf.inputs import is_plain_number

    number = raw
    if isinstance(raw, str) and not is_plain_number(raw):
        from cmperf.units import parse_quantity

        try:
            number = parse_quantity(raw, unit if unit == "ms" else None)  # 50ms, 2s for an SLO; 4 for a count
        except ValueError:
            number = raw  # not a quantity: the check below says what was expected
    return check_number(number, f"{where} {key}", whole=typ is int, lo=lo, hi=hi, text_ok=True)


def set_value(sc: Scenario, key: str, raw, where: str = "--set", *, allow_slo: bool = False, record: bool = True) -> Scenario:
    """A copy of the scenario with one key changed, validated exactly as `--set` validates it."""
    refuse_derived(key, settable_keys(allow_slo), where)
    if key in HARDWARE_FIELDS or key in MODEL_FIELDS or key in WORKLOAD_FIELDS or key.startswith("derived."):
        hw, model, wl = apply_overrides(sc.hw, sc.model, {key: raw}, where, settable_keys(allow_slo))
        if wl.get("prefix_hit", 0.0) > MAX_PREFIX_HIT:
            raise SpecError(f"expected a value in [0, {MAX_PREFIX_HIT:g}] (a fully cached prompt has nothing to prefill), got {raw!r}", where=f"{where} {key}")
        note = (f"{key}={raw}",) if record else ()
        return replace(sc, hw=hw, model=model, **wl, overrides=sc.overrides + note)
    note = (f"{key}={raw}",) if record else ()
    if key in SEARCH_FIELDS:
        return replace(sc, **{WORKLOAD_ATTR[key]: _check_extra(key, raw, where)}, overrides=sc.overrides + note)
    if key in SLO_FIELDS and allow_slo:
        v = _check_extra(key, raw, where)
        if key == "slo.tpot_ms":
            return replace(sc, tpot_ms=(v,))
        return replace(sc, ttft_ms=v)
    raise SpecError(unknown_key_message(key, settable_keys(allow_slo)), where=where)


def apply_sets(sc: Scenario, sets: dict[str, str], where: str) -> Scenario:
    """Apply KEY=VALUE items together: the hardware keys in one update and the model keys in one,
    so keys that must change together (block rows, columns and core bandwidth; experts and groups)
    are checked as a whole, as `plan` and `estimate` check them."""
    hw_up = {k: v for k, v in sets.items() if k in HARDWARE_FIELDS}
    model_up = {k: v for k, v in sets.items() if k in MODEL_FIELDS}
    for key in sets:
        refuse_derived(key, settable_keys(), where)
    if hw_up:
        sc = replace(sc, hw=sc.hw.with_values(hw_up, origin=where), overrides=sc.overrides + tuple(f"{k}={v}" for k, v in hw_up.items()))
    if model_up:
        sc = replace(sc, model=sc.model.with_values(model_up, origin=where), overrides=sc.overrides + tuple(f"{k}={v}" for k, v in model_up.items()))
    for key, value in sets.items():
        if key not in hw_up and key not in model_up:
            sc = set_value(sc, key, value, where)
    return sc


def apply_scales(sc: Scenario, items, where: str) -> Scenario:
    """PATTERN=FACTOR items: multiply every numeric hardware/model key matching the glob PATTERN.

    Whole-number keys are rounded; every new value is validated as `--set` validates it.
    """
    for pattern, text in parse_set(items, where).items():
        try:
            factor = float(text)
        except ValueError:
            raise SpecError(f"expected PATTERN=FACTOR with a number as FACTOR, got {pattern}={text!r}", where=where) from None
        if not (math.isfinite(factor) and factor > 0):
            raise SpecError(f"expected a positive factor, got {text!r}", where=where)
        keys = [k for k in numeric_spec_keys() if fnmatch.fnmatchcase(k, pattern) and (sc.hw.has(k) or sc.model.has(k))]
        if not keys:
            close = unknown_key_message(pattern, numeric_spec_keys()).replace("unknown key", "no numeric hardware or model key matches", 1)
            raise SpecError(close, where=where)
        scaled = {}
        for k in keys:
            old = sc.value(k)
            typ, _ = key_info(k)
            new = old * factor
            if not math.isfinite(new):
                raise SpecError(f"{k} = {old:g} x {factor:g} is not a finite number", where=where)
            scaled[k] = int(round(new)) if typ == "int" else float(new)
        # Every key of the pattern changes at once, so related keys are checked together.
        for spec_fields, attr in ((HARDWARE_FIELDS, "hw"), (MODEL_FIELDS, "model")):
            up = {k: v for k, v in scaled.items() if k in spec_fields}
            if up:
                sc = replace(sc, **{attr: getattr(sc, attr).with_values(up, origin=where)})
        sc = replace(sc, overrides=sc.overrides + tuple(f"{k}={v:g} (x{factor:g})" for k, v in scaled.items()))
    return sc


def check_scenario(sc: Scenario, where_len: str = "--input-len/--output-len", where_devices: str = "--devices") -> Scenario:
    """Cross-key checks a plan needs; a SpecError names the option (or argument) at fault."""
    from cmperf.inputs import check_number

    for key, name in WORKLOAD_ATTR.items():  # as set by options, --set or a Python caller
        typ, lo, hi = (WORKLOAD_FIELDS.get(key) or SEARCH_FIELDS[key])[:3]
        check_number(getattr(sc, name), key, whole=typ is int, lo=lo, hi=min(hi, MAX_PREFIX_HIT) if name == "prefix_hit" else hi)
    if sc.devices is not None:
        check_number(sc.devices, where_devices, whole=True, lo=1, hi=1_000_000)
    for t in sc.tpot_ms:
        check_number(t, "--tpot", whole=False, lo=TPOT_MS_RANGE[0], hi=TPOT_MS_RANGE[1])
    if sc.ttft_ms is not None:
        check_number(sc.ttft_ms, "--ttft", whole=False, lo=TTFT_MS_RANGE[0], hi=TTFT_MS_RANGE[1])
    max_ctx = sc.model["arch.max_position_embeddings"]
    if sc.input_len + sc.output_len > max_ctx:
        raise SpecError(f"input + output = {sc.input_len + sc.output_len} tokens exceeds the model's {max_ctx}-token context", where=where_len)
    node = sc.hw["node.packages"]
    if sc.budget < node:
        raise SpecError(f"expected at least one node ({node} devices), got {sc.budget}", where=where_devices)
    if sc.eplb not in ("default", "perfect"):
        raise SpecError(f"expected 'default' or 'perfect', got {sc.eplb!r}", where="--eplb")
    if sc.cache_path not in ("ub", "vpc"):
        raise SpecError(f"expected 'ub' or 'vpc', got {sc.cache_path!r}", where="--cache-path")
    return sc


def _load(loader, name: str, where: str):
    try:
        return loader(name)
    except SpecError as exc:
        if exc.where and exc.where.startswith("--"):  # an unknown name: say which option gave it
            raise SpecError(str(exc)[len(exc.where) + 2:], where=where) from None
        raise


def scenario(hardware: str = "cloudmatrix384", model: str = "deepseek-r1", *, layers=(), scales=(),
             hardware_where: str = "--hardware", model_where: str = "--model", **fields) -> Scenario:
    """Load the specs and apply override layers: `layers` are (KEY=VALUE dict, where) pairs applied
    in order (later wins); `scales` are (PATTERN=FACTOR list, where) pairs applied after them."""
    sc = Scenario(hw=_load(load_hardware, hardware, hardware_where), model=_load(load_model, model, model_where), **fields)
    for sets, where in layers:
        sc = apply_sets(sc, sets, where)
    for items, where in scales:
        sc = apply_scales(sc, items, where)
    return check_scenario(sc)


# ---- the light re-plan ---------------------------------------------------------------------------

_DECODE: OrderedDict = OrderedDict()
_PREFILL: OrderedDict = OrderedDict()


def _spec_key(spec: Spec):
    return (spec.path, tuple(sorted(spec.values.items())))


def _memo(cache: OrderedDict, key, size: int, build):
    if key not in cache:
        cache[key] = build()
        while len(cache) > size:
            cache.popitem(last=False)
    cache.move_to_end(key)
    return cache[key]


def mtp_choices(sc: Scenario) -> tuple:
    return tuple(range(sc.max_mtp + 1)) if sc.model["mtp.num_nextn_predict_layers"] > 0 else (0,)


#: Deployments per SLO a what-if may rank (`refined_best` refines around this many).
RANKED_TOP = 8


def decode_grid_for(sc: Scenario, budget: int | None = None):
    """The decode search of a scenario, streamed: it answers, exactly as the whole grid would, the
    best RANKED_TOP deployments and the best per instance size for each of the scenario's TPOT SLOs
    (and `answer_tpot_ms`), the Pareto frontier, the best latency and what limits each answer."""
    from cmperf.solve.stream import decode_search

    budget = budget or sc.budget
    slos = tuple(sorted(set(sc.tpot_ms) | set(sc.answer_tpot_ms)))
    key = (_spec_key(sc.hw), _spec_key(sc.model), budget, sc.input_len, sc.output_len, sc.mtp_acceptance, sc.eplb, mtp_choices(sc), slos)
    return _memo(_DECODE, key, 2, lambda: decode_search(sc.hw, sc.model, budget, sc.input_len, sc.output_len, sc.mtp_acceptance,
                                                         sc.eplb == "perfect", slos=[t * 1e-3 for t in slos], top=RANKED_TOP,
                                                         mtp_choices=mtp_choices(sc)))


def prefill_grid_for(sc: Scenario, budget: int | None = None):
    from cmperf.solve.search import prefill_grid

    budget = budget or sc.budget
    key = (_spec_key(sc.hw), _spec_key(sc.model), budget, sc.input_len, sc.eplb, sc.prefix_hit, sc.cache_path)
    return _memo(_PREFILL, key, 4, lambda: prefill_grid(sc.hw, sc.model, budget, sc.input_len, sc.eplb == "perfect", sc.prefix_hit, sc.cache_path))


def _infeasible_note(grid, what: str) -> str:
    from cmperf.solve.search import best_latency_s

    best = best_latency_s(grid)
    if not math.isfinite(best):
        return f"no {grid.phase} deployment fits in HBM"
    unit = "TPOT" if grid.phase == "decode" else "TTFT"
    return f"no deployment meets {what}; the best achievable {unit} is {best * 1e3:.2f} ms"


def best(sc: Scenario, *, decode: bool = True, prefill: bool = True) -> dict:
    """The best decode deployment per TPOT SLO and the best prefill deployment (under the TTFT SLO).

    Returns {"decode": [record or None per SLO], "prefill": record or None, "notes": [...]}.
    """
    from cmperf.solve.records import record
    from cmperf.solve.search import ranked

    out = {"decode": [], "prefill": None, "notes": []}
    dies = sc.hw["package.dies"]
    if decode:
        dg = decode_grid_for(sc)
        for t in sc.tpot_ms:
            flats = ranked(dg, t * 1e-3, 1)
            if flats:
                out["decode"].append(record(dg, flats[0], t, dies))
            else:
                out["decode"].append(None)
                out["notes"].append(_infeasible_note(dg, f"TPOT <= {t:g} ms"))
    if prefill:
        pg = prefill_grid_for(sc)
        ttft_s = sc.ttft_ms * 1e-3 if sc.ttft_ms is not None else None
        flats = ranked(pg, ttft_s, 1)
        if flats:
            out["prefill"] = record(pg, flats[0], sc.ttft_ms, dies)
        else:
            out["notes"].append(_infeasible_note(pg, f"TTFT <= {sc.ttft_ms:g} ms"))
    return out


def explain(sc: Scenario, rec: dict | None) -> dict | None:
    """Attach what binds the deployment: the search limit and the stream/resource bounding a step."""
    from cmperf.solve.records import explain as explain_record

    if rec is None:
        return None
    grid = decode_grid_for(sc) if rec["phase"] == "decode" else prefill_grid_for(sc)
    return explain_record(rec, sc.hw, sc.model, grid, sc.workload)


# ---- refined optimum (continuous batch), for derivatives -----------------------------------------


def _neighbours(axis_values: np.ndarray, i: int) -> tuple[float, float, float]:
    lo = axis_values[max(i - 1, 0)]
    hi = axis_values[min(i + 1, len(axis_values) - 1)]
    return float(lo), float(axis_values[i]), float(hi)


def _fine(lo: float, mid: float, hi: float, n: int = 33) -> np.ndarray:
    return np.concatenate([np.linspace(lo, mid, n), np.linspace(mid, hi, n)[1:]])


def refined_best(sc: Scenario, phase: str, slo_ms: float | None, top: int = RANKED_TOP) -> float:
    """Best tokens/s per device with the last axis (decode batch, prefill tokens per device) made
    continuous around the grid's `top` best deployments. The grid's 5% (decode) and 2x (prefill)
    steps would otherwise make the optimum a staircase in every parameter, and a finite
    difference of a staircase is noise. NaN when no deployment meets the SLO."""
    from cmperf.evaluation import evaluate
    from cmperf.solve.search import params_at, ranked

    grid = decode_grid_for(sc) if phase == "decode" else prefill_grid_for(sc)
    slo_s = None if slo_ms is None else slo_ms * 1e-3
    flats = ranked(grid, slo_s, top)
    if not flats:
        return float("nan")
    last = "batch" if phase == "decode" else "tokens_per_device"
    axis_values = grid.axes[last]
    ps = [params_at(grid, f) for f in flats]
    fine = np.array([_fine(*_neighbours(axis_values, int(np.unravel_index(f, grid.shape)[-1]))) for f in flats])
    if phase == "decode":
        fine = np.floor(fine)  # requests are whole: refine between grid points, never below one request

    def col(name):
        return np.array([p[name] for p in ps], float)[:, None]

    dep = Deployment(phase, devices=col("devices"), ep=col("ep"), redundant=col("redundant"), attn_tp=col("attn_tp"),
                     microbatches=col("microbatches"), mtp=col("mtp"),
                     **({"attention_matrix_cores": col("attn_cores")} if phase == "decode" else {}), **{last: fine}, **grid.choices)
    res = evaluate(sc.hw, sc.model, grid.workload, dep)
    lat = res.latency_s
    shape = fine.shape
    ok = np.broadcast_to(res.valid, shape) & np.broadcast_to(res.fits, shape)
    if slo_s is not None:
        ok = ok & (np.broadcast_to(lat, shape) <= slo_s)
    m = np.where(ok, np.broadcast_to(res.tokens_per_s_per_device, shape), -np.inf)
    v = float(m.max())
    return v if math.isfinite(v) else float("nan")
