"""What-if commands for capacity planners: compare, sweep, sensitivity, capacity, cache.

Each is a thin layer over `cmperf.whatif`: options -> `Scenario` -> a light re-plan -> report.
Heavy imports stay inside the commands, so `cmperf --help` stays fast.
"""

from __future__ import annotations

import functools
import inspect
from enum import Enum
from types import SimpleNamespace
from typing import Annotated, Optional

import typer

from cmperf.cli_options import CachePath, Eplb, Format, FormatOpt, HardwareOpt, ModelOpt, SetOpt, app
from cmperf.cli_options import bounds as _range
from cmperf.cli_options import frange as _frange
from cmperf.cli_options import parse_ms as _parse_ms
from cmperf.inputs import DEFAULT_INPUT_LEN, DEFAULT_MAX_UTILISATION, DEFAULT_MTP_ACCEPTANCE, DEFAULT_OUTPUT_LEN

TpotOpt = Annotated[Optional[list[str]], typer.Option("--tpot", metavar="TIME", help="TPOT SLO, repeatable: 50 or 50ms [default: 15 and 50].")]
TtftOpt = Annotated[Optional[str], typer.Option("--ttft", metavar="TIME", help="TTFT SLO for prefill (batch time): 2000 or 2s [default: none].")]
InputOpt = Annotated[int, typer.Option(help="Prompt tokens per request.", **_range(1, 10_000_000))]
OutputOpt = Annotated[int, typer.Option(help="Generated tokens per request.", **_range(1, 10_000_000))]
AccOpt = Annotated[float, typer.Option(help="Acceptance probability of each speculative token.", **_frange(0.0, 1.0))]
HitOpt = Annotated[float, typer.Option(help="Fraction of prompt tokens found in the prefix cache.", **_frange(0.0, 0.999))]
CacheOpt = Annotated[CachePath, typer.Option(help="Where cached prefix KV is loaded from: ub (CPU-DRAM pool over UB) or vpc.")]
DevicesOpt = Annotated[Optional[int], typer.Option(help="Device budget [default: one system, e.g. 384].", **_range(1, 1_000_000))]
EplbOpt = Annotated[Eplb, typer.Option(help="Expert load balance: default or perfect.")]
OutOpt = Annotated[str, typer.Option("--out", help="Directory that receives the report folder.")]
TagOpt = Annotated[Optional[str], typer.Option(help="Name the report folder COMMAND-TAG [default: UTC timestamp].")]
OverwriteOpt = Annotated[bool, typer.Option(help="Replace an existing COMMAND-TAG folder.")]
NoWriteOpt = Annotated[bool, typer.Option("--no-write", help="Print only; write no report files.")]
WorkersOpt = Annotated[Optional[int], typer.Option("--workers", help="Processes that share the re-plans [the cores available, from 8 re-plans up]; 1 runs them in this process.", **_range(1, 1024))]


def _common_options(
    tpot: TpotOpt = None,
    ttft: TtftOpt = None,
    input_len: InputOpt = DEFAULT_INPUT_LEN,
    output_len: OutputOpt = DEFAULT_OUTPUT_LEN,
    mtp_acceptance: AccOpt = DEFAULT_MTP_ACCEPTANCE,
    prefix_hit: HitOpt = 0.0,
    cache_path: CacheOpt = CachePath.ub,
    devices: DevicesOpt = None,
    hardware: HardwareOpt = "cloudmatrix384",
    model: ModelOpt = "deepseek-r1",
    sets: SetOpt = None,
    eplb: EplbOpt = Eplb.default,
    out: OutOpt = "reports",
    tag: TagOpt = None,
    overwrite: OverwriteOpt = False,
    no_write: NoWriteOpt = False,
    fmt: FormatOpt = Format.table,
    workers: WorkersOpt = None,
):
    """The options every what-if command shares (a signature only; see `whatif_command`)."""


_COMMON = list(inspect.signature(_common_options, eval_str=True).parameters.values())


def whatif_command(*, without: tuple = ()):
    """Register a what-if command whose own parameters come first, then the shared options (less
    `without`, and less any the command declares itself: its own parameter of that name wins); the
    function receives the shared ones as `opts` (attributes by option name)."""

    def register(fn):
        own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in inspect.signature(fn, eval_str=True).parameters.values() if p.name != "opts"]
        names = {p.name for p in own}
        unknown = set(without) - {p.name for p in _COMMON}
        if unknown:
            raise TypeError(f"{fn.__name__}: without names no shared option: {sorted(unknown)}")
        common = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in _COMMON if p.name not in names and p.name not in without]

        @functools.wraps(fn)
        def command(**kw):
            from cmperf.cli_heap import reuse_freed_memory

            reuse_freed_memory()
            return fn(opts=SimpleNamespace(**{p.name: kw.pop(p.name) for p in common}), **kw)

        del command.__wrapped__
        command.__signature__ = inspect.Signature(own + common)
        command.__annotations__ = {p.name: p.annotation for p in own + common}
        return app.command(name=fn.__name__)(command)

    return register


def _tpots(tpot) -> tuple:
    return tuple(_parse_ms(t, "--tpot") for t in (tpot or ["15", "50"]))


def _check_tag(tag):
    from cmperf.inputs import check_tag

    check_tag(tag)


def _write(out, prefix, files_fn, tag, overwrite, no_write):
    if no_write:
        return None
    from cmperf.report.files import write_run_dir

    return write_run_dir(out, prefix, files_fn(), tag, overwrite)


def _base(hardware, model, sets, *, tpot=None, ttft=None, input_len=DEFAULT_INPUT_LEN, output_len=DEFAULT_OUTPUT_LEN,
          mtp_acceptance=DEFAULT_MTP_ACCEPTANCE, prefix_hit=0.0,
          cache_path=CachePath.ub, devices=None, eplb=Eplb.default, extra_layers=(), scales=(), hardware_where="--hardware",
          model_where="--model"):
    from cmperf.overrides import parse_set
    from cmperf.whatif.core import scenario

    return scenario(hardware, model, layers=[(parse_set(sets), "--set"), *extra_layers], scales=scales, hardware_where=hardware_where, model_where=model_where,
                    input_len=input_len, output_len=output_len, mtp_acceptance=mtp_acceptance, prefix_hit=prefix_hit,
                    cache_path=cache_path.value, eplb=eplb.value, devices=devices, tpot_ms=_tpots(tpot),
                    ttft_ms=_parse_ms(ttft, "--ttft") if ttft else None)


_SCENARIO_OPTS = ("tpot", "ttft", "input_len", "output_len", "mtp_acceptance", "prefix_hit", "cache_path", "devices", "eplb")


def _scenario(opts, hardware=None, model=None, **kw):
    """`_base` for the shared options in `opts`: `hardware`/`model` replace the options' when given,
    `kw` (a command's own options, override layers) wins over `opts`, and an option a command
    lacks keeps `_base`'s default."""
    shared = {k: getattr(opts, k) for k in _SCENARIO_OPTS if hasattr(opts, k)}
    return _base(hardware or opts.hardware, model or opts.model, opts.sets, **{**shared, **kw})


def _write_opts(opts, prefix, files_fn):
    """`_write` with the shared --out, --tag, --overwrite and --no-write options."""
    return _write(opts.out, prefix, files_fn, opts.tag, opts.overwrite, opts.no_write)


class Objective(str, Enum):
    devices = "devices"
    cost = "cost"


class _Progress:
    """A transient rich progress bar on stderr, or nothing for short runs."""

    def __init__(self, total: int, label: str, threshold: int = 5):
        self.total, self.label, self.bar, self.task = total, label, None, None
        self.enabled = total > threshold

    def __enter__(self):
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                console=Console(stderr=True), transient=True)
            self.bar.__enter__()
            self.task = self.bar.add_task(self.label, total=self.total)
        return self

    def advance(self):
        if self.bar is not None:
            self.bar.advance(self.task)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)
        return False


@whatif_command()
def compare(
    deployments: Annotated[Optional[list[str]], typer.Option("--deployment", help="Compare two deployments instead of two plans: give it twice, NAME or .toml path (baseline, then variant); the --variant-* options then change the variant's hardware.")] = None,
    variant_sets: Annotated[Optional[list[str]], typer.Option("--variant-set", help="Override for the variant only, KEY=VALUE (repeatable); also workload.* and search.max_mtp.")] = None,
    variant_scale: Annotated[Optional[list[str]], typer.Option("--variant-scale", help="Multiply every numeric key matching a glob for the variant, PATTERN=FACTOR (repeatable), e.g. 'moe_comm.*bandwidth*=0.5'.")] = None,
    variant_hardware: Annotated[Optional[str], typer.Option("--variant-hardware", help="Hardware of the variant (name or .toml path) [default: as --hardware].")] = None,
    variant_model: Annotated[Optional[str], typer.Option("--variant-model", help="Model of the variant (name or .toml path) [default: as --model].")] = None,
    opts=None,
):
    """Plan a baseline and a variant and show them side by side: best deployment, tokens/s per device, what binds."""
    from cmperf.errors import SpecError
    from cmperf.report.whatif import compare_files, print_compare
    from cmperf.whatif.compare import compare as run
    from cmperf.overrides import parse_set

    _check_tag(opts.tag)
    if deployments:
        from cmperf.report.deployments import deployment_compare_files, print_deployment_compare

        result = _compare_deployments(deployments, opts.hardware, opts.model, opts.sets, variant_sets, variant_scale, variant_hardware)
        path = _write_opts(opts, "compare", lambda: deployment_compare_files(result))
        print_deployment_compare(result, opts.fmt.value, str(path) if path else None)
        return
    if not (variant_sets or variant_scale or variant_hardware or variant_model):
        raise SpecError("expected a variant: --variant-set KEY=VALUE, --variant-scale PATTERN=FACTOR, --variant-hardware NAME or --variant-model NAME", where="--variant-set")
    base = _scenario(opts)
    variant = _scenario(opts, hardware=variant_hardware, model=variant_model, model_where="--variant-model" if variant_model else "--model",
                        extra_layers=[(parse_set(variant_sets, "--variant-set"), "--variant-set")],
                        scales=[(variant_scale or [], "--variant-scale")], hardware_where="--variant-hardware" if variant_hardware else "--hardware")
    result = run(base, variant, opts.workers)
    path = _write_opts(opts, "compare", lambda: compare_files(result))
    print_compare(result, opts.fmt.value, str(path) if path else None)


def _compare_deployments(deployments, hardware, model, sets, variant_sets, variant_scale, variant_hardware):
    """Evaluate two deployments, each with the hardware, model, workload and overrides its file
    names (or the options); the --variant-* options change the variant's hardware."""
    from cmperf.errors import SpecError
    from cmperf.evaluation import deployment_source, estimate
    from cmperf.overrides import parse_set
    from cmperf.whatif.compare import compare_deployments
    from cmperf.whatif.core import scenario

    if len(deployments) != 2:
        raise SpecError(f"expected two deployments (baseline and variant), got {len(deployments)}", where="--deployment")
    a, b = (deployment_source(d) for d in deployments)
    hw = hardware if hardware != "cloudmatrix384" else None  # the option's default: each file names its own
    base = estimate(a, hw, model, sets=parse_set(sets))
    extra = parse_set(variant_sets, "--variant-set")
    sc = scenario(variant_hardware or hw or b.hardware or base.hardware.path, model if model != "deepseek-r1" else b.model or model,
                  layers=[({**b.overrides, **parse_set(sets)}, "--set"), ({k: v for k, v in extra.items() if not k.startswith("workload.")}, "--variant-set")],
                  scales=[(variant_scale or [], "--variant-scale")], hardware_where="--variant-hardware" if variant_hardware else "--hardware")
    variant = estimate(b, sc.hw, sc.model, sets={k: v for k, v in extra.items() if k.startswith("workload.")})
    return compare_deployments(base, variant)


@whatif_command()
def sweep(
    specs: Annotated[Optional[list[str]], typer.Argument(metavar="KEY=START:STOP:STEPS...", show_default=False, help=(
        "One or two keys to sweep linearly from START to STOP in STEPS points (2-1000): any numeric hardware or model key "
        "(see `show --format json`), workload.input_len, workload.output_len, workload.mtp_acceptance, workload.prefix_hit, "
        "search.max_mtp, slo.tpot_ms or slo.ttft_ms."))] = None,
    opts=None,
):
    """Re-plan at every point of a one- or two-key sweep; write a table, sweep.csv and PNG/SVG plots."""
    from cmperf.report.whatif import print_sweep, sweep_files
    from cmperf.whatif.sweep import n_points, parse_axes, run_sweep

    _check_tag(opts.tag)
    base = _scenario(opts)
    axes = parse_axes(specs or [], base)
    with _Progress(n_points(axes), "sweep") as bar:
        result = run_sweep(base, axes, progress=bar.advance, workers=opts.workers)
    path = _write_opts(opts, "sweep", lambda: sweep_files(result))
    print_sweep(result, opts.fmt.value, str(path) if path else None)


@whatif_command()
def sensitivity(
    keys: Annotated[Optional[list[str]], typer.Option("--key", help="Only these hardware keys: a key, a prefix (scaleup.) or a glob (repeatable) [default: all].")] = None,
    step: Annotated[float, typer.Option(help="Relative step of the finite differences.", **_frange(0.001, 0.5))] = 0.1,
    opts=None,
):
    """Rank hardware parameters by the elasticity of the best decode (per TPOT SLO) and prefill throughput."""
    from cmperf.report.whatif import print_sensitivity, sensitivity_files
    from cmperf.whatif.sensitivity import n_evaluations
    from cmperf.whatif.sensitivity import sensitivity as run

    _check_tag(opts.tag)
    base = _scenario(opts)
    with _Progress(n_evaluations(base, keys), "sensitivity") as bar:
        result = run(base, step, keys, progress=bar.advance, workers=opts.workers)
    path = _write_opts(opts, "sensitivity", lambda: sensitivity_files(result))
    print_sensitivity(result, opts.fmt.value, str(path) if path else None)


@whatif_command(without=("devices", "workers"))
def capacity(
    rate: Annotated[float, typer.Option("--rate", help="Requests per second to serve (up to 1e7).", show_default=False, **_frange(1e-6, 1e7))],
    tpot: Annotated[Optional[list[str]], typer.Option("--tpot", metavar="TIME", help="TPOT SLO, repeatable: 50 or 50ms [default: 50].")] = None,
    ttft: Annotated[Optional[str], typer.Option("--ttft", metavar="TIME", help="P99 TTFT SLO under load: 2000 or 2s [default: 2s, the MLPerf server-scenario limit].")] = None,
    max_utilisation: Annotated[float, typer.Option("--max-utilisation", help="Highest utilisation of any instance [default: 0.8, so a 25% surge still fits and queueing stays a small part of TTFT].", show_default=False, **_frange(0.01, 1.0))] = DEFAULT_MAX_UTILISATION,
    objective: Annotated[Objective, typer.Option("--objective", help="Minimise devices, or cost (whole supernodes provisioned, then devices).")] = Objective.devices,
    opts=None,
):
    """Prefill and decode devices (and supernodes) that serve a request rate under the SLOs."""
    from cmperf.report.whatif import capacity_files, print_capacity
    from cmperf.whatif.capacity import capacity as run

    from dataclasses import replace

    _check_tag(opts.tag)
    sc = _scenario(opts, tpot=tpot or ["50"], ttft=ttft)
    results = [run(replace(sc, tpot_ms=(t,)), rate, max_utilisation, objective.value) for t in sc.tpot_ms]
    path = _write_opts(opts, "capacity", lambda: capacity_files(results, sc))
    print_capacity(results, sc, opts.fmt.value, str(path) if path else None)


@whatif_command(without=("tpot", "ttft", "output_len", "mtp_acceptance", "prefix_hit", "cache_path", "devices", "workers"))
def cache(
    hits: Annotated[str, typer.Option("--hits", help="Prefix-cache hit rates: START:STOP:STEPS or a comma list, in [0, 0.999].")] = "0:0.9:10",
    input_len: InputOpt = DEFAULT_INPUT_LEN,
    devices: Annotated[Optional[int], typer.Option(help="Prefill instance size [default: the paper's prefill deployment's].", **_range(1, 1_000_000))] = None,
    ep: Annotated[Optional[int], typer.Option(help="Expert-parallel degree [default: the paper's, or with --devices the instance's dies].", **_range(1, 1_000_000))] = None,
    tokens_per_device: Annotated[Optional[int], typer.Option(help="Prompt tokens per device per batch [default: the paper's prefill deployment's].", **_range(1, 100_000_000))] = None,
    microbatches: Annotated[Optional[int], typer.Option(help="Microbatches [default: the paper's].", **_range(1, 8))] = None,
    opts=None,
):
    """Prefix caching: TTFT and prefill tokens/s per device with cached KV loaded over UB, over VPC, or recomputed."""
    from cmperf.report.whatif import cache_files, print_cache
    from cmperf.whatif.cache import cache_table, parse_hits

    _check_tag(opts.tag)
    hit_list = parse_hits(hits)
    sc = _scenario(opts, input_len=input_len)  # `devices` here sizes the prefill instance, not the scenario's budget
    result = cache_table(sc, hit_list, devices, ep, tokens_per_device, microbatches)
    path = _write_opts(opts, "cache", lambda: cache_files(result))
    print_cache(result, opts.fmt.value, str(path) if path else None)
