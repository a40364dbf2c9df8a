"""Communication operators: fused MoE dispatch/combine, bulk all-to-all and all-gather, KV transfer.

All return seconds per call for one die, numpy-broadcastable over the deployment arrays.
"""

from __future__ import annotations

import numpy as np

from cmperf.comm.planes import group_latency_s, transfer_time_s
from cmperf.costs.moe import busiest_link_messages, expected_destinations, hottest_rank_load, message_bytes
from cmperf.specs.loader import Spec


def fused_moe_comm_time_s(hw: Spec, tokens, destinations, message_bytes, ep, which: str, vector_share=1.0, local_tokens=None):
    """Fused dispatch or combine written by the vector cores straight into peers' memory.

        T = t_call + t_lat(group) + t_tok x n x (V / v) + max(P / (v x w_core),  P / min(W_fit, W_link))
        P = tokens x D x m
    The vector cores drive the operator but the links bound it: v of the die's V vector cores
    issue remote writes at w_core each, and the payload P cannot leave faster than the achieved
    link rate W_fit (never above the link peak) however many cores issue it. A stream given a
    third of the vector cores is slower only where a third of them cannot fill the links.
    t_call is paid once per call (launch, handshake, the count exchange that sizes the buffers);
    t_tok per local token n (the vector cores' bookkeeping: routing metadata, quantisation,
    offsets), so it scales with the cores that do it. t_lat is the small-message latency to the
    group's farthest peer (Table 1). D is the expected number of distinct destination ranks per
    token, m the message per token per destination; peers in other domains are reached over
    RDMA instead (planes.transfer_time_s).
    Calibration: t_call + 128 t_tok and W_fit are least-squares fits to the paper's Table 7
    (EP8-256 at 128 tokens per rank, all vector cores), where the links bind; one token count
    identifies only their sum at 128 tokens, so t_tok and w_core are data of their own (hardware
    file, with their kind). Without w_core the issue rate never binds; without t_tok the start-up
    is all per call.
    """
    start = hw[f"moe_comm.{which}_startup_s"]
    bw = hw[f"moe_comm.{which}_bandwidth_bytes_per_s"]
    payload = np.asarray(tokens, dtype=float) * destinations * message_bytes
    latency = group_latency_s(hw, ep)
    share = np.asarray(vector_share, dtype=float)
    n_local = np.asarray(tokens if local_tokens is None else local_tokens, dtype=float)
    per_token = hw.get(f"moe_comm.{which}_startup_per_token_s", 0.0) * n_local / share
    link = transfer_time_s(hw, payload, ep, bw, bw)
    if hw.has("moe_comm.issue_bandwidth_bytes_per_s_per_core"):
        issue = payload / (hw["die.vector_cores"] * share * hw["moe_comm.issue_bandwidth_bytes_per_s_per_core"])
        link = np.maximum(link, issue)
    return start + latency + per_token + link


def bulk_comm_time_s(hw: Spec, bytes_per_die, ranks, scaleout_bytes=None):
    """A DMA-driven all-to-all or all-gather moving `bytes_per_die` out of each die.

        T = t_start + latency + B / (W_write x e_collective)
    W_write is the paper's measured UB write bandwidth (Table 1), intra- or inter-node by peer,
    never above the link peak; e_collective is data.
    """
    t = transfer_time_s(hw, bytes_per_die, ranks, hw["scaleup.write_bandwidth_intra_bytes_per_s"],
                        hw["scaleup.write_bandwidth_inter_bytes_per_s"], hw["efficiency.collective_frac"], scaleout_bytes)
    start = hw["scaleup.collective_startup_s"] + group_latency_s(hw, ranks)
    return np.where(np.asarray(ranks) > 1, start + t, 0.0)


def kv_transfer_time_s(hw: Spec, kv_bytes_per_die):
    """Prefill-to-decode KV-cache transfer over the scale-out (RDMA) plane.

        T = latency + B / (W_rdma x e_rdma)
    """
    bw = hw["scaleout.bandwidth_bytes_per_s_per_die"] * hw["efficiency.scaleout_frac"]
    return hw["scaleout.latency_s"] + np.asarray(kv_bytes_per_die, dtype=float) / bw


def fused_benchmark_time_s(hw: Spec, model: Spec, which: str, ep, tokens):
    """One fused dispatch or combine as the paper's Table 7 measured it: `tokens` per rank over
    `ep` ranks, routing uniform at random (Poisson excess at the busiest receiver, no popularity
    skew), the operator alone on the whole die. The same function fits, validates and tests it.
    """
    k, E = model["moe.num_experts_per_tok"], model["moe.n_routed_experts"]
    ep = np.asarray(ep, dtype=float)
    dest = expected_destinations(E, model["moe.n_group"], model["moe.topk_group"], k, ep)
    hot = hottest_rank_load(np.asarray(tokens, dtype=float) * k, np.maximum(E / ep, 1.0), ep, 0.0)
    msgs = busiest_link_messages(tokens, dest, hot, dest, k)
    msg = message_bytes(model)[0 if which == "dispatch" else 1]
    return fused_moe_comm_time_s(hw, msgs, 1.0, msg, ep, which, local_tokens=tokens)
