"""Expert placement, destinations per token and the hottest expert rank's load, in closed form."""

from __future__ import annotations

import numpy as np

from cmperf.specs.loader import Spec
from cmperf.units import DTYPE_BYTES


def placement(n_routed, n_shared, ep, redundant):
    """How `ep` ranks hold the routed, redundant and shared experts.

    Two layouts, as deployed in the paper:
    - dedicated (ep >= routed + redundant + 1): one routed instance per rank, the remaining
      ranks each hold one shared-expert copy (decode EP320: 256 + 32 redundant + 32 shared);
    - replicated ((routed + redundant) % ep == 0): every rank holds (routed + redundant)/ep routed
      experts and its own shared-expert copy (prefill EP32: 8 routed + 1 redundant + 1 shared).
    Returns dict of arrays: valid, dedicated, routed_per_rank, routed_ranks, shared_copies.
    """
    ep = np.asarray(ep, dtype=float)
    redundant = np.asarray(redundant, dtype=float)
    instances = n_routed + redundant
    dedicated = ep >= instances + (1 if n_shared else 0)
    replicated = (~dedicated) & (np.mod(instances, ep) == 0)
    shared_copies = np.where(dedicated, ep - instances, ep) if n_shared else np.zeros_like(ep)
    # A dense model (no routed experts) has nothing to place and no redundant copies to make.
    return {
        "valid": (dedicated | replicated) & (ep >= 1) & ((n_routed > 0) | (redundant == 0)),
        "dedicated": dedicated,
        "routed_per_rank": np.where(dedicated, 1.0, instances / ep),
        "routed_ranks": np.where(dedicated, instances, ep),
        "shared_copies": shared_copies,
        "experts_per_rank": np.where(dedicated, 1.0, instances / ep + (1 if n_shared else 0)),
    }


def expected_destinations(n_routed, n_group, topk_group, top_k, ep):
    """Expected distinct ranks among one token's routed experts, under group-limited routing.

    A token picks `topk_group` of `n_group` groups, then `top_k` experts among those groups'
    C = topk_group * n_routed / n_group candidates; with c experts per rank the candidates span
    R = C / c ranks and (hypergeometric) P(rank untouched) = C(C - c, k) / C(C, k).
    With more than one group per rank, the candidates' ranks are the ranks of the chosen groups.
    Assumes: experts placed contiguously by index, groups contiguous; uniform choice within groups.
    """
    ep = np.asarray(ep, dtype=float)
    group = n_routed / n_group
    cand = topk_group * group
    c = np.maximum(n_routed / ep, 1.0)
    c_in = np.minimum(c, group)
    within = (cand / c_in) * (1.0 - _ratio_of_falling_factorials(cand - c_in, cand, top_k))
    groups_per_rank = np.maximum(c / group, 1.0)
    q = np.where(n_group - groups_per_rank >= topk_group, _ratio_of_falling_factorials(n_group - groups_per_rank, n_group, topk_group), 0.0)
    across = ep * (1.0 - q)
    return np.where(c <= group, within, np.minimum(across, top_k))


def _ratio_of_falling_factorials(a, b, k):
    """C(a, k) / C(b, k) = prod_{i<k} (a - i) / (b - i), for real a <= b and whole k."""
    out = np.ones(np.broadcast(np.asarray(a, float), np.asarray(b, float)).shape)
    for i in range(int(k)):
        out = out * np.maximum(a - i, 0.0) / (b - i)
    return out


def hottest_rank_load(mean_load, experts_on_rank, n_ranks, skew_cv, tokens=None, top_k=None):
    """Expected load of the busiest of `n_ranks` ranks with the given mean load (tokens).

        L_max = min(mu + sqrt(mu^2 s^2 / c + mu) * sqrt(2 ln R),  T x min(k, c))
    mu: mean tokens per rank; Poisson sampling noise (variance mu) plus expert-popularity spread
    with coefficient of variation s over c independently placed experts; the expected maximum of R
    near-normal loads is mu + sigma * sqrt(2 ln R) (Gumbel tail). No rank can receive more rows
    than every one of the T tokens routed to it, each to at most min(k, c) of its experts: with
    `tokens` and `top_k` given, that bound caps the tail (a large skew otherwise exceeds it).
    Assumes: independent popularity per expert; s already reduced by load balancing.
    """
    mu = np.asarray(mean_load, dtype=float)
    c = np.maximum(np.asarray(experts_on_rank, dtype=float), 1.0)
    sigma = np.sqrt(mu * mu * skew_cv * skew_cv / c + mu)
    z = np.sqrt(2.0 * np.log(np.maximum(np.asarray(n_ranks, dtype=float), 1.0)))
    hot = mu + sigma * z
    if tokens is not None and top_k is not None:
        hot = np.minimum(hot, np.asarray(tokens, dtype=float) * np.minimum(top_k, c))
    return hot


def popularity_cv(global_skew, eplb_residual, request_skew, requests_mixed, perfect=False):
    """Coefficient of variation of expert load in one microbatch of an EP group.

        s^2 = (s_glob x r_eplb)^2 + s_req^2 / m
    s_glob: long-run spread of expert popularity, of which load balancing (EPLB with redundant
    experts) leaves the fraction r_eplb; s_req: spread within one request's tokens, which route
    alike and so add up coherently; m: requests mixed in the microbatch, whose independent
    preferences average out. Perfect balancing removes both terms.
    """
    m = np.maximum(np.asarray(requests_mixed, dtype=float), 1e-12)
    cv = np.sqrt((global_skew * eplb_residual) ** 2 + request_skew**2 / m)
    return np.where(perfect, 0.0, cv)


def busiest_link_messages(tokens, destinations, hot_rows, routed_destinations, top_k, shared_rows=0.0):
    """Messages through the busiest die's links in one dispatch (or, mirrored, one combine).

        N = max(t x D,  L_hot x D_routed / k,  L_shared)
    Every die sends t tokens to D destinations; the hottest expert die receives L_hot expert rows,
    which arrive as L_hot x D_routed / k messages (a token with two experts on one die sends one
    message); a shared-expert die receives its L_shared rows one message each. The all-to-all
    finishes when the busiest die has moved its messages.
    """
    recv = np.asarray(hot_rows, dtype=float) * np.asarray(routed_destinations, dtype=float) / top_k
    return np.maximum(np.maximum(np.asarray(tokens, dtype=float) * destinations, recv), shared_rows)


def message_bytes(model: Spec) -> tuple[float, float]:
    """(dispatch, combine) bytes per token per destination: the hidden state at each payload's
    precision, plus the per-token scale when dispatch is quantised (7.5 KB / 14 KB for DeepSeek-R1);
    none for a dense model."""
    if not model.has("moe.n_routed_experts"):
        return 0.0, 0.0
    d = model["arch.hidden_size"]
    disp_dt = model["precision.dispatch"]
    scale = model["quant.dispatch_scale_bytes_per_token"] if DTYPE_BYTES[disp_dt] < 2 else 0.0
    return d * DTYPE_BYTES[disp_dt] + scale, d * DTYPE_BYTES[model["precision.combine"]]
