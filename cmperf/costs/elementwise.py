"""Element-wise operators: arithmetic and HBM traffic per element, counted from their definitions.

These are structural counts (like the 2 in 2MNK for a GEMM), not calibration:
- norm_quant: RMSNorm (square, accumulate, scale by rsqrt, multiply by weight: 4 FLOP) and
  per-token 8-bit quantisation (abs-max, scale: 2 FLOP); reads one activation, writes one.
- swiglu_quant: per element of the gate/up pair, SiLU and the product (4 FLOP); reads the
  element, writes half an output element at the matmul precision.
- topk: sigmoid score, group sums, selection (8 FLOP); reads an FP32 score.
- sampling: softmax over logits (max, subtract, exp, sum, divide: 5 FLOP); reads an FP32 logit.
"""

from __future__ import annotations

from cmperf.specs.loader import Spec
from cmperf.units import DTYPE_BYTES

FP32 = "fp32"


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
    raise ValueError(f"unknown element-wise operator kind {kind!r}")
