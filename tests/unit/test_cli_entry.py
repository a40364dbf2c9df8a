"""The process entry point (`cli_entry.run`) and the heap it readies for a search (`cli_heap`).

Each case runs in a subprocess: the allocator settings, the arena count and `gc.freeze` belong to a
process of cmperf's own, never to the test process.
"""

import os
import platform
import subprocess
import sys

import pytest

from cmperf import cli_heap
from cmperf.cli_entry import SEARCHING_COMMANDS

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def _python(code: str, *args: str, **env) -> list[str]:
    """The lines `python -c CODE ARGS` prints, in a fresh process (which must succeed)."""
    p = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env={**os.environ, "COLUMNS": "200", **env})
    assert p.returncode == 0, p.stderr
    return p.stdout.splitlines()


# Faults taken while 96 MB of numpy arrays (the size of a search's chunk arrays) are written, after
# the heap was readied (or not), in a fresh process.
FAULTS = """
import resource, sys
from cmperf import cli_heap
ready = sys.argv[1] == "ready"
thread = cli_heap.prepare_search_heap() if ready else None
if thread is not None:
    thread.join()
import numpy as np
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
arrays = [np.ones(2 ** 21) for _ in range(6)]  # 16 MB each, under the mmap threshold
print(thread is not None, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_a_readied_heap_serves_the_search_arrays_without_fresh_page_faults():
    def faults(mode: str) -> tuple[str, int]:
        applied, count = _python(FAULTS, mode, CMPERF_SEARCH_THREADS="2")[-1].split()
        return applied, int(count)

    applied, readied = faults("ready")
    _, fresh = faults("plain")
    assert applied == "True"
    # Fresh: one fault per 4 KB page at least, or per 2 MB where numpy gets huge pages (about 48).
    # Readied: the arrays reuse the faulted-in heap, which holds 2 x 64 MB.
    assert readied < 0.2 * fresh, (readied, fresh)


STOPPED = """
import resource
from cmperf import cli_heap
thread = cli_heap.prepare_search_heap()
cli_heap.stop_faulting_in()
thread.join(timeout=10)
import numpy as np
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
arrays = [np.ones(2 ** 21) for _ in range(6)]
print(thread.is_alive(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_a_stopped_heap_thread_ends_and_frees_what_it_held():
    """Told the search starts, the thread stops after the block it is on and frees what it holds:
    it ends, and arrays larger than one block fault in the rest themselves (a thread left to run
    faults in all four blocks and leaves them none to take: `test_a_readied_heap_...`)."""
    alive, faults = _python(STOPPED, CMPERF_SEARCH_THREADS="2")[-1].split()
    assert alive == "False"
    assert int(faults) > 0


def test_the_heap_is_left_alone_when_asked(monkeypatch):
    monkeypatch.setenv(cli_heap.ALLOCATOR_ENV, "0")
    assert cli_heap.prepare_search_heap() is None
    assert cli_heap.reuse_freed_memory() is False


def test_the_heap_block_comes_from_the_heap():
    """Blocks under the mmap threshold: freed, they stay with the process for the search to reuse."""
    assert cli_heap.HEAP_BLOCK_BYTES < cli_heap.MMAP_THRESHOLD_BYTES <= cli_heap.TRIM_THRESHOLD_BYTES
    assert cli_heap.HEAP_BLOCK_BYTES % cli_heap.PAGE_BYTES == 0


ENTRY = """
import atexit, gc, sys, threading
sys.argv = ["cmperf"] + sys.argv[1:]
def state(how):
    print("frozen", gc.get_freeze_count() > 0, "heap", any(t.name == "cmperf-heap" for t in threading.enumerate()) or HEAP[0],
          "collector", gc.isenabled(), "stopped", h._STOP[0] is not None and h._STOP[0].is_set(), "ends", how)
atexit.register(state, "teardown")
HEAP = [False]
import cmperf.cli_heap as h
real = h.prepare_search_heap
def spy():
    HEAP[0] = True
    return real()
h.prepare_search_heap = spy
import cmperf.cli_entry as ce
end = ce.end_process
def ending(code):
    state("os._exit")
    end(code)
ce.end_process = ending
ce.run()
"""


@pytest.mark.parametrize("args, readies", [(["plan", "--no-write", "--devices", "16", "--hardware", "h100", "--model", "qwen3-30b-a3b"], True),
                                           (["plan", "--help"], False), (["hardware", "list"], False)])
def test_the_entry_point_readies_a_search_and_exits_frozen(args, readies):
    """A plan gets its heap faulted in (stopped when the search starts), runs without the cyclic
    collector and ends without the interpreter's teardown (its atexit handlers do not run); every
    command exits frozen."""
    assert args[0] in SEARCHING_COMMANDS or not readies
    how = "os._exit" if readies else "teardown"
    assert _python(ENTRY, *args)[-1] == f"frozen True heap {readies} collector {not readies} stopped {readies} ends {how}"


END = """
import sys
from cmperf.cli_entry import end_process
print("out", end="")
print("err", end="", file=sys.stderr)
end_process(eval(sys.argv[1]))
"""


@pytest.mark.parametrize("code, status, err", [(None, 0, "err"), (0, 0, "err"), (2, 2, "err"), ("bad input", 1, "errbad input\n")])
def test_ending_the_process_flushes_its_output_and_keeps_the_exit_status(code, status, err):
    """`end_process` gives the status `sys.exit(code)` would, with everything written flushed first."""
    p = subprocess.run([sys.executable, "-c", END, repr(code)], capture_output=True, text=True)
    assert (p.returncode, p.stdout, p.stderr) == (status, "out", err)


BLAS = """
import os, sys, threading
from cmperf.cli_entry import prepare_process
prepare_process(sys.argv[1:])
import numpy
print(os.environ.get("OPENBLAS_NUM_THREADS"), len(os.listdir("/proc/self/task")) - threading.active_count())
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts the process's threads in /proc")
def test_the_entry_point_starts_numpy_without_blas_worker_threads(monkeypatch):
    """One BLAS thread: numpy loads without OpenBLAS workers spinning on the other cores (no thread
    beside the interpreter's own), unless the environment asks for more."""
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    assert _python(BLAS, "hardware", "list")[-1] == "1 0"
    assert _python(BLAS, "plan", "--help", OPENBLAS_NUM_THREADS="2")[-1].split()[0] == "2"


def test_the_entry_point_keeps_the_exit_codes():
    p = subprocess.run([sys.executable, "-m", "cmperf", "plan", "--no-write", "--tpot", "0.001"], capture_output=True, text=True)
    assert p.returncode == 2
    assert p.stderr.startswith("cmperf: error:") and "Traceback" not in p.stderr


def test_a_usage_error_under_python_m_names_the_command_as_cmperf():
    """The hint names `cmperf plan`, not the program path `python -m cmperf` gives click."""
    p = subprocess.run([sys.executable, "-m", "cmperf", "plan", "-h"], capture_output=True, text=True)
    assert p.returncode == 2
    assert p.stderr.strip() == "cmperf: error: No such option: -h (see `cmperf plan --help`)"


def test_a_plan_ended_without_teardown_leaves_its_report_and_output_whole(tmp_path):
    """The plan's report files are written and renamed, and everything it printed reaches the pipe,
    before the process ends without the interpreter's teardown."""
    args = ["plan", "--devices", "16", "--hardware", "h100", "--model", "qwen3-30b-a3b", "--out", str(tmp_path), "--tag", "t"]
    p = subprocess.run([sys.executable, "-m", "cmperf", *args], capture_output=True, text=True, env={**os.environ, "COLUMNS": "1000"})
    assert p.returncode == 0, p.stderr
    folder = tmp_path / "plan-t"
    files = sorted(f.name for f in folder.iterdir())
    assert "plan.md" in files and not [f for f in files if f.startswith(".")], files
    assert str(folder) in p.stdout and p.stdout.endswith("\n")
    assert (folder / "plan.md").read_text().strip()
