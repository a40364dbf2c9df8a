"""Prefill under load: P50 and P99 time to first token when requests arrive at a rate.

The pool of n prefill instances is a queue. Each instance runs one batch at a time: a batch of b
requests (the model's batch: tokens per device x devices / prompt tokens) takes T seconds, so an
instance serves mu = b / T requests/s and the pool n mu. Requests arrive at lambda per second.

    offered load  a = lambda / mu        utilisation  rho = a / n  (must be < 1)

A request's TTFT is the sum of three parts, each taken at quantile q and added (the sum of
quantiles bounds the quantile of the sum from above, so the estimate errs on the slow side):

1. its own batch, T;
2. the wait for a batch boundary: requests go to an idle instance when there is one; when all n
   are busy (probability C(n, a), below) the request joins the instance whose batch ends first.
   Batches are staggered, so each running batch has a residual uniform on [0, T] and the first of
   n ends after r with P(R > r) = C(n, a) (1 - r / T)^n:
       R_q = T (1 - ((1 - q) / C(n, a))^(1/n))  when C(n, a) > 1 - q, else 0;
3. the queue of requests that do not fit in the next batches: the pool as an M/G/n queue with
   service 1 / mu per request, the Erlang-C probability of waiting C(n, a), and the exponential
   tail of the M/M/n wait scaled by Kingman's factor (c_a^2 + c_s^2) / 2 for general arrivals and
   service (Allen-Cunneen):

       P(W > t) = C(n, a) exp(-2 (n mu - lambda) t / (c_a^2 + c_s^2))
       W_q      = max(0, ln(C(n, a) / (1 - q)) (c_a^2 + c_s^2) / (2 (n mu - lambda)))

   C(n, a) = n B / (n - a (1 - B)), with B the Erlang-B blocking probability
   B = P(N = n) / P(N <= n) for N ~ Poisson(a).

Sources: Erlang C and the M/M/n waiting-time tail (Kleinrock, Queueing Systems Vol. 1, 1975,
section 3.5); the Allen-Cunneen / Kingman correction for G/G/n (Allen, Probability, Statistics
and Queueing Theory, 1990). Assumes: Poisson arrivals (c_a^2 = 1); batch times that do not vary
(c_s^2 = 0, the model's batch time is deterministic); every batch as full as the model's batch
(a batch formed early is assumed to take the full T, which again errs on the slow side); requests
go to the least-loaded instance. As rho -> 1 the wait grows without bound; at rho >= 1 it is
infinite.
"""

from __future__ import annotations

import math

import numpy as np

from cmperf.inputs import DEFAULT_MAX_UTILISATION  # noqa: F401  (defined with the other entry-point defaults; re-exported)

#: Default TTFT SLO (ms) where the user gives none: 2 s, the time-to-first-token limit of the MLPerf
#: Inference server scenario for Llama 2 70B (MLCommons, Inference v4.0 rules), a common
#: interactive-serving target. Applied to P99 TTFT under load.
DEFAULT_TTFT_MS = 2000.0

#: The formula and its assumptions, as the reports print them.
FORMULA = ("P99 TTFT = T + R + W: T the batch time; R = T (1 - (0.01 / C)^(1/n)) the wait for the first of n staggered "
           "batches to end when all instances are busy (probability C, Erlang C at offered load a = lambda / mu); "
           "W = ln(C / 0.01) (ca2 + cs2) / (2 (n mu - lambda)) the queue (Allen-Cunneen tail of M/G/n). "
           "Assumes Poisson arrivals (ca2 = 1), the model's batch time for every batch (cs2 = 0, full batches), "
           "least-loaded routing; the quantiles are added, which errs on the slow side")

ARRIVAL_SCV = 1.0  # Poisson arrivals: squared coefficient of variation of inter-arrival times
SERVICE_SCV = 0.0  # deterministic batch time


def erlang_c(n: int, a: float) -> float:
    """Probability that an arrival waits in an M/M/n queue at offered load a (< n), computed in log
    space over the Poisson terms near n, so thousands of servers are as cheap as ten."""
    if a <= 0:
        return 0.0
    if a >= n:
        return 1.0
    lo = max(0, int(n - 40 * math.sqrt(a) - 50))
    k = np.arange(lo, n + 1, dtype=float)
    log_terms = k * math.log(a) - a - np.array([math.lgamma(x + 1.0) for x in k])
    log_cdf = np.logaddexp.reduce(log_terms)
    b = math.exp(log_terms[-1] - log_cdf)
    return n * b / (n - a * (1.0 - b))


def ttft_quantile_s(q: float, rate_per_s: float, instances: int, batch_s: float, requests_per_s_per_instance: float,
                    arrival_scv: float = ARRIVAL_SCV, service_scv: float = SERVICE_SCV) -> float:
    """TTFT at quantile q (e.g. 0.99) of a pool of `instances` prefill instances at `rate_per_s`;
    inf when the pool is saturated. See the module docstring for the formula."""
    mu, lam, n = requests_per_s_per_instance, rate_per_s, int(instances)
    a = lam / mu
    rho = a / n
    if rho >= 1 or n * mu - lam <= 0:
        return math.inf
    c = erlang_c(n, a)
    residual = batch_s * (1.0 - ((1.0 - q) / c) ** (1.0 / n)) if c > 1.0 - q else 0.0
    wait = max(0.0, math.log(c / (1.0 - q)) * (arrival_scv + service_scv) / (2.0 * (n * mu - lam))) if c > 0 else 0.0
    return batch_s + residual + wait


def load_report(rate_per_s: float, instances: int, batch_s: float, requests_per_s_per_instance: float) -> dict:
    """Utilisation, headroom and P50/P99 TTFT (ms) of a sized prefill pool."""
    rho = rate_per_s / (instances * requests_per_s_per_instance)
    return {
        "utilisation": rho, "headroom": 1.0 - rho,
        "p50_ttft_ms": ttft_quantile_s(0.5, rate_per_s, instances, batch_s, requests_per_s_per_instance) * 1e3,
        "p99_ttft_ms": ttft_quantile_s(0.99, rate_per_s, instances, batch_s, requests_per_s_per_instance) * 1e3,
    }


def instances_for(rate_per_s: float, batch_s: float, requests_per_s_per_instance: float, ttft_slo_s: float | None,
                  max_utilisation: float = DEFAULT_MAX_UTILISATION, q: float = 0.99) -> int | None:
    """Fewest instances that keep utilisation <= max_utilisation and the q-quantile TTFT <= the SLO;
    None when no number of instances meets the SLO (the batch alone takes longer than it)."""
    n = max(1, math.ceil(rate_per_s / (requests_per_s_per_instance * max_utilisation) - 1e-9))
    if ttft_slo_s is None:
        return n

    def ok(m: int) -> bool:
        return ttft_quantile_s(q, rate_per_s, m, batch_s, requests_per_s_per_instance) <= ttft_slo_s

    if ok(n):
        return n
    # TTFT falls with more instances towards T (the batch alone, once C(n, a) < 1 - q); bisect.
    if batch_s > ttft_slo_s:
        return None
    hi_n = n + 1
    while not ok(hi_n):
        if hi_n > 64 * n + 64:
            return None
        hi_n *= 2
    lo_n = n  # not ok
    while hi_n - lo_n > 1:
        mid = (lo_n + hi_n) // 2
        lo_n, hi_n = (lo_n, mid) if ok(mid) else (mid, hi_n)
    return hi_n
