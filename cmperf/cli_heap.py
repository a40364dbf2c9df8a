"""The allocator settings of the searching commands and a search's heap faulted in on an idle core,
kept free of typer and numpy so that the entry point (`cli_entry.run`) can apply them before those load.

The Python API leaves its host process alone: only the command line calls these.
"""

from __future__ import annotations

import mmap
import os
import sys

from cmperf.units import MiB

#: glibc `mallopt` settings a searching command takes (parameter number, value): arrays up to
#: M_MMAP_THRESHOLD come from the heap instead of fresh mmaps, and up to M_TRIM_THRESHOLD of freed heap
#: stays with the process. A chunk's arrays (a few MB each) then reuse the pages the last chunk
#: freed instead of faulting in new zeroed ones: about 26 ms (7%) of a default `cmperf plan` and 8%
#: of a threaded sweep on a 2-core machine, for 10-20 MB more peak memory (benchmarks/README.md).
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_BYTES, TRIM_THRESHOLD_BYTES = int(32 * MiB), int(512 * MiB)
ALLOCATOR_SETTINGS = ((M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES), (M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
#: Environment variable that leaves the allocator as it is (0).
ALLOCATOR_ENV = "CMPERF_TUNE_MALLOC"
#: glibc `mallopt` parameter: the most malloc arenas. At 1 every thread allocates from the main heap,
#: so the pages `prepare_search_heap` faults in on its own thread serve the search threads' arrays.
M_ARENA_MAX = -8
#: Heap faulted in for each search thread: the default plan's decode search (one chunk of 70
#: structures a thread on two threads) peaks at 130 MB of arrays (tracemalloc) and takes about
#: 100 page faults after 2 x 64 MiB were faulted in, 31,000 without (`getrusage`, fresh process).
SEARCH_HEAP_BYTES_PER_THREAD = int(64 * MiB)
#: Linux `madvise` advice: back the range with transparent huge pages where the system allows
#: (/sys/kernel/mm/transparent_hugepage: `always` or `madvise`), one fault per 2 MB instead of per
#: 4 KB page. numpy asks the same of its own arrays of 4 MB and more, and skips it where
#: $NUMPY_MADVISE_HUGEPAGE is 0; so does the heap faulted in here.
MADV_HUGEPAGE = getattr(mmap, "MADV_HUGEPAGE", None)
NUMPY_HUGEPAGE_ENV = "NUMPY_MADVISE_HUGEPAGE"
PAGE_BYTES = mmap.PAGESIZE
#: Blocks the heap is faulted in as: the largest under the mmap threshold (so they come from the heap
#: and stay there when freed), one page short of it.
HEAP_BLOCK_BYTES = MMAP_THRESHOLD_BYTES - PAGE_BYTES


def _libc():
    """The C library, where it has glibc's `mallopt` (else None)."""
    if os.environ.get(ALLOCATOR_ENV, "").strip() == "0" or not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        return libc if hasattr(libc, "mallopt") else None
    except OSError:
        return None


def reuse_freed_memory(libc=None) -> bool:
    """Apply ALLOCATOR_SETTINGS to this process where the C library (`libc`, default `_libc()`) is
    glibc (the CLI's searching commands call it). True if applied."""
    libc = _libc() if libc is None else libc
    return libc is not None and all(libc.mallopt(param, int(value)) == 1 for param, value in ALLOCATOR_SETTINGS)


#: The event that stops the heap thread of this process (`stop_faulting_in`), once started.
_STOP: list = [None]


def stop_faulting_in() -> None:
    """The search is about to start: the heap thread stops after the block it is faulting in and
    frees what it holds, so that the search's arrays take those pages instead of fresh ones beside
    them (a thread slow to get its huge pages, once 370 ms against 13, would otherwise leave
    the search to fault in its own heap next to the held one: 340 MB peak instead of 190)."""
    if _STOP[0] is not None:
        _STOP[0].set()


def prepare_search_heap():
    """Make the heap ready for a search while the command loads: `reuse_freed_memory`, one malloc
    arena, and a background thread that faults in `search_threads()` x SEARCH_HEAP_BYTES_PER_THREAD
    of heap and frees it again. The search's arrays then land on pages already mapped instead of
    faulting in fresh ones on the search's own time: the faults are taken on a core left idle
    while the interpreter imports numpy, typer and cmperf's modules, until `stop_faulting_in`
    says the search starts. Call it before any other thread starts (the arena count is fixed once
    threads allocate). Returns the thread, or None where the allocator settings do not apply (not
    glibc, or $CMPERF_TUNE_MALLOC=0)."""
    libc = _libc()
    if not reuse_freed_memory(libc) or libc.mallopt(M_ARENA_MAX, 1) != 1:
        return None
    import ctypes
    import threading

    from cmperf.solve.threads import search_threads

    malloc, free = libc.malloc, libc.free
    malloc.restype, malloc.argtypes, free.argtypes = ctypes.c_void_p, [ctypes.c_size_t], [ctypes.c_void_p]
    blocks = -(-search_threads() * SEARCH_HEAP_BYTES_PER_THREAD // HEAP_BLOCK_BYTES)
    madvise = libc.madvise
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    huge = MADV_HUGEPAGE is not None and os.environ.get(NUMPY_HUGEPAGE_ENV, "").strip() != "0"
    stop = _STOP[0] = threading.Event()

    def fault_in():  # each C call releases the interpreter lock: this runs beside the imports
        held = []
        try:
            for _ in range(blocks):
                p = None if stop.is_set() else malloc(HEAP_BLOCK_BYTES)
                if not p:
                    break
                held.append(p)
                if huge:
                    start = -(-p // PAGE_BYTES) * PAGE_BYTES
                    madvise(start, (p + HEAP_BLOCK_BYTES - start) // PAGE_BYTES * PAGE_BYTES, MADV_HUGEPAGE)
                ctypes.memset(p, 0, HEAP_BLOCK_BYTES)
        finally:
            for p in held:
                free(p)

    thread = threading.Thread(target=fault_in, name="cmperf-heap", daemon=True)
    thread.start()
    return thread
