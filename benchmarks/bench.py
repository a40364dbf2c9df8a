"""Wall-time and memory benchmark of cmperf: start-up, estimate, plan, a 1.4M-candidate plan, a sweep.

Run from the repository root (not part of the pytest run):

    python benchmarks/bench.py              # 5 runs per measurement
    python benchmarks/bench.py -n 10        # more runs
    python benchmarks/bench.py --profile    # also: cProfile of the default plan, -X importtime summaries
    python benchmarks/bench.py --json out.json
    python benchmarks/bench.py --fleet-only -n 3    # plan at 384/3,840/38,400 devices, a 1,000-point sweep
                                                    # serial vs parallel, a 1,000-point exploration on Dask

Every process measurement starts a fresh interpreter and times it from spawn to exit; peak memory is
the child's own ru_maxrss (os.wait4, the figure resource.getrusage(RUSAGE_CHILDREN) reports, taken
per child). In-process measurements run after a warm-up in this interpreter. The phase breakdown
of the default `cmperf plan` runs the real CLI entry point in a fresh interpreter with timers
wrapped around its stages.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SWEEP = ["sweep", "workload.input_len=1024:32768:100"]


# ---- helpers ---------------------------------------------------------------------------------------


def cmperf_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("cmperf")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "cmperf"]


def run_process(argv: list[str], cwd: Path, env: dict | None = None) -> tuple[float, float, int]:
    """(wall seconds, peak RSS in MB, exit code) of one fresh process (`env` added to this one's)."""
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=err, env={**os.environ, "COLUMNS": "200", **(env or {})})
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        p.returncode = code = os.waitstatus_to_exitcode(status)
        if code != 0:
            err.seek(0)
            raise RuntimeError(f"{' '.join(argv)} exited {code}: {err.read().decode(errors='replace')[-2000:]}")
    return wall, ru.ru_maxrss / 1024.0, code


def summarise(name: str, walls: list[float], rss: list[float] | None = None, note: str = "") -> dict:
    return {
        "name": name, "runs": len(walls), "median_s": statistics.median(walls), "min_s": min(walls),
        "peak_rss_mb": statistics.median(rss) if rss else None, "note": note,
    }


def bench_process(name: str, args: list[str], n: int, note: str = "", out_dir: bool = False, env: dict | None = None,
                  tree: Path | None = None) -> dict:
    """`cmperf ARGS` n times; with `tree`, the cmperf of that checkout (python -m cmperf run from it)."""
    walls, rss = [], []
    cmd = [sys.executable, "-m", "cmperf"] if tree else cmperf_cmd()
    env = {**(env or {}), **({"PYTHONPATH": str(tree)} if tree else {})}
    with tempfile.TemporaryDirectory(prefix="cmperf-bench-") as tmp:
        tmp = Path(tmp)
        for i in range(n):
            extra = ["--out", str(tmp / f"run{i}")] if out_dir else []
            w, m, _ = run_process(cmd + args + extra, cwd=tree or tmp, env=env)
            walls.append(w)
            rss.append(m)
    return summarise(name, walls, rss, note)


def bench_inprocess(name: str, fn, n: int, note: str = "") -> dict:
    fn()  # warm-up
    walls = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t0)
    return summarise(name, walls, None, note)


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import numpy

    return {"nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version(), "numpy": numpy.__version__,
            "platform": platform.platform()}


def has_command(name: str) -> bool:
    out = subprocess.run(cmperf_cmd() + ["--help"], capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"}).stdout
    return any(line.split()[:1] == [name] for line in out.splitlines())


# ---- fleets, parallel what-ifs, exploration: ratios to `python -c "import numpy"` -------------------

EXPLORE_SPEC = """
sampling = "latin-hypercube"
samples = {n}
seed = 0
tpot_ms = 50
[keys]
"die.hbm_bandwidth_bytes_per_s" = {{ min = 0.8e12, max = 3.2e12 }}
"scaleup.link_bandwidth_bytes_per_s" = {{ min = 1.4e10, max = 5.6e10 }}
"workload.input_len" = [1024, 2048, 4096, 8192, 16384]
"""


def fleet_rows(n: int, sweep_points: int, explore_points: int, baseline: Path | None = None) -> list[dict]:
    """Plan at 384, 3,840 and 38,400 devices, a sweep serial vs parallel and an exploration on a local
    Dask cluster, each with its median wall time as a multiple of `python -c "import numpy"` in this run
    (and, with `baseline`, the default plan and estimate of another checkout, interleaved with ours)."""
    cases = [("cmperf estimate decode", ["estimate", "decode"])]
    cases += [(f"cmperf plan --devices {d} --no-write", ["plan", "--devices", str(d), "--no-write"]) for d in (384, 3840, 38400)]
    floors, runs = [], {name: [] for name, _ in cases}
    for _ in range(n):  # the floor interleaved with the commands: every ratio is paired, run by run
        floors.append(run_process([sys.executable, "-c", "import numpy"], REPO)[0])
        for name, args in cases:
            runs[name].append(bench_process(name, args, 1))
    floor = summarise('python -c "import numpy" (the floor)', floors)
    rows = [floor] + [summarise(name, [r["median_s"] for r in rs], [r["peak_rss_mb"] for r in rs if r["peak_rss_mb"] is not None])
                      for name, rs in runs.items()]
    if baseline:
        for name, args in (("plan --no-write", ["plan", "--no-write"]), ("estimate decode", ["estimate", "decode"])):
            ours, theirs, own_floor = [], [], []
            for _ in range(n):  # interleaved with each other and with the floor, so all see the same machine
                own_floor.append(run_process([sys.executable, "-c", "import numpy"], REPO)[0])
                ours.append(bench_process(name, args, 1, tree=REPO)["median_s"])
                theirs.append(bench_process(name, args, 1, tree=baseline)["median_s"])
            pair = [summarise(f"python -m cmperf {name} (this checkout)", ours, note="paired with the next row"),
                    summarise(f"python -m cmperf {name} (baseline {baseline.name})", theirs)]
            for r in pair:
                r["floor_s"] = statistics.median(own_floor)  # the floor of these runs
            rows += pair
    key = f"die.hbm_bandwidth_bytes_per_s=0.8e12:3.2e12:{sweep_points}"
    sweeps = (("serial (--workers 1, one search thread: one core)", ["--workers", "1"], {"CMPERF_SEARCH_THREADS": "1"}),
              ("--workers 1 (one process; its searches use every core)", ["--workers", "1"], None),
              ("parallel (default --workers: every core)", [], None))
    for label, extra, env in sweeps:
        rows.append(bench_process(f"cmperf sweep {sweep_points} points, {label}", ["sweep", key, "--no-write", *extra], 1,
                                  note=f"{sweep_points} full re-plans", env=env))
    with tempfile.TemporaryDirectory(prefix="cmperf-explore-") as tmp:
        spec = Path(tmp) / "space.toml"
        spec.write_text(EXPLORE_SPEC.format(n=explore_points))
        rows.append(bench_process(f"cmperf explore, {explore_points} points, local Dask cluster", ["explore", str(spec), "--out",
                                  str(Path(tmp) / "space.parquet")], 1, note="3 keys, Latin hypercube"))
    for r in rows[1:]:
        f = r.get("floor_s", floor["median_s"])
        r["note"] = (f"{r['median_s'] / f:.1f}x the numpy floor" + (f" ({f:.3f} s, interleaved)" if "floor_s" in r else "")
                     + (f"; {r['note']}" if r["note"] else ""))
    return rows


# ---- phase breakdown of `cmperf plan` (runs in a fresh child interpreter) ----------------------------

_PHASES_CHILD = r"""
import json, sys, time
T = {}
stack = []
def timed(label, fn):
    def wrapper(*a, **k):
        t0 = time.perf_counter(); stack.append(0.0)
        try:
            return fn(*a, **k)
        finally:
            inner = stack.pop(); dt = time.perf_counter() - t0
            T[label] = T.get(label, 0.0) + dt - inner
            if stack: stack[-1] += dt
    return wrapper
t_start = time.perf_counter()
import cmperf.cli_entry  # what the entry point does first: the heap faulted in beside the imports, no collector
cmperf.cli_entry.prepare_process(["plan"] + sys.argv[1:])
t0 = time.perf_counter(); import cmperf.cli; T["import cmperf.cli (typer, click)"] = time.perf_counter() - t0
t0 = time.perf_counter(); import numpy; T["import numpy"] = time.perf_counter() - t0
t0 = time.perf_counter()
import cmperf.solve.plan, cmperf.report.plan, cmperf.report.files, cmperf.evaluation
T["import cmperf model, solver and report modules"] = time.perf_counter() - t0
import cmperf.solve.plan as sp, cmperf.report.plan as rp, cmperf.report.files as rf
def wrap(mod, name, label):
    if hasattr(mod, name):
        setattr(mod, name, timed(label, getattr(mod, name)))
for mod, name, label in ((sp, "load_specs", "load and validate TOML specs"),
                         (sp, "decode_search", "search the decode grid (streamed, in threads)"),
                         (sp, "prefill_search", "search the prefill grid"),
                         (sp, "ranked", "rank (ranked)"), (sp, "best_per_deployment", "rank (best per deployment)"),
                         (sp, "_explain", "explain records (one broadcast evaluation per phase)"), (sp, "paper_deployment", "the paper's deployments (the decode file's microbatches as estimate takes them)"), (sp, "pareto_front", "Pareto frontier"),
                         (sp, "best_split", "prefill/decode sizing"), (rp, "report_files", "render report files (md, csv, png, svg)"),
                         (rf, "write_run_dir", "write report folder (fsync, rename)"), (rp, "print_plan", "print tables"),
                         (sp, "plan", "plan(): records, limits, paper points")):
    wrap(mod, name, label)
sys.argv = ["cmperf", "plan"] + sys.argv[1:]
t0 = time.perf_counter()
try:
    cmperf.cli.main()
except SystemExit as e:
    if e.code not in (0, None):
        raise
total_main = time.perf_counter() - t0
T["CLI parsing and the rest of the command"] = total_main - sum(v for k, v in T.items() if not k.startswith("import"))
T["_inprocess_total"] = time.perf_counter() - t_start
print("@@PHASES@@" + json.dumps(T), file=sys.stderr)
"""


def phases(n: int, args: list[str]) -> tuple[dict, float]:
    runs, walls = [], []
    with tempfile.TemporaryDirectory(prefix="cmperf-bench-") as tmp:
        for i in range(n):
            t0 = time.perf_counter()
            cp = subprocess.run([sys.executable, "-c", _PHASES_CHILD, *args, "--out", str(Path(tmp) / f"p{i}")], capture_output=True,
                                text=True, cwd=tmp, env={**os.environ, "COLUMNS": "200"})
            walls.append(time.perf_counter() - t0)
            if cp.returncode != 0:
                raise RuntimeError(cp.stderr[-3000:])
            line = next(x for x in cp.stderr.splitlines() if x.startswith("@@PHASES@@"))
            runs.append(json.loads(line[len("@@PHASES@@"):]))
    med = {k: statistics.median(r.get(k, 0.0) for r in runs) for k in runs[0]}
    return med, statistics.median(walls)


def interpreter_start(n: int) -> list[float]:
    walls = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        walls.append(time.perf_counter() - t0)
    return walls


# ---- profiling (--profile) ---------------------------------------------------------------------------


def profile_plan(top: int = 25) -> str:
    code = r"""
import cProfile, pstats, io, sys
pr = cProfile.Profile(); pr.enable()
import cmperf.cli
sys.argv = ["cmperf", "plan", "--no-write"]
try:
    cmperf.cli.main()
except SystemExit:
    pass
pr.disable()
s = io.StringIO(); pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(%d)
print("@@PROFILE@@" + s.getvalue(), file=sys.stderr)
""" % top
    cp = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
    return cp.stderr.split("@@PROFILE@@", 1)[-1]


def importtime(args: list[str], top: int = 12) -> list[tuple[str, float]]:
    """The slowest top-level imports (cumulative ms) of `python -X importtime -m cmperf ARGS`."""
    cp = subprocess.run([sys.executable, "-X", "importtime", "-m", "cmperf", *args], capture_output=True, text=True,
                        env={**os.environ, "COLUMNS": "200"})
    rows = []
    for line in cp.stderr.splitlines():
        parts = line[len("import time:"):].split("|") if line.startswith("import time:") else []
        if len(parts) != 3 or not parts[1].strip().isdigit():
            continue
        name = parts[2]
        depth = (len(name) - len(name.lstrip()) - 1) // 2
        if depth <= 1:
            rows.append(("  " * depth + name.strip(), int(parts[1]) / 1000.0))
    return sorted(rows, key=lambda r: -r[1])[:top]


# ---- main ------------------------------------------------------------------------------------------------


def fmt_table(rows: list[dict]) -> str:
    head = f"{'measurement':<58} {'runs':>4} {'median s':>9} {'min s':>8} {'peak MB':>8}  note"
    lines = [head, "-" * len(head)]
    for r in rows:
        rss = f"{r['peak_rss_mb']:.0f}" if r["peak_rss_mb"] is not None else "-"
        lines.append(f"{r['name']:<58} {r['runs']:>4} {r['median_s']:>9.3f} {r['min_s']:>8.3f} {rss:>8}  {r['note']}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", "--runs", type=int, default=5, help="runs per measurement (median and min are reported)")
    ap.add_argument("--sweep-runs", type=int, default=None, help="runs of the 100-point sweep [same as -n]")
    ap.add_argument("--skip-sweep", action="store_true", help="leave out the 100-point sweep")
    ap.add_argument("--profile", action="store_true", help="also print a cProfile of the default plan and import times")
    ap.add_argument("--json", help="write the results to this JSON file")
    ap.add_argument("--fleet-only", action="store_true", help="only the fleet, parallel and exploration measurements")
    ap.add_argument("--sweep-points", type=int, default=1000, help="points of the serial vs parallel sweep [1000]")
    ap.add_argument("--explore-points", type=int, default=1000, help="design points of the exploration [1000]")
    ap.add_argument("--baseline", type=Path, help="a checkout of another revision: time its default plan and estimate beside ours")
    ap.add_argument("--compile", action="store_true",
                    help="first compile cmperf (and the baseline) to bytecode, as a regular `pip install` does, so commands load it cached")
    a = ap.parse_args()
    n = a.runs
    sys.path.insert(0, str(REPO))

    info = machine()
    print(f"cmperf benchmark: {info['nproc']} CPUs, {info['cpu']}, Python {info['python']}, numpy {info['numpy']}")
    print(f"command: {' '.join(cmperf_cmd())}; {n} runs per measurement")
    if a.compile:
        import compileall

        for tree in [REPO] + ([a.baseline] if a.baseline else []):
            compileall.compile_dir(str(tree / "cmperf"), quiet=1)
        print("bytecode: compiled before the runs (what an installed copy has)")
    elif os.environ.get("PYTHONDONTWRITEBYTECODE"):
        print("note: PYTHONDONTWRITEBYTECODE is set, so cmperf's own modules are compiled from source in every process "
              "(about 40 ms more per command than an installed copy with cached bytecode; --compile measures that)")
    print()

    if a.fleet_only:
        rows = fleet_rows(n, a.sweep_points, a.explore_points, a.baseline)
        print(fmt_table(rows))
        if a.json:
            Path(a.json).write_text(json.dumps({"machine": info, "rows": rows}, indent=2))
        return

    rows: list[dict] = []
    starts = interpreter_start(n)
    start = statistics.median(starts)
    rows.append(summarise("python -c pass (interpreter start, for reference)", starts))
    rows.append(bench_process("cmperf --help", ["--help"], n))
    rows.append(bench_process("cmperf estimate decode", ["estimate", "decode"], n))
    rows.append(bench_process("cmperf plan --no-write", ["plan", "--no-write"], n))
    rows.append(bench_process("cmperf plan (writes 5 report files)", ["plan"], n, out_dir=True))
    rows.append(bench_process("cmperf plan --devices 768 --no-write", ["plan", "--devices", "768", "--no-write"], n))
    if not a.skip_sweep and has_command("sweep"):
        rows.append(bench_process(f"cmperf {' '.join(SWEEP)} --no-write", SWEEP + ["--no-write"], a.sweep_runs or n, note="100 full re-plans"))
    # Children are forked from this interpreter, and a child's peak RSS counts the pages it held before exec:
    # every process row runs before the in-process measurements fill this one.
    fleet = fleet_rows(n, a.sweep_points, a.explore_points, a.baseline)

    # In-process: the search itself.
    import numpy as np  # noqa: F401

    from cmperf.solve.plan import PlanRequest, plan
    from cmperf.solve.search import decode_grid, pareto_front, prefill_grid, ranked
    from cmperf.solve.stream import decode_search
    from cmperf.specs.loader import load_hardware, load_model

    hw, model = load_hardware("cloudmatrix384"), load_model("deepseek-r1")
    g384 = decode_grid(hw, model, 384, 4096, 256, 0.7)
    p384 = prefill_grid(hw, model, 384, 4096)
    rows[5]["note"] = f"{g384.size:,} decode + {p384.size:,} prefill candidates, as at 384: instances stop at one system"
    rows.append(bench_inprocess("in-process plan(PlanRequest())", lambda: plan(PlanRequest()), n,
                                note=f"{g384.size:,} decode candidates"))
    search = lambda: decode_search(hw, model, 384, 4096, 256, 0.7, slos=[0.015, 0.05], top=3)  # noqa: E731
    r = bench_inprocess("in-process decode_search (streamed), 384 devices", search, n)
    r["note"] = f"{g384.size:,} candidates, {g384.size / r['median_s'] / 1e6:.1f} M/s"
    rows.append(r)
    r = bench_inprocess("in-process decode_grid (one array), 384 devices", lambda: decode_grid(hw, model, 384, 4096, 256, 0.7), n)
    r["note"] = f"{g384.size:,} candidates, {g384.size / r['median_s'] / 1e6:.1f} M/s"
    rows.append(r)
    rows.append(bench_inprocess("in-process ranked(top 3), one array", lambda: ranked(g384, 0.05, 3), n))
    rows.append(bench_inprocess("in-process pareto_front, one array", lambda: pareto_front(g384), n))
    del g384

    def replans():
        for x in np.linspace(1024, 32768, 100):
            decode_search(hw, model, 384, int(x), 256, 0.7, slos=[0.015, 0.05], top=3)
            ranked(prefill_grid(hw, model, 384, int(x)), None, 3)

    if not a.skip_sweep:
        rows.append(bench_inprocess("in-process 100 x (decode_search + prefill_grid + ranked)", replans, a.sweep_runs or n,
                                    note="stand-in: the search part of a 100-point sweep"))

    rows += fleet
    print(fmt_table(rows))

    ph, wall = phases(n, [])
    total = ph.pop("_inprocess_total")
    print(f"\nWhere the time of `cmperf plan` goes (fresh interpreter, median of {n}; process wall {wall:.3f} s, "
          f"interpreter start {start:.3f} s, measured in-process {total:.3f} s):")
    for k, v in sorted(ph.items(), key=lambda kv: -kv[1]):
        print(f"  {k:<52} {v * 1e3:8.1f} ms  {100 * v / wall:5.1f}%")

    if a.profile:
        print("\ncProfile of `cmperf plan --no-write` (tottime, top 25):")
        print(profile_plan())
        for args in (["--help"], ["plan", "--no-write"]):
            print(f"Slowest top-level imports of `python -X importtime -m cmperf {' '.join(args)}` (cumulative ms):")
            for name, ms in importtime(args):
                print(f"  {name:<48} {ms:8.1f}")

    if a.json:
        Path(a.json).write_text(json.dumps({"machine": info, "rows": rows, "plan_phases_s": ph, "plan_wall_s": wall}, indent=2))


if __name__ == "__main__":
    main()
