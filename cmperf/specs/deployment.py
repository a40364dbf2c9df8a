"""The workload and the deployment: the two inputs besides the hardware and the model.

A `Workload` says what is served (prompt and output lengths, MTP acceptance, prefix-cache hits,
SLOs); a `Deployment` says how one instance serves it (devices, expert and attention parallelism,
redundant experts, microbatches, core split, MTP tokens, batch). Both are frozen and validated on
construction; every default is written here once. A field of a `Deployment` may be a numpy array:
the solver evaluates a grid of deployments in one broadcast call.

`None` in a deployment field means "derived": `ep` one rank per die of the instance, `redundant`
the fewest redundant experts that make a valid placement after the usual 32 (see
`cmperf.evaluate`), `mtp` one speculative token when the model has an MTP module, `microbatches`
and `attention_matrix_cores` the best allowed choice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from cmperf import inputs
from cmperf.errors import SpecError

PHASES = ("decode", "prefill")
EPLB_CHOICES = ("default", "perfect")
CACHE_PATHS = ("ub", "vpc")
MAX_PREFIX_HIT = 0.999


#: The CLI option of a field whose name differs from the option's.
_OPTION = {"attention_matrix_cores": "--attn-cores"}


def _where(name: str) -> str:
    return _OPTION.get(name, "--" + name.replace("_", "-"))


def _is_grid(value) -> bool:
    return isinstance(value, np.ndarray) and value.ndim > 0


def check_number(name: str, value, lo: float, hi: float, whole: bool, where: str | None = None):
    """A number (or array of numbers) in [lo, hi]; whole numbers where counts are meant. A single
    value is refused with the message the CLI option gives (`cmperf.inputs.check_number`)."""
    where = where or _where(name)
    if value is None:
        return None
    if not _is_grid(value):
        return inputs.check_number(value, where, whole=whole, lo=lo, hi=hi)
    try:
        arr = np.asarray(value, float)
    except (TypeError, ValueError):
        raise SpecError(f"expected an array of numbers, got {inputs.safe_text(repr(value))}", where=where) from None
    if not np.all(np.isfinite(arr)):
        raise SpecError("expected finite numbers, got a NaN or an infinity", where=where)
    if np.any(arr < lo) or np.any(arr > hi):
        raise SpecError(f"expected a value in [{lo:g}, {hi:g}], got values from {arr.min():g} to {arr.max():g}", where=where)
    return value


def check_choice(name: str, value, choices: tuple, where: str | None = None):
    if not isinstance(value, str) or value not in choices:
        raise SpecError(f"expected one of {', '.join(map(repr, choices))}, got {inputs.safe_text(repr(value))}", where=where or _where(name))
    return value


@dataclass(frozen=True)
class Workload:
    """What is served: request shape, speculation acceptance, prefix-cache hits and the SLOs.

    `kv_len` (mean context per request in decode, tokens) is derived as input + output / 2 unless
    given; `cmperf.evaluate` is the one place that derives it.
    """

    input_len: int = inputs.DEFAULT_INPUT_LEN
    output_len: int = inputs.DEFAULT_OUTPUT_LEN
    mtp_acceptance: float = inputs.DEFAULT_MTP_ACCEPTANCE
    prefix_hit: float = 0.0
    kv_len: float | None = None
    tpot_ms: tuple = (15.0, 50.0)
    ttft_ms: float | None = None

    def __post_init__(self):
        set_ = object.__setattr__
        set_(self, "input_len", check_number("input_len", self.input_len, 1, 10_000_000, True))
        set_(self, "output_len", check_number("output_len", self.output_len, 1, 10_000_000, True))
        set_(self, "mtp_acceptance", check_number("mtp_acceptance", self.mtp_acceptance, 0.0, 1.0, False))
        set_(self, "prefix_hit", check_number("prefix_hit", self.prefix_hit, 0.0, MAX_PREFIX_HIT, False))
        set_(self, "kv_len", check_number("kv_len", self.kv_len, 1, 10_000_000, False))
        tpot = (self.tpot_ms,) if isinstance(self.tpot_ms, (int, float)) else self.tpot_ms
        if not isinstance(tpot, (tuple, list)) or not tpot:
            raise SpecError(f"expected one or more TPOT SLOs in ms, got {inputs.safe_text(repr(self.tpot_ms))}", where="--tpot")
        set_(self, "tpot_ms", tuple(check_number("tpot", t, 1e-3, 1e9, False, "--tpot") for t in tpot))
        set_(self, "ttft_ms", check_number("ttft", self.ttft_ms, 1e-3, 1e12, False, "--ttft"))

    def with_fields(self, **changes) -> "Workload":
        """A copy with some fields changed; None leaves a field as it is."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


@dataclass(frozen=True)
class Deployment:
    """How one instance serves a phase. Fields may be numpy arrays (a grid of deployments)."""

    phase: str
    devices: Any
    ep: Any = None  # expert-parallel ranks (a rank is a die); None: one per die of the instance
    attn_tp: Any = 1  # dies per attention tensor-parallel group
    redundant: Any = None  # redundant expert copies; None: derived from the placement
    microbatches: Any = None  # None: the best allowed choice
    attention_matrix_cores: Any = None  # per die, for the attention stream when microbatches >= 2; 0: the hardware file's split; None: the best allowed
    mtp: Any = None  # speculative tokens per step; None: one if the model has an MTP module
    batch: Any = None  # decode: concurrent requests per device
    tokens_per_device: Any = None  # prefill: prompt tokens per device per batch
    eplb: str = "default"
    cache_path: str = "ub"  # prefill: where cached prefix KV is loaded from
    name: str = ""  # where it came from (a file or a plan); not part of the deployment

    def __post_init__(self):
        set_ = object.__setattr__
        check_choice("phase", self.phase, PHASES, "PHASE")
        for name, lo, hi in (("devices", 1, 1_000_000), ("ep", 1, inputs.MAX_INT), ("attn_tp", 1, 1024), ("redundant", 0, 100_000),
                             ("microbatches", 1, 8), ("attention_matrix_cores", 0, 100_000), ("mtp", 0, 8),
                             ("batch", 1, 1_000_000), ("tokens_per_device", 1, 100_000_000)):
            value = getattr(self, name)
            if value is None and name == "attn_tp":
                value = inputs.check_number(value, _where(name), whole=True, lo=lo, hi=hi)  # refused: it has no derived value
            set_(self, name, check_number(name, value, lo, hi, True))
        check_choice("eplb", self.eplb, EPLB_CHOICES)
        check_choice("cache_path", self.cache_path, CACHE_PATHS)
        if self.devices is None:
            raise SpecError("expected the number of devices of the instance", where="--devices")
        other = "prefill" if self.phase == "decode" else "decode"
        misplaced = {"tokens_per_device": self.tokens_per_device, "cache_path": None if self.cache_path == "ub" else self.cache_path} \
            if self.phase == "decode" else {"batch": self.batch, "attention_matrix_cores": self.attention_matrix_cores}
        for name, value in misplaced.items():
            if value is not None:
                raise SpecError(f"does not apply to {self.phase}; leave it out or use a {other} deployment", where=_where(name))
        need = "batch" if self.phase == "decode" else "tokens_per_device"
        if getattr(self, need) is None:
            raise SpecError(f"a {self.phase} deployment needs {need.replace('_', ' ')}", where=_where(need))

    @property
    def is_grid(self) -> bool:
        return any(_is_grid(getattr(self, f.name)) for f in fields(self))

    def with_fields(self, **changes) -> "Deployment":
        """A copy with some fields changed (validated again); None leaves a field as it is.

        A new instance size re-derives the EP degree (one rank per die), and a new instance size or
        EP degree re-derives the redundant experts, unless they are given too: the file's values
        belong to its own instance.
        """
        changes = {k: v for k, v in changes.items() if v is not None}
        if "devices" in changes and "ep" not in changes:
            changes["ep"] = None
        if ("devices" in changes or "ep" in changes) and "redundant" not in changes:
            changes["redundant"] = None
        return replace(self, **changes)

    def choices(self) -> dict:
        """The deployment's choices as plain numbers and words (no phase, no name), for records and files."""
        out = {}
        for f in fields(self):
            if f.name in ("phase", "name"):
                continue
            v = getattr(self, f.name)
            out[f.name] = v.item() if isinstance(v, np.generic) else v
        return out

    def describe(self) -> str:
        parts = [f"{self.devices} dev", f"EP{self.ep}", f"TP{self.attn_tp}", f"red {self.redundant}", f"{self.microbatches} mb"]
        if self.phase == "decode" and self.microbatches is not None and not _is_grid(self.microbatches) and self.microbatches >= 2 \
                and self.attention_matrix_cores:
            parts[-1] += f" ({self.attention_matrix_cores} attention cores)"
        if self.phase == "decode":
            parts += [f"MTP {self.mtp}", f"batch {self.batch}"]
        else:
            parts.append(f"{self.tokens_per_device} tok/dev")
        return ", ".join(parts)


def as_int(value) -> int | None:
    """A whole number from a grid cell (numpy float) or a plain value; None stays None."""
    if value is None:
        return None
    v = float(value)
    return int(v) if math.isfinite(v) and v.is_integer() else v
