"""How many threads a search uses: read before the search's modules load (no numpy here), so the
command line can make the heap ready for them while it starts (`cli_heap.prepare_search_heap`)."""

from __future__ import annotations

import os

#: Most threads one search uses (chunks are memory-bandwidth bound: more rarely pay).
MAX_SEARCH_THREADS = 4
#: Environment variable that sets the thread count (1: evaluate the chunks in this thread).
THREADS_ENV = "CMPERF_SEARCH_THREADS"


def available_cores() -> int:
    """Cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def search_threads() -> int:
    """Threads a streamed search uses: $CMPERF_SEARCH_THREADS, else the cores available (at most
    MAX_SEARCH_THREADS). Worker processes of a parallel what-if set it to 1."""
    value = os.environ.get(THREADS_ENV, "").strip()
    if value.isdigit() and int(value) >= 1:
        return int(value)
    return min(MAX_SEARCH_THREADS, available_cores())


#: Environment variable that sets a search's chunk budget in MiB (`solve.stream.chunk_budget`).
CHUNK_ENV = "CMPERF_CHUNK_MIB"


def search_as_worker(override: bool = True) -> None:
    """Set this process's searches to run as one of several searching processes: one thread each
    (`override=False` keeps a count the environment already sets). Their chunks are a lone search's:
    smaller ones shared the caches better while a chunk's last sums ran over arrays its size (a
    300-point parallel sweep on two cores 17.2 s at 128 MiB against 19.2 s at 256), but since those
    sums are formed a slice at a time (`compose.ops.in_slices`) fewer evaluations win there too:
    17.7-17.8 s at 256 MiB, 18.2-18.3 at 128, 19.8-19.9 at 64."""
    if override:
        os.environ[THREADS_ENV] = "1"
    else:
        os.environ.setdefault(THREADS_ENV, "1")
