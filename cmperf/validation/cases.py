"""Published results as validation cases: read `published.csv`, predict each row with the model.

Every prediction is computed here at run time from the model's own cost functions (estimate(),
Die.matmul, Die.attention, fused_moe_comm_time_s, bulk_comm_time_s), so the table follows any
change to a formula or a hardware file. See the package docstring for the file's columns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from cmperf.errors import SpecError
from cmperf.inputs import MAX_MAGNITUDE

PUBLISHED_CSV = Path(__file__).with_name("published.csv")
COLUMNS = ("case", "hardware", "evaluator", "kind", "params", "metric", "published", "unit", "tolerance_pct", "error_basis", "source", "note")
ROW_KINDS = ("predicted", "fitted", "input")
DEFAULT_MODEL = "deepseek-r1"
#: Work given to the attention evaluator: large enough that launch latency is negligible.
_BIG_FLOPS = 1e16
_BIG_BYTES = 1e13


@dataclass(frozen=True)
class Case:
    """One published figure: what it is, where it comes from, how to predict it."""

    case: str
    hardware: str
    evaluator: str
    kind: str
    params: dict
    metric: str
    published: float
    unit: str
    tolerance_pct: float
    error_basis: str
    source: str
    note: str
    line: int = 0
    path: str = ""

    @property
    def where(self) -> str:
        return f"{self.path or PUBLISHED_CSV.name}: line {self.line}"


def _value(text: str):
    t = text.strip()
    try:
        f = float(t)
    except ValueError:
        return t
    return int(f) if f.is_integer() and "." not in t and "e" not in t.lower() else f


def parse_params(text: str, where: str = "params") -> dict:
    out: dict = {}
    for item in filter(None, (p.strip() for p in text.split(";"))):
        key, sep, val = item.partition("=")
        if not sep or not key.strip():
            raise SpecError(f"expected key=value items separated by ';', got {item!r}", where=where)
        out[key.strip()] = _value(val)
    return out


#: What a published figure may be measured in, per metric (the evaluators return these units).
METRIC_UNITS = {"tpot_ms": "ms", "tokens_per_s": "tokens/s", "latency_us": "us", "tflops": "TFLOPS", "gbps": "GB/s",
                "compute_util_pct": "%", "hbm_util_pct": "%", "attention_stream_us": "us", "moe_stream_us": "us"}


def load_published(path: Path | str = PUBLISHED_CSV) -> list[Case]:
    """Read the published-results table; every malformed cell is a SpecError naming line and column."""
    from cmperf.inputs import MAX_CSV_ROWS, check_number, csv_lines, safe_text

    path = Path(path)
    name = safe_text(path)
    lines = csv_lines(path, name, MAX_CSV_ROWS)
    header = lines[0][1] if lines else None
    if header is None or [h.strip() for h in header] != list(COLUMNS):
        raise SpecError(f"expected the header {','.join(COLUMNS)}", where=name)
    cases = []
    for line, cells in lines[1:]:
        where = f"{name}: line {line}"
        if len(cells) != len(COLUMNS):
            raise SpecError(f"expected {len(COLUMNS)} cells, got {len(cells)}", where=where)
        r = dict(zip(COLUMNS, (c.strip() for c in cells)))
        if r["evaluator"] not in EVALUATORS:
            raise SpecError(f"unknown evaluator {r['evaluator']!r}; expected one of {', '.join(EVALUATORS)}", where=f"{where}, column 'evaluator'")
        if r["kind"] not in ROW_KINDS:
            raise SpecError(f"expected one of {', '.join(ROW_KINDS)}, got {r['kind']!r}", where=f"{where}, column 'kind'")
        if r["error_basis"] not in ("relative", "points"):
            raise SpecError(f"expected relative or points, got {r['error_basis']!r}", where=f"{where}, column 'error_basis'")
        nums = {col: check_number(r[col], f"{where}, column '{col}'", whole=False, lo=0.0, hi=MAX_MAGNITUDE, lo_open=True, text_ok=True)
                for col in ("published", "tolerance_pct")}
        unit = METRIC_UNITS.get(r["metric"])
        if unit is None:
            raise SpecError(f"unknown metric {r['metric']!r}; expected one of {', '.join(METRIC_UNITS)}", where=f"{where}, column 'metric'")
        if r["unit"] != unit:
            raise SpecError(f"expected the unit of {r['metric']}, {unit!r}, got {r['unit']!r}", where=f"{where}, column 'unit'")
        cases.append(Case(
            case=r["case"], hardware=r["hardware"], evaluator=r["evaluator"], kind=r["kind"],
            params=parse_params(r["params"], where=f"{where}, column 'params'"), metric=r["metric"],
            published=nums["published"], unit=r["unit"], tolerance_pct=nums["tolerance_pct"],
            error_basis=r["error_basis"], source=r["source"], note=r["note"], line=line, path=name,
        ))
    return cases


# ---- evaluators: (hardware spec, model spec, case) -> prediction in the case's unit ---------------


def _scalar(x) -> float:
    return float(np.asarray(x, dtype=float).reshape(-1)[0])


def _bad_metric(case: Case):
    return SpecError(f"evaluator '{case.evaluator}' cannot predict metric {case.metric!r}", where=case.where)


#: Params named as the CLI options name them, for the deployment field they set.
PARAM_ALIASES = {"attn_cores": "attention_matrix_cores"}


def _estimate(phase: str, hw_name: str, case: Case) -> dict:
    from cmperf.evaluation import DEPLOYMENT_FIELDS, WORKLOAD_FIELDS, estimate

    p = {PARAM_ALIASES.get(k, k): v for k, v in case.params.items()}
    model = p.pop("model", DEFAULT_MODEL)
    unknown = set(p) - set(DEPLOYMENT_FIELDS) - set(WORKLOAD_FIELDS)
    if unknown:
        raise SpecError(f"unknown estimate option(s) {', '.join(sorted(unknown))}", where=case.where)
    return estimate(phase, hw_name, model, **p).result


def eval_decode(case: Case, hw, model) -> float:
    from cmperf.units import MS

    res = _estimate("decode", case.hardware, case)
    if case.metric == "tpot_ms":
        return _scalar(res["tpot_s"]) / MS
    if case.metric == "tokens_per_s":
        return _scalar(res["tokens_per_s_per_device"])
    if case.metric in ("attention_stream_us", "moe_stream_us"):
        # One microbatch of one MoE layer on its stream (the paper's per-stream latency).
        return _scalar(res[case.metric.replace("_us", "_s")]) * 1e6
    raise _bad_metric(case)


def eval_prefill(case: Case, hw, model) -> float:
    res = _estimate("prefill", case.hardware, case)
    if case.metric == "tokens_per_s":
        return _scalar(res["tokens_per_s_per_device"])
    raise _bad_metric(case)


def fused_comm_time_s(hw, model, which: str, ep, tokens) -> float:
    """One fused dispatch or combine call of `tokens` tokens per rank over `ep` ranks (whole die)."""
    from cmperf.comm.collectives import fused_benchmark_time_s

    if which not in ("dispatch", "combine"):
        raise SpecError(f"expected dispatch or combine, got {which!r}", where="which")
    return _scalar(fused_benchmark_time_s(hw, model, which, ep, tokens))


def eval_fused_comm(case: Case, hw, model) -> float:
    from cmperf.units import US

    p = case.params
    t = fused_comm_time_s(hw, model, p["which"], p["ep"], p["tokens"])
    if case.metric == "latency_us":
        return t / US
    raise _bad_metric(case)


def gemm_time_flops(hw, m, n, k, dtype, groups=1.0, weight_dtype=None, out_dtype="bf16") -> tuple[float, float]:
    """(kernel seconds, FLOPs) of a (groups x) M x K by K x N GEMM: the model's own cost (Die.matmul
    on the whole die), less the per-operator launch gap `overhead.op_latency_s`, since published
    kernel timings (and profiler timings) measure the kernel alone."""
    from cmperf.compose.ops import Die

    op = Die(hw).matmul("gemm", "validate", "validate", float(m), float(k), float(n), dtype, weight_dtype or dtype, out_dtype, groups=float(groups))
    return _scalar(op.time_s) - hw["overhead.op_latency_s"], _scalar(op.flops)


def eval_gemm(case: Case, hw, model) -> float:
    from cmperf.specs.derived import matrix_peak_flops_per_s
    from cmperf.units import TFLOPS, US

    p = case.params
    t, flops = gemm_time_flops(hw, p["m"], p["n"], p["k"], p["dtype"], p.get("groups", 1), p.get("weight_dtype"), p.get("out_dtype", "bf16"))
    if case.metric == "latency_us":
        return t / US
    if case.metric == "tflops":
        return flops / t / TFLOPS
    if case.metric == "compute_util_pct":
        return 100.0 * flops / (t * matrix_peak_flops_per_s(hw, p["dtype"]))
    raise _bad_metric(case)


def eval_attention(case: Case, hw, model) -> float:
    """Attention kernel at its bound: compute-bound (huge FLOPs, no bytes) or memory-bound."""
    from cmperf.compose.ops import Die
    from cmperf.specs.derived import matrix_peak_flops_per_s
    from cmperf.units import GB, TFLOPS

    p = case.params
    dtype = p.get("dtype", "bf16")
    if p.get("bound") == "compute":
        flops, bytes_ = _BIG_FLOPS, 1.0
    elif p.get("bound") == "memory":
        flops, bytes_ = 1.0, _BIG_BYTES
    else:
        raise SpecError("expected params bound=compute or bound=memory", where=case.where)
    t = _scalar(Die(hw).attention("attention", "validate", "validate", flops, bytes_, dtype).time_s) - hw["overhead.op_latency_s"]
    peak = matrix_peak_flops_per_s(hw, dtype)
    values = {
        "tflops": flops / t / TFLOPS,
        "compute_util_pct": 100.0 * flops / (t * peak),
        "gbps": bytes_ / t / GB,
        "hbm_util_pct": 100.0 * bytes_ / (t * hw["die.hbm_bandwidth_bytes_per_s"]),
    }
    if case.metric not in values:
        raise _bad_metric(case)
    return values[case.metric]


def bulk_comm_plane_bandwidth(hw, model, ep, tokens, hidden, dtype, scale_bytes, plane) -> float:
    """Bandwidth (B/s) a die achieves on one plane in a bulk (DMA) all-to-all of a MoE dispatch or
    combine: bytes that cross `plane` (scaleup or scaleout) / bulk_comm_time_s of all the bytes.

    Bytes per die = tokens x expected distinct destination ranks x (hidden x dtype bytes + scale);
    the bytes spread evenly over the die's peers (planes.peer_fractions)."""
    from cmperf.comm.collectives import bulk_comm_time_s
    from cmperf.comm.planes import peer_fractions
    from cmperf.costs.moe import expected_destinations
    from cmperf.units import DTYPE_BYTES

    dests = _scalar(expected_destinations(model["moe.n_routed_experts"], model["moe.n_group"], model["moe.topk_group"], model["moe.num_experts_per_tok"], ep))
    total = tokens * dests * (hidden * DTYPE_BYTES[dtype] + scale_bytes)
    f_node, f_domain, f_out = (_scalar(f) for f in peer_fractions(hw, ep))
    share = {"scaleup": f_node + f_domain, "scaleout": f_out}.get(plane)
    if share is None:
        raise SpecError(f"expected plane scaleup or scaleout, got {plane!r}", where="plane")
    return total * share / _scalar(bulk_comm_time_s(hw, total, ep))


def eval_bulk_comm(case: Case, hw, model) -> float:
    from cmperf.units import GB

    p = case.params
    bw = bulk_comm_plane_bandwidth(hw, model, p["ep"], p["tokens"], p["hidden"], p["dtype"], p.get("scale_bytes", 0), p["plane"])
    if case.metric == "gbps":
        return bw / GB
    raise _bad_metric(case)


EVALUATORS: dict[str, Callable] = {
    "decode": eval_decode,
    "prefill": eval_prefill,
    "fused_comm": eval_fused_comm,
    "gemm": eval_gemm,
    "attention": eval_attention,
    "bulk_comm": eval_bulk_comm,
}


# ---- rows ---------------------------------------------------------------------------------------


def error_of(case: Case, predicted: float) -> float:
    """Signed error: % of the published value (relative) or percentage points (points)."""
    if case.error_basis == "points":
        return predicted - case.published
    return 100.0 * (predicted - case.published) / case.published


def evaluate_case(case: Case) -> dict:
    """One output row: the published figure, the model's prediction and whether it is in tolerance."""
    from cmperf.specs.loader import load_hardware, load_model

    try:
        hw = load_hardware(case.hardware)
        model = load_model(case.params.get("model", DEFAULT_MODEL))
        predicted = float(EVALUATORS[case.evaluator](case, hw, model))
    except KeyError as exc:
        raise SpecError(f"missing parameter {exc} for evaluator '{case.evaluator}'", where=case.where) from None
    except (SpecError, TypeError, ValueError, ArithmeticError) as exc:  # a params value the evaluator cannot use
        if isinstance(exc, SpecError) and exc.where and exc.where.startswith(case.where):
            raise
        msg = str(exc)
        if isinstance(exc, SpecError) and exc.where and exc.where.startswith("--"):  # an option: here a params item
            msg = f"params {exc.where[2:].replace('-', '_')}: {msg[len(exc.where) + 2:]}"
        raise SpecError(f"the model cannot evaluate this row: {msg}", where=case.where) from None
    if not math.isfinite(predicted):
        raise SpecError(f"the model predicts {predicted!r} for this row", where=case.where)
    err = error_of(case, predicted)
    return {
        "case": case.case,
        "hardware": case.hardware,
        "kind": case.kind,
        "metric": case.metric,
        "unit": case.unit,
        "published": case.published,
        "predicted": predicted,
        "error_pct": err,
        "error_basis": case.error_basis,
        "tolerance_pct": case.tolerance_pct,
        "within": bool(abs(err) <= case.tolerance_pct),
        "source": case.source,
        "note": case.note,
    }


def select_cases(hardware: list[str] | None = None, path: Path | str = PUBLISHED_CSV) -> list[Case]:
    cases = load_published(path)
    if hardware:
        known = sorted({c.hardware for c in cases})
        for name in hardware:
            if name not in known:
                raise SpecError(f"no published cases for hardware {name!r}; cases exist for {', '.join(known)}", where="--hardware")
        cases = [c for c in cases if c.hardware in hardware]
    return cases


def validation_rows(hardware: list[str] | None = None, path: Path | str = PUBLISHED_CSV) -> list[dict]:
    """Predicted against published for every case (optionally of some hardware names only)."""
    return [evaluate_case(c) for c in select_cases(hardware, path)]


def summary(rows: list[dict]) -> str:
    n_in = sum(r["within"] for r in rows)
    out = [r for r in rows if not r["within"]]
    text = f"{n_in}/{len(rows)} rows within tolerance"
    if out:
        text += "; outside: " + ", ".join(f"{r['case']} {r['metric']} ({r['error_pct']:+.1f} vs {r['tolerance_pct']:g})" for r in out)
    return text
