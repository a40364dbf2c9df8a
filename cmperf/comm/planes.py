"""Where a group of ranks sits on the network planes, and the bandwidth a die sees to its peers.

A group of `ranks` dies fills nodes, then systems (scale-up domains). Peers in the same node use
the intra-node scale-up figures, peers in other nodes of the domain the inter-node ones (the
paper's small penalty), and peers in other domains only the scale-out plane (RDMA).
"""

from __future__ import annotations

import numpy as np

from cmperf.specs.loader import Spec


def peer_fractions(hw: Spec, ranks):
    """(same node, other node in the scale-up domain, other domain) shares of a die's peers."""
    ranks = np.maximum(np.asarray(ranks, dtype=float), 1.0)
    node_dies = hw["node.packages"] * hw["package.dies"]
    domain_dies = hw["system.scaleup_domain_packages"] * hw["package.dies"]
    peers = np.maximum(ranks - 1.0, 1.0)
    same_node = np.minimum(ranks, node_dies) - 1.0
    same_domain = np.minimum(ranks, domain_dies) - 1.0
    f_node = np.where(ranks > 1, same_node / peers, 1.0)
    f_domain = np.where(ranks > 1, (same_domain - same_node) / peers, 0.0)
    return f_node, f_domain, np.clip(1.0 - f_node - f_domain, 0.0, 1.0)


def link_peak_bytes_per_s(hw: Spec) -> float:
    """One die's scale-up peak, one way: links x link bandwidth. Nothing achieved can exceed it."""
    return hw["scaleup.links_per_die"] * hw["scaleup.link_bandwidth_bytes_per_s"]


def transfer_time_s(hw: Spec, bytes_per_die, ranks, bw_node, bw_domain, efficiency=1.0, scaleout_bytes=None):
    """Time for a die to send `bytes_per_die` spread evenly over its peers.

        T = max(B (f_node / W_node + f_domain / W_domain) / e,  B f_out / (W_rdma e_rdma))
    Peers in the same node and in other nodes of the scale-up domain share the die's scale-up
    links (each at its tier's bandwidth, capped by the link peak); peers in other domains are
    reached over the scale-out plane concurrently. `scaleout_bytes` replaces B f_out when the
    sender deduplicates what crosses the scale-out plane.
    """
    f_node, f_domain, f_out = peer_fractions(hw, ranks)
    peak = link_peak_bytes_per_s(hw)
    b = np.asarray(bytes_per_die, dtype=float)
    w_node = np.minimum(bw_node, peak) * efficiency
    w_domain = np.minimum(bw_domain, peak) * efficiency
    t_up = b * (f_node / w_node + f_domain / w_domain)
    out = b * f_out if scaleout_bytes is None else np.asarray(scaleout_bytes, dtype=float)
    t_out = out / (hw["scaleout.bandwidth_bytes_per_s_per_die"] * hw["efficiency.scaleout_frac"])
    return np.maximum(t_up, t_out)


def group_latency_s(hw: Spec, ranks):
    """Small-message latency to the farthest peer of the group."""
    f_node, f_domain, f_out = peer_fractions(hw, ranks)
    return np.where(
        f_out > 0, hw["scaleout.latency_s"], np.where(f_domain > 0, hw["scaleup.latency_inter_s"], hw["scaleup.latency_intra_s"])
    )
