"""Spread independent re-plans over worker processes, in order, with a progress callback.

`run(fn, items, workers)` returns `[fn(x) for x in items]`: the same values serially (workers <= 1
or one item) and in parallel. Items go out in contiguous blocks, so a worker re-plans neighbouring
points one after another and keeps its grid memo warm (a sweep over an SLO rebuilds nothing). The
workers are started by a fork server that has already imported the re-plan code.
"""

from __future__ import annotations

import copyreg
import math
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from types import MappingProxyType

from cmperf.solve.threads import available_cores

#: Blocks per worker: enough to balance uneven points, few enough to keep memos warm.
BLOCKS_PER_WORKER = 4
#: Fewest items the default (every core) spreads over processes: starting the pool and warming each
#: worker's grids costs about as much as a few re-plans. An explicit worker count is always honoured.
MIN_ITEMS_BY_DEFAULT = 8


# Specs keep their values in read-only mappings; they travel to the workers as plain dicts.
def _read_only(values: dict) -> MappingProxyType:
    return MappingProxyType(values)


copyreg.pickle(MappingProxyType, lambda m: (_read_only, (dict(m),)))


def _block(fn, items):
    return [fn(x) for x in items]


def _one_search_thread():
    """Worker start-up: each worker searches in one thread (the workers already fill the cores;
    `solve.threads.search_as_worker`)."""
    from cmperf.solve.threads import search_as_worker

    search_as_worker()


def _pool(workers: int) -> ProcessPoolExecutor:
    import multiprocessing as mp

    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["numpy", "cmperf.whatif.core", "cmperf.solve.search"])
    else:
        ctx = mp.get_context("spawn")
    return ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_one_search_thread)


def run(fn, items, workers: int | None = None, progress=None) -> list:
    """[fn(x) for x in items], over `workers` processes (None: the cores available, for at least
    MIN_ITEMS_BY_DEFAULT items; fewer run in this process).

    `fn` must be a module-level function and items and results picklable. `progress`, if given,
    is called once per item as results arrive.
    """
    items = list(items)
    if workers is None:
        workers = available_cores() if len(items) >= MIN_ITEMS_BY_DEFAULT else 1
    workers = min(workers, len(items))
    if workers <= 1:
        out = []
        for x in items:
            out.append(fn(x))
            if progress:
                progress()
        return out
    size = max(1, math.ceil(len(items) / (workers * BLOCKS_PER_WORKER)))
    starts = range(0, len(items), size)
    results: dict[int, list] = {}
    with _pool(workers) as pool:
        futures = {pool.submit(_block, fn, items[s:s + size]): s for s in starts}
        for fut in as_completed(futures):
            s = futures[fut]
            results[s] = fut.result()
            if progress:
                for _ in results[s]:
                    progress()
    return [y for s in starts for y in results[s]]
