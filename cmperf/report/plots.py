"""Slide-ready line plots (PNG and SVG) with matplotlib, imported here only, so commands that
write no plot never load it (its import alone costs a few hundred ms).

Every plot has a legend, ticks at round values with units and thousands separators, the
workload and hardware in the title, and, on sweeps, the baseline marked.
"""

from __future__ import annotations

import io

from cmperf.report.numbers import si

#: Figure size (inches) and resolution: 1,600 x 900 pixels, a 16:9 slide.
FIGSIZE_IN = (10.0, 5.625)
DPI = 160
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b")


def _formatter(unit: str):
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda v, _pos: si(v, unit))


def line_plot(series: dict[str, tuple[list[float], list[float]]], xlabel: str, ylabel: str, title: str, *,
              xunit: str = "", yunit: str = "", markers: dict[str, tuple[float, float]] | None = None,
              vlines: dict[str, float] | None = None, baseline: tuple[str, float] | None = None, logx: bool = False) -> dict[str, object]:
    """{'png': bytes, 'svg': str} of one figure: series name -> (xs, ys) lines, labelled marker
    points, dashed vertical lines (SLOs), and a baseline x marked with a dotted line."""
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.fonttype"] = "none"  # text stays text in the SVG: searchable, editable on a slide
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=FIGSIZE_IN, dpi=DPI)
    try:
        for i, (name, (xs, ys)) in enumerate(series.items()):
            ax.plot(xs, ys, marker="o", markersize=3, linewidth=2, color=COLOURS[i % len(COLOURS)], label=name)
        for j, (name, (x, y)) in enumerate((markers or {}).items()):
            ax.plot([x], [y], linestyle="none", marker="D^sv*P"[j % 6], markersize=9, markerfacecolor="none", markeredgewidth=2,
                    color="black" if j % 2 == 0 else "#555", label=name)
        for k, (name, x) in enumerate((vlines or {}).items()):
            ax.axvline(x, color="#888", linestyle="--", linewidth=1.2, label=name)
        if baseline is not None:
            ax.axvline(baseline[1], color="black", linestyle=":", linewidth=1.5, label=baseline[0])
        if logx:
            ax.set_xscale("log")
        else:
            ax.xaxis.set_major_locator(MaxNLocator(nbins=10, steps=[1, 2, 2.5, 5, 10]))
        ax.yaxis.set_major_locator(MaxNLocator(nbins=8, steps=[1, 2, 2.5, 5, 10]))
        ax.xaxis.set_major_formatter(_formatter(xunit))
        ax.yaxis.set_major_formatter(_formatter(yunit))
        ax.set_ylim(bottom=0)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=11)
        ax.grid(True, color="#e5e5e5")
        ax.legend(loc="best", frameon=True, fontsize=9)
        fig.tight_layout()
        png, svg = io.BytesIO(), io.StringIO()
        fig.savefig(png, format="png")
        fig.savefig(svg, format="svg")
    finally:
        plt.close(fig)
    return {"png": png.getvalue(), "svg": svg.getvalue()}
