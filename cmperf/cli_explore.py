"""`cmperf explore SPEC.toml`: a design space re-planned on a Dask cluster (local by default).

Dask is imported only here, and only when the command runs.
"""

from __future__ import annotations

import time
from typing import Annotated, Optional

import typer

from cmperf.cli_options import app
from cmperf.cli_options import bounds as _range


@app.command()
def explore(
    spec: Annotated[str, typer.Argument(metavar="SPEC.toml", help="Design space: base, [keys] as ranges or lists, sampling (grid, random, latin-hypercube).")],
    out: Annotated[str, typer.Option("--out", help="Table to write, one row per design point: .parquet or .csv.")] = "explore.parquet",
    scheduler: Annotated[Optional[str], typer.Option("--scheduler", help="Dask scheduler address, e.g. tcp://10.0.0.5:8786 [a local cluster].")] = None,
    workers: Annotated[Optional[int], typer.Option("--workers", help="Worker processes of the local cluster [the cores available].", **_range(1, 1024))] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output table.")] = False,
):
    """Re-plan every point of a design space on Dask; the table is written at the end, and a killed run resumes."""
    from cmperf.cli_whatif import _Progress
    from cmperf.errors import SpecError
    from cmperf.whatif.explore import check_output, load_spec, run
    from cmperf.whatif.parallel import available_cores

    path = check_output(out, overwrite)
    design = load_spec(spec)
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise SpecError("needs dask.distributed: pip install 'dask[distributed]' pyarrow", where="explore") from None
    t0 = time.perf_counter()
    cluster = None
    if scheduler is None:
        import dask

        # Dask's nannies set MALLOC_TRIM_THRESHOLD_=65536, which makes every large temporary array
        # a fresh mmap: a re-plan then runs at less than half speed. Keep glibc's default.
        environ = {k: v for k, v in dask.config.get("distributed.nanny.pre-spawn-environ", {}).items() if k != "MALLOC_TRIM_THRESHOLD_"}
        dask.config.set({"distributed.nanny.pre-spawn-environ": environ})
        cluster = LocalCluster(n_workers=workers or available_cores(), threads_per_worker=1, processes=True, dashboard_address=None)
    try:
        try:
            client = Client(scheduler or cluster, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise SpecError(f"cannot reach the Dask scheduler at {scheduler}: {exc}", where="--scheduler") from None
        with client, _Progress(design["samples"], "explore") as bar:
            result = run(design, path, client, bar.advance)
    finally:
        if cluster is not None:
            cluster.close()
    seconds = time.perf_counter() - t0
    print(f"explored {result['points']:,} design points ({result['resumed']:,} from a checkpoint) in {seconds:.1f} s -> {result['path']}")
