"""Atomic report writing: a run directory appears whole or not at all."""

from __future__ import annotations

import os
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from cmperf.errors import SpecError


def write_run_dir(parent: str | Path, prefix: str, files: dict[str, str], tag: str | None = None, overwrite: bool = False) -> Path:
    """Write `files` (name -> text) into parent/prefix-TAG atomically and return its path.

    Files go to a private temporary directory first, which is then renamed into place, so a
    reader never sees a half-written report and two concurrent runs never mix their files. Without
    a tag the name is a UTC timestamp, made unique with a counter; an existing directory is
    replaced only when `overwrite` is set.
    """
    parent = Path(parent)
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SpecError(f"cannot create the report directory: {exc}", where=f"--out {parent}") from None
    stamp = tag or datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    tmp = Path(tempfile.mkdtemp(prefix=f".{prefix}-", dir=parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; a report folder is as shared as the umask says
    try:
        for name, text in files.items():
            binary = isinstance(text, bytes)  # a PNG plot
            with open(tmp / name, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
        n = 1
        while True:
            final = parent / (f"{prefix}-{stamp}" if n == 1 else f"{prefix}-{stamp}-{n}")
            if final.exists() and overwrite and tag:
                old = parent / f".{final.name}.old-{os.getpid()}"
                final.rename(old)
                tmp.rename(final)
                shutil.rmtree(old, ignore_errors=True)
                return final
            try:
                tmp.rename(final)  # atomic; fails if `final` exists and is not empty
                return final
            except OSError:
                if tag and not overwrite:
                    raise SpecError(f"{final} exists; choose another --tag or pass --overwrite", where="--tag") from None
                n += 1
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
