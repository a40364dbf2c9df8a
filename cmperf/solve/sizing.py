"""Split a device budget into prefill and decode instances to maximise goodput.

For instance sizes D_p, D_d with capacities c_p = X_p D_p / I and c_d = X_d D_d / O requests/s
(X: tokens/s per device meeting the SLOs; I, O: input and output tokens per request):

    goodput = max over n_p, n_d of min(n_p c_p u, n_d c_d u)   s.t.  n_p D_p + n_d D_d <= budget

with u the highest utilisation an instance may run at (headroom for bursts and queueing).
"""

from __future__ import annotations

import numpy as np


def best_split(budget: int, p_devices, p_tps, d_devices, d_tps, input_len: float, output_len: float, max_utilisation: float = 1.0) -> dict | None:
    """Vectorised over every (prefill option, decode option, prefill instance count)."""
    p_devices, p_tps = np.asarray(p_devices, float), np.asarray(p_tps, float)
    d_devices, d_tps = np.asarray(d_devices, float), np.asarray(d_tps, float)
    if not len(p_devices) or not len(d_devices):
        return None
    full_p = p_tps * p_devices / input_len
    cap_p = full_p * max_utilisation
    cap_d = d_tps * d_devices / output_len * max_utilisation
    n_max = int(budget // p_devices.min())
    n_p = np.arange(1, n_max + 1, dtype=float).reshape(1, 1, -1)
    P, D = p_devices.reshape(-1, 1, 1), d_devices.reshape(1, -1, 1)
    left = budget - n_p * P
    n_d = np.floor(np.maximum(left, 0) / D)
    good = np.minimum(n_p * cap_p.reshape(-1, 1, 1), n_d * cap_d.reshape(1, -1, 1))
    good = np.where(left >= D, good, -np.inf)
    # Ties: prefer fewer devices in use (more left idle for other work).
    used = n_p * P + n_d * D
    score = good - 1e-9 * used
    k = int(np.argmax(score))
    if not np.isfinite(good.reshape(-1)[k]):
        return None
    i, j, m = np.unravel_index(k, good.shape)
    npf, ndf = float(n_p[0, 0, m]), float(n_d[i, j, m])
    rps = float(good[i, j, m])
    used_devices = npf * p_devices[i] + ndf * d_devices[j]
    return {
        "requests_per_s": rps,
        "prefill_instances": int(npf), "prefill_devices_per_instance": int(p_devices[i]), "prefill_option": int(i),
        "decode_instances": int(ndf), "decode_devices_per_instance": int(d_devices[j]), "decode_option": int(j),
        "devices_used": int(used_devices), "idle_devices": int(budget - used_devices),
        "prefill_utilisation": rps / (npf * cap_p[i]) * max_utilisation, "decode_utilisation": rps / (ndf * cap_d[j]) * max_utilisation,
        "max_utilisation": max_utilisation, "prefill_capacity_requests_per_s": float(full_p[i]),
        "output_tokens_per_s_per_device": rps * output_len / budget,
        "input_tokens_per_s_per_device": rps * input_len / budget,
    }


def split_economics(hw, split: dict, output_len: float, budget: int) -> dict:
    """$/M tokens and tokens/J of each phase at its load and of the whole budget (idle devices
    included: they are provisioned), from `cmperf.costs.economics`."""
    from cmperf.costs.economics import economics

    e = economics(hw)
    rps = split["requests_per_s"]
    p_dev = split["prefill_instances"] * split["prefill_devices_per_instance"]
    d_dev = split["decode_instances"] * split["decode_devices_per_instance"]
    return {
        "prefill": e.per_token(split["input_tokens_per_s_per_device"] * budget / p_dev),
        "decode": e.per_token(rps * output_len / d_dev),
        "whole": e.whole(budget, rps * output_len),
        "dollars_per_hour": e.dollars_per_hour(budget), "watts": e.watts(budget), "power_basis": e.power_basis,
    }
