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


def transfer_time_s(hw: Spec, bytes_per_die, ranks, scaleup_bw_intra, efficiency=1.0):
    """Time for a die to send `bytes_per_die` spread evenly over its peers.

    Each share moves at its plane's bandwidth; the shares are sent concurrently over separate
    planes, so T = max(T_scaleup, T_scaleout) with the scale-up share at a bandwidth derated by the
    measured inter/intra-node ratio for peers in other nodes.
    """
    f_node, f_domain, f_out = peer_fractions(hw, ranks)
    inter_ratio = hw["scaleup.write_bandwidth_inter_bytes_per_s"] / hw["scaleup.write_bandwidth_intra_bytes_per_s"]
    b = np.asarray(bytes_per_die, dtype=float)
    t_up = b * (f_node + f_domain / inter_ratio) / (scaleup_bw_intra * efficiency)
    t_out = b * f_out / (hw["scaleout.bandwidth_bytes_per_s_per_die"] * hw["efficiency.scaleout_frac"])
    return np.maximum(t_up, t_out)


def group_latency_s(hw: Spec, ranks):
    """Small-message latency to the farthest peer of the group."""
    f_node, f_domain, f_out = peer_fractions(hw, ranks)
    return np.where(
        f_out > 0, hw["scaleout.latency_s"], np.where(f_domain > 0, hw["scaleup.latency_inter_s"], hw["scaleup.latency_intra_s"])
    )
