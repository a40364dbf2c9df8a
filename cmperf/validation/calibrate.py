"""Fit efficiency parameters of a hardware file to a user's measurements; write a calibrated copy.

    minimise sum_i ((predicted_i(x) - measured_i) / measured_i)^2   subject to the schema's bounds
Bounded least squares (scipy.optimize.least_squares, trust-region reflective) over x scaled by the
starting values. Fractions stay in (0, 1]; other keys stay >= 0 (or > 0 where the schema says
positive). Only parameters the measurements inform are fitted: a parameter is informed when a small
finite-difference change of it moves at least one prediction.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import math
import os
import re
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from cmperf.errors import SpecError
from cmperf.specs.loader import Spec, parse_spec, resolve, unknown_key_message
from cmperf.specs.schema import HARDWARE_FIELDS
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
SIGNIFICANT_DIGITS = 6


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


def calibrate(measurements_path: str | Path, hardware: str = "cloudmatrix384", model: str = "deepseek-r1", params: list[str] | None = None) -> Calibration:
    """Fit `params` (default DEFAULT_PARAMS, informed ones only) of `hardware` to the measurements."""
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

    def residuals(p):
        return pred.predict(values_of(p)) / measured - 1.0

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


# ---- the calibrated hardware file ---------------------------------------------------------------

_HEADER_RE = re.compile(r"^\s*\[([A-Za-z0-9_.\-]+)\]\s*(#.*)?$")


def _toml_str(s: str) -> str:
    return json.dumps(s, ensure_ascii=True)


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return repr(v)
    if isinstance(v, float):
        t = f"{v:.{SIGNIFICANT_DIGITS + 1}g}" if math.isfinite(v) else repr(v)
        if float(t) != v:
            t = repr(v)
        return t if any(c in t for c in ".en") else t + ".0"
    return _toml_str(str(v))


def _entry_line(name: str, entry: dict) -> str:
    parts = ", ".join(f"{k} = {_toml_value(v)}" for k, v in entry.items())
    return f"{name} = {{ {parts} }}\n"


def _edit_text(text: str, tables: dict[str, dict[str, dict]], added_sources: dict[str, dict], meta: dict[str, str]) -> str:
    """Replace entries of `tables` ({section: {key: entry}}) line by line, keeping comments and layout.

    Raises ValueError when the file's layout is not the one-inline-table-per-line form."""
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    section = None
    last_line_of: dict[str, int] = {}
    found: dict[tuple[str, str], int] = {}
    for i, ln in enumerate(lines):
        m = _HEADER_RE.match(ln)
        if m:
            section = m.group(1)
            last_line_of[section] = i
            continue
        if section is None or not ln.strip() or ln.lstrip().startswith("#"):
            continue
        last_line_of[section] = i
        km = re.match(r"^\s*([A-Za-z0-9_\-]+)\s*=", ln)
        if km:
            if (section, km.group(1)) in found:
                raise ValueError("duplicate key")
            found[(section, km.group(1))] = i
    replace: dict[int, str] = {}
    insert_after: dict[int, list[str]] = {}
    append: list[str] = []
    for key, value in meta.items():
        if ("meta", key) not in found:
            raise ValueError("meta layout")
        replace[found[("meta", key)]] = f"{key} = {_toml_str(value)}\n"
    if "sources" not in last_line_of:
        raise ValueError("sources layout")
    for sid, src in added_sources.items():
        insert_after.setdefault(last_line_of["sources"], []).append(_entry_line(sid, src))
    for sec, entries in tables.items():
        for key, entry in entries.items():
            line = _entry_line(key, entry)
            if (sec, key) in found:
                i = found[(sec, key)]
                if not re.match(r"^\s*" + re.escape(key) + r"\s*=\s*\{", lines[i]):
                    raise ValueError("not an inline table")
                replace[i] = line
            elif sec in last_line_of:
                insert_after.setdefault(last_line_of[sec], []).append(line)
            else:
                append.append(f"\n[{sec}]\n{line}")
    out = []
    for i, ln in enumerate(lines):
        out.append(replace.get(i, ln))
        out.extend(insert_after.get(i, []))
    return "".join(out + append)


def _regenerate(doc: dict, header: str) -> str:
    """The whole file from its parsed form (used when the original's layout cannot be edited in place)."""
    out = [header, "\n[meta]\n"]
    out += [f"{k} = {_toml_str(v)}\n" for k, v in doc["meta"].items()]
    out.append("\n[sources]\n")
    out += [_entry_line(k, v) for k, v in doc["sources"].items()]
    for sec, table in doc.items():
        if sec in ("meta", "sources"):
            continue
        out.append(f"\n[{sec}]\n")
        out += [_entry_line(k, v) for k, v in table.items()]
    return "".join(out)


def default_out_path(hardware_path: Path) -> Path:
    """./hardware/NAME-calibrated.toml in the working directory: where name lookup finds it first,
    never inside the installed package."""
    return Path.cwd() / "hardware" / f"{hardware_path.stem}-calibrated.toml"


def write_calibrated(cal: Calibration, out: str | Path | None = None, overwrite: bool = False) -> Path:
    """Write the original hardware file with the fitted values replaced (kind "fitted", a note with
    the fit's residuals, a [sources] entry for the measurements file) and check that it loads."""
    import tomllib

    src_path = cal.hardware_path
    out_path = Path(out) if out is not None else default_out_path(src_path)
    where = "--out"
    if out_path.suffix != ".toml":
        raise SpecError(f"expected a path ending in .toml, got {str(out_path)!r}", where=where)
    if out_path.resolve() == src_path.resolve():
        raise SpecError(f"refusing to overwrite the original hardware file {src_path}; choose another --out", where=where)
    if out_path.exists() and not overwrite:
        raise SpecError(f"{out_path} exists; pass --overwrite to replace it", where=where)
    if out is None:
        out_path.parent.mkdir(parents=True, exist_ok=True)
    if not out_path.parent.is_dir():
        raise SpecError(f"no such directory: {out_path.parent}", where=where)

    text = src_path.read_text(encoding="utf-8")
    doc = tomllib.loads(text)
    data = cal.measurements_path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()[:12]
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    sid = "calibration"
    n = 2
    while sid in doc.get("sources", {}):
        sid, n = f"calibration-{n}", n + 1
    mname = cal.measurements_path.name
    n_rows = len(cal.measurements)
    source = {
        "title": f"cmperf calibrate: {n_rows} measurements in {mname} (sha256 {digest}), fitted {stamp}",
        "url": cal.measurements_path.resolve().as_uri(),
    }
    fit_text = (
        f"relative residuals RMS {100 * cal.rms('after'):.2f}%, max {100 * cal.max_abs('after'):.2f}% "
        f"(before: RMS {100 * cal.rms('before'):.2f}%, max {100 * cal.max_abs('before'):.2f}%)"
    )
    tables: dict[str, dict[str, dict]] = {}
    for key in cal.fitted:
        sec, name = key.split(".", 1)
        old = doc.get(sec, {}).get(name, {})
        was = f"was {_toml_value(old.get('value', cal.before[key]))} ({old.get('kind', 'paper')}, source {old.get('source', '?')})"
        note = f"fitted by cmperf calibrate to {mname} ({n_rows} rows, {len(cal.fitted)} parameters jointly): {fit_text}; {was}"
        tables.setdefault(sec, {})[name] = {"value": cal.after[key], "source": sid, "kind": "fitted", "note": note}
    meta = {"name": out_path.stem, "description": f"{doc['meta']['description']}; calibrated to {mname}"}
    header = (
        f"# Calibrated copy of {src_path.name}, written by `cmperf calibrate` from {mname} on {stamp}.\n"
        f"# Fitted: {', '.join(cal.fitted)}. Every other value is the original's.\n"
    )
    try:
        new_text = header + "#\n" + _edit_text(text, tables, {sid: source}, meta)
    except ValueError:
        new_text = None
    if new_text is None or not _same_apart_from_fit(new_text, doc, tables, {sid: source}, meta):
        regen = {**doc, "meta": {**doc["meta"], **meta}, "sources": {**doc["sources"], sid: source}}
        for sec, entries in tables.items():
            regen[sec] = {**regen.get(sec, {}), **entries}
        new_text = _regenerate(regen, header)
    fd, tmp = tempfile.mkstemp(prefix=f".{out_path.stem}-", suffix=".toml", dir=out_path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(new_text)
        spec = parse_spec(Path(tmp), "hardware")
        for key in cal.fitted:
            assert spec.provenance[key].kind == "fitted" and spec[key] == cal.after[key], key
        os.replace(tmp, out_path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return out_path


def _same_apart_from_fit(new_text: str, doc: dict, tables: dict, sources: dict, meta: dict) -> bool:
    """True when the edited text parses to the original document with exactly the intended changes."""
    import tomllib

    try:
        new = tomllib.loads(new_text)
    except tomllib.TOMLDecodeError:
        return False
    want = {sec: dict(t) for sec, t in doc.items()}
    want["meta"] = {**want["meta"], **meta}
    want["sources"] = {**want["sources"], **sources}
    for sec, entries in tables.items():
        want[sec] = {**want.get(sec, {}), **entries}
    return new == want
