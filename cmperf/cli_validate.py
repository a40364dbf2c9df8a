"""Commands that check the model against measurements: validate, calibrate."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from cmperf.cli_options import Format, FormatOpt, HardwareOpt, ModelOpt, app


def _out(text: str, fmt: Format) -> None:
    """Summary lines go to stdout with table/md output, to stderr when stdout is JSON or CSV."""
    from cmperf.inputs import safe_text

    print(safe_text(text), file=sys.stdout if fmt in (Format.table, Format.md) else sys.stderr)


def _fmt_err(err: float, basis: str) -> str:
    return f"{err:+.1f} pt" if basis == "points" else f"{err:+.1f}%"


@app.command()
def validate(
    hardware: Annotated[Optional[list[str]], typer.Option("--hardware", help="Only the cases of this hardware name (repeatable) [default: all: see the hardware column].")] = None,
    published: Annotated[Optional[str], typer.Option("--published", help="A table of published results in the same CSV format [default: the one cmperf ships: cmperf/validation/published.csv].")] = None,
    fmt: FormatOpt = Format.table,
):
    """Compare the model's predictions with every published result cmperf ships (paper and kernel tables).

    One row per published figure: case, metric, published, predicted, error, tolerance, within, source
    and note. Errors are relative (% of the published value) except for utilisations, whose error and
    tolerance are in percentage points. Row kinds: predicted (played no part in any fit), fitted (a
    constant was fitted to it) and input (the published figure is itself a model input). Exit code 0
    when every row is within its tolerance, 1 otherwise.
    """
    from cmperf.report.render import emit
    from cmperf.validation.cases import PUBLISHED_CSV, summary, validation_rows

    rows = validation_rows(hardware, published or PUBLISHED_CSV)
    if fmt == Format.table or fmt == Format.md:
        shown = [
            {
                "case": r["case"], "hardware": r["hardware"], "kind": r["kind"], "metric": r["metric"], "unit": r["unit"],
                "published": r["published"], "predicted": r["predicted"],
                "error": _fmt_err(r["error_pct"], r["error_basis"]),
                "tolerance": _fmt_err(r["tolerance_pct"], r["error_basis"]).lstrip("+"),
                "within": "yes" if r["within"] else "NO", "source": r["source"], "note": r["note"],
            }
            for r in rows
        ]
        # On a narrow console the table keeps the numbers; the notes and sources stay in md, CSV and JSON.
        emit(shown, fmt.value, title="cmperf validate: predicted against published", drop_when_narrow=("note", "source", "unit", "hardware", "tolerance", "kind"))
    else:
        emit(rows, fmt.value)
    _out(summary(rows), fmt)
    if not all(r["within"] for r in rows):
        raise typer.Exit(1)


class _FitStatus:
    """A transient one-line status on stderr while a fit runs (only on a terminal)."""

    def __init__(self, path: str):
        self.path, self.status = path, None

    def __enter__(self):
        if sys.stderr.isatty():
            from rich.console import Console

            from cmperf.inputs import safe_text

            self.status = Console(stderr=True, markup=False).status(f"calibrate: fitting to {safe_text(self.path)}")
            self.status.__enter__()
        return self

    def update(self, evaluations: int) -> None:
        if self.status is not None:
            self.status.update(f"calibrate: fit evaluation {evaluations}")

    def __exit__(self, *exc):
        if self.status is not None:
            self.status.__exit__(*exc)
        return False


@app.command()
def calibrate(
    measurements: Annotated[str, typer.Argument(help="CSV of measurements; columns below.", show_default=False)],
    hardware: HardwareOpt = "cloudmatrix384",
    model: ModelOpt = "deepseek-r1",
    params: Annotated[Optional[str], typer.Option("--params", help="Comma-separated keys to fit; patterns allowed (moe_comm.*_startup_s) [default: the efficiency.*, moe_comm.* and overhead.decode_step_s keys the measurements inform].")] = None,
    out: Annotated[Optional[str], typer.Option("--out", help="Path of the new hardware file [default: ./hardware/NAME-calibrated.toml in the working directory].")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output file (never the original).")] = False,
    no_write: Annotated[bool, typer.Option("--no-write", help="Fit and report only; write no file.")] = False,
    fmt: FormatOpt = Format.table,
):
    """Fit a hardware file's efficiency parameters to your own measurements; write a calibrated copy.

    Bounded least squares on relative residuals (fractions in (0, 1], other keys >= 0). Only
    parameters that some measurement depends on are fitted (checked by a finite-difference probe);
    naming in --params a key no measurement informs is an error. The new file is the original with
    the fitted values replaced, each with kind "fitted" and a note giving the measurements file, the
    number of rows and the residuals, plus a [sources] entry for the file.

    \b
    MEASUREMENTS.csv: a header row, then one measurement per row ('#' lines are skipped).
      kind     gemm | dispatch | combine | decode | prefill        (required)
      value    the measured number, > 0                              (required)
      unit     unit of value                                         (required)
      metric   what was measured, per kind (below)
      label, note, comment: free text, ignored
    and the columns of the kind (other kinds' columns left empty):
      gemm      m, n, k, dtype (int8, fp8, bf16, ...), groups [1];
                metric tflops (unit TFLOPS) or seconds (s, ms, us); kernel time, no launch gap
      dispatch  ep, tokens (per rank); metric seconds (may be empty); unit s, ms or us
      combine   as dispatch
      decode    devices, ep, batch, kv_len, microbatches, mtp, mtp_acceptance, eplb (empty:
                estimate's default); metric tpot_ms (ms, s, us) or tokens_per_s (tokens/s, per device)
      prefill   devices, ep, tokens_per_device, input_len, microbatches, eplb;
                metric tokens_per_s (tokens/s, per device)
    Example:
      kind,m,n,k,groups,dtype,ep,tokens,metric,value,unit
      gemm,4096,7168,16384,1,fp8,,,tflops,1358,TFLOPS
      dispatch,,,,,,8,128,seconds,116,us
    """
    from cmperf.report.render import emit, fmt_number, to_json
    from cmperf.validation.calibrate import calibrate as fit
    from cmperf.validation.calibrate import write_calibrated

    with _FitStatus(measurements) as status:
        cal = fit(measurements, hardware, model, [p for p in params.split(",")] if params is not None else None, progress=status.update)
    path = None if no_write else write_calibrated(cal, out, overwrite)
    quality = {
        "rms_before_pct": 100 * cal.rms("before"), "max_before_pct": 100 * cal.max_abs("before"),
        "rms_after_pct": 100 * cal.rms("after"), "max_after_pct": 100 * cal.max_abs("after"),
    }
    if fmt == Format.json:
        print(to_json({
            "hardware": str(cal.hardware_path), "measurements": str(cal.measurements_path), "rows": len(cal.measurements),
            "fitted": cal.fitted, "not_informed": cal.not_informed, "params": cal.param_records(),
            "fit": quality, "evaluations": cal.nfev, "warnings": cal.warnings, "out": str(path) if path else None,
            "measurements_fit": cal.row_records(),
        }))
        return
    params_rows = cal.param_records()
    rows = cal.row_records()
    if fmt == Format.table:
        params_rows = [{**r, "before": fmt_number(r["before"]), "after": fmt_number(r["after"]), "change_pct": f"{r['change_pct']:+.2f}%"} for r in params_rows]
        rows = [{**r, **{k: f"{r[k]:+.2f}%" for k in ("err_before_pct", "err_after_pct")}} for r in rows]
    emit(params_rows, fmt.value, title=f"parameters of {cal.hardware_path} fitted to {cal.measurements_path}")
    if fmt in (Format.table, Format.md):
        print()
    emit(rows, fmt.value, title="measurements: measured against predicted, before and after the fit")
    lines = [
        f"fitted {len(cal.fitted)} parameter(s) to {len(cal.measurements)} measurement(s): relative error RMS "
        f"{quality['rms_before_pct']:.2f}% -> {quality['rms_after_pct']:.2f}%, max {quality['max_before_pct']:.2f}% -> {quality['max_after_pct']:.2f}%",
        *(f"warning: {w}" for w in cal.warnings),
        f"wrote {path}" if path else "no file written (--no-write)",
    ]
    _out("\n".join(lines), fmt)
