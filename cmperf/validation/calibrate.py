"""Fit efficiency parameters of a hardware file to a user's measurements; write a calibrated copy.

    minimise sum_i ((predicted_i(x) - measured_i) / measured_i)^2   subject to the schema's bounds
Bounded least squares (scipy.optimize.least_squares, trust-region reflective) over x scaled by the
starting values. Fractions stay in (0, 1]; other keys stay >= 0 (or > 0 where the schema says
positive). Only parameters the measurements inform are fitted: a parameter is informed when a small
finite-difference change of it moves at least one prediction.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cmperf.errors import SpecError
from cmperf.specs.loader import Spec, resolve, unknown_key_message
from cmperf.specs.schema import HARDWARE_FIELDS
from cmperf.validation.calibrated_file import SIGNIFICANT_DIGITS, write_calibrated  # noqa: F401 (write_calibrated is re-exported)
from cmperf.validation.measurements import Measurement, Predictor, read_measurements

#: What `cmperf calibrate` fits when --params is not given (patterns; only informed keys are fitted).
DEFAULT_PARAMS = (
    "efficiency.matmul_compute_frac",
    "efficiency.*_matmul_compute_frac",
    "efficiency.matmul_k_overhead_elements",
    "efficiency.matmul_kernel_fixed_s",
    "efficiency.attention_compute_frac",
    "efficiency.hbm_frac",
    "moe_comm.*_startup_s",
    "moe_comm.*_bandwidth_bytes_per_s",
    "efficiency.prefill_matrix_duty_frac",
    "overhead.decode_step_s",
)
#: Relative step of the sensitivity probe, and the smallest relative prediction change that counts.
PROBE_STEP = 1e-3
PROBE_MIN_CHANGE = 1e-7
#: Typical magnitude of a unit, used to scale a parameter whose starting value is 0.
_TYPICAL = {"s": 1e-5, "B/s": 1e10, "elements": 100.0, "fraction": 1.0, "B": 1e9, "FLOP/s": 1e12, "OP/s": 1e12}


@dataclass
class Calibration:
    hardware_path: Path
    measurements_path: Path
    measurements: list[Measurement]
    requested: list[str]
    fitted: list[str]
    not_informed: list[str]
    before: dict[str, float]
    after: dict[str, float]
    pred_before: np.ndarray
    pred_after: np.ndarray
    warnings: list[str] = field(default_factory=list)
    nfev: int = 0

    @property
    def measured(self) -> np.ndarray:
        return np.array([m.value for m in self.measurements])

    def errors(self, which: str) -> np.ndarray:
        pred = self.pred_before if which == "before" else self.pred_after
        return pred / self.measured - 1.0

    def rms(self, which: str) -> float:
        return float(np.sqrt(np.mean(self.errors(which) ** 2)))

    def max_abs(self, which: str) -> float:
        return float(np.max(np.abs(self.errors(which))))

    def row_records(self) -> list[dict]:
        eb, ea = self.errors("before"), self.errors("after")
        return [
            {
                "row": m.row, "kind": m.kind, "what": m.label or m.describe(), "metric": m.metric, "unit": m.unit,
                "measured": m.value, "before": float(self.pred_before[i]), "after": float(self.pred_after[i]),
                "err_before_pct": 100.0 * float(eb[i]), "err_after_pct": 100.0 * float(ea[i]),
            }
            for i, m in enumerate(self.measurements)
        ]

    def param_records(self) -> list[dict]:
        out = []
        for key in self.requested:
            b, a = self.before[key], self.after.get(key, self.before[key])
            status = "fitted" if key in self.fitted else "kept: no measurement informs it"
            out.append({
                "key": key, "unit": HARDWARE_FIELDS[key].unit, "before": b, "after": a,
                "change_pct": 100.0 * (a / b - 1.0) if b else (0.0 if a == b else math.inf), "status": status,
            })
        return out


# ---- parameters ---------------------------------------------------------------------------------


def _fittable(key: str) -> bool:
    f = HARDWARE_FIELDS[key]
    return f.type == "float"


def expand_params(patterns: list[str] | tuple[str, ...], hw: Spec, where: str = "--params") -> list[str]:
    """Dotted keys (or fnmatch patterns such as moe_comm.*_startup_s) -> the hardware keys they name."""
    keys: list[str] = []
    for pat in patterns:
        pat = pat.strip()
        if not pat:
            continue
        if any(ch in pat for ch in "*?["):
            hits = [k for k in HARDWARE_FIELDS if fnmatch.fnmatchcase(k, pat)]
            if not hits:
                raise SpecError(f"pattern '{pat}' matches no hardware key", where=where)
            hits = [k for k in hits if _fittable(k) and hw.has(k)]
        else:
            if pat not in HARDWARE_FIELDS:
                raise SpecError(unknown_key_message(pat, HARDWARE_FIELDS), where=where)
            if not _fittable(pat):
                raise SpecError(f"'{pat}' is of type {HARDWARE_FIELDS[pat].type}, not a continuous parameter; only real-valued keys can be fitted", where=where)
            if not hw.has(pat):
                raise SpecError(f"'{pat}' is not in {hw.path}; add a starting value there first", where=where)
            hits = [pat]
        keys += [k for k in hits if k not in keys]
    if not keys:
        raise SpecError("no parameters to fit", where=where)
    return keys


def _scale(key: str, x0: float) -> float:
    return abs(x0) if x0 else _TYPICAL.get(HARDWARE_FIELDS[key].unit, 1.0)


def _bounds(key: str, scale: float) -> tuple[float, float]:
    """Bounds in units of x: fractions (0, 1], nonneg [0, inf), positive (0, inf)."""
    check = HARDWARE_FIELDS[key].check
    tiny = 1e-6 * scale
    if check == "fraction":
        return min(tiny, 1e-6), 1.0
    if check == "nonneg":
        return 0.0, math.inf
    if check == "ge1":
        return 1.0, math.inf
    return tiny, math.inf


def _round(x: float) -> float:
    return float(f"{x:.{SIGNIFICANT_DIGITS}g}")


def informed(pred: Predictor, keys: list[str], base: np.ndarray) -> dict[str, float]:
    """Largest relative change of any prediction when each key moves by PROBE_STEP (both ways)."""
    out = {}
    for key in keys:
        x0 = pred.hw[key]
        s = _scale(key, x0)
        lo, hi = _bounds(key, s)
        change = 0.0
        for sign in (1.0, -1.0):
            x = min(max(x0 + sign * PROBE_STEP * s, lo), hi)
            if x == x0:
                continue
            moved = pred.predict({key: x})
            change = max(change, float(np.max(np.abs(moved / base - 1.0))))
        out[key] = change
    return out


# ---- the fit ------------------------------------------------------------------------------------


def calibrate(measurements_path: str | Path, hardware: str = "cloudmatrix384", model: str = "deepseek-r1", params: list[str] | None = None,
              progress=None) -> Calibration:
    """Fit `params` (default DEFAULT_PARAMS, informed ones only) of `hardware` to the measurements;
    `progress(evaluations)` is called after each evaluation of the fit."""
    from scipy.optimize import least_squares

    mpath = Path(measurements_path)
    hw_path = resolve(hardware, "hardware")
    meas = read_measurements(mpath)
    pred = Predictor(str(hw_path), model, meas, path=str(mpath))
    base = pred.check()
    explicit = params is not None
    # The defaults name keys some files leave out (per-dtype efficiencies, the fitted prefill duty):
    # only those the file gives are candidates.
    defaults = [p for p in DEFAULT_PARAMS if any(ch in p for ch in "*?[") or pred.hw.has(p)]
    keys = expand_params(params if explicit else defaults, pred.hw)
    sens = informed(pred, keys, base)
    fit_keys = [k for k in keys if sens[k] > PROBE_MIN_CHANGE]
    idle = [k for k in keys if k not in fit_keys]
    if explicit and idle:
        raise SpecError(
            f"no measurement in {mpath} informs {', '.join(idle)} (a {PROBE_STEP:g} relative change moves no prediction); "
            f"add measurements that depend on {'it' if len(idle) == 1 else 'them'} or drop {'it' if len(idle) == 1 else 'them'} from --params",
            where="--params",
        )
    if not fit_keys:
        raise SpecError(f"no measurement in {mpath} informs any of {', '.join(keys)}", where="--params")
    if len(fit_keys) > len(meas):
        raise SpecError(
            f"{len(meas)} measurement(s) cannot determine {len(fit_keys)} parameters ({', '.join(fit_keys)}); "
            f"pass --params with at most {len(meas)} of them, or add measurements",
            where="--params",
        )
    x0 = np.array([pred.hw[k] for k in fit_keys], dtype=float)
    scale = np.array([_scale(k, v) for k, v in zip(fit_keys, x0)])
    bounds = [_bounds(k, s) for k, s in zip(fit_keys, scale)]
    lo = np.array([b[0] for b in bounds]) / scale
    hi = np.array([b[1] for b in bounds]) / scale
    measured = np.array([m.value for m in meas])

    def values_of(p):
        x = np.clip(p * scale, lo * scale, hi * scale)
        return {k: float(v) for k, v in zip(fit_keys, x)}

    calls = [0]

    def residuals(p):
        out = pred.predict(values_of(p)) / measured - 1.0
        calls[0] += 1
        if progress is not None:
            progress(calls[0])
        return out

    p0 = np.clip(x0 / scale, lo, hi)
    res = least_squares(residuals, p0, bounds=(lo, hi), method="trf", diff_step=1e-6, ftol=1e-12, xtol=1e-12, gtol=1e-12, max_nfev=200 * (len(fit_keys) + 1))
    # Written with SIGNIFICANT_DIGITS; a value within 1e-6 (scaled) of a bound is put on it.
    at_bound = [res.x[j] - lo[j] <= 1e-6 or hi[j] - res.x[j] <= 1e-6 for j in range(len(fit_keys))]
    p_final = np.where(res.x - lo <= 1e-6, lo, np.where(hi - res.x <= 1e-6, hi, res.x))
    after = {k: min(max(_round(v), blo), bhi) for (k, v), (blo, bhi) in zip(values_of(p_final).items(), bounds)}
    pred_after = pred.predict(after)
    warnings = []
    if not res.success:
        warnings.append(f"the optimiser stopped without converging: {res.message}")
    sv = np.linalg.svd(_jacobian(residuals, res.x, lo, hi), compute_uv=False)
    if sv[-1] <= 1e-6 * max(sv[0], 1e-300):
        warnings.append("the measurements do not determine the fitted parameters separately (the Jacobian is rank-deficient); the values found are one of many equally good fits")
    for j, k in enumerate(fit_keys):
        if at_bound[j]:
            warnings.append(f"{k} ended at its bound ({after[k]:g}): the measurements ask for more than the schema allows")
    return Calibration(
        hardware_path=hw_path, measurements_path=mpath, measurements=meas, requested=keys, fitted=fit_keys,
        not_informed=idle, before={k: pred.hw[k] for k in keys}, after=after, pred_before=base,
        pred_after=pred_after, warnings=warnings, nfev=int(res.nfev),
    )


def _jacobian(fun, p, lo, hi, step=1e-4) -> np.ndarray:
    """Forward-difference Jacobian of the residuals in the scaled parameters, stepping inside the bounds
    (scipy's res.jac is rescaled near active bounds, so it cannot judge identifiability)."""
    f0 = fun(p)
    cols = []
    for j in range(p.size):
        h = step * max(abs(p[j]), 1.0)
        if p[j] + h > hi[j]:
            h = -h
        q = p.copy()
        q[j] = min(max(p[j] + h, lo[j]), hi[j])
        dq = q[j] - p[j]
        cols.append((fun(q) - f0) / dq if dq else np.zeros_like(f0))
    return np.column_stack(cols)
