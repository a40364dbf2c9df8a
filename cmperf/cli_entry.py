"""The process entry point (the `cmperf` script, `python -m cmperf`), kept free of typer and numpy
so that what only a process of cmperf's own does can start before they load."""

from __future__ import annotations

import os
import sys

#: The BLAS thread pool of a process of cmperf's own: one thread, unless the environment sets it.
#: cmperf's arrays meet elementwise and no command spends time in BLAS, but OpenBLAS starts a worker
#: per core when numpy loads and the workers spin for their first 100-odd ms: on two cores one of
#: them took a core from the imports and the search (a default plan 0.217 against 0.203 s, 15
#: pairs; `python -c "import numpy"` itself takes 0.17 s of CPU in 0.37 s against 0.05 s).
BLAS_THREADS = {"OPENBLAS_NUM_THREADS": "1"}

#: Commands that search a candidate grid once: the entry point readies the heap for them and turns
#: the cyclic garbage collector off (their 58 collections free 369 objects and take about 8 ms of a
#: default plan; benchmarks/README.md). The what-ifs re-plan many times in one process and keep it.
SEARCHING_COMMANDS = ("plan",)


def prepare_process(args: list[str]) -> bool:
    """What a process of cmperf's own does before it loads the command `args` names: for every
    command, one BLAS thread unless the environment says otherwise (`BLAS_THREADS`, before numpy
    loads; the worker processes of a parallel what-if inherit it); for a searching command, the
    heap faulted in on an idle core (`cli_heap.prepare_search_heap`) and no cyclic garbage
    collector, which would find almost nothing to free (reference counting frees its arrays).
    True if the command searches."""
    for name, value in BLAS_THREADS.items():
        os.environ.setdefault(name, value)
    if not (args[:1] and args[0] in SEARCHING_COMMANDS and "--help" not in args):
        return False
    import gc

    from cmperf.cli_heap import prepare_search_heap

    prepare_search_heap()
    gc.disable()
    return True


def run() -> None:
    """The process entry point (the `cmperf` script, `python -m cmperf`): `cli.main`, with what
    only a process of its own may do: `prepare_process`, and the objects left at exit frozen
    (`gc.freeze`) before the interpreter shuts down. Its last garbage collections then walk none
    of them, where they would find nothing the exit does not free anyway (about 25 ms of a
    default `cmperf plan`; benchmarks/README.md). A searching command, once done, ends the process
    without the interpreter's teardown (`end_process`)."""
    searching = prepare_process(sys.argv[1:])
    code = 0
    try:
        from cmperf.cli import main

        main()
    except SystemExit as exc:
        if not searching:
            raise
        code = exc.code
    finally:
        import gc

        gc.freeze()
    if searching:
        end_process(code)


def end_process(code) -> None:
    """End a process whose command is done: standard output and error flushed, then `os._exit`
    with the exit status `sys.exit(code)` gives, skipping the interpreter's teardown of every
    module and object (about 10 ms of a default plan, 0.187 against 0.197 s in 20 pairs). Only for
    commands that leave nothing to it: a plan's threads have ended and its report files are written,
    flushed and renamed before it returns; the what-ifs, whose worker processes and clusters shut
    down in the teardown, exit as usual."""
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:  # sys.exit("message"): the message on standard error, status 1
        print(code, file=sys.stderr)
        status = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`cmperf plan | head`): as cli.main answers one
            status = status or 1
    os._exit(status)
