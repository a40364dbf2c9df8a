"""A user's measurements (CSV) and the model's prediction of each.

The file format is documented in the package docstring (cmperf/validation/__init__.py) and in
`cmperf calibrate --help`. Every malformed cell is a SpecError naming the file, the row and the column.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cmperf.errors import SpecError
from cmperf.inputs import MAX_CSV_ROWS, MAX_INT, MAX_MAGNITUDE, check_number, csv_lines, safe_text
from cmperf.specs.loader import Spec, parse_finite
from cmperf.units import DTYPE_BYTES, MS, TFLOPS, US

#: Most rows a measurements file may have, and most of them of kind decode or prefill (each such
#: row runs the whole model at every step of the fit): bounds that keep a fit under a minute.
MAX_MEASUREMENTS = MAX_CSV_ROWS
MAX_MODEL_ROWS = 30
#: Columns every row has.
BASE_COLUMNS = ("kind", "value", "unit")
#: Free-text columns, ignored.
TEXT_COLUMNS = ("label", "note", "comment")
#: Per kind: (required parameter columns, optional parameter columns).
KIND_COLUMNS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "gemm": (("m", "n", "k", "dtype", "metric"), ("groups",)),
    "dispatch": (("ep", "tokens"), ("metric",)),
    "combine": (("ep", "tokens"), ("metric",)),
    "decode": (("metric",), ("devices", "ep", "batch", "kv_len", "microbatches", "mtp", "mtp_acceptance", "eplb")),
    "prefill": (("metric",), ("devices", "ep", "tokens_per_device", "input_len", "microbatches", "eplb")),
}
_INT_COLUMNS = {"m": 1, "n": 1, "k": 1, "groups": 1, "ep": 1, "tokens": 1, "devices": 1, "batch": 1, "microbatches": 1, "mtp": 0, "tokens_per_device": 1, "input_len": 1}
_FLOAT_COLUMNS = {"kv_len": (0.0, math.inf, False), "mtp_acceptance": (0.0, 1.0, True)}
_CHOICE_COLUMNS = {"dtype": tuple(DTYPE_BYTES), "eplb": ("default", "perfect")}

_TIME_UNITS = {"s": 1.0, "ms": MS, "us": US, "µs": US}
_TFLOPS_UNITS = {"tflops": TFLOPS, "tflop/s": TFLOPS}
_RATE_UNITS = {"tokens/s": 1.0, "tok/s": 1.0}
#: Per kind: metric -> accepted units (lower case) -> factor to SI. "" is the default metric.
METRICS: dict[str, dict[str, dict[str, float]]] = {
    "gemm": {"tflops": _TFLOPS_UNITS, "seconds": _TIME_UNITS},
    "dispatch": {"seconds": _TIME_UNITS},
    "combine": {"seconds": _TIME_UNITS},
    "decode": {"tpot_ms": _TIME_UNITS, "tokens_per_s": _RATE_UNITS},
    "prefill": {"tokens_per_s": _RATE_UNITS},
}
ALL_COLUMNS = tuple(dict.fromkeys([*BASE_COLUMNS, *(c for req, opt in KIND_COLUMNS.values() for c in (*req, *opt)), *TEXT_COLUMNS]))


@dataclass(frozen=True)
class Measurement:
    row: int  # 1-based data row
    line: int  # line in the file
    kind: str
    metric: str
    value: float  # in `unit`
    unit: str
    si_per_unit: float  # SI value = value x si_per_unit
    params: dict = field(default_factory=dict)
    label: str = ""

    def describe(self) -> str:
        p = self.params
        if self.kind == "gemm":
            g = f"{p['groups']} x " if p.get("groups", 1) != 1 else ""
            return f"{g}M{p['m']} N{p['n']} K{p['k']} {p['dtype']}"
        return " ".join(f"{k}={v}" for k, v in p.items()) or "defaults"


def _where(path, row: int, line: int, column: str | None = None) -> str:
    w = f"{path}: row {row} (line {line})"
    return f"{w}, column '{column}'" if column else w


def _parse_cell(col: str, text: str, where: str):
    if col in _CHOICE_COLUMNS:
        if text not in _CHOICE_COLUMNS[col]:
            raise SpecError(f"expected one of {', '.join(_CHOICE_COLUMNS[col])}, got {text!r}", where=where)
        return text
    if col in _INT_COLUMNS:
        return check_number(text, where, whole=True, lo=_INT_COLUMNS[col], hi=MAX_INT, text_ok=True)
    v = parse_finite(text, where)
    lo, hi, closed = _FLOAT_COLUMNS[col]
    if not (lo <= v <= hi if closed else lo < v <= hi):
        raise SpecError(f"expected a number in {'[' if closed else '('}{lo:g}, {hi:g}], got {text!r}", where=where)
    return v


def read_measurements(path: str | Path) -> list[Measurement]:
    """Parse a measurements CSV (see the package docstring for its columns)."""
    path = Path(path)
    name = safe_text(path)
    numbered = csv_lines(path, name, MAX_MEASUREMENTS, "measurements (one fit evaluates every row at each step; average repeated measurements first)")
    if not numbered:
        raise SpecError("no header row and no measurements", where=name)
    rows = [cells for _, cells in numbered]
    header_line = numbered[0][0]
    header = [h.strip() for h in rows[0]]
    for col in header:
        if col not in ALL_COLUMNS:
            hint = ", ".join(c for c in ALL_COLUMNS)
            raise SpecError(f"unknown column {col!r}; expected some of: {hint}", where=f"{name}: header (line {header_line}), column '{safe_text(col)}'")
    dupes = {c for c in header if header.count(c) > 1}
    if dupes:
        raise SpecError(f"column(s) given twice: {', '.join(sorted(dupes))}", where=f"{name}: header (line {header_line})")
    for col in BASE_COLUMNS:
        if col not in header:
            raise SpecError(f"missing column '{col}'; every row needs kind, value and unit", where=f"{name}: header (line {header_line})")
    out = []
    for n, ((line, _), cells) in enumerate(zip(numbered[1:], rows[1:]), start=1):
        if len(cells) > len(header):
            raise SpecError(f"{len(cells)} cells for {len(header)} columns", where=_where(name, n, line))
        r = {h: c.strip() for h, c in zip(header, cells)}
        kind = r.get("kind", "")
        if kind not in KIND_COLUMNS:
            raise SpecError(f"unknown kind {kind!r}; expected one of {', '.join(KIND_COLUMNS)}", where=_where(name, n, line, "kind"))
        required, optional = KIND_COLUMNS[kind]
        params = {}
        for col in header:
            cell = r.get(col, "")
            if col in BASE_COLUMNS or col in TEXT_COLUMNS or col == "metric":
                continue
            if col not in required and col not in optional:
                if cell:
                    raise SpecError(f"column '{col}' does not apply to kind '{kind}' (its columns: {', '.join(required + optional)}); leave it empty", where=_where(name, n, line, col))
                continue
            if cell:
                params[col] = _parse_cell(col, cell, _where(name, n, line, col))
        for col in required:
            if col != "metric" and col not in params:
                raise SpecError(f"missing {col!r}: kind '{kind}' needs {', '.join(required)}", where=_where(name, n, line, col))
        metrics = METRICS[kind]
        metric = r.get("metric", "")
        if not metric and "metric" not in required and len(metrics) == 1:
            metric = next(iter(metrics))
        if metric not in metrics:
            got = f"got {metric!r}" if metric else "the cell is empty"
            raise SpecError(f"expected a metric of kind '{kind}': {', '.join(metrics)}; {got}", where=_where(name, n, line, "metric"))
        unit = r.get("unit", "")
        factor = metrics[metric].get(unit.lower())
        if factor is None:
            raise SpecError(f"expected a unit of {metric}: {', '.join(metrics[metric])}, got {unit!r}", where=_where(name, n, line, "unit"))
        value = check_number(r.get("value", ""), _where(name, n, line, "value"), whole=False, lo=0.0, hi=MAX_MAGNITUDE, lo_open=True, text_ok=True)
        if kind == "gemm":
            params.setdefault("groups", 1)
        out.append(Measurement(n, line, kind, metric, value, unit, factor, params, r.get("label", "")))
    if not out:
        raise SpecError("no measurements after the header", where=name)
    model_rows = [m for m in out if m.kind in ("decode", "prefill")]
    if len(model_rows) > MAX_MODEL_ROWS:
        raise SpecError(f"{len(model_rows)} decode and prefill measurements; expected at most {MAX_MODEL_ROWS} (each runs the whole "
                        "model at every step of the fit, a few seconds per row): keep the most informative ones", where=name)
    return out


# ---- predictions --------------------------------------------------------------------------------


def _scalar(x) -> float:
    return float(np.asarray(x, dtype=float).reshape(-1)[0])


class Predictor:
    """The model's prediction of each measurement, for a hardware file with some values replaced.

    gemm: Die.matmul on the whole die, less the launch gap overhead.op_latency_s (kernel time);
    dispatch/combine: fused_moe_comm_time_s with the model's expected destinations and messages;
    decode/prefill: estimate() with the row's options (empty cells: estimate's defaults).
    """

    def __init__(self, hardware: str, model: str, measurements: list[Measurement], path: str = "measurements"):
        from cmperf.specs.loader import load_hardware, load_model

        self.hardware = hardware
        self.model_name = model
        self.hw = load_hardware(hardware)
        self.model = load_model(model)
        self.measurements = measurements
        self.path = path

    def spec(self, values: dict) -> Spec:
        return self.hw.with_values(values, origin="calibrate") if values else self.hw

    def predict_one(self, m: Measurement, values: dict, hw: Spec | None = None) -> float:
        from cmperf.validation.cases import fused_comm_time_s, gemm_time_flops

        hw = hw if hw is not None else self.spec(values)
        p = m.params
        if m.kind == "gemm":
            t, flops = gemm_time_flops(hw, p["m"], p["n"], p["k"], p["dtype"], p.get("groups", 1))
            si = flops / t if m.metric == "tflops" else t
        elif m.kind in ("dispatch", "combine"):
            si = fused_comm_time_s(hw, self.model, m.kind, p["ep"], p["tokens"])
        else:
            from cmperf.evaluation import estimate

            ev = estimate(m.kind, self.hardware, self.model_name, sets=dict(values), **p)
            si = _scalar(ev.latency_s) if m.metric == "tpot_ms" else _scalar(ev.tokens_per_s_per_device)
        return si / m.si_per_unit

    def predict(self, values: dict) -> np.ndarray:
        hw = self.spec(values)
        return np.array([self.predict_one(m, values, hw) for m in self.measurements])

    def check(self) -> np.ndarray:
        """Baseline predictions; a row the model cannot evaluate is an error naming the row."""
        out = []
        hw = self.hw
        for m in self.measurements:
            try:
                v = self.predict_one(m, {}, hw)
            except SpecError as exc:
                raise SpecError(f"the model cannot evaluate this row: {exc}", where=_where(self.path, m.row, m.line)) from None
            if not (math.isfinite(v) and v > 0):
                raise SpecError(f"the model predicts {v!r} for this row", where=_where(self.path, m.row, m.line))
            out.append(v)
        return np.array(out)
