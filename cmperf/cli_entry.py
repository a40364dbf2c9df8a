"""The process entry point (the `cmperf` script, `python -m cmperf`), kept free of typer and numpy
so that what only a process of cmperf's own does can start before they load."""

from __future__ import annotations

import sys

#: Commands that search a candidate grid once: the entry point readies the heap for them and turns
#: the cyclic garbage collector off (their 58 collections free 369 objects and take about 8 ms of a
#: default plan; benchmarks/README.md). The what-ifs re-plan many times in one process and keep it.
SEARCHING_COMMANDS = ("plan",)


def run() -> None:
    """The process entry point (the `cmperf` script, `python -m cmperf`): `cli.main`, with what
    only a process of its own may do.

    - A searching command's heap is faulted in on an idle core while the command loads
      (`cli_heap.prepare_search_heap`), and it runs without the cyclic garbage collector, which
      would find almost nothing to free (reference counting frees its arrays).
    - The objects left at exit are frozen (`gc.freeze`) before the interpreter shuts down: its
      last garbage collections then walk none of them, where they would find nothing the exit
      does not free anyway (about 25 ms of a default `cmperf plan`; benchmarks/README.md).
    """
    import gc

    args = sys.argv[1:]
    if args[:1] and args[0] in SEARCHING_COMMANDS and not {"--help", "-h"} & set(args):
        from cmperf.cli_heap import prepare_search_heap

        prepare_search_heap()
        gc.disable()
    try:
        from cmperf.cli import main

        main()
    finally:
        gc.freeze()
