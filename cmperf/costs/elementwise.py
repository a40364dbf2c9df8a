"""Element-wise operators: arithmetic and HBM traffic per element, counted from their definitions.

These are structural counts (like the 2 in 2MNK for a GEMM), not calibration:
- norm_quant: RMSNorm (square, accumulate, scale by rsqrt, multiply by weight: 4 FLOP) and
  per-token 8-bit quantisation (abs-max, scale: 2 FLOP); reads one activation, writes one.
- swiglu_quant: per element of the gate/up pair, SiLU and the product (4 FLOP); reads the
  element, writes half an output element at the matmul precision.
- topk: sigmoid score, group sums, selection (8 FLOP); reads an FP32 score.
- sampling: softmax over logits (max, subtract, exp, sum, divide: 5 FLOP); reads an FP32 logit.
- kv_write: scatter of a new latent into the paged KV cache (1 FLOP for the cast); reads one
  activation, writes one KV-cache element.
- residual_add: the residual connection (1 FLOP); reads two activations, writes one.
- routing_init: sorting token-expert pairs by expert and expanding the index (2 FLOP: compare,
  select); reads and writes one 4-byte index per pair.
- weighted_sum: the combine side's sum of a token's expert outputs weighted by the router
  (2 FLOP per element); reads one activation per expert output (the write of the summed token
  is 1/k of a read per element and is counted with it: 1 + 1/k activations).
"""

from __future__ import annotations

from cmperf.specs.loader import Spec
from cmperf.units import DTYPE_BYTES

FP32 = "fp32"
#: Token and expert indices are 32-bit integers.
INDEX_BYTES = 4


def elementwise_cost(kind: str, model: Spec) -> tuple[float, float]:
    """(FLOP per element, HBM bytes per element) of an element-wise operator."""
    act = DTYPE_BYTES[model["precision.activation"]]
    if kind == "norm_quant":
        return 6.0, 2.0 * act
    if kind == "swiglu_quant":
        return 4.0, act + 0.5 * DTYPE_BYTES[model["precision.matmul"]]
    if kind == "topk":
        return 8.0, DTYPE_BYTES[FP32]
    if kind == "sampling":
        return 5.0, DTYPE_BYTES[FP32]
    if kind == "kv_write":
        return 1.0, act + DTYPE_BYTES[model["precision.kv_cache"]]
    if kind == "residual_add":
        return 1.0, 3.0 * act
    if kind == "routing_init":
        return 2.0, 2.0 * INDEX_BYTES
    if kind == "weighted_sum":
        return 2.0, act * (1.0 + 1.0 / model["moe.num_experts_per_tok"])
    raise ValueError(f"unknown element-wise operator kind {kind!r}")
