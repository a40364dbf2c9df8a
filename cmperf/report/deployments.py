"""Present a comparison of two deployments: one row per metric, baseline against variant."""

from __future__ import annotations

from cmperf import __version__
from cmperf.report.render import emit, fmt_number, to_csv, to_markdown


def _shown(rows: list[dict]) -> list[dict]:
    out = []
    for r in rows:
        d = r["delta_pct"]
        show = lambda v: fmt_number(v) if isinstance(v, float) else v  # noqa: E731
        out.append({"metric": r["metric"], "baseline": show(r["baseline"]), "variant": show(r["variant"]),
                    "change": "" if d is None else f"{d:+.1f}%"})
    return out


def _title(result: dict) -> str:
    a, b = result["baseline"], result["variant"]
    return f"cmperf {__version__} compare: {a.deployment.name or 'baseline'} vs {b.deployment.name or 'variant'}"


def deployment_compare_files(result: dict) -> dict[str, str]:
    md = "\n".join([f"# {_title(result)}", "", to_markdown(_shown(result["rows"])), "", *[f"- {n}" for n in result["notes"]], ""])
    return {"compare.md": md, "compare.csv": to_csv(result["rows"])}


def print_deployment_compare(result: dict, fmt: str, path: str | None = None) -> None:
    if fmt in ("json", "csv"):
        emit(result["rows"], fmt)
        return
    emit(_shown(result["rows"]), fmt, title=_title(result))
    for note in result["notes"]:
        print(f"note: {note}")
    if path:
        print(f"reports written to {path}/")
