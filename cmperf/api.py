"""The Python API: what the command line does, as functions returning dataclasses.

Every function takes names or paths of hardware, model and deployment files (or loaded objects),
validates its arguments as the command line does, and raises `cmperf.errors.SpecError` (the error
the CLI turns into exit code 2) on bad input. Results have `.to_records()` and `.to_frame()`.
Nothing here imports pandas, scipy or rich; `to_frame()` imports pandas when called.
"""

from __future__ import annotations

from cmperf.errors import SpecError
from cmperf.evaluation import DEFAULT_HARDWARE, DEFAULT_MODEL, Evaluation
from cmperf.evaluation import estimate as _estimate
from cmperf.frames import Table
from cmperf.specs.deployment import EPLB_CHOICES, Deployment, Workload, check_choice, check_number
from cmperf.specs.loader import Spec


def load_hardware(name_or_path: str = DEFAULT_HARDWARE) -> Spec:
    """A hardware description by name (`cmperf hardware list`) or .toml path, validated.

    `spec.with_values({"die.hbm_bandwidth_bytes_per_s": 2e12})` gives a changed copy."""
    from cmperf.specs.loader import load_hardware as load

    return load(_name(name_or_path, "hardware"))


def load_model(name_or_path: str = DEFAULT_MODEL) -> Spec:
    """A model description by name (`cmperf model list`) or .toml path, validated."""
    from cmperf.specs.loader import load_model as load

    return load(_name(name_or_path, "model"))


def load_deployment(name_or_path: str) -> Deployment:
    """A deployment by name (`cmperf deployment list`, e.g. "cm384-paper-decode") or .toml path,
    such as one `cmperf plan` wrote. `deployment.with_fields(batch=64)` gives a changed copy."""
    from cmperf.specs.deployment_file import load_deployment as load

    return load(_name(name_or_path, "deployment")).deployment


def estimate(deployment: str | Deployment = "decode", hardware: str | Spec | None = None, model: str | Spec | None = None,
             workload: Workload | None = None, sets: dict | None = None, **fields) -> Evaluation:
    """Evaluate one deployment, as `cmperf estimate` does.

    `deployment`: "decode" or "prefill" (the paper's deployment of that phase), a deployment name
    or path, or a `Deployment`. `fields` change single `Deployment` or `Workload` fields
    (`batch=64`, `input_len=8192`, ...); `sets` are `--set` overrides ({"scaleup.latency_intra_s": 2e-6}).
    Returns an `Evaluation`: SI numbers with unit-named fields, `binding` in words, `.to_frame()`.
    """
    return _estimate(deployment, hardware, model, workload, sets, **fields)


def plan(hardware: str = DEFAULT_HARDWARE, model: str = DEFAULT_MODEL, workload: Workload | None = None, *, devices: int | None = None,
         top: int = 3, eplb: str = "default", sets: dict | None = None):
    """Search deployments for the best throughput under the workload's TPOT (and TTFT) SLOs, as
    `cmperf plan` does (without writing files). Returns a `PlanResult`: `.records` (each with
    its `Deployment` under "deployment_obj"), `.deployments()`, `.to_frame()`."""
    from cmperf.solve.plan import PlanRequest
    from cmperf.solve.plan import plan as run

    wl = _workload(workload)
    req = PlanRequest(hardware=_name(hardware, "hardware"), model=_name(model, "model"), tpot_ms=wl.tpot_ms, ttft_ms=wl.ttft_ms,
                      input_len=wl.input_len, output_len=wl.output_len, mtp_acceptance=wl.mtp_acceptance,
                      devices=check_number("devices", devices, 1, 1_000_000, True), top=check_number("top", top, 1, 100, True),
                      eplb=check_choice("eplb", eplb, EPLB_CHOICES), prefix_hit=wl.prefix_hit, sets=_sets(sets))
    return run(req)


def compare(baseline: str | Deployment | Evaluation = "decode", variant: str | Deployment | Evaluation | None = None, *,
            hardware: str | Spec | None = None, model: str | Spec | None = None, workload: Workload | None = None,
            sets: dict | None = None, variant_hardware: str | Spec | None = None, variant_sets: dict | None = None,
            variant_scale: dict | None = None) -> Table:
    """Compare two deployments (as `cmperf compare --deployment A --deployment B`), or one deployment
    on two machines: `variant` defaults to the baseline's deployment, evaluated on
    `variant_hardware` with `variant_sets` and `variant_scale` ({"scaleup.*bandwidth*": 0.5}:
    every numeric key matching the glob multiplied). Either side may be an `Evaluation` already made.
    Returns a `Table` of one row per metric (baseline, variant, delta_pct)."""
    from cmperf.overrides import apply_overrides
    from cmperf.whatif.compare import compare_deployments
    from cmperf.whatif.core import Scenario, apply_scales

    base = baseline if isinstance(baseline, Evaluation) else _estimate(baseline, hardware, model, workload, _sets(sets))
    if isinstance(variant, Evaluation):
        other = variant
    else:
        hw = variant_hardware if variant_hardware is not None else base.hardware
        if not isinstance(hw, Spec):
            hw = apply_overrides(load_hardware(hw), base.model, {k: v for k, v in _sets(sets).items() if k in hw_keys()})[0]
        hw, m, wl_changes = apply_overrides(hw, base.model, _sets(variant_sets, "variant_sets"), "--variant-set")
        scales = [f"{k}={v}" for k, v in _sets(variant_scale, "variant_scale").items()]
        sc = apply_scales(Scenario(hw=hw, model=m), scales, "--variant-scale")
        if variant is None:
            other = _estimate(base.deployment, sc.hw, sc.model, base.workload.with_fields(**wl_changes))
        else:
            other = _estimate(variant, sc.hw, sc.model, workload, wl_changes and {f"workload.{k}": v for k, v in wl_changes.items()})
    result = compare_deployments(base, other)
    return Table("compare", result["rows"], result["notes"], result)


def sweep(axes: str | list[str], hardware: str = DEFAULT_HARDWARE, model: str = DEFAULT_MODEL, workload: Workload | None = None, *,
          devices: int | None = None, eplb: str = "default", sets: dict | None = None) -> Table:
    """Re-plan at every point of a one- or two-key sweep, as `cmperf sweep KEY=START:STOP:STEPS`.
    Returns a `Table` of one row per point and TPOT SLO (best decode and prefill throughput)."""
    from cmperf.whatif.sweep import parse_axes, run_sweep

    sc = _scenario(hardware, model, workload, devices, eplb, sets)
    result = run_sweep(sc, parse_axes([axes] if isinstance(axes, str) else list(axes), sc))
    return Table("sweep", result["rows"], result["notes"], result)


def capacity(rate_requests_per_s: float, hardware: str = DEFAULT_HARDWARE, model: str = DEFAULT_MODEL, workload: Workload | None = None, *,
             eplb: str = "default", sets: dict | None = None) -> Table:
    """Prefill and decode devices (and supernodes) that serve a request rate under the workload's
    first TPOT SLO (and its TTFT SLO), as `cmperf capacity`. Returns a `Table` of two rows
    (prefill, decode) with the fleet totals in `detail`."""
    from cmperf.whatif.capacity import capacity as run

    wl = _workload(workload)
    sc = _scenario(hardware, model, Workload(**{**wl.__dict__, "tpot_ms": wl.tpot_ms[:1]}), None, eplb, sets)
    result = run(sc, check_number("rate_requests_per_s", rate_requests_per_s, 1e-6, 1e7, False, "--rate"))
    totals = {k: v for k, v in result.items() if not isinstance(v, dict) and k != "overrides"}
    rows = [{"phase": p, **{k: v for k, v in result[p].items() if k != "params"}, **result[p]["params"], **totals} for p in ("prefill", "decode")]
    return Table("capacity", rows, [], result)


# ---- argument checks ---------------------------------------------------------------------------------


def _name(value, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise SpecError(f"expected a name or a path, got {value!r}", where=what)
    return value


def _sets(sets, what: str = "sets") -> dict:
    if sets is None:
        return {}
    if not isinstance(sets, dict):
        raise SpecError(f"expected a dict of KEY: VALUE items, got {sets!r}", where=what)
    return {str(k): v for k, v in sets.items()}


def hw_keys():
    from cmperf.specs.schema import HARDWARE_FIELDS

    return HARDWARE_FIELDS


def _workload(workload) -> Workload:
    if workload is None:
        return Workload()
    if not isinstance(workload, Workload):
        raise SpecError(f"expected a cmperf Workload, got {workload!r}", where="workload")
    return workload


def _scenario(hardware, model, workload, devices, eplb, sets):
    from cmperf.whatif.core import scenario

    wl = _workload(workload)
    return scenario(_name(hardware, "hardware"), _name(model, "model"), layers=[(_sets(sets), "--set")], input_len=wl.input_len,
                    output_len=wl.output_len, mtp_acceptance=wl.mtp_acceptance, prefix_hit=wl.prefix_hit,
                    eplb=check_choice("eplb", eplb, EPLB_CHOICES), devices=check_number("devices", devices, 1, 1_000_000, True),
                    tpot_ms=wl.tpot_ms, ttft_ms=wl.ttft_ms)
