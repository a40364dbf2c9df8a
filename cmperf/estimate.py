"""Evaluate one deployment: options -> validated inputs -> decode or prefill model -> result.

Defaults are the paper's deployments (cm384 section 3): decode 160 NPUs, EP320, 96 requests per
NPU, 4,096-token prompts, 256 output tokens, MTP 1 at 70%, two microbatches; prefill 16 NPUs,
EP32, 16,384 tokens per NPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cmperf.compose.decode import MICROBATCH_CHOICES, DecodeInputs, evaluate_decode, split_choices, validate_decode
from cmperf.compose.prefill import PrefillInputs, evaluate_prefill, validate_prefill
from cmperf.costs.moe import placement
from cmperf.errors import SpecError
from cmperf.overrides import apply_overrides
from cmperf.specs import derived as dv
from cmperf.specs.loader import Spec, load_hardware, load_model

DEFAULTS = {
    "decode": {"devices": 160, "batch": 96, "microbatches": None, "redundant": 32},
    "prefill": {"devices": 16, "tokens_per_device": 16384, "prefill_microbatches": 2, "redundant": 32},
}
WORKLOAD_DEFAULTS = {"input_len": 4096, "output_len": 256, "mtp": 1, "mtp_acceptance": 0.7, "prefix_hit": 0.0}


@dataclass
class Options:
    """What a user may say about one deployment; None means 'use the default'."""

    devices: int | None = None
    ep: int | None = None
    batch: int | None = None
    input_len: int | None = None
    output_len: int | None = None
    kv_len: float | None = None
    tokens_per_device: int | None = None
    microbatches: int | None = None
    attn_cores: int | None = None
    mtp: int | None = None
    mtp_acceptance: float | None = None
    eplb: str = "default"
    redundant: int | None = None
    attn_tp: int = 1
    prefix_hit: float | None = None
    cache_path: str = "ub"
    sets: dict = field(default_factory=dict)


def load_specs(hardware: str, model: str, sets: dict) -> tuple[Spec, Spec, dict]:
    return apply_overrides(load_hardware(hardware), load_model(model), sets)


def _pick(opt, workload: dict, key: str, default):
    if opt is not None:
        return opt
    return workload.get(f"workload.{key}", default)


def default_redundant(model: Spec, hw: Spec, ep: int, requested: int | None) -> int:
    """Redundant experts: as asked, else the paper's 32 where the placement allows, else the
    fewest that make a valid placement (e.g. 64 on EP160), else none (the error then says why)."""
    if requested is not None:
        return requested
    E, S = dv.moe_shape(model)["E"], dv.moe_shape(model)["S"]
    for r in (32, 0, *range(16, E + 1, 16)):
        if bool(placement(E, S, ep, r)["valid"]):
            return r
    return 0


def check_placement(hw: Spec, model: Spec, devices: int, ep: int, redundant: int, attn_tp: int) -> None:
    dies = devices * hw["package.dies"]
    if ep > dies or dies % ep:
        raise SpecError(f"expected a divisor of the instance's {dies} dies ({devices} devices x {hw['package.dies']}), got {ep}", where="--ep")
    if dies % attn_tp:
        raise SpecError(f"expected a divisor of the instance's {dies} dies, got {attn_tp}", where="--attn-tp")
    h = model["attention.num_attention_heads"]
    if not bool(dv.heads_fit_tp(model, attn_tp)):
        raise SpecError(f"attention TP over {attn_tp} dies cannot split the model's {h} query heads evenly; expected a divisor of {h}", where="--attn-tp")
    E, S = dv.moe_shape(model)["E"], dv.moe_shape(model)["S"]
    if E == 0 and redundant:
        raise SpecError(f"model '{model.name}' is dense (no routed experts): nothing to replicate; expected --redundant 0", where="--redundant")
    if not bool(placement(E, S, ep, redundant)["valid"]):
        raise SpecError(
            f"EP{ep} cannot place {E} routed + {redundant} redundant + {S} shared experts: expected "
            f"EP >= {E + redundant + S} (one expert per die) or (routed + redundant) divisible by EP",
            where="--ep/--redundant",
        )


def _best_pipeline(hw: Spec, m: Spec, base: dict, microbatches: int | None, attn_cores: int | None) -> dict:
    """Evaluate decode at the given microbatches and core split, or, where either is left open, at
    each allowed choice (microbatches 1 to 3; the hardware's splits), keeping the lowest TPOT."""
    mbs = [microbatches] if microbatches is not None else list(MICROBATCH_CHOICES)
    choices = [(n, a) for n in mbs for a in ([attn_cores] if attn_cores is not None else (split_choices(hw) if n >= 2 else [0]))]
    best = None
    for n, a in choices:
        inp = DecodeInputs(microbatches=n, attn_cores=a, **base)
        validate_decode(hw, m, inp)
        res = evaluate_decode(hw, m, inp)
        if best is None or float(res["tpot_s"]) < float(best["tpot_s"]):
            best = res
    best["pipeline_chosen"] = microbatches is None or attn_cores is None
    return best


def estimate(phase: str, hardware: str = "cloudmatrix384", model: str = "deepseek-r1", opts: Options | None = None) -> dict:
    opts = opts or Options()
    if phase not in DEFAULTS:
        raise SpecError(f"expected 'decode' or 'prefill', got {phase!r}", where="PHASE")
    if opts.eplb not in ("default", "perfect"):
        raise SpecError(f"expected 'default' or 'perfect', got {opts.eplb!r}", where="--eplb")
    if opts.cache_path not in ("ub", "vpc"):
        raise SpecError(f"expected 'ub' or 'vpc', got {opts.cache_path!r}", where="--cache-path")
    hw, m, workload = load_specs(hardware, model, opts.sets)
    d = DEFAULTS[phase]
    devices = opts.devices or d["devices"]
    # One EP rank per die of the instance unless told otherwise (the paper: EP320 on 160 NPUs).
    ep = opts.ep or devices * hw["package.dies"]
    input_len = int(_pick(opts.input_len, workload, "input_len", WORKLOAD_DEFAULTS["input_len"]))
    output_len = int(_pick(opts.output_len, workload, "output_len", WORKLOAD_DEFAULTS["output_len"]))
    # Speculative tokens by default only where the model has an MTP module to draft them.
    mtp = int(_pick(opts.mtp, workload, "mtp", WORKLOAD_DEFAULTS["mtp"] if m["mtp.num_nextn_predict_layers"] > 0 else 0))
    if mtp > 0 and m["mtp.num_nextn_predict_layers"] == 0:
        raise SpecError(f"model '{m.name}' has no MTP module; expected --mtp 0", where="--mtp")
    acc = float(_pick(opts.mtp_acceptance, workload, "mtp_acceptance", WORKLOAD_DEFAULTS["mtp_acceptance"]))
    hit = float(_pick(opts.prefix_hit, workload, "prefix_hit", WORKLOAD_DEFAULTS["prefix_hit"]))
    redundant = default_redundant(m, hw, ep, opts.redundant)
    check_placement(hw, m, devices, ep, redundant, opts.attn_tp)
    max_ctx = m["arch.max_position_embeddings"]
    if input_len + output_len > max_ctx:
        raise SpecError(f"input + output = {input_len + output_len} tokens exceeds the model's {max_ctx}-token context", where="--input-len/--output-len")
    perfect = opts.eplb == "perfect"
    wrong_phase = (
        {"--tokens-per-device": opts.tokens_per_device, "--prefix-hit": opts.prefix_hit, "--cache-path": None if opts.cache_path == "ub" else opts.cache_path}
        if phase == "decode" else {"--batch": opts.batch, "--kv-len": opts.kv_len, "--mtp-acceptance": opts.mtp_acceptance, "--attn-cores": opts.attn_cores}
    )
    given = [k for k, v in wrong_phase.items() if v is not None]
    if given:
        raise SpecError(f"does not apply to {phase}; leave it out or estimate the other phase", where=given[0])
    if opts.kv_len is not None and opts.kv_len > max_ctx:
        raise SpecError(f"expected at most the model's {max_ctx}-token context, got {opts.kv_len:g}", where="--kv-len")
    if phase == "decode":
        kv_len = opts.kv_len if opts.kv_len is not None else input_len + output_len / 2
        base = dict(
            devices=devices, ep=ep, batch=opts.batch or d["batch"], kv_len=kv_len, mtp=mtp, mtp_acceptance=acc,
            redundant=redundant, attn_tp=opts.attn_tp, eplb_perfect=perfect,
            extra={"max_context": max(input_len + output_len, kv_len)},
        )
        res = _best_pipeline(hw, m, base, opts.microbatches, opts.attn_cores)
    else:
        inp = PrefillInputs(
            devices=devices, ep=ep, tokens_per_device=opts.tokens_per_device or d["tokens_per_device"],
            input_len=input_len, microbatches=opts.microbatches or d["prefill_microbatches"], redundant=redundant,
            attn_tp=opts.attn_tp, mtp=mtp, prefix_hit=hit, cache_path=opts.cache_path, eplb_perfect=perfect,
        )
        validate_prefill(inp)
        res = evaluate_prefill(hw, m, inp)
    res["hardware"], res["model"] = hw, m
    res["workload"] = {"input_len": input_len, "output_len": output_len, "mtp": mtp, "mtp_acceptance": acc, "prefix_hit": hit}
    return res


def scalar(x) -> float:
    return float(np.asarray(x).reshape(-1)[0])
