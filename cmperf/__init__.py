"""cmperf: an analytical performance model of LLM inference serving on scale-up supernodes.

The Python API (imported on first use, so `import cmperf` stays light):

    estimate(deployment="decode", hardware=None, model=None, workload=None, sets=None, **fields) -> Evaluation
    plan(hardware, model, workload=None, *, devices=None, top=3, eplb="default", sets=None) -> PlanResult
    compare(baseline, variant=None, *, variant_hardware=None, variant_sets=None, variant_scale=None, ...) -> Table
    sweep(axes, hardware, model, workload=None, ...) -> Table
    capacity(rate_requests_per_s, hardware, model, workload=None, ...) -> Table
    load_hardware(name_or_path), load_model(name_or_path), load_deployment(name_or_path)
    Workload, Deployment, Evaluation, SpecError

Every result has `.to_records()` and `.to_frame()` (a pandas DataFrame). Bad input raises
`SpecError`, the error the command line reports with exit code 2.
"""

__version__ = "0.1.0"

_API = {
    "estimate": "cmperf.api", "plan": "cmperf.api", "compare": "cmperf.api", "sweep": "cmperf.api", "capacity": "cmperf.api",
    "load_hardware": "cmperf.api", "load_model": "cmperf.api", "load_deployment": "cmperf.api",
    "Workload": "cmperf.specs.deployment", "Deployment": "cmperf.specs.deployment", "Evaluation": "cmperf.evaluation",
    "SpecError": "cmperf.errors", "CmperfError": "cmperf.errors",
}
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        import importlib

        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cmperf' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
