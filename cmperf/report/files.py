"""Atomic report writing: a run directory appears whole or not at all."""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import socket
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

from cmperf.errors import SpecError, WriteError
from cmperf.inputs import check_tag, safe_text

#: A hidden temporary folder older than this is left over from a killed run, whatever its name says:
#: writing a report takes seconds, so an hour leaves a wide margin for slow disks.
STALE_AGE_S = 3600.0
#: Attempts to swap a folder into place while concurrent runs with --overwrite swap theirs.
SWAP_ATTEMPTS = 100
_HOST = hashlib.sha1(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:8]
#: Our temporary folders: .PREFIX-PID-HOST-... (see _tmp_prefix).
_OURS = re.compile(r"^\.[a-z]+-(\d+)-([0-9a-f]{8})-")


def _tmp_prefix(prefix: str) -> str:
    """Hidden, and naming the process and host that own it, so a later run can tell a stale one."""
    return f".{prefix}-{os.getpid()}-{_HOST}-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def clean_stale(parent: Path, prefix: str, now: float | None = None) -> list[Path]:
    """Remove hidden temporary folders that killed runs left in `parent`: ours whose process (on
    this host) is gone, and any of this prefix's older than STALE_AGE_S. Returns what was removed."""
    now = time.time() if now is None else now
    removed = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return removed
    for e in entries:
        if not e.name.startswith(".") or not e.is_dir(follow_symlinks=False):
            continue
        m = _OURS.match(e.name)
        # Earlier versions' names: mkdtemp's .PREFIX- plus 8 random characters, and .PREFIX-TAG.old-PID of --overwrite.
        legacy = re.fullmatch(rf"\.{re.escape(prefix)}-([a-z0-9_]{{8}}|.+\.old-\d+)", e.name)
        if not m and not legacy:
            continue
        try:
            age = now - e.stat(follow_symlinks=False).st_mtime
        except OSError:
            continue
        dead = bool(m) and m.group(2) == _HOST and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1)))
        if dead or age > STALE_AGE_S:
            shutil.rmtree(e.path, ignore_errors=True)
            removed.append(Path(e.path))
    return removed


def write_run_dir(parent: str | Path, prefix: str, files: dict[str, str], tag: str | None = None, overwrite: bool = False) -> Path:
    """Write `files` (name -> text) into parent/prefix-TAG atomically and return its path.

    Files go to a private temporary directory first, which is then renamed into place, so a
    reader never sees a half-written report and two concurrent runs never mix their files. Without
    a tag the name is a UTC timestamp, made unique with a counter; an existing directory is
    replaced only when `overwrite` is set (concurrent runs replacing the same tag: the last wins,
    each complete). Text is written with control characters made visible. Any failure to write is
    one WriteError naming the directory.
    """
    check_tag(tag)
    parent = Path(parent)
    try:
        return _write(parent, prefix, files, tag, overwrite)
    except (OSError, ValueError) as exc:  # ValueError: a path with a NUL byte (possible from Python only)
        raise WriteError("report", parent, exc) from None


def _write(parent: Path, prefix: str, files: dict[str, str], tag: str | None, overwrite: bool) -> Path:
    if parent.exists() and not parent.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
    parent.mkdir(parents=True, exist_ok=True)
    clean_stale(parent, prefix)
    stamp = tag or datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    tmp = Path(tempfile.mkdtemp(prefix=_tmp_prefix(prefix), dir=parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; a report folder is as shared as the umask says
        for name, text in files.items():
            binary = isinstance(text, bytes)  # a PNG plot
            with open(tmp / name, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as fh:
                fh.write(text if binary else safe_text(text))
                fh.flush()
                os.fsync(fh.fileno())
        if tag and overwrite:
            return _swap_in(parent, prefix, tmp, parent / f"{prefix}-{stamp}")
        n = 1
        while True:
            final = parent / (f"{prefix}-{stamp}" if n == 1 else f"{prefix}-{stamp}-{n}")
            try:
                tmp.rename(final)  # atomic; fails if `final` exists and is not empty
                return final
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.EISDIR, errno.ENOTDIR):
                    raise
                if tag:
                    raise SpecError(f"{safe_text(final)} exists; choose another --tag or pass --overwrite", where="--tag") from None
                n += 1
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _swap_in(parent: Path, prefix: str, tmp: Path, final: Path) -> Path:
    """Put `tmp` at `final`, moving any folder there aside first; retried while concurrent runs do
    the same, so every run ends with a complete folder at the asked name (the last one wins)."""
    moved: list[Path] = []
    try:
        for _ in range(SWAP_ATTEMPTS):
            try:
                tmp.rename(final)
                return final
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.EISDIR, errno.ENOTDIR):
                    raise
            old = parent / f"{_tmp_prefix(prefix)}old-{uuid.uuid4().hex[:8]}"
            try:
                final.rename(old)
                moved.append(old)
            except FileNotFoundError:
                pass  # another run moved it first: try again
        raise OSError(errno.EBUSY, f"{final} kept changing while {SWAP_ATTEMPTS} concurrent runs replaced it")
    finally:
        for old in moved:
            shutil.rmtree(old, ignore_errors=True)
