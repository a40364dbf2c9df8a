"""The `cmperf` command line: parse -> load -> evaluate or solve -> report.

Commands stay thin; every failure of input is a `CmperfError` turned into an exit code here only.
Heavy libraries (numpy, pandas, rich, matplotlib) are imported inside commands, so `--help` is fast.
"""

from __future__ import annotations

import copy
import sys
from typing import Annotated, Optional

import typer

from cmperf import __version__
from cmperf.cli_options import CachePath, Eplb, Format, FormatOpt, HardwareOpt, ModelOpt, Phase, SetOpt, app, bounds, frange, parse_ms
from cmperf.errors import CmperfError
from cmperf.inputs import DEFAULT_INPUT_LEN, DEFAULT_MTP_ACCEPTANCE, DEFAULT_OUTPUT_LEN

hardware_app = typer.Typer(help="List and inspect hardware description files.", no_args_is_help=True)
model_app = typer.Typer(help="List and inspect model description files.", no_args_is_help=True)
app.add_typer(hardware_app, name="hardware")
deployment_app = typer.Typer(help="List deployment description files.", no_args_is_help=True)
app.add_typer(model_app, name="model")
app.add_typer(deployment_app, name="deployment")


#: Help placeholders a reader expects, instead of typer's type names (`<int range>`, `<list[str]>`).
PLACEHOLDERS = {"int": "N", "int range": "N", "float": "X", "float range": "X", "str": "TEXT", "list[str]": "TEXT", "bool": ""}


def _clean_placeholders() -> None:
    """One style for `--help`: N, X, TEXT or the choices, never a Python type name."""
    import typer.core

    base = next((c for c in typer.core.TyperOption.__mro__ if "display_type" in c.__dict__), None)
    if base is None:  # typer before 0.29: click's metavars (INTEGER RANGE, FLOAT, TEXT)
        _clean_click_metavars(typer.core.TyperOption)
        return
    typed = base.display_type

    def display_type(self, ctx):
        label = typed(self, ctx).strip("<>")
        return "" if self.metavar else PLACEHOLDERS.get(label, label)

    base.display_type = display_type


def _clean_click_metavars(option_class) -> None:
    words = {"INTEGER": "N", "INTEGER RANGE": "N", "FLOAT": "X", "FLOAT RANGE": "X", "TEXT": "TEXT"}
    made = option_class.make_metavar

    def make_metavar(self, *args, **kwargs):
        if self.metavar:
            return self.metavar
        label = made(self, *args, **kwargs)
        bare = label.removesuffix("...").strip("[]<>").strip()
        return words.get(bare, PLACEHOLDERS.get(bare, label))

    option_class.make_metavar = make_metavar


_clean_placeholders()


def _version(value: bool):
    if value:
        print(f"cmperf {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")] = False):
    pass


def _list(kind: str, fmt: Format) -> None:
    from cmperf.report.render import emit
    from cmperf.specs.loader import _load, known_names

    rows = []
    for name in known_names(kind):
        spec = _load(name, kind)
        rows.append({"name": name, "description": spec.description, "path": spec.path})
    emit(rows, fmt.value, title=f"{kind} descriptions")


def _show(spec, derived: dict, fmt: Format) -> None:
    from cmperf.report.render import emit, fmt_number, to_json

    if fmt == Format.json:
        flat = dict(spec.values)
        flat.update(derived)
        print(to_json(flat))
        return
    from cmperf.report.numbers import si, unit_of_key

    rows = []
    for key, value in spec.values.items():
        p = spec.provenance[key]
        rows.append({"key": key, "value": value, "unit": spec.fields[key].unit, "source": p.source, "kind": p.kind, "note": p.note})
    for key, value in derived.items():
        rows.append({"key": key, "value": value, "unit": unit_of_key(key), "source": "derived", "kind": "derived", "note": ""})
    if fmt == Format.table:
        def shown(value, unit):
            base = unit.split(" per ")[0]
            if isinstance(value, (int, float)) and not isinstance(value, bool) and base in ("B", "B/s", "OP/s", "FLOP/s", "s", "W"):
                return si(value, base, digits=4)  # 752 TOP/s, 1.6 TB/s, 2 us
            return fmt_number(value)

        rows = [{**r, "value": shown(r["value"], r["unit"])} for r in rows]
    emit(rows, fmt.value, title=f"{spec.name}: {spec.description} ({spec.path})")


@hardware_app.command("list")
def hardware_list(fmt: FormatOpt = Format.table):
    """List the hardware descriptions cmperf can find."""
    _list("hardware", fmt)


def _show_spec(kind: str, name: str, fmt: Format, sets) -> None:
    from cmperf.overrides import apply_to_spec, parse_set
    from cmperf.specs.derived import hardware_derived, model_derived
    from cmperf.specs.loader import load_hardware, load_model

    spec = apply_to_spec((load_hardware if kind == "hardware" else load_model)(name, where="NAME"), parse_set(sets))
    _show(spec, (hardware_derived if kind == "hardware" else model_derived)(spec), fmt)


@hardware_app.command("show")
def hardware_show(name: Annotated[str, typer.Argument(help="Hardware name or .toml path.")] = "cloudmatrix384", fmt: FormatOpt = Format.table, sets: SetOpt = None):
    """Show a hardware description with units, sources and derived figures."""
    _show_spec("hardware", name, fmt, sets)


@model_app.command("list")
def model_list(fmt: FormatOpt = Format.table):
    """List the model descriptions cmperf can find."""
    _list("model", fmt)


@model_app.command("show")
def model_show(name: Annotated[str, typer.Argument(help="Model name or .toml path.")] = "deepseek-r1", fmt: FormatOpt = Format.table, sets: SetOpt = None):
    """Show a model description with sources and derived figures (parameters, KV bytes, FLOPs)."""
    _show_spec("model", name, fmt, sets)


@model_app.command("import")
def model_import(
    config: Annotated[str, typer.Argument(help="A Hugging Face config.json on disk.")],
    name: Annotated[Optional[str], typer.Option("--name", help="Model name [the config's folder name, or the file name without .json].")] = None,
    out: Annotated[str, typer.Option("--out", help="Folder to write NAME.toml into.")] = "models",
    source_url: Annotated[Optional[str], typer.Option("--source-url", help="Where the config came from, cited in [sources] [the file path].")] = None,
    precision_from: Annotated[str, typer.Option("--precision-from", help="Model whose precision, dispatch-scale and routing values are copied (marked assumed).")] = "deepseek-r1",
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
):
    """Write a model TOML from a config.json (no network), naming the config keys it did not map."""
    from pathlib import Path

    from cmperf.errors import SpecError
    from cmperf.specs.importer import deployment_values, import_config, read_config, render_toml
    from cmperf.specs.loader import load_model, parse_spec

    path = Path(config)
    if not path.is_file():
        raise SpecError(f"no such file: {config}", where="CONFIG")
    if name is None:
        name = (path.parent.name if path.stem == "config" else path.stem).lower()
    if not name or any(c in name for c in "/\\ ") or name.startswith("."):
        raise SpecError(f"expected a plain file name, got {name!r}", where="--name")
    imp = import_config(read_config(path), name, str(path))
    reference = load_model(precision_from)
    text = render_toml(imp, deployment_values(reference, imp.values["attention.kind"][0], "moe.n_routed_experts" not in imp.values),
                       source_url or str(path), reference)
    target = Path(out) / f"{name}.toml"
    if target.exists() and not force:
        raise SpecError(f"{target} exists; expected a new file (or --force)", where="--out")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"cannot write {target}: {exc}", where="--out") from None
    parse_spec(target, "model")  # the file it wrote loads
    print(f"wrote {target} ({imp.architecture}, attention kind {imp.values['attention.kind'][0]})")
    if imp.unmapped:
        print(f"not mapped: {', '.join(imp.unmapped)}")


@deployment_app.command("list")
def deployment_list(fmt: FormatOpt = Format.table):
    """List the deployment descriptions cmperf can find (the paper's and reference deployments)."""
    from cmperf.report.render import emit
    from cmperf.specs.deployment_file import load_deployment
    from cmperf.specs.loader import known_names

    rows = []
    for name in known_names("deployment"):
        f = load_deployment(name)
        rows.append({"name": name, "phase": f.deployment.phase, "hardware": f.hardware or "", "description": f.description, "path": f.path})
    emit(rows, fmt.value, title="deployment descriptions")


@app.command()
def estimate(
    phase: Annotated[Optional[Phase], typer.Argument(help="decode or prefill: start from the paper's deployment of that phase [default: the --deployment file's phase].")] = None,
    deployment: Annotated[Optional[str], typer.Option(help="Deployment name (see `cmperf deployment list`) or .toml path, e.g. one `cmperf plan` wrote; the options below change single fields.")] = None,
    hardware: Annotated[Optional[str], typer.Option("--hardware", help="Hardware name or .toml path [default: the deployment file's, else cloudmatrix384].")] = None,
    model: Annotated[Optional[str], typer.Option("--model", help="Model name or .toml path [default: the deployment file's, else deepseek-r1].")] = None,
    devices: Annotated[Optional[int], typer.Option(help="NPUs/GPUs in the instance [default: the deployment's].", **bounds(1, 1_000_000))] = None,
    ep: Annotated[Optional[int], typer.Option(help="Expert-parallel degree in ranks, a rank is a die [default: the deployment's; with --devices, all dies of the instance].", **bounds(1, 1_000_000))] = None,
    batch: Annotated[Optional[int], typer.Option(help="Decode: concurrent requests per device [default: the deployment's].", **bounds(1, 1_000_000))] = None,
    input_len: Annotated[Optional[int], typer.Option(help="Prompt tokens per request [default: the deployment file's workload].", **bounds(1, 10_000_000))] = None,
    output_len: Annotated[Optional[int], typer.Option(help="Generated tokens per request [default: the deployment file's workload].", **bounds(1, 10_000_000))] = None,
    kv_len: Annotated[Optional[float], typer.Option(help="Decode: mean context per request [default: input + output/2].", **frange(1.0, 10_000_000.0))] = None,
    tokens_per_device: Annotated[Optional[int], typer.Option(help="Prefill: prompt tokens per device per batch [default: the deployment's].", **bounds(1, 100_000_000))] = None,
    microbatches: Annotated[Optional[int], typer.Option(help="Microbatches overlapped on two streams [default: the deployment's, else the best allowed choice].", **bounds(1, 8))] = None,
    attention_matrix_cores: Annotated[Optional[int], typer.Option("--attn-cores", "--attention-matrix-cores", help="Decode: matrix cores per die for the attention stream when microbatches overlap; the MoE stream gets the rest; 0: the hardware file's split [default: the deployment's, else the best allowed split].", **bounds(0, 100_000))] = None,
    mtp: Annotated[Optional[int], typer.Option(help="Speculative MTP tokens per step [default: the deployment's].", **bounds(0, 8))] = None,
    mtp_acceptance: Annotated[Optional[float], typer.Option(help="Acceptance probability of each speculative token [default: the workload's].", **frange(0.0, 1.0))] = None,
    eplb: Annotated[Optional[Eplb], typer.Option(help="Expert load balance: default (modelled skew) or perfect [default: the deployment's].")] = None,
    redundant: Annotated[Optional[int], typer.Option(help="Redundant expert copies [default: the deployment's; with a new instance, 32 where the placement allows].", **bounds(0, 100_000))] = None,
    attn_tp: Annotated[Optional[int], typer.Option(help="Attention tensor-parallel degree (dies per group) [default: the deployment's].", **bounds(1, 1024))] = None,
    prefix_hit: Annotated[Optional[float], typer.Option(help="Prefill: fraction of prompt tokens found in the prefix cache [default: the workload's].", **frange(0.0, 0.999))] = None,
    cache_path: Annotated[Optional[CachePath], typer.Option(help="Prefill: where cached prefix KV is loaded from: ub (CPU-DRAM pool) or vpc [default: the deployment's].")] = None,
    sets: SetOpt = None,
    fmt: FormatOpt = Format.table,
):
    """Evaluate one deployment and explain it operator by operator (default: the paper's)."""
    from cmperf.errors import SpecError
    from cmperf.evaluation import deployment_source
    from cmperf.evaluation import estimate as run
    from cmperf.overrides import parse_set
    from cmperf.report.estimate import print_estimate

    if phase is None and deployment is None:
        raise SpecError("expected a phase (decode or prefill) or --deployment NAME|PATH", where="PHASE")
    src = deployment_source(deployment or phase.value)
    if phase is not None and src.deployment.phase != phase.value:
        raise SpecError(f"the deployment {src.deployment.name!r} is a {src.deployment.phase} deployment, not {phase.value}", where="--deployment")
    ev = run(src, hardware, model, sets=parse_set(sets), devices=devices, ep=ep, batch=batch, input_len=input_len, output_len=output_len,
             kv_len=kv_len, tokens_per_device=tokens_per_device, microbatches=microbatches, attention_matrix_cores=attention_matrix_cores,
             mtp=mtp, mtp_acceptance=mtp_acceptance, eplb=eplb and eplb.value, redundant=redundant, attn_tp=attn_tp, prefix_hit=prefix_hit,
             cache_path=cache_path and cache_path.value)
    print_estimate(ev.result, fmt.value)


@app.command()
def plan(
    tpot: Annotated[Optional[list[str]], typer.Option("--tpot", metavar="TIME", help="TPOT SLO, repeatable: 50 or 50ms [default: 15 and 50].")] = None,
    ttft: Annotated[Optional[str], typer.Option("--ttft", metavar="TIME", help="TTFT SLO for prefill: 2000 or 2s; the split reports P99 under load [default: 2s, the MLPerf server-scenario limit].")] = None,
    input_len: Annotated[int, typer.Option(help="Prompt tokens per request.", **bounds(1, 10_000_000))] = DEFAULT_INPUT_LEN,
    output_len: Annotated[int, typer.Option(help="Generated tokens per request.", **bounds(1, 10_000_000))] = DEFAULT_OUTPUT_LEN,
    mtp_acceptance: Annotated[float, typer.Option(help="Acceptance probability of each speculative token.", **frange(0.0, 1.0))] = DEFAULT_MTP_ACCEPTANCE,
    devices: Annotated[Optional[int], typer.Option(help="Device budget [default: one system, e.g. 384].", **bounds(1, 1_000_000))] = None,
    hardware: HardwareOpt = "cloudmatrix384",
    model: ModelOpt = "deepseek-r1",
    sets: SetOpt = None,
    top: Annotated[int, typer.Option(help="Deployments shown per SLO.", **bounds(1, 100))] = 3,
    eplb: Annotated[Eplb, typer.Option(help="Expert load balance: default or perfect.")] = Eplb.default,
    prefix_hit: Annotated[float, typer.Option(help="Fraction of prompt tokens found in the prefix cache.", **frange(0.0, 0.999))] = 0.0,
    out: Annotated[str, typer.Option("--out", help="Directory that receives the report folder.")] = "reports",
    tag: Annotated[Optional[str], typer.Option(help="Name the report folder plan-TAG [default: UTC timestamp].")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing plan-TAG folder.")] = False,
    no_write: Annotated[bool, typer.Option("--no-write", help="Print only; write no report files.")] = False,
    fmt: FormatOpt = Format.table,
):
    """Search deployments for the best throughput under TPOT (and TTFT) SLOs; write CSV and markdown reports."""
    from cmperf.overrides import parse_set
    from cmperf.report.plan import print_plan, report_files
    from cmperf.solve.plan import PlanRequest
    from cmperf.solve.plan import plan as run
    from cmperf.cli_heap import reuse_freed_memory, stop_faulting_in

    reuse_freed_memory()
    sets_d = parse_set(sets)
    req = PlanRequest(
        hardware=hardware, model=model, tpot_ms=tuple(parse_ms(t, "--tpot") for t in (tpot or ["15", "50"])),
        ttft_ms=parse_ms(ttft, "--ttft") if ttft else None, input_len=input_len, output_len=output_len,
        mtp_acceptance=mtp_acceptance, devices=devices, top=top, eplb=eplb.value, prefix_hit=prefix_hit, sets=sets_d,
    )
    from cmperf.inputs import check_tag

    check_tag(tag)
    stop_faulting_in()  # the search starts: the heap the entry point faulted in is its own now
    result = run(req)
    path = None
    if not no_write:
        from cmperf.report.files import write_run_dir

        path = write_run_dir(out, "plan", report_files(result), tag, overwrite)
    print_plan(result, fmt.value, str(path) if path else None)


def _command_name(info) -> str:
    return info.name or info.callback.__name__.lower().replace("_", "-")  # typer's own naming


def app_for(args: list[str]) -> typer.Typer:
    """The app that runs `cmperf ARGS`: where the first argument names a command, an app holding
    only that command (typer turns every command's signature into options on each start, about 10
    ms for all of them); else the whole app (`--help`, `--version`, a misspelt command: listing
    the commands and suggesting one needs them all). Either gives the same help, usage and errors."""
    name = args[0] if args else None
    commands = [c for c in app.registered_commands if _command_name(c) == name]
    groups = [g for g in app.registered_groups if g.name == name]
    if len(commands) + len(groups) != 1:
        return app
    one = copy.copy(app)
    one.registered_commands, one.registered_groups = commands, groups
    return one


def _subcommands(ctx) -> list[str]:
    """The command names below the program in a click context (`plan`, `hardware show`): the
    program's own name differs between `cmperf` and `python -m cmperf`."""
    names = []
    while ctx is not None and ctx.parent is not None:
        names.append(ctx.info_name)
        ctx = ctx.parent
    return names[::-1]


def main() -> None:
    """Console entry point: run the app, turning every input error into one line and exit code 2.

    Domain errors (CmperfError) and typer's usage errors (unknown option, value out of range) both
    print `cmperf: error: ...` on stderr; `--help` and normal runs are untouched.
    """
    from cmperf.inputs import safe_text

    click_exceptions = typer.BadParameter.__mro__[2]  # ClickException of typer's bundled click
    try:
        code = app_for(sys.argv[1:])(standalone_mode=False)  # a command's `raise typer.Exit(n)` comes back as n
    except CmperfError as exc:
        print(f"cmperf: error: {safe_text(' '.join(str(exc).split()))}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except click_exceptions as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # `cmperf` or `cmperf hardware` alone: show help
            print(exc.ctx.get_help())
            sys.exit(0)
        hint = f" (see `cmperf {' '.join(_subcommands(exc.ctx))} --help`)" if _subcommands(getattr(exc, "ctx", None)) else ""
        print(f"cmperf: error: {safe_text(' '.join(exc.format_message().split()))}{hint}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except typer.Abort:
        print("cmperf: aborted", file=sys.stderr)
        sys.exit(1)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except BrokenPipeError:
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    if isinstance(code, int) and code:
        sys.exit(code)


# Commands defined in their own modules register themselves on `app` when imported.
from cmperf import cli_validate as _cli_validate  # noqa: E402,F401
from cmperf import cli_explore as _cli_explore  # noqa: E402,F401
from cmperf import cli_whatif as _cli_whatif  # noqa: E402,F401
