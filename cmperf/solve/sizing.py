"""Split a device budget into prefill and decode instances to maximise goodput.

For instance sizes D_p, D_d with capacities c_p = X_p D_p / I and c_d = X_d D_d / O requests/s
(X: tokens/s per device meeting the SLOs; I, O: input and output tokens per request):

    goodput = max over n_p, n_d of min(n_p c_p u, n_d c_d u)   s.t.  n_p D_p + n_d D_d <= budget

with u the highest utilisation an instance may run at (headroom for bursts and queueing).

Only a window of n_p around where the two capacities cross can hold the optimum, so the search
costs the same at any budget.
"""

from __future__ import annotations

import numpy as np


#: The tie-break: prefer fewer devices in use (more left idle for other work), by this weight per device.
TIE_BREAK_PER_DEVICE = 1e-9


def _counts(budget: int, P, D, cap_p, cap_d):
    """Prefill instance counts worth trying for each (prefill option, decode option), as a window.

    With f(n) = n c_p rising and g(n) = floor((budget - n D_p) / D_d) c_d falling, the goodput
    min(f, g) peaks where they cross: at n0 (the last n with f <= g) or n0 + 1, and
        (budget - D_d) c_d / (c_p D_d + c_d D_p) <= n0 <= budget c_d / (c_p D_d + c_d D_p).
    The tie-break moves a score by less than its weight times D_d (devices in use lie in
    (budget - D_d, budget]), so the window reaches that many steps of c_p below and of c_d above;
    where a step is smaller than the tie-break, the window is every count. The window is the same
    width for all options (the widest), so the search stays one broadcast call.
    """
    n_max = int(budget // P.min())
    denom = cap_p * D + cap_d * P
    margin = TIE_BREAK_PER_DEVICE * D
    lo = np.floor((budget - D) * cap_d / denom) - np.ceil(margin / cap_p) - 2
    hi = np.floor(budget * cap_d / denom) + 1 + np.where(cap_d > 4 * margin, 2, n_max)
    lo, hi = np.clip(lo, 1, n_max), np.clip(hi, 1, n_max)
    width = int((hi - lo).max()) + 1
    n = lo[..., None] + np.arange(width, dtype=float)
    return n, n <= hi[..., None]


def best_split(budget: int, p_devices, p_tps, d_devices, d_tps, input_len: float, output_len: float, max_utilisation: float = 1.0) -> dict | None:
    """Vectorised over every (prefill option, decode option, prefill instance count in the window
    where the optimum lies: see `_counts`)."""
    p_devices, p_tps = np.asarray(p_devices, float), np.asarray(p_tps, float)
    d_devices, d_tps = np.asarray(d_devices, float), np.asarray(d_tps, float)
    if not len(p_devices) or not len(d_devices):
        return None
    full_p = p_tps * p_devices / input_len
    cap_p = full_p * max_utilisation
    cap_d = d_tps * d_devices / output_len * max_utilisation
    P, D = p_devices.reshape(-1, 1), d_devices.reshape(1, -1)
    n_p, inside = _counts(budget, P, D, cap_p.reshape(-1, 1), cap_d.reshape(1, -1))
    P, D = P[..., None], D[..., None]
    left = budget - n_p * P
    n_d = np.floor(np.maximum(left, 0) / D)
    good = np.minimum(n_p * cap_p.reshape(-1, 1, 1), n_d * cap_d.reshape(1, -1, 1))
    good = np.where((left >= D) & inside, good, -np.inf)
    used = n_p * P + n_d * D
    score = good - TIE_BREAK_PER_DEVICE * used
    k = int(np.argmax(score))
    if not np.isfinite(good.reshape(-1)[k]):
        return None
    i, j, m = np.unravel_index(k, good.shape)
    npf, ndf = float(n_p[i, j, m]), float(n_d[i, j, m])
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
