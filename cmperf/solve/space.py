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
#: Largest grid `decode_grid`/`prefill_grid` materialise at once (the what-if commands); about 330
#: bytes of intermediate arrays per candidate. `cmperf plan` streams its search and has no limit.
MAX_CANDIDATES = 4_000_000
ATTN_TP_CHOICES = (1, 2, 4, 8)
MTP_CHOICES = (0, 1, 2)
PREFILL_TOKENS_CHOICES = tuple(2**i for i in range(10, 18))


def _distinct(sorted_values: np.ndarray) -> np.ndarray:
    """The distinct values of a sorted array (np.unique without its numpy.ma import at start-up)."""
    keep = np.ones(len(sorted_values), bool)
    keep[1:] = sorted_values[1:] != sorted_values[:-1]
    return sorted_values[keep]


def batch_grid(max_batch: int = 1024) -> np.ndarray:
    """Every batch up to 64, then 5% steps: an SLO-limited optimum is never more than 5% off."""
    small = np.arange(1, min(max_batch, 64) + 1, dtype=float)
    big = _distinct(np.round(np.geomspace(64, max(max_batch, 65), 58)))[1:]
    return _distinct(np.sort(np.concatenate([small, big[big <= max_batch]])))


@dataclass
class Structures:
    devices: np.ndarray
    ep: np.ndarray
    redundant: np.ndarray

    def __len__(self):
        return len(self.devices)

    def take(self, index) -> "Structures":
        return Structures(self.devices[index], self.ep[index], self.redundant[index])


def max_instance_devices(hw: Spec) -> int:
    """Largest instance searched: one system (`system.nodes` x `node.packages`, e.g. one
    CloudMatrix384). A larger budget runs more instances, never a larger one: an instance spanning
    two systems would move its all-to-all over the scale-out plane, and the capacity planner
    already packs instances into systems without splitting one."""
    return int(hw["system.nodes"] * hw["node.packages"])


def structures(hw: Spec, model: Spec, budget_devices: int, min_devices: int | None = None) -> Structures:
    """Instances of whole nodes up to the budget (and up to one system), one EP group per instance
    (EP = its dies), with every redundant-expert count the placement allows."""
    node = hw["node.packages"]
    lo = min_devices or node
    sizes = np.arange(lo, min(budget_devices, max_instance_devices(hw)) + 1, node, dtype=float)
    dev, red = (x.reshape(-1) for x in np.meshgrid(sizes, np.array(REDUNDANT_CHOICES, float), indexing="ij"))
    ep = dev * hw["package.dies"]
    shape = dv.moe_shape(model)
    valid = placement(shape["E"], shape["S"], ep, red)["valid"]
    return Structures(dev[valid], ep[valid], red[valid])


def check_dense(n_candidates: int, where: str = "--devices") -> None:
    """Refuse a grid too large to hold in memory at once (only the what-if commands hold whole grids)."""
    if n_candidates > MAX_CANDIDATES:
        raise SpecError(f"the search space has {n_candidates:,} candidates, more than one evaluation holds in memory "
                        f"(at most {MAX_CANDIDATES:,}); expected a smaller system (`system.nodes`) for the what-if commands, "
                        f"or use `cmperf plan`, which streams its search", where=where)


def mtp_axis(model: Spec, choices=None) -> tuple:
    """The speculative-token counts a decode search tries: `choices`, else MTP_CHOICES where the
    model has an MTP module and none where it has not."""
    if choices is not None:
        return tuple(choices)
    return MTP_CHOICES if model["mtp.num_nextn_predict_layers"] > 0 else (0,)


def axis(values, position: int, ndim: int) -> np.ndarray:
    shape = [1] * ndim
    shape[position] = len(values)
    return np.asarray(values, dtype=float).reshape(shape)
