"""Unit tests of the cost functions: one hand-computed case per function.

Every expected value below is written out from the formula in the function's docstring and the
numbers in hardware/cloudmatrix384.toml and models/deepseek-r1.toml, never by calling the function
under test a second time. Tolerances are float round-off (rel 1e-12) unless a comment says otherwise.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from cmperf.comm.collectives import bulk_comm_time_s, fused_moe_comm_time_s, kv_transfer_time_s
from cmperf.comm.planes import peer_fractions
from cmperf.compose.decode import expected_tokens_per_step
from cmperf.costs.moe import message_bytes
from cmperf.compose.memory import activation_bytes, comm_buffer_bytes, kv_bytes_per_token, weight_bytes_per_die
from cmperf.costs.moe import expected_destinations, hottest_rank_load, placement, popularity_cv
from cmperf.costs.roofline import BOUND_NAMES, COMM, COMPUTE, LATENCY, MEMORY, matmul_efficiency, padded_rows, roofline_time_s
from cmperf.specs.loader import load_hardware, load_model

REL = 1e-12
MiB = 2.0**20


@pytest.fixture(scope="module")
def hw():
    return load_hardware("cloudmatrix384")


@pytest.fixture(scope="module")
def r1():
    return load_model("deepseek-r1")


def approx(x, rel=REL):
    return pytest.approx(x, rel=rel)


# ---- roofline ------------------------------------------------------------------------------------


def test_bound_codes_are_distinct_and_named():
    assert sorted({COMPUTE, MEMORY, COMM, LATENCY}) == [0, 1, 2, 3]
    assert BOUND_NAMES[COMPUTE] == "compute"
    assert BOUND_NAMES[MEMORY] == "memory"
    assert BOUND_NAMES[COMM] == "communication"
    assert BOUND_NAMES[LATENCY] == "latency"


def test_roofline_compute_bound():
    # 1 TFLOP at 100 TFLOP/s = 10 ms; 1 GB at 1 TB/s = 1 ms; plus 2 us latency.
    t, bound = roofline_time_s(1e12, 1e9, 1e14, 1e12, 2e-6)
    assert float(t) == approx(10e-3 + 2e-6)
    assert int(bound) == COMPUTE


def test_roofline_memory_bound():
    # 1 GFLOP at 100 TFLOP/s = 10 us; 10 GB at 1 TB/s = 10 ms.
    t, bound = roofline_time_s(1e9, 1e10, 1e14, 1e12)
    assert float(t) == approx(10e-3)
    assert int(bound) == MEMORY


def test_roofline_latency_bound():
    # 1 MFLOP -> 10 ns, 1 KB -> 1 ns; a 1 us launch latency dominates and is added on top.
    t, bound = roofline_time_s(1e6, 1e3, 1e14, 1e12, 1e-6)
    assert float(t) == approx(1e-6 + 10e-9)
    assert int(bound) == LATENCY


def test_roofline_tie_counts_as_compute_and_broadcasts():
    t, bound = roofline_time_s(np.array([1e12, 1e9, 0.0]), np.array([1e10, 1e10, 0.0]), 1e14, 1e12, 0.0)
    np.testing.assert_allclose(t, [1e-2, 1e-2, 0.0], rtol=REL)
    assert bound.tolist() == [COMPUTE, MEMORY, COMPUTE]


def test_padded_rows():
    np.testing.assert_array_equal(padded_rows([1, 15, 16, 17, 32, 0.5], 16), [16, 16, 16, 32, 32, 16])
    assert float(padded_rows(0, 16)) == 16.0  # an empty GEMM still occupies one tile


def test_matmul_efficiency_hand_cases():
    e_inf, k0 = 0.855, 362.0
    # M = 16 fills the tile; K = k0 halves the K term.
    assert float(matmul_efficiency(16, 362, 16, e_inf, k0)) == approx(e_inf * 0.5)
    # M = 8 on a 16-row tile wastes half the engine relative to M = 16.
    e16 = float(matmul_efficiency(16, 7168, 16, e_inf, k0))
    e8 = float(matmul_efficiency(8, 7168, 16, e_inf, k0))
    assert e8 == approx(e16 / 2)
    assert e16 == approx(e_inf * 7168 / (7168 + 362))
    # M = 17 pads to 32.
    assert float(matmul_efficiency(17, 362, 16, e_inf, k0)) == approx(e_inf * 17 / 32 * 0.5)


# ---- expert placement and routing ------------------------------------------------------------------


def test_placement_ep320_dedicated():
    p = placement(256, 1, 320, 32)
    assert bool(p["valid"]) and bool(p["dedicated"])
    assert float(p["routed_per_rank"]) == 1.0
    assert float(p["routed_ranks"]) == 288.0
    assert float(p["shared_copies"]) == 32.0  # 320 - 256 - 32
    assert float(p["experts_per_rank"]) == 1.0


def test_placement_ep32_replicated():
    p = placement(256, 1, 32, 32)
    assert bool(p["valid"]) and not bool(p["dedicated"])
    assert float(p["routed_per_rank"]) == 9.0  # 288 / 32 = 8 routed + 1 redundant
    assert float(p["routed_ranks"]) == 32.0
    assert float(p["shared_copies"]) == 32.0  # one shared copy on every rank
    assert float(p["experts_per_rank"]) == 10.0  # 9 routed + 1 shared


@pytest.mark.parametrize("redundant", [0, 32])
def test_placement_ep7_invalid(redundant):
    assert not bool(placement(256, 1, 7, redundant)["valid"])


def test_placement_vectorised():
    p = placement(256, 1, np.array([7, 32, 320]), 32)
    assert p["valid"].tolist() == [False, True, True]
    assert p["dedicated"].tolist() == [False, False, True]


def test_expected_destinations_ep256_exactly_top_k():
    # One expert per rank: the 8 chosen experts are 8 distinct ranks.
    assert float(expected_destinations(256, 8, 4, 8, 256)) == approx(8.0, rel=1e-9)


def test_expected_destinations_ep8_hypergeometric():
    # EP8: 32 experts per rank = one group per rank; 4 groups chosen -> 128 candidates on 4 ranks;
    # P(rank untouched) = C(96, 8) / C(128, 8).
    want = 4 * (1 - math.comb(96, 8) / math.comb(128, 8))
    assert float(expected_destinations(256, 8, 4, 8, 8)) == approx(want, rel=1e-9)


def test_expected_destinations_more_groups_than_a_rank():
    # EP4: two groups per rank; P(rank untouched) = C(6, 4) / C(8, 4) = 15/70.
    want = 4 * (1 - math.comb(6, 4) / math.comb(8, 4))
    assert float(expected_destinations(256, 8, 4, 8, 4)) == approx(want, rel=1e-9)
    # EP1: every expert on the one rank.
    assert float(expected_destinations(256, 8, 4, 8, 1)) == approx(1.0, rel=1e-9)


def test_hottest_rank_load_single_rank_is_mean():
    assert float(hottest_rank_load(123.0, 4, 1, 0.7)) == approx(123.0)


def test_hottest_rank_load_poisson_only():
    mu, R = 100.0, 288
    want = mu + math.sqrt(mu) * math.sqrt(2 * math.log(R))
    assert float(hottest_rank_load(mu, 1, R, 0.0)) == approx(want)


def test_hottest_rank_load_with_skew():
    mu, c, R, s = 50.0, 9, 32, 0.4
    want = mu + math.sqrt(mu * mu * s * s / c + mu) * math.sqrt(2 * math.log(R))
    assert float(hottest_rank_load(mu, c, R, s)) == approx(want)


def test_popularity_cv():
    assert float(popularity_cv(0.5, 0.2, 2.99, 10, perfect=True)) == 0.0
    want = math.sqrt((0.5 * 0.2) ** 2 + 2.99**2 / 10)
    assert float(popularity_cv(0.5, 0.2, 2.99, 10)) == approx(want)
    # Mixing infinitely many requests leaves only the EPLB residual.
    assert float(popularity_cv(0.5, 0.2, 2.99, 1e30)) == approx(0.1)


# ---- network planes and collectives ----------------------------------------------------------------


def test_peer_fractions_inside_one_node(hw):
    # A node is 8 packages x 2 dies = 16 dies.
    for ranks in (2, 8, 16):
        f_node, f_domain, f_out = peer_fractions(hw, ranks)
        assert (float(f_node), float(f_domain), float(f_out)) == (1.0, 0.0, 0.0)
    assert tuple(float(x) for x in peer_fractions(hw, 1)) == (1.0, 0.0, 0.0)


def test_peer_fractions_across_nodes_and_domains(hw):
    # EP320: 15 same-node peers and 304 other-node peers of 319.
    f = [float(x) for x in peer_fractions(hw, 320)]
    assert f == [approx(15 / 319), approx(304 / 319), approx(0.0)]
    # 1536 dies: the scale-up domain is 384 x 2 = 768 dies; the other 768 are on scale-out.
    f = [float(x) for x in peer_fractions(hw, 1536)]
    assert f == [approx(15 / 1535), approx(752 / 1535), approx(768 / 1535)]


def test_fused_dispatch_within_a_node(hw):
    # EP8 stays in one node, all 48 AIVs: T = t_call + t_lat + n t_tok + max(P / (48 w_core), P / W_fit).
    D, n = 3.5, 128
    payload = n * D * 7680
    link = payload / hw["moe_comm.dispatch_bandwidth_bytes_per_s"]
    issue = payload / (48 * hw["moe_comm.issue_bandwidth_bytes_per_s_per_core"])
    want = (hw["moe_comm.dispatch_startup_s"] + hw["scaleup.latency_intra_s"] + n * hw["moe_comm.dispatch_startup_per_token_s"]
            + max(link, issue))
    assert link > issue  # on the whole die the links bind (Table 7's conditions)
    assert float(fused_moe_comm_time_s(hw, n, D, 7680, 8, "dispatch")) == approx(want)


def test_fused_combine_across_nodes_on_a_vector_share(hw):
    # EP320, the decode MoE stream's 16 of 48 AIVs: the link rate is kept (16 AIVs fill it), the
    # per-token part runs on a third of the cores, so it takes three times as long per token.
    D, share, tokens = 9.0, 16 / 48, 96
    payload = tokens * D * 14336
    w = min(hw["moe_comm.combine_bandwidth_bytes_per_s"], hw["scaleup.links_per_die"] * hw["scaleup.link_bandwidth_bytes_per_s"])
    t_link = payload / w
    t_issue = payload / (16 * hw["moe_comm.issue_bandwidth_bytes_per_s_per_core"])
    want = (hw["moe_comm.combine_startup_s"] + hw["scaleup.latency_inter_s"] + 3 * tokens * hw["moe_comm.combine_startup_per_token_s"]
            + max(t_link, t_issue))
    assert float(fused_moe_comm_time_s(hw, tokens, D, 14336, 320, "combine", share)) == approx(want)
    # A third of the cores does not cut the link rate to a third.
    full = float(fused_moe_comm_time_s(hw, tokens, D, 14336, 320, "combine"))
    assert want - full == approx(2 * tokens * hw["moe_comm.combine_startup_per_token_s"] + max(t_link, t_issue) - t_link)


def test_fused_comm_issue_bound_with_few_vector_cores(hw):
    # 8 of 48 AIVs issue at 8 x w_core, below the link: the issue rate binds.
    D, tokens, share = 8.0, 64, 8 / 48
    payload = tokens * D * 14336
    t = float(fused_moe_comm_time_s(hw, tokens, D, 14336, 8, "combine", share))
    fixed = hw["moe_comm.combine_startup_s"] + hw["scaleup.latency_intra_s"] + 6 * tokens * hw["moe_comm.combine_startup_per_token_s"]
    assert t == approx(fixed + payload / (8 * hw["moe_comm.issue_bandwidth_bytes_per_s_per_core"]))


def test_link_peak_caps_the_fused_bandwidth(hw):
    """Halving the UB links halves what the combine (fitted at the link peak) can move."""
    half = hw.with_values({"scaleup.link_bandwidth_bytes_per_s": hw["scaleup.link_bandwidth_bytes_per_s"] / 2})
    fixed = lambda h: h["moe_comm.combine_startup_s"] + h["scaleup.latency_intra_s"] + 128 * h["moe_comm.combine_startup_per_token_s"]
    payload_time = lambda h: float(fused_moe_comm_time_s(h, 128, 8, 14336, 16, "combine")) - fixed(h)
    assert payload_time(half) == approx(2 * payload_time(hw))


def _collective_start(hw):
    # A fixed per-call start-up of bulk collectives, if the hardware file has one.
    return hw.get("scaleup.collective_startup_s", 0.0)


def test_bulk_comm_time(hw):
    B = 64e6
    assert float(bulk_comm_time_s(hw, B, 1)) == 0.0  # no peers, no traffic
    # 16 dies: one node, intra-node latency and write bandwidth x collective efficiency.
    w = hw["scaleup.write_bandwidth_intra_bytes_per_s"] * hw["efficiency.collective_frac"]
    want16 = _collective_start(hw) + hw["scaleup.latency_intra_s"] + B / w
    assert float(bulk_comm_time_s(hw, B, 16)) == approx(want16)
    # 1536 dies: half the peers on scale-out RDMA (25 GB/s x 0.86), which binds.
    rdma = hw["scaleout.bandwidth_bytes_per_s_per_die"] * hw["efficiency.scaleout_frac"]
    t_out = B * (768 / 1535) / rdma
    t_up = B * (15 / 1535 + (752 / 1535) * hw["scaleup.write_bandwidth_intra_bytes_per_s"] / hw["scaleup.write_bandwidth_inter_bytes_per_s"]) / w
    assert t_out > t_up
    assert float(bulk_comm_time_s(hw, B, 1536)) == approx(_collective_start(hw) + hw["scaleout.latency_s"] + t_out)


def test_kv_transfer_time(hw):
    # T = RDMA latency + B / (25 GB/s x 0.86).
    B = 1e9
    rdma = hw["scaleout.bandwidth_bytes_per_s_per_die"] * hw["efficiency.scaleout_frac"]
    assert rdma == approx(2.5e10 * 0.86)
    assert float(kv_transfer_time_s(hw, B)) == approx(hw["scaleout.latency_s"] + B / rdma)
    assert float(kv_transfer_time_s(hw, 0.0)) == approx(hw["scaleout.latency_s"])


# ---- decode helpers and memory ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "k, a, want",
    [(0, 0.7, 1.0), (0, 0.0, 1.0), (1, 0.7, 1.7), (2, 0.7, 1 + 0.7 + 0.49), (1, 0.0, 1.0), (1, 1.0, 2.0), (2, 1.0, 3.0), (3, 1.0, 4.0)],
)
def test_expected_tokens_per_step(k, a, want):
    assert float(expected_tokens_per_step(k, a)) == approx(want)


def test_message_bytes(r1):
    # INT8 7168 + 512 B scale = 7.5 KB dispatch; BF16 7168 x 2 = 14 KB combine (cm384).
    assert message_bytes(r1) == (7680, 14336)


def test_comm_buffer_bytes_matches_paper():
    # cm384 (as cited in compose/memory.py): about 225 MB + 420 MB = 645 MB per die at EP320, 96 tokens per die.
    # The paper's MB are MiB: 320 x 96 x 7680 B = 225 MiB, 320 x 96 x 14336 B = 420 MiB.
    got = float(comm_buffer_bytes(320, 96, 1, 8, 7680, 14336))
    assert got == 320 * 96 * (7680 + 14336)
    assert got / MiB == approx(645, rel=1e-3)
    assert float(comm_buffer_bytes(320, 96, 1, 8, 7680, 0)) / MiB == approx(225, rel=1e-3)
    assert float(comm_buffer_bytes(320, 96, 1, 8, 0, 14336)) / MiB == approx(420, rel=1e-3)
    # Replicated layout: a rank with 10 experts receives at most top_k = 8 copies of a token.
    assert float(comm_buffer_bytes(32, 96, 10, 8, 7680, 14336)) == 32 * 96 * 8 * (7680 + 14336)


def test_kv_bytes_per_token(r1):
    # MLA caches 512 latent + 64 RoPE elements, BF16, in each of 61 layers (+1 with the MTP layer).
    assert kv_bytes_per_token(r1, 0) == 576 * 2 * 61
    assert kv_bytes_per_token(r1, 1) == 576 * 2 * 62


def test_activation_bytes(r1):
    # Widest per-token intermediate: max(4 x 7168, 128 x (2 x 192 + 2 x 128), 2 x 18432) = 81920
    # elements, two BF16 buffers, plus FP32 logits over 129280 tokens.
    per_token = 2 * 2 * 81920 + 4 * 129280
    assert float(activation_bytes(r1, 10)) == 10 * per_token


def test_weight_bytes_per_die_experts(r1):
    # One expert = 3 x 7168 x 2048 INT8 bytes in each of 58 MoE layers (+1 MTP layer).
    w = weight_bytes_per_die(r1, 1.0, 1, 1)
    assert float(w["weights: experts"]) == 3 * 7168 * 2048 * 59
    w0 = weight_bytes_per_die(r1, 10.0, 1, 0)
    assert float(w0["weights: experts"]) == 10 * 3 * 7168 * 2048 * 58
