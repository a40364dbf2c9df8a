"""Split a device budget into prefill and decode instances to maximise goodput.

For instance sizes D_p, D_d with capacities c_p = X_p D_p / I and c_d = X_d D_d / O requests/s
(X: tokens/s per device meeting the SLOs; I, O: input and output tokens per request):

    goodput = max over n_p, n_d of min(n_p c_p, n_d c_d)   s.t.  n_p D_p + n_d D_d <= budget
"""

from __future__ import annotations

import numpy as np


def best_split(budget: int, p_devices, p_tps, d_devices, d_tps, input_len: float, output_len: float) -> dict | None:
    """Vectorised over every (prefill option, decode option, prefill instance count)."""
    p_devices, p_tps = np.asarray(p_devices, float), np.asarray(p_tps, float)
    d_devices, d_tps = np.asarray(d_devices, float), np.asarray(d_tps, float)
    if not len(p_devices) or not len(d_devices):
        return None
    cap_p = p_tps * p_devices / input_len
    cap_d = d_tps * d_devices / output_len
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
        "prefill_utilisation": rps / (npf * cap_p[i]), "decode_utilisation": rps / (ndf * cap_d[j]),
        "output_tokens_per_s_per_device": rps * output_len / budget,
        "input_tokens_per_s_per_device": rps * input_len / budget,
    }
