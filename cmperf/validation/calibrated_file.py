"""Write a calibrated hardware file: the original text with the fitted values replaced in place.

Each fitted value gets kind "fitted" and a note giving the measurements file, the number of rows
and the residuals, plus a [sources] entry for the measurements file. The file appears whole or not
at all (written to a temporary file, validated, then renamed).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from cmperf.errors import SpecError, WriteError
from cmperf.inputs import safe_text
from cmperf.specs.loader import parse_spec

#: Digits a fitted value is written with.
SIGNIFICANT_DIGITS = 6


_HEADER_RE = re.compile(r"^\s*\[([A-Za-z0-9_.\-]+)\]\s*(#.*)?$")


def _toml_str(s: str) -> str:
    return json.dumps(s, ensure_ascii=True)


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return repr(v)
    if isinstance(v, float):
        t = f"{v:.{SIGNIFICANT_DIGITS + 1}g}" if math.isfinite(v) else repr(v)
        if float(t) != v:
            t = repr(v)
        return t if any(c in t for c in ".en") else t + ".0"
    return _toml_str(str(v))


def _entry_line(name: str, entry: dict) -> str:
    parts = ", ".join(f"{k} = {_toml_value(v)}" for k, v in entry.items())
    return f"{name} = {{ {parts} }}\n"


def _edit_text(text: str, tables: dict[str, dict[str, dict]], added_sources: dict[str, dict], meta: dict[str, str]) -> str:
    """Replace entries of `tables` ({section: {key: entry}}) line by line, keeping comments and layout.

    Raises ValueError when the file's layout is not the one-inline-table-per-line form."""
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    section = None
    last_line_of: dict[str, int] = {}
    found: dict[tuple[str, str], int] = {}
    for i, ln in enumerate(lines):
        m = _HEADER_RE.match(ln)
        if m:
            section = m.group(1)
            last_line_of[section] = i
            continue
        if section is None or not ln.strip() or ln.lstrip().startswith("#"):
            continue
        last_line_of[section] = i
        km = re.match(r"^\s*([A-Za-z0-9_\-]+)\s*=", ln)
        if km:
            if (section, km.group(1)) in found:
                raise ValueError("duplicate key")
            found[(section, km.group(1))] = i
    replace: dict[int, str] = {}
    insert_after: dict[int, list[str]] = {}
    append: list[str] = []
    for key, value in meta.items():
        if ("meta", key) not in found:
            raise ValueError("meta layout")
        replace[found[("meta", key)]] = f"{key} = {_toml_str(value)}\n"
    if "sources" not in last_line_of:
        raise ValueError("sources layout")
    for sid, src in added_sources.items():
        insert_after.setdefault(last_line_of["sources"], []).append(_entry_line(sid, src))
    for sec, entries in tables.items():
        for key, entry in entries.items():
            line = _entry_line(key, entry)
            if (sec, key) in found:
                i = found[(sec, key)]
                if not re.match(r"^\s*" + re.escape(key) + r"\s*=\s*\{", lines[i]):
                    raise ValueError("not an inline table")
                replace[i] = line
            elif sec in last_line_of:
                insert_after.setdefault(last_line_of[sec], []).append(line)
            else:
                append.append(f"\n[{sec}]\n{line}")
    out = []
    for i, ln in enumerate(lines):
        out.append(replace.get(i, ln))
        out.extend(insert_after.get(i, []))
    return "".join(out + append)


def _regenerate(doc: dict, header: str) -> str:
    """The whole file from its parsed form (used when the original's layout cannot be edited in place)."""
    out = [header, "\n[meta]\n"]
    out += [f"{k} = {_toml_str(v)}\n" for k, v in doc["meta"].items()]
    out.append("\n[sources]\n")
    out += [_entry_line(k, v) for k, v in doc["sources"].items()]
    for sec, table in doc.items():
        if sec in ("meta", "sources"):
            continue
        out.append(f"\n[{sec}]\n")
        out += [_entry_line(k, v) for k, v in table.items()]
    return "".join(out)


def default_out_path(hardware_path: Path) -> Path:
    """./hardware/NAME-calibrated.toml in the working directory: where name lookup finds it first,
    never inside the installed package."""
    return Path.cwd() / "hardware" / f"{hardware_path.stem}-calibrated.toml"


def write_calibrated(cal, out: str | Path | None = None, overwrite: bool = False) -> Path:
    """Write the original hardware file of a `Calibration` with the fitted values replaced (kind "fitted", a note with
    the fit's residuals, a [sources] entry for the measurements file) and check that it loads.
    Any failure of the file system is one WriteError naming the path."""
    try:
        return _write_calibrated(cal, out, overwrite)
    except OSError as exc:  # e.g. a name too long to look up, a folder that vanished
        raise WriteError("calibrated file", out if out is not None else default_out_path(cal.hardware_path), exc) from None


def _write_calibrated(cal, out: str | Path | None, overwrite: bool) -> Path:
    import tomllib

    src_path = cal.hardware_path
    out_path = Path(out) if out is not None else default_out_path(src_path)
    where = "--out"
    if out_path.suffix != ".toml":
        raise SpecError(f"expected a path ending in .toml, got {str(out_path)!r}", where=where)
    if out_path.resolve() == src_path.resolve():
        raise SpecError(f"refusing to overwrite the original hardware file {src_path}; choose another --out", where=where)
    if out_path.is_dir():
        raise SpecError(f"{safe_text(out_path)} is a directory; expected a file path ending in .toml", where=where)
    if out_path.exists() and not overwrite:
        raise SpecError(f"{safe_text(out_path)} exists; pass --overwrite to replace it", where=where)
    if out is None:
        try:
            out_path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WriteError("calibrated file", out_path, exc) from None
    if not out_path.parent.is_dir():
        raise SpecError(f"no such directory: {safe_text(out_path.parent)}", where=where)

    text = src_path.read_text(encoding="utf-8-sig")
    doc = tomllib.loads(text)
    data = cal.measurements_path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()[:12]
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    sid = "calibration"
    n = 2
    while sid in doc.get("sources", {}):
        sid, n = f"calibration-{n}", n + 1
    mname = safe_text(cal.measurements_path.name)  # it goes into notes, which refuse control characters
    n_rows = len(cal.measurements)
    source = {
        "title": f"cmperf calibrate: {n_rows} measurements in {mname} (sha256 {digest}), fitted {stamp}",
        "url": cal.measurements_path.resolve().as_uri(),
    }
    fit_text = (
        f"relative residuals RMS {100 * cal.rms('after'):.2f}%, max {100 * cal.max_abs('after'):.2f}% "
        f"(before: RMS {100 * cal.rms('before'):.2f}%, max {100 * cal.max_abs('before'):.2f}%)"
    )
    tables: dict[str, dict[str, dict]] = {}
    for key in cal.fitted:
        sec, name = key.split(".", 1)
        old = doc.get(sec, {}).get(name, {})
        was = f"was {_toml_value(old.get('value', cal.before[key]))} ({old.get('kind', 'paper')}, source {old.get('source', '?')})"
        note = f"fitted by cmperf calibrate to {mname} ({n_rows} rows, {len(cal.fitted)} parameters jointly): {fit_text}; {was}"
        tables.setdefault(sec, {})[name] = {"value": cal.after[key], "source": sid, "kind": "fitted", "note": note}
    meta = {"name": out_path.stem, "description": f"{doc['meta']['description']}; calibrated to {mname}"}
    header = (
        f"# Calibrated copy of {src_path.name}, written by `cmperf calibrate` from {mname} on {stamp}.\n"
        f"# Fitted: {', '.join(cal.fitted)}. Every other value is the original's.\n"
    )
    try:
        new_text = header + "#\n" + _edit_text(text, tables, {sid: source}, meta)
    except ValueError:
        new_text = None
    if new_text is None or not _same_apart_from_fit(new_text, doc, tables, {sid: source}, meta):
        regen = {**doc, "meta": {**doc["meta"], **meta}, "sources": {**doc["sources"], sid: source}}
        for sec, entries in tables.items():
            regen[sec] = {**regen.get(sec, {}), **entries}
        new_text = _regenerate(regen, header)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{out_path.stem}-", suffix=".toml", dir=out_path.parent)
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes it private; the file is as shared as any the user writes
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(new_text)
            fh.flush()
            os.fsync(fh.fileno())
        spec = parse_spec(Path(tmp), "hardware")
        for key in cal.fitted:
            assert spec.provenance[key].kind == "fitted" and spec[key] == cal.after[key], key
        os.replace(tmp, out_path)
    except OSError as exc:
        raise WriteError("calibrated file", out_path, exc) from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    return out_path


def _same_apart_from_fit(new_text: str, doc: dict, tables: dict, sources: dict, meta: dict) -> bool:
    """True when the edited text parses to the original document with exactly the intended changes."""
    import tomllib

    try:
        new = tomllib.loads(new_text)
    except tomllib.TOMLDecodeError:
        return False
    want = {sec: dict(t) for sec, t in doc.items()}
    want["meta"] = {**want["meta"], **meta}
    want["sources"] = {**want["sources"], **sources}
    for sec, entries in tables.items():
        want[sec] = {**want.get(sec, {}), **entries}
    return new == want
