"""Candidate deployments as an outer product of axes, so evaluation is one broadcast call.

Axis 0 enumerates the structure (instance size, expert-parallel degree, redundant experts); the
other axes are attention TP, microbatches, MTP tokens and the batch. Every intermediate of the
cost model then spans only the axes it depends on, which keeps a search of 10^5 - 10^6
candidates in a fraction of a second.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cmperf.compose.decode import MICROBATCH_CHOICES  # noqa: F401  (re-exported for the grids)
from cmperf.costs.moe import placement
from cmperf.errors import SpecError
from cmperf.specs import derived as dv
from cmperf.specs.loader import Spec

REDUNDANT_CHOICES = (0, 32, 64, 128)
#: Largest search evaluated at once: about 300 bytes of intermediate arrays per candidate.
MAX_CANDIDATES = 4_000_000
ATTN_TP_CHOICES = (1, 2, 4, 8)
MTP_CHOICES = (0, 1, 2)
PREFILL_TOKENS_CHOICES = tuple(2**i for i in range(10, 18))


def batch_grid(max_batch: int = 1024) -> np.ndarray:
    """Every batch up to 64, then 5% steps: an SLO-limited optimum is never more than 5% off."""
    small = np.arange(1, min(max_batch, 64) + 1)
    big = np.unique(np.round(np.geomspace(64, max(max_batch, 65), 58)))[1:]
    return np.unique(np.concatenate([small, big[big <= max_batch]])).astype(float)


@dataclass
class Structures:
    devices: np.ndarray
    ep: np.ndarray
    redundant: np.ndarray

    def __len__(self):
        return len(self.devices)


def structures(hw: Spec, model: Spec, budget_devices: int, min_devices: int | None = None) -> Structures:
    """Instances of whole nodes up to the budget, one EP group per instance (EP = its dies),
    with every redundant-expert count the placement allows."""
    node = hw["node.packages"]
    dies_pkg = hw["package.dies"]
    lo = min_devices or node
    per_structure = len(ATTN_TP_CHOICES) * len(MICROBATCH_CHOICES) * len(MTP_CHOICES) * len(batch_grid())
    max_sizes = MAX_CANDIDATES // (per_structure * len(REDUNDANT_CHOICES))
    if (budget_devices - lo) // node + 1 > max_sizes:
        most = lo + (max_sizes - 1) * node
        raise SpecError(f"a budget of {budget_devices:,} devices is more than one search holds in memory; expected at most "
                        f"{most:,} devices (instance sizes are searched in whole nodes); for larger fleets plan one system "
                        f"and scale it with `cmperf capacity`", where="--devices")
    sizes = np.arange(lo, budget_devices + 1, node)
    E, S = dv.moe_shape(model)["E"], dv.moe_shape(model)["S"]
    dev, ep, red = [], [], []
    for d in sizes:
        for r in REDUNDANT_CHOICES:
            e = int(d) * dies_pkg
            if bool(placement(E, S, e, r)["valid"]):
                dev.append(int(d))
                ep.append(e)
                red.append(r)
    return Structures(np.array(dev, float), np.array(ep, float), np.array(red, float))


def axis(values, position: int, ndim: int) -> np.ndarray:
    shape = [1] * ndim
    shape[position] = len(values)
    return np.asarray(values, dtype=float).reshape(shape)
