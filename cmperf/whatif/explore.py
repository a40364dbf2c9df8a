"""`cmperf explore SPEC.toml`: a design space of hardware, model, workload and SLO keys, sampled and
re-planned point by point on a Dask cluster, one table row per design point.

A spec file names the base (hardware, model, workload, SLOs), the keys that vary - each a range
`{ min, max }` (with `steps` for a full grid) or a list of values - and the sampling:

    sampling = "latin-hypercube"    # or "grid" (every combination) or "random"
    samples = 1000                  # points, for random and latin-hypercube
    seed = 0
    [keys]
    "die.hbm_bandwidth_bytes_per_s" = { min = 0.8e12, max = 3.2e12 }
    "scaleup.link_bandwidth_bytes_per_s" = { min = 1.4e10, max = 5.6e10 }
    "workload.input_len" = [1024, 4096, 16384]

Every point is the light re-plan of the what-if commands (`core.best`, explained): the best decode
deployment at the TPOT SLO and the best prefill deployment, with what binds each. Points go to the
cluster in blocks; each finished block is checkpointed next to the output (OUT.partial/), so a run
killed part way resumes where it stopped; the table is written atomically at the end.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tomllib
from pathlib import Path

import numpy as np

from cmperf.errors import SpecError
from cmperf.whatif import parallel  # noqa: F401  (specs travel to the workers as plain dicts)
from cmperf.whatif.core import Scenario, best, check_scenario, explain, key_info, scenario, set_value
from cmperf.whatif.sweep import sweepable_keys
from cmperf.specs.loader import unknown_key_message

SAMPLINGS = ("grid", "random", "latin-hypercube")
TOP_KEYS = {"hardware", "model", "sampling", "samples", "seed", "devices", "tpot_ms", "ttft_ms", "input_len", "output_len",
            "mtp_acceptance", "prefix_hit", "eplb", "set", "keys"}
MAX_POINTS = 1_000_000
#: Points per task, at most: small enough that a kill loses little, large enough to keep grid memos warm.
MAX_BLOCK = 25
FORMATS = (".parquet", ".csv")


def _fail(message: str, spec_path: str, key: str | None = None):
    raise SpecError(message, where=f"{spec_path}" + (f" [{key}]" if key else ""))


def _number(v, spec_path, what):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        _fail(f"expected a finite number for {what}, got {v!r}", spec_path)
    return v


def load_spec(path: str) -> dict:
    """Read and check a spec file; every problem is a SpecError naming the file and the key."""
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpecError(f"no such file: {path}", where="SPEC") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read {path}: {exc}", where="SPEC") from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"not valid TOML: {exc}", where=path) from None
    unknown = sorted(set(raw) - TOP_KEYS)
    if unknown:
        _fail(f"unknown setting '{unknown[0]}'; expected one of {', '.join(sorted(TOP_KEYS))}", path)
    sampling = raw.get("sampling", "grid")
    if sampling not in SAMPLINGS:
        _fail(f"expected sampling to be one of {', '.join(SAMPLINGS)}, got {sampling!r}", path, "sampling")
    keys = raw.get("keys")
    if not isinstance(keys, dict) or not keys:
        _fail("expected a [keys] table naming at least one key, e.g. \"die.hbm_bandwidth_bytes_per_s\" = { min = 0.8e12, max = 3.2e12 }", path)
    samples = raw.get("samples")
    if sampling != "grid":
        if isinstance(samples, bool) or not isinstance(samples, int) or not 1 <= samples <= MAX_POINTS:
            _fail(f"expected samples, a whole number from 1 to {MAX_POINTS:,}, for {sampling} sampling; got {samples!r}", path, "samples")
    seed = raw.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        _fail(f"expected seed to be a whole number >= 0, got {seed!r}", path, "seed")
    sets = raw.get("set", {})
    if not isinstance(sets, dict):
        _fail("expected [set] to be a table of KEY = VALUE overrides", path, "set")
    base = _base(raw, path)
    axes = {k: _axis(k, v, base, sampling, path) for k, v in keys.items()}
    n = math.prod(len(a["values"]) for a in axes.values()) if sampling == "grid" else samples
    if n > MAX_POINTS:
        _fail(f"{n:,} design points exceed the limit of {MAX_POINTS:,}; use fewer steps or values", path, "keys")
    return {"path": path, "sampling": sampling, "samples": n, "seed": seed, "axes": axes, "base": base, "raw": raw}


def _base(raw: dict, path: str) -> Scenario:
    tpot = raw.get("tpot_ms", 50.0)
    fields = {"tpot_ms": (float(_number(tpot, path, "tpot_ms")),)}
    if "ttft_ms" in raw:
        fields["ttft_ms"] = float(_number(raw["ttft_ms"], path, "ttft_ms"))
    for k in ("input_len", "output_len", "devices"):
        if k in raw:
            v = raw[k]
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                _fail(f"expected {k} to be a whole number >= 1, got {v!r}", path, k)
            fields[k] = v
    for k in ("mtp_acceptance", "prefix_hit"):
        if k in raw:
            fields[k] = float(_number(raw[k], path, k))
    if "eplb" in raw:
        fields["eplb"] = raw["eplb"]
    sets = {str(k): str(v) for k, v in raw.get("set", {}).items()}
    for k in ("hardware", "model"):
        if k in raw and not isinstance(raw[k], str):
            _fail(f"expected {k} to be a name or a .toml path, got {raw[k]!r}", path, k)
    names = {k: raw[k] for k in ("hardware", "model") if k in raw}  # else the planner's defaults
    return scenario(**names, layers=[(sets, f"{path} [set]")], hardware_where=f"{path} [hardware]", **fields)


def _axis(key: str, v, base: Scenario, sampling: str, path: str) -> dict:
    valid = sweepable_keys()
    if key not in valid:
        _fail(unknown_key_message(key, valid), path, f"keys.{key}")
    integer = key_info(key)[0] == "int"
    where = f"{path} [keys.{key}]"
    if isinstance(v, list):
        if not v:
            _fail("expected at least one value", path, f"keys.{key}")
        values = [_number(x, path, f"keys.{key}") for x in v]
        for x in values:
            set_value(base, key, x, where, allow_slo=True)
        return {"kind": "list", "values": values, "integer": integer}
    if not isinstance(v, dict) or set(v) - {"min", "max", "steps"} or not {"min", "max"} <= set(v):
        _fail("expected a list of values or a range { min = A, max = B } (with steps = N for grid sampling)", path, f"keys.{key}")
    lo, hi = _number(v["min"], path, f"keys.{key}.min"), _number(v["max"], path, f"keys.{key}.max")
    if not lo < hi:
        _fail(f"expected min < max, got {lo!r} and {hi!r}", path, f"keys.{key}")
    for x in (lo, hi):
        set_value(base, key, round(x) if integer else x, where, allow_slo=True)
    steps = v.get("steps")
    if sampling == "grid":
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
            _fail("expected steps = N (2 or more) for a range in grid sampling", path, f"keys.{key}")
        values = np.linspace(lo, hi, steps)
        values = sorted(set(int(round(x)) for x in values)) if integer else [float(x) for x in values]
        return {"kind": "list", "values": values, "integer": integer}
    return {"kind": "range", "min": lo, "max": hi, "integer": integer, "values": [lo, hi]}


def design_points(spec: dict) -> list[dict]:
    """The points, in a fixed order: every combination (grid), or `samples` draws (random, Latin hypercube)."""
    axes = spec["axes"]
    names = list(axes)
    if spec["sampling"] == "grid":
        grids = np.meshgrid(*[np.arange(len(axes[k]["values"])) for k in names], indexing="ij")
        idx = np.stack([g.reshape(-1) for g in grids], axis=1)
        return [{k: axes[k]["values"][int(i)] for k, i in zip(names, row)} for row in idx]
    n = spec["samples"]
    if spec["sampling"] == "random":
        u = np.random.default_rng(spec["seed"]).random((n, len(names)))
    else:
        from scipy.stats import qmc

        u = qmc.LatinHypercube(d=len(names), seed=spec["seed"]).random(n)
    out = []
    for row in u:
        point = {}
        for k, x in zip(names, row):
            a = axes[k]
            if a["kind"] == "list":
                v = a["values"][min(int(x * len(a["values"])), len(a["values"]) - 1)]
            else:
                v = a["min"] + float(x) * (a["max"] - a["min"])
                v = int(round(v)) if a["integer"] else v
            point[k] = v
        out.append(point)
    return out


def evaluate_block(base: Scenario, block: list[tuple[int, dict]]) -> list[dict]:
    """One row per design point: its inputs, the best decode and prefill deployments, what binds.
    Each search runs in one thread: the cluster's workers already spread the points over cores."""
    from cmperf.solve.threads import search_as_worker

    search_as_worker(override=False)
    rows = []
    for i, point in block:
        row = {"point": i, **point}
        try:
            sc = base
            for k, v in point.items():
                sc = set_value(sc, k, v, "design point", allow_slo=True, record=False)
            sc = check_scenario(sc, where_len="design point", where_devices="design point")
            res = best(sc)
        except SpecError as exc:
            sc, res = None, {"decode": [None], "prefill": None, "notes": [f"invalid point: {exc}"]}
        d = explain(sc, res["decode"][0]) if sc else None
        p = explain(sc, res["prefill"]) if sc else None
        row.update({"slo_tpot_ms": (sc or base).tpot_ms[0], "slo_ttft_ms": (sc or base).ttft_ms,
                    "decode_tokens_per_s_per_device": d and d["tokens_per_s_per_device"], "decode_tpot_ms": d and d["latency_ms"],
                    "decode_deployment": d and d["deployment"], "decode_binding": d and d["binding"],
                    "prefill_tokens_per_s_per_device": p and p["tokens_per_s_per_device"], "prefill_ttft_ms": p and p["latency_ms"],
                    "prefill_deployment": p and p["deployment"], "prefill_binding": p and p["binding"],
                    "note": "; ".join(res["notes"]) or None})
        rows.append(row)
    return rows


# ---- the run: blocks on a cluster, checkpoints, the table ---------------------------------------


def check_output(out: str, overwrite: bool) -> Path:
    p = Path(out)
    if p.suffix not in FORMATS:
        raise SpecError(f"expected a .parquet or .csv file, got {out!r}", where="--out")
    if p.exists() and not overwrite:
        raise SpecError(f"{out} exists; pass --overwrite to replace it", where="--out")
    if not p.parent.is_dir():
        raise SpecError(f"no such directory: {p.parent}", where="--out")
    return p


def fingerprint(spec: dict) -> str:
    return hashlib.sha256(json.dumps(spec["raw"], sort_keys=True, default=str).encode()).hexdigest()[:16]


def _checkpoint_dir(out: Path, spec: dict) -> Path:
    d = out.with_name(out.name + ".partial")
    tag = d / "spec.sha"
    if d.exists() and (not tag.exists() or tag.read_text().strip() != fingerprint(spec)):
        for f in d.iterdir():  # checkpoints of another spec: start over
            f.unlink()
    d.mkdir(exist_ok=True)
    tag.write_text(fingerprint(spec) + "\n")
    return d


def _write_atomic(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _done_blocks(d: Path) -> dict[int, list]:
    done = {}
    for f in d.glob("block-*.json"):
        try:
            done[int(f.stem.split("-")[1])] = json.loads(f.read_text())
        except (ValueError, json.JSONDecodeError):
            f.unlink()  # a torn write cannot happen (atomic rename), but never trust it
    return done


def write_table(path: Path, rows: list[dict]) -> None:
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        _write_atomic(path, lambda tmp: pq.write_table(pa.Table.from_pylist(rows), tmp))
    else:
        import csv

        def write(tmp):
            with open(tmp, "w", newline="", encoding="utf-8") as fh:
                w = csv.DictWriter(fh, fieldnames=list(rows[0]))
                w.writeheader()
                w.writerows(rows)

        _write_atomic(path, write)


def run(spec: dict, out: Path, client, progress=None) -> dict:
    """Evaluate every design point not already checkpointed on the Dask `client`; write the table."""
    from dask.distributed import as_completed

    points = design_points(spec)
    workers = max(1, len(client.scheduler_info().get("workers", {})))
    size = max(1, min(MAX_BLOCK, math.ceil(len(points) / (workers * 4))))
    blocks = [list(enumerate(points))[s:s + size] for s in range(0, len(points), size)]
    d = _checkpoint_dir(out, spec)
    done = {b: rows for b, rows in _done_blocks(d).items() if b < len(blocks)}
    if progress:
        for b in done:
            for _ in blocks[b]:
                progress()
    todo = [b for b in range(len(blocks)) if b not in done]
    base = client.scatter(spec["base"], broadcast=True) if todo else None
    futures = {client.submit(evaluate_block, base, blocks[b], pure=False): b for b in todo}
    for fut in as_completed(futures):
        b = futures[fut]
        rows = fut.result()
        _write_atomic(d / f"block-{b:06d}.json", lambda tmp: tmp.write_text(json.dumps(rows)))
        done[b] = rows
        if progress:
            for _ in rows:
                progress()
    rows = [r for b in range(len(blocks)) for r in done[b]]
    write_table(out, rows)
    for f in d.iterdir():
        f.unlink()
    d.rmdir()
    return {"points": len(rows), "resumed": len(points) - sum(len(blocks[b]) for b in todo), "path": str(out), "rows": rows}
