"""Evaluate deployments: hardware x model x workload x deployment -> a typed `Evaluation`.

`evaluate` is the one place where the workload and the deployment become the per-die inputs of
the decode and prefill models (`DecodeInputs`, `PrefillInputs`), where what a deployment leaves
open is derived (EP, redundant experts, MTP tokens, microbatches, core split), and where the mean
decode context is set:

    kv_len = input + output / 2        (unless the workload gives it)

`estimate` adds what a user starts from: a deployment by phase (the paper's), name or file, fields
that override single values, and `--set` overrides of the hardware, model and workload.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from functools import cached_property, lru_cache
from typing import Any

import numpy as np

from cmperf.compose.binding import binding as stream_binding
from cmperf.compose.decode import MICROBATCH_CHOICES, DecodeInputs, evaluate_decode, split_choices, validate_decode
from cmperf.compose.prefill import PrefillInputs, evaluate_prefill, validate_prefill
from cmperf.costs.moe import placement
from cmperf.errors import SpecError
from cmperf.frames import Frame
from cmperf.inputs import check_sets
from cmperf.overrides import load_specs
from cmperf.specs import derived as dv
from cmperf.specs.deployment import Deployment, Workload, as_int
from cmperf.specs.deployment_file import DeploymentFile, load_deployment
from cmperf.specs.loader import Spec

#: The deployment `estimate` starts from for each phase: the paper's (files in deployments/).
DEFAULT_DEPLOYMENTS = {"decode": "cm384-paper-decode", "prefill": "cm384-paper-prefill"}
DEFAULT_HARDWARE = "cloudmatrix384"
DEFAULT_MODEL = "deepseek-r1"
#: Redundant expert counts tried, in order, when a deployment leaves them open.
REDUNDANT_PREFERENCE = (32, 0)


@dataclass(frozen=True)
class Evaluation(Frame):
    """One evaluated deployment (or a grid of them: then every number is an array).

    Times in seconds, memory in bytes per die, throughput in tokens/s. `latency_s` is the TPOT in
    decode and the TTFT in prefill. `binding` says in words what limits the deployment.
    """

    phase: str
    hardware: Spec = field(repr=False)
    model: Spec = field(repr=False)
    workload: Workload
    deployment: Deployment
    kv_len_tokens: Any
    step_s: Any
    latency_s: Any
    tokens_per_s_per_device: Any
    tokens_per_s_per_die: Any
    hbm_used_bytes_per_die: Any
    hbm_capacity_bytes_per_die: Any
    fits: Any
    valid: Any
    feasible: Any
    max_batch_per_device: Any = None
    result: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def tpot_s(self):
        return self.latency_s if self.phase == "decode" else None

    @property
    def ttft_s(self):
        return self.latency_s if self.phase == "prefill" else None

    @cached_property
    def binding(self) -> str:
        """What limits this deployment: HBM capacity, or the stream and resource on the critical path."""
        return stream_binding(self.result)

    def to_records(self) -> list[dict]:
        """One flat record (of plain numbers and words) per deployment evaluated."""
        names = ("latency_s", "step_s", "tokens_per_s_per_device", "tokens_per_s_per_die", "hbm_used_bytes_per_die",
                 "hbm_capacity_bytes_per_die", "fits", "feasible", "max_batch_per_device", "kv_len_tokens")
        choices = self.deployment.choices()
        cols = {**choices, **{n: getattr(self, n) for n in names}}
        arrays = {k: np.asarray(v) for k, v in cols.items() if v is not None and not isinstance(v, str)}
        shape = np.broadcast_shapes(*(a.shape for a in arrays.values()))
        flat = {k: np.broadcast_to(a, shape).reshape(-1) for k, a in arrays.items()}
        words = {"phase": self.phase, "hardware": self.hardware.name, "model": self.model.name}
        if not shape:
            words["binding"] = self.binding
        out = []
        for i in range(int(np.prod(shape))):
            rec = dict(words)
            for k in cols:
                v = flat[k][i].item() if k in flat else cols[k]
                rec[k] = as_int(v) if k in choices and isinstance(v, float) else v
            out.append(rec)
        return out


# ---- what a deployment leaves open ------------------------------------------------------------------


def default_redundant(model: Spec, ep: int) -> int:
    """Redundant experts: the paper's 32 where the placement allows, else none, else 16, else the
    fewest that make a valid placement (e.g. 64 on EP160), else none (the placement error then says why)."""
    sh = dv.moe_shape(model)
    E, S = sh["E"], sh["S"]
    for r in (*REDUNDANT_PREFERENCE, 16, _fewest_replicated(E, int(ep))):
        if r is not None and (r in REDUNDANT_PREFERENCE or r <= E) and bool(placement(E, S, ep, r)["valid"]):
            return r
    return 0


def _fewest_replicated(E: int, ep: int) -> int | None:
    """The smallest multiple of 16 (at least 16, at most E) with (E + r) divisible by ep, or None.

    Solves 16 j = -E (mod ep) in closed form, so any expert count is answered at once (trying every
    multiple of 16 took minutes for E near 2**31). With 16 not dedicated, no larger r is either."""
    from math import gcd

    g = gcd(16, ep)
    rhs = (-E) % ep
    if rhs % g:
        return None
    m = ep // g
    j = (rhs // g) * pow(16 // g, -1, m) % m if m > 1 else 0
    r = 16 * (j or m)
    return r if r <= E else None


def check_placement(hw: Spec, model: Spec, d: Deployment) -> None:
    dies = d.devices * hw["package.dies"]
    if d.ep > dies or dies % d.ep:
        raise SpecError(f"expected a divisor of the instance's {dies} dies ({d.devices} devices x {hw['package.dies']}), got {d.ep}", where="--ep")
    if dies % d.attn_tp:
        raise SpecError(f"expected a divisor of the instance's {dies} dies, got {d.attn_tp}", where="--attn-tp")
    h = model["attention.num_attention_heads"]
    if not bool(dv.heads_fit_tp(model, d.attn_tp)):
        raise SpecError(f"attention TP over {d.attn_tp} dies cannot split the model's {h} query heads evenly; expected a divisor of {h}", where="--attn-tp")
    sh = dv.moe_shape(model)
    E, S = sh["E"], sh["S"]
    if E == 0 and d.redundant:
        raise SpecError(f"model '{model.name}' is dense (no routed experts): nothing to replicate; expected --redundant 0", where="--redundant")
    if not bool(placement(E, S, d.ep, d.redundant)["valid"]):
        raise SpecError(
            f"EP{d.ep} cannot place {E} routed + {d.redundant} redundant + {S} shared experts: expected "
            f"EP >= {E + d.redundant + S} (one expert per die) or (routed + redundant) divisible by EP",
            where="--ep/--redundant",
        )


def _resolve(hw: Spec, model: Spec, workload: Workload, d: Deployment) -> Deployment:
    """Fill what the deployment leaves open (except the decode pipeline: microbatches and core split)
    and check a single deployment."""
    has_mtp = model["mtp.num_nextn_predict_layers"] > 0
    changes: dict = {}
    if d.ep is None:
        changes["ep"] = d.devices * hw["package.dies"]
    if d.mtp is None:
        changes["mtp"] = 1 if has_mtp else 0
    d = replace(d, **changes) if changes else d
    if d.redundant is None:
        if d.is_grid:
            raise SpecError("a grid of deployments must give the redundant experts", where="--redundant")
        d = replace(d, redundant=default_redundant(model, d.ep))
    if np.any(np.asarray(d.mtp) > 0) and not has_mtp:
        raise SpecError(f"model '{model.name}' has no MTP module; expected --mtp 0", where="--mtp")
    max_ctx = model["arch.max_position_embeddings"]
    if workload.input_len + workload.output_len > max_ctx:
        raise SpecError(f"input + output = {workload.input_len + workload.output_len} tokens exceeds the model's {max_ctx}-token context",
                        where="--input-len/--output-len")
    if workload.kv_len is not None and workload.kv_len > max_ctx:
        raise SpecError(f"expected at most the model's {max_ctx}-token context, got {workload.kv_len:g}", where="--kv-len")
    if not d.is_grid:
        check_placement(hw, model, d)
    return d


def kv_len_tokens(workload: Workload) -> float:
    """Mean context of a request in decode: input + output / 2, unless the workload gives it."""
    return workload.kv_len if workload.kv_len is not None else workload.input_len + workload.output_len / 2.0


def model_inputs(workload: Workload, d: Deployment):
    """The decode or prefill model's inputs for a resolved deployment (arrays broadcast)."""
    common = dict(devices=d.devices, ep=d.ep, microbatches=d.microbatches, redundant=d.redundant, attn_tp=d.attn_tp,
                  mtp=d.mtp, eplb_perfect=d.eplb == "perfect")
    if d.phase == "decode":
        kv = kv_len_tokens(workload)
        cores = d.attention_matrix_cores
        return DecodeInputs(batch=d.batch, kv_len=kv, mtp_acceptance=workload.mtp_acceptance, attn_cores=0 if cores is None else cores,
                            extra={"max_context": max(workload.input_len + workload.output_len, kv)}, **common)
    return PrefillInputs(tokens_per_device=d.tokens_per_device, input_len=workload.input_len, prefix_hit=workload.prefix_hit,
                         cache_path=d.cache_path, **common)


def default_inputs(phase: str, **changes):
    """The decode or prefill model's inputs for the paper's deployment and workload of the phase,
    with some input fields changed (for tests and studies of the model itself). Decode KV is sized
    for the mean context unless `extra` says otherwise."""
    inp = model_inputs(*_paper_resolved(phase))
    return replace(inp, **{**({"extra": {}} if phase == "decode" else {}), **changes})


@lru_cache(maxsize=None)
def _paper_resolved(phase: str) -> tuple[Workload, Deployment]:
    """The paper's workload and deployment of a phase, the microbatch count it leaves open taken as
    `estimate` takes it (the core split stays the hardware file's)."""
    src = load_deployment(DEFAULT_DEPLOYMENTS[phase])
    d = src.deployment
    if d.microbatches is None:
        d = replace(d, microbatches=estimate(src).deployment.microbatches)
    return src.workload or Workload(), d


def check_single(hardware: Spec, model: Spec, workload: Workload, d: Deployment) -> None:
    """The checks `evaluate` makes of a single deployment that gives its microbatches (placement,
    context, input ranges), raising `SpecError`; for those evaluated inside a broadcast."""
    d = _resolve(hardware, model, workload, d)
    if d.microbatches is not None:
        inp = model_inputs(workload, d)
        if d.phase == "decode":
            validate_decode(hardware, model, inp)
        else:
            validate_prefill(inp)


def _run(hw: Spec, model: Spec, workload: Workload, d: Deployment) -> Evaluation:
    hw_run = hw
    inp = model_inputs(workload, d)
    if d.phase == "decode":
        if not d.is_grid:
            validate_decode(hw_run, model, inp)
        res = evaluate_decode(hw_run, model, inp)
        latency = res["tpot_s"]
    else:
        if not d.is_grid:
            validate_prefill(inp)
        res = evaluate_prefill(hw_run, model, inp)
        latency = res["ttft_s"]
    if not d.is_grid:
        check_finite_result(res, hw_run, model, ("tpot_s" if d.phase == "decode" else "ttft_s", "tokens_per_s_per_device", "hbm_used_bytes_per_die"))
    res["hardware"], res["model"], res["workload"] = hw_run, model, workload
    return Evaluation(
        phase=d.phase, hardware=hw_run, model=model, workload=workload, deployment=d, kv_len_tokens=kv_len_tokens(workload),
        step_s=res["step_s"], latency_s=latency, tokens_per_s_per_device=res["tokens_per_s_per_device"],
        tokens_per_s_per_die=res["tokens_per_s_per_die"], hbm_used_bytes_per_die=res["hbm_used_bytes_per_die"],
        hbm_capacity_bytes_per_die=res["hbm_capacity_bytes_per_die"], fits=res["fits"], valid=res["valid"], feasible=res["feasible"],
        max_batch_per_device=res.get("max_batch_per_device"), result=res,
    )


def check_finite_result(res: dict, hw: Spec, m: Spec, keys) -> None:
    """Refuse, naming the inputs, a result the model cannot give as a finite positive number
    (values at the edge of their ranges can combine into an overflow or an underflow)."""
    for key in keys:
        v = np.asarray(res[key], dtype=float)
        if not np.all(np.isfinite(v) & (v > 0)):
            changed = [*hw.overridden, *m.overridden]
            inputs = f"the values set ({', '.join(changed)})" if changed else f"the values of {hw.path} and {m.path}"
            raise SpecError(f"the model gives {key} = {float(v.reshape(-1)[0]):g} for these inputs: {inputs} are beyond what "
                            "it can evaluate; expected values nearer real hardware and models", where="--set" if changed else hw.path)


def pipeline_choices(hw: Spec, d: Deployment) -> list[tuple]:
    """The (microbatches, attention matrix cores) pairs a decode deployment may take: the given
    ones, or, where either is left open, each allowed choice (microbatches 1 to 3; for two or
    more, the hardware's core splits; one microbatch runs on the whole die)."""
    mbs = [d.microbatches] if d.microbatches is not None else list(MICROBATCH_CHOICES)
    cores = d.attention_matrix_cores
    return [(n, a) for n in mbs for a in ([cores] if cores is not None else (split_choices(hw) if n >= 2 else [0]))]


def _best_pipeline(hardware: Spec, model: Spec, workload: Workload, d: Deployment) -> Deployment:
    """The decode deployment at the allowed pipeline (microbatches, core split) with the lowest TPOT
    (the first such in `pipeline_choices` order), every choice evaluated in one broadcast call."""
    choices = pipeline_choices(hardware, d)
    n, a = (np.array(x, dtype=float) for x in zip(*choices))
    res = evaluate_decode(hardware, model, model_inputs(workload, replace(d, microbatches=n, attention_matrix_cores=a)))
    tpot = np.broadcast_to(np.asarray(res["tpot_s"], dtype=float), n.shape)
    best_n, best_a = choices[int(np.argmin(tpot))]
    return replace(d, microbatches=best_n, attention_matrix_cores=best_a)


def _best_pipeline_grid(hardware: Spec, model: Spec, workload: Workload, d: Deployment) -> Deployment:
    """A decode grid that leaves the microbatches open, with each point's pipeline chosen as a single
    deployment's is (`_best_pipeline`): the (microbatches, core split) arrays of the lowest TPOTs."""
    if _is_array(d.attention_matrix_cores):
        raise SpecError("a grid that leaves the microbatches open must give one core split, or leave it open too", where="--attn-cores")
    best_lat = best_n = best_a = None
    for n, a in pipeline_choices(hardware, d):
        lat = np.asarray(_run(hardware, model, workload, replace(d, microbatches=n, attention_matrix_cores=a)).latency_s, float)
        if best_lat is None:
            best_lat, best_n, best_a = lat, np.full(lat.shape, float(n)), np.full(lat.shape, float(a))
            continue
        better = lat < best_lat
        best_lat = np.where(better, lat, best_lat)
        best_n, best_a = np.where(better, float(n), best_n), np.where(better, float(a), best_a)
    return replace(d, microbatches=best_n, attention_matrix_cores=best_a)


def _is_array(value) -> bool:
    return isinstance(value, np.ndarray) and value.ndim > 0


def evaluate(hardware: Spec, model: Spec, workload: Workload, deployment: Deployment) -> Evaluation:
    """Evaluate one deployment, or a grid of them (fields given as broadcastable numpy arrays).

    A single deployment is checked (placement, context length) and an error raises `SpecError`; a
    grid is never checked point by point: `valid`, `fits` and `feasible` say which points work.
    A single decode deployment that leaves the microbatches or the core split open takes the
    allowed choice with the lowest TPOT (`result["pipeline_chosen"]` says so where there was more
    than one); a single prefill deployment that leaves the microbatches open takes the allowed
    count with the lowest latency among those that fit. A decode grid that leaves the microbatches open takes, point by
    point, the choice a single deployment would; one that gives them and leaves the core split open
    runs at the hardware file's split.
    """
    d, chosen = choose(hardware, model, workload, deployment)
    ev = _run(hardware, model, workload, d)
    if d.phase == "decode":
        ev.result["pipeline_chosen"] = chosen
    return ev


def choose(hardware: Spec, model: Spec, workload: Workload, deployment: Deployment) -> tuple[Deployment, bool]:
    """The deployment `evaluate` evaluates: what `deployment` leaves open (EP, redundancy, MTP,
    microbatches, core split) taken as `evaluate` takes it, single deployments checked; and whether
    the pipeline was chosen among several."""
    d = _resolve(hardware, model, workload, deployment)
    chosen = False
    if d.phase == "decode" and d.is_grid and d.microbatches is None:
        d, chosen = _best_pipeline_grid(hardware, model, workload, d), True
    if d.microbatches is None and d.is_grid:
        raise SpecError("a grid of deployments must give the microbatches", where="--microbatches")
    if d.phase == "decode" and not d.is_grid and (d.microbatches is None or d.attention_matrix_cores is None):
        choices = pipeline_choices(hardware, d)
        for n, a in choices:
            validate_decode(hardware, model, model_inputs(workload, replace(d, microbatches=n, attention_matrix_cores=a)))
        d, chosen = _best_pipeline(hardware, model, workload, d), len(choices) > 1
    elif d.microbatches is None:
        trial = _run(hardware, model, workload, replace(d, microbatches=np.array(MICROBATCH_CHOICES, float)))
        lat = np.where(np.broadcast_to(trial.feasible, np.shape(trial.latency_s)), trial.latency_s, np.inf)
        if not np.isfinite(lat).any():
            lat = np.asarray(trial.latency_s)
        d = replace(d, microbatches=MICROBATCH_CHOICES[int(np.argmin(lat))])
    return d, chosen


# ---- what a user starts from -------------------------------------------------------------------------


#: Workload fields that only one phase reads, with the option that sets them.
_PHASE_ONLY = {"decode": ("kv_len", "mtp_acceptance"), "prefill": ("prefix_hit",)}
WORKLOAD_FIELDS = tuple(f.name for f in fields(Workload))
DEPLOYMENT_FIELDS = tuple(f.name for f in fields(Deployment) if f.name not in ("phase", "name"))


def deployment_source(deployment: str | Deployment | DeploymentFile) -> DeploymentFile:
    """A deployment given as a phase ("decode", "prefill": the paper's), a name, a path or an object."""
    if isinstance(deployment, DeploymentFile):
        return deployment
    if isinstance(deployment, Deployment):
        return DeploymentFile(deployment, None)
    if not isinstance(deployment, str):
        raise SpecError(f"expected a phase, a deployment name or path, or a Deployment, got {deployment!r}", where="--deployment")
    return load_deployment(DEFAULT_DEPLOYMENTS.get(deployment, deployment))


def estimate(deployment: str | Deployment | DeploymentFile = "decode", hardware: str | Spec | None = None, model: str | Spec | None = None,
             workload: Workload | None = None, sets: dict | None = None, **changes) -> Evaluation:
    """Evaluate one deployment as a user states it: a starting deployment, single fields changed
    (`changes`: any `Deployment` or `Workload` field), and `--set` overrides (hardware, model and
    workload keys). Hardware, model, workload and overrides default to those the deployment file
    names, then to cloudmatrix384 / deepseek-r1 / `Workload()`."""
    return evaluate(*estimate_inputs(deployment, hardware, model, workload, sets, **changes))


def estimate_inputs(deployment: str | Deployment | DeploymentFile = "decode", hardware: str | Spec | None = None, model: str | Spec | None = None,
                    workload: Workload | None = None, sets: dict | None = None, **changes) -> tuple[Spec, Spec, Workload, Deployment]:
    """(hardware, model, workload, deployment) that `estimate` evaluates, from the same arguments."""
    src = deployment_source(deployment)
    if workload is not None and not isinstance(workload, Workload):
        raise SpecError(f"expected a cmperf Workload, got {workload!r}", where="workload")
    if sets is not None and not isinstance(sets, dict):
        raise SpecError(f"expected a dict of KEY: VALUE overrides, got {sets!r}", where="--set")
    sets = check_sets(sets)
    for name, value in (("hardware", hardware), ("model", model)):
        if value is not None and not isinstance(value, (str, Spec)):
            raise SpecError(f"expected a name, a path or a loaded description, got {value!r}", where=f"--{name}")
    unknown = [k for k in changes if k not in WORKLOAD_FIELDS and k not in DEPLOYMENT_FIELDS]
    if unknown:
        raise SpecError(f"unknown field {unknown[0]!r}; expected one of {', '.join(DEPLOYMENT_FIELDS + WORKLOAD_FIELDS)}", where="estimate")
    given = {k: v for k, v in changes.items() if v is not None}
    phase = src.deployment.phase
    for k in _PHASE_ONLY["prefill" if phase == "decode" else "decode"]:
        if k in given:
            raise SpecError(f"does not apply to {phase}; leave it out or estimate the other phase", where="--" + k.replace("_", "-"))
    hw, m, wl_sets = load_specs(hardware or src.hardware or DEFAULT_HARDWARE, model or src.model or DEFAULT_MODEL,
                                {**src.overrides, **(sets or {})})
    wl = (workload or src.workload or Workload()).with_fields(**wl_sets)
    wl = wl.with_fields(**{k: v for k, v in given.items() if k in WORKLOAD_FIELDS})
    dep = src.deployment
    if hardware is not None and src.hardware and (hardware.name if isinstance(hardware, Spec) else hardware) != src.hardware:
        dep = replace(dep, ep=None, redundant=None)  # the file's EP and redundancy are for its own hardware's dies
    if model is not None and src.model and (model.name if isinstance(model, Spec) else model) != src.model:
        dep = replace(dep, redundant=None, mtp=None)  # the file's redundancy and MTP tokens are for its own model's experts and MTP module
    dep = dep.with_fields(**{k: v for k, v in given.items() if k in DEPLOYMENT_FIELDS})
    return hw, m, wl, dep
