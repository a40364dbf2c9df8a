"""`cmperf plan`: the best deployment per SLO, the next few, what binds, the P/D split, the frontier."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field, replace

import numpy as np

from cmperf.errors import InfeasibleError, SpecError
from cmperf.frames import Frame
from cmperf.inputs import DEFAULT_INPUT_LEN, DEFAULT_MTP_ACCEPTANCE, DEFAULT_OUTPUT_LEN
from cmperf.evaluation import DEFAULT_DEPLOYMENTS, choose, estimate_inputs
from cmperf.overrides import load_specs
from cmperf.solve.queueing import DEFAULT_MAX_UTILISATION, DEFAULT_TTFT_MS, load_report
from cmperf.solve.records import explain_all, record
from cmperf.solve.search import Grid, best_by_devices, best_latency_s, best_per_deployment, params_at, pareto_front, ranked
from cmperf.solve.sizing import best_split, split_economics
from cmperf.solve.stream import decode_search, prefill_search
from cmperf.specs.deployment import Workload
from cmperf.specs.deployment_file import load_deployment
from cmperf.specs.loader import Spec

#: What a plan compares with the paper's deployment (files in deployments/), per phase.
PAPER_FIELDS = {"decode": ("devices", "ep", "redundant", "attn_tp", "microbatches", "mtp"),
                "prefill": ("devices", "ep", "redundant", "attn_tp", "microbatches", "tokens_per_device")}


def paper_deployment(phase: str) -> dict:
    """The paper's deployment of a phase, as the fields a plan compares (what the file leaves open
    taken as `cmperf estimate` takes it)."""
    src = load_deployment(DEFAULT_DEPLOYMENTS[phase])
    d = src.deployment
    if any(getattr(d, k) is None for k in PAPER_FIELDS[phase]):
        d = choose(*estimate_inputs(src))[0]  # the choices only: no evaluation of the chosen deployment
    return {k: getattr(d, k) for k in PAPER_FIELDS[phase]}


@dataclass
class PlanRequest:
    hardware: str = "cloudmatrix384"
    model: str = "deepseek-r1"
    tpot_ms: tuple = (15.0, 50.0)
    ttft_ms: float | None = None
    input_len: int = DEFAULT_INPUT_LEN
    output_len: int = DEFAULT_OUTPUT_LEN
    mtp_acceptance: float = DEFAULT_MTP_ACCEPTANCE
    devices: int | None = None  # budget; default one system (e.g. 384 NPUs)
    top: int = 3
    eplb: str = "default"
    prefix_hit: float = 0.0
    sets: dict = field(default_factory=dict)
    max_utilisation: float = DEFAULT_MAX_UTILISATION

    @property
    def workload(self) -> Workload:
        return Workload(input_len=self.input_len, output_len=self.output_len, mtp_acceptance=self.mtp_acceptance,
                        prefix_hit=self.prefix_hit, tpot_ms=self.tpot_ms, ttft_ms=self.ttft_ms)

    def checked(self) -> "PlanRequest":
        """A copy with every field validated as the CLI validates its options (SpecError otherwise)."""
        from cmperf.inputs import TPOT_MS_RANGE, TTFT_MS_RANGE, check_fields, check_number, check_sets

        for name in ("hardware", "model"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise SpecError(f"expected a {name} name or .toml path, got {getattr(self, name)!r}", where=f"--{name}")
        tpots = (self.tpot_ms,) if isinstance(self.tpot_ms, (int, float)) else self.tpot_ms
        if not isinstance(tpots, (tuple, list)) or not tpots:
            raise SpecError(f"expected one or more TPOT SLOs in ms, got {self.tpot_ms!r}", where="--tpot")
        tpots = tuple(check_number(t, "--tpot", whole=False, lo=TPOT_MS_RANGE[0], hi=TPOT_MS_RANGE[1]) for t in tpots)
        ttft = None if self.ttft_ms is None else check_number(self.ttft_ms, "--ttft", whole=False, lo=TTFT_MS_RANGE[0], hi=TTFT_MS_RANGE[1])
        values = check_fields(self, PLAN_BOUNDS, {"eplb": ("default", "perfect")}, required=tuple(k for k in PLAN_BOUNDS if k != "devices"))
        return replace(self, **values, tpot_ms=tpots, ttft_ms=ttft, sets=check_sets(self.sets))


#: (whole number?, lower, upper) of each PlanRequest field: the ranges of the CLI options.
PLAN_BOUNDS = {
    "input_len": (True, 1, 10_000_000), "output_len": (True, 1, 10_000_000), "mtp_acceptance": (False, 0.0, 1.0),
    "devices": (True, 1, 1_000_000), "top": (True, 1, 100), "prefix_hit": (False, 0.0, 0.999),
}


@dataclass
class PlanResult(Frame):
    request: PlanRequest
    hw: Spec
    model: Spec
    budget: int
    records: list  # one per phase, SLO and rank
    sizing: list  # one per TPOT SLO
    frontier: list  # Pareto points
    decode_grid_size: int
    prefill_grid_size: int
    paper: list  # the paper's deployment at each SLO, for comparison (CloudMatrix384 only)
    ttft_default: bool = False  # the TTFT SLO is the default one, not the user's

    def to_records(self) -> list[dict]:
        """One flat record per reported deployment (phase, SLO, rank, latency, throughput, choices, what binds)."""
        return [{k: v for k, v in r.items() if k not in ("deployment_obj", "workload")} for r in self.records]

    def deployments(self) -> list:
        """The reported deployments as `Deployment`s, in record order."""
        return [r["deployment_obj"] for r in self.records]


def _record(grid: Grid, flat: int, phase: str, slo_tpot, slo_ttft, rank: int, dies_pkg: int, slo_s) -> dict:
    r = record(grid, flat, slo_tpot if grid.phase == "decode" else slo_ttft, dies_pkg)
    r.update({"slo_tpot_ms": slo_tpot, "slo_ttft_ms": slo_ttft, "rank": rank})
    return r


def estimate_command(rec: dict, req: PlanRequest) -> str:
    q = shlex.quote
    parts = [f"cmperf estimate {rec['phase']}", f"--hardware {q(req.hardware)}", f"--model {q(req.model)}", f"--devices {rec['devices']}",
             f"--ep {rec['ep']}", f"--redundant {rec['redundant']}", f"--attn-tp {rec['attn_tp']}", f"--microbatches {rec['microbatches']}",
             f"--input-len {req.input_len}", f"--output-len {req.output_len}", f"--mtp {rec['mtp']}"]
    if rec["phase"] == "decode":
        parts += [f"--batch {rec['batch']}", f"--mtp-acceptance {req.mtp_acceptance!r}"]
        if rec["microbatches"] >= 2 and rec.get("attn_cores") is not None:  # 0: the hardware file's split
            parts.append(f"--attn-cores {rec['attn_cores']}")
    else:
        parts += [f"--tokens-per-device {rec['tokens_per_device']}", f"--prefix-hit {req.prefix_hit!r}"]
    if req.eplb != "default":
        parts.append(f"--eplb {req.eplb}")
    parts += [f"--set {q(f'{k}={v}')}" for k, v in req.sets.items()]
    return " ".join(parts)


def _explain(recs: list[dict], req: PlanRequest, hw: Spec, model: Spec) -> None:
    """Evaluate the deployments as `cmperf estimate` does (`explain_all`: one broadcast call per
    phase, each deployment's numbers those it gives alone) and attach what binds and how to rerun."""
    explain_all(recs, hw, model, req.workload)
    for rec in recs:
        _finish(rec, req)


def _finish(rec: dict, req: PlanRequest) -> None:
    """The latency under its phase's name, the estimate command and the deployment file's name."""
    rec["tpot_ms" if rec["phase"] == "decode" else "ttft_ms"] = rec["latency_ms"]
    rec["tpot_ms" if rec["phase"] == "prefill" else "ttft_ms"] = None
    rec["estimate"] = estimate_command(rec, req)
    slo = f"-tpot{rec['slo_tpot_ms']:g}ms" if rec["phase"] == "decode" else ""
    rec["deployment_file"] = f"deployment-{rec['phase']}{slo}-{rec['rank'] or 'paper'}.toml"


def _differs(rec: dict, paper: dict) -> str:
    diffs = [f"{k} {paper[k]} -> {rec[k]}" for k in paper if rec.get(k) is not None and rec[k] != paper[k]]
    return ", ".join(diffs) if diffs else "same structure as the paper"


def _has_structure(grid: Grid, ref: dict) -> bool:
    st = grid.axes["structure"]
    return bool(np.any((st.devices == ref["devices"]) & (st.ep == ref["ep"]) & (st.redundant == ref["redundant"])))


def _paper_point(grid: Grid, slo_s, ref: dict):
    """The paper's structure meeting the SLO: decode at the largest batch that does (two
    microbatches, else one: the paper does not give the count at its 15 ms point); prefill at the
    paper's batch. None if the structure is not in the grid or cannot meet the SLO."""
    st = grid.axes["structure"]
    s = np.flatnonzero((st.devices == ref["devices"]) & (st.ep == ref["ep"]) & (st.redundant == ref["redundant"]))
    if not len(s):
        return None
    tp = int(np.flatnonzero(grid.axes["attn_tp"] == ref["attn_tp"])[0])
    feasible = grid.ok if slo_s is None else grid.ok & (grid.latency_s <= slo_s)
    if grid.phase == "prefill":
        j = np.flatnonzero(grid.axes["tokens_per_device"] == ref["tokens_per_device"])
        mb = int(np.flatnonzero(grid.axes["microbatches"] == ref["microbatches"])[0])
        if not len(j) or not feasible[s[0], tp, mb, j[0]]:
            return None
        i = (s[0], tp, mb, int(j[0]))
        return float(grid.metric[i]), int(np.ravel_multi_index(i, grid.shape))
    k = np.flatnonzero(grid.axes["mtp"] == ref["mtp"])
    if not len(k):
        return None
    best, flat = best_per_deployment(grid, slo_s)
    for n in (ref["microbatches"], 1):
        mb = np.flatnonzero(grid.axes["microbatches"] == n)
        if len(mb) and np.isfinite(best[s[0], tp, mb, k[0]]).any():
            j = int(mb[np.argmax(best[s[0], tp, mb, k[0]])])  # the best core split for that count
            i = (s[0], tp, j, int(k[0]))
            return float(best[i]), int(flat[i])
    return None


def plan(req: PlanRequest) -> PlanResult:
    if not isinstance(req, PlanRequest):
        raise SpecError(f"expected a PlanRequest, got {type(req).__name__}", where="request")
    req = req.checked()
    hw, model, workload = load_specs(req.hardware, req.model, req.sets)
    # `--set workload.KEY=VALUE` takes precedence over the matching plan option.
    req = replace(req, **workload)
    dies_pkg = hw["package.dies"]
    system = hw["system.nodes"] * hw["node.packages"]
    budget = req.devices or system
    if budget < hw["node.packages"]:
        raise SpecError(f"expected at least one node ({hw['node.packages']} devices), got {budget}", where="--devices")
    max_ctx = model["arch.max_position_embeddings"]
    if req.input_len + req.output_len > max_ctx:
        raise SpecError(f"input + output = {req.input_len + req.output_len} tokens exceeds the model's {max_ctx}-token context",
                        where="--input-len/--output-len")
    perfect = req.eplb == "perfect"
    ttft_default = req.ttft_ms is None
    if ttft_default:
        req = replace(req, ttft_ms=DEFAULT_TTFT_MS)
    ttft_s = req.ttft_ms * 1e-3
    paper_decode, paper_prefill = paper_deployment("decode"), paper_deployment("prefill")
    dg = decode_search(hw, model, budget, req.input_len, req.output_len, req.mtp_acceptance, perfect,
                       slos=[t * 1e-3 for t in req.tpot_ms], top=req.top, keep=[paper_decode])
    pg = prefill_search(hw, model, budget, req.input_len, perfect, req.prefix_hit, slos=[ttft_s], top=req.top, keep=[paper_prefill])

    for grid, phase in ((dg, "decode"), (pg, "prefill")):
        if grid.size == 0:
            E, S = model["moe.n_routed_experts"], model["moe.n_shared_experts"]
            raise InfeasibleError(f"no {phase} deployment of up to {budget} devices can place the model's {E} routed and {S} shared "
                                  "experts (one per die, or the routed ones spread evenly over the dies)", where="--devices/--set")
        if not grid.ok.any():
            used = np.where(np.broadcast_to(grid.result["valid"], grid.shape), np.broadcast_to(grid.result["hbm_used_bytes_per_die"], grid.shape), np.inf)
            raise InfeasibleError(f"no {phase} deployment fits in HBM: the smallest needs {used.min() / 1e9:.1f} GB per die, "
                                  f"the hardware has {hw['die.hbm_capacity_bytes'] / 1e9:.1f} GB", where="--devices/--set")
    for t in req.tpot_ms:
        if not ranked(dg, t * 1e-3, 1):
            raise InfeasibleError(f"no deployment meets TPOT <= {t:g} ms; the best achievable TPOT is {best_latency_s(dg) * 1e3:.2f} ms", where="--tpot")
    if ttft_s is not None and not ranked(pg, ttft_s, 1):
        raise InfeasibleError(f"no prefill deployment meets TTFT <= {req.ttft_ms:g} ms; the best achievable TTFT is {best_latency_s(pg) * 1e3:.1f} ms", where="--ttft")

    records, paper = [], []
    # The paper's deployment is a reference only where it can be built: 160 packages holding 320
    # expert ranks exist on a two-die package (the 910C), not on one-die GPUs.
    paper_applies = _has_structure(dg, paper_decode)
    for t in req.tpot_ms:
        for rank, flat in enumerate(ranked(dg, t * 1e-3, req.top), start=1):
            rec = _record(dg, flat, "decode", t, req.ttft_ms, rank, dies_pkg, t * 1e-3)
            rec["vs_paper"] = _differs(rec, paper_decode) if paper_applies else None
            records.append(rec)
        pp = _paper_point(dg, t * 1e-3, paper_decode) if paper_applies else None
        if pp:
            paper.append(_record(dg, pp[1], "decode", t, req.ttft_ms, 0, dies_pkg, t * 1e-3))
    for rank, flat in enumerate(ranked(pg, ttft_s, req.top), start=1):
        rec = _record(pg, flat, "prefill", None, req.ttft_ms, rank, dies_pkg, ttft_s)
        rec["vs_paper"] = _differs(rec, paper_prefill) if paper_applies else None
        records.append(rec)
    pp = _paper_point(pg, ttft_s, paper_prefill) if paper_applies else None
    if pp:
        paper.append(_record(pg, pp[1], "prefill", None, req.ttft_ms, 0, dies_pkg, ttft_s))
    _explain(records + paper, req, hw, model)

    sizing = []
    p_opts = best_by_devices(pg, ttft_s)
    for t in req.tpot_ms:
        d_opts = best_by_devices(dg, t * 1e-3)
        split = best_split(budget, [o[0] for o in p_opts], [o[1] for o in p_opts], [o[0] for o in d_opts], [o[1] for o in d_opts],
                           req.input_len, req.output_len, req.max_utilisation)
        if split:
            p_flat = p_opts[split["prefill_option"]][2]
            split["under_load"] = load_report(split["requests_per_s"], split["prefill_instances"], float(pg.latency_s.reshape(-1)[p_flat]),
                                              split["prefill_capacity_requests_per_s"])
            split["economics"] = split_economics(hw, split, req.output_len, budget)
            split["slo_tpot_ms"] = t
            split["slo_ttft_ms"] = req.ttft_ms
            split["prefill"] = params_at(pg, p_opts[split.pop("prefill_option")][2])
            split["decode"] = params_at(dg, d_opts[split.pop("decode_option")][2])
            sizing.append(split)

    front = []
    for flat in pareto_front(dg):
        p = params_at(dg, int(flat))
        p["tpot_ms"] = float(dg.latency_s.reshape(-1)[flat]) * 1e3
        p["tokens_per_s_per_device"] = float(dg.metric.reshape(-1)[flat])
        front.append(p)
    return PlanResult(req, hw, model, budget, records, sizing, front, dg.size, pg.size, paper, ttft_default)
