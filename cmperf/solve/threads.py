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
#: The chunk budget of a search that shares the machine with other searching processes, one search
#: thread each (the workers of a parallel what-if or of an exploration). Smaller chunks than a lone
#: search's shared the caches better while a chunk's last sums ran over arrays its size (a 300-point
#: parallel sweep on two cores 17.2 s at 128 MiB against 19.2 s at 256); since those sums are formed a
#: slice at a time (`compose.ops.in_slices`) fewer evaluations win there too: 17.7-17.8 s at 256 MiB,
#: 18.2-18.3 at 128, 19.8-19.9 at 64.
WORKER_CHUNK_MIB = 256


def search_as_worker(override: bool = True) -> None:
    """Set this process's searches to run as one of several searching processes: one thread each
    and WORKER_CHUNK_MIB chunks (`override=False` keeps values the environment already sets)."""
    for key, value in ((THREADS_ENV, "1"), (CHUNK_ENV, str(WORKER_CHUNK_MIB))):
        if override:
            os.environ[key] = value
        else:
            os.environ.setdefault(key, value)
