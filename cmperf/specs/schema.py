"""The key space of hardware and model files: every key, its type, constraint and meaning.

A file must give exactly the required keys (optional ones may be left out); every value is a
table `{ value = ..., source = "...", kind = "...", note = "..." }` whose `source` names an entry of
the file's `[sources]` table. The same dotted keys are what `--set` accepts and what
`show --format json` prints.
"""

from dataclasses import dataclass

from cmperf.units import DTYPE_BYTES

#: How a number was obtained. Efficiencies and calibration factors must say which.
KINDS = ("paper", "datasheet", "vendor-tool", "config", "measured", "fitted", "assumed", "derived")


@dataclass(frozen=True)
class Field:
    type: str  # "int", "float", "str" or "dtype"
    check: str | None  # "positive", "nonneg", "fraction" (0, 1], "ge1", or None
    unit: str
    help: str
    optional: bool = False


def _f(unit, help, check="positive", optional=False):
    return Field("float", check, unit, help, optional)


def _i(unit, help, check="positive", optional=False):
    return Field("int", check, unit, help, optional)


def _frac(help, optional=False):
    return Field("float", "fraction", "fraction", help, optional)


def _dtype(help, optional=False):
    return Field("dtype", None, "dtype", help, optional)


#: Data types that may carry their own GEMM efficiency (efficiency.<dtype>_matmul_compute_frac).
MATMUL_DTYPES = ("int8", "fp8", "bf16", "fp16")

HARDWARE_FIELDS: dict[str, Field] = {
    # One die: the unit that runs one rank.
    "die.matrix_cores": _i("cores", "matrix engines per die (AI cube cores / SMs)"),
    "die.vector_cores": _i("cores", "vector engines per die (AI vector cores / SMs)"),
    "die.int8_matrix_flops_per_s": _f("OP/s", "dense INT8 matrix peak per die", optional=True),
    "die.fp8_matrix_flops_per_s": _f("FLOP/s", "dense FP8 matrix peak per die", optional=True),
    "die.bf16_matrix_flops_per_s": _f("FLOP/s", "dense BF16 matrix peak per die"),
    "die.fp16_matrix_flops_per_s": _f("FLOP/s", "dense FP16 matrix peak per die", optional=True),
    "die.vector_flops_per_s": _f("FLOP/s", "vector (element-wise) peak per die"),
    "die.hbm_capacity_bytes": _f("B", "HBM capacity per die"),
    "die.hbm_bandwidth_bytes_per_s": _f("B/s", "HBM bandwidth per die"),
    "die.matrix_tile_rows": _i("rows", "rows the matrix engine processes at once; M pads to it"),
    "die.matrix_small_m_tile_rows": _i("rows", "rows M pads to when M <= die.matrix_tile_rows and the GEMM kernel swaps A and B (tokens on the MMA's N side); absent: M pads to die.matrix_tile_rows", optional=True),
    "die.sustained_matrix_clock_frac": _frac("matrix-engine clock held through a long compute-bound phase (prefill), as a fraction of the clock the peaks are quoted at (power/thermal throttling); absent: 1", optional=True),
    "die.matrix_block_rows": _i("rows", "output rows one core computes per GEMM block (for wave quantisation)", optional=True),
    "die.matrix_block_cols": _i("cols", "output columns one core computes per GEMM block (for wave quantisation)", optional=True),
    "die.core_bandwidth_bytes_per_s": _f("B/s", "HBM bandwidth one core can pull on its own", optional=True),
    # One package (NPU or GPU).
    "package.dies": _i("dies", "dies per package; each die is one rank"),
    "package.die_to_die_bandwidth_bytes_per_s": _f("B/s", "on-package die-to-die link, one way", optional=True),
    # Node and system.
    "node.packages": _i("packages", "NPUs/GPUs per node"),
    "node.cpus": _i("CPUs", "host CPU sockets per node"),
    "system.nodes": _i("nodes", "nodes in one system (supernode, rack or cluster unit)"),
    "system.scaleup_domain_packages": _i("packages", "packages joined by the scale-up plane"),
    # Scale-up plane (UB, NVLink).
    "scaleup.links_per_die": _i("links", "scale-up links per die"),
    "scaleup.link_bandwidth_bytes_per_s": _f("B/s", "one link, one way"),
    "scaleup.write_bandwidth_intra_bytes_per_s": _f("B/s", "measured one-way write bandwidth per die, same node"),
    "scaleup.write_bandwidth_inter_bytes_per_s": _f("B/s", "measured one-way write bandwidth per die, other node"),
    "scaleup.read_bandwidth_intra_bytes_per_s": _f("B/s", "measured one-way read bandwidth per die, same node"),
    "scaleup.read_bandwidth_inter_bytes_per_s": _f("B/s", "measured one-way read bandwidth per die, other node"),
    "scaleup.latency_intra_s": _f("s", "measured small-message latency, same node"),
    "scaleup.latency_inter_s": _f("s", "measured small-message latency, other node"),
    "scaleup.collective_startup_s": _f("s", "fixed cost of one bulk collective call (launch, handshake)", check="nonneg"),
    # Scale-out plane (RDMA).
    "scaleout.bandwidth_bytes_per_s_per_die": _f("B/s", "RDMA one-way bandwidth per die"),
    "scaleout.latency_s": _f("s", "RDMA small-message latency"),
    # Datacenter (VPC) plane and the CPU-DRAM pool reached over the scale-up plane.
    "vpc.bandwidth_bytes_per_s_per_node": _f("B/s", "VPC network bandwidth per node, one way"),
    "pool.read_bandwidth_bytes_per_s_per_die": _f("B/s", "die reading the CPU-DRAM pool, one way"),
    "pool.latency_s": _f("s", "die reading the CPU-DRAM pool, small-message latency"),
    "pool.capacity_bytes_per_node": _f("B", "DRAM per node usable as the shared pool", optional=True),
    # Efficiencies: operator-level, with their provenance kind.
    "efficiency.matmul_compute_frac": _frac("matrix-engine efficiency of a large GEMM (K -> inf)"),
    **{
        f"efficiency.{dt}_matmul_compute_frac": _frac(f"matrix-engine efficiency of a large {dt.upper()} GEMM (K -> inf); absent: efficiency.matmul_compute_frac", optional=True)
        for dt in MATMUL_DTYPES
    },
    "efficiency.matmul_k_overhead_elements": _f("elements", "per-tile fill cost in K: eff = e * K / (K + k0)", check="nonneg"),
    "efficiency.matmul_kernel_fixed_s": _f("s", "fixed time of one GEMM kernel beyond its roofline (pipeline fill before the first MMA, epilogue drain); absent: 0", check="nonneg", optional=True),
    "efficiency.attention_compute_frac": _frac("attention kernel efficiency when compute-bound"),
    "efficiency.hbm_frac": _frac("achieved fraction of HBM bandwidth for streaming kernels"),
    "efficiency.vector_frac": _frac("achieved fraction of vector peak"),
    "efficiency.prefill_matrix_duty_frac": _frac("fraction of a prefill batch the matrix engines are kept busy (launch gaps, stream sync, tails), fitted end to end; absent: 1", optional=True),
    "efficiency.scaleout_frac": _frac("achieved fraction of RDMA bandwidth"),
    "efficiency.collective_frac": _frac("achieved fraction of measured scale-up bandwidth for bulk collectives (DMA)"),
    # Fused MoE dispatch/combine driven by vector cores (decode) over the scale-up plane.
    "moe_comm.dispatch_startup_s": _f("s", "fixed cost of one fused dispatch call", check="nonneg"),
    "moe_comm.combine_startup_s": _f("s", "fixed cost of one fused combine call", check="nonneg"),
    "moe_comm.dispatch_bandwidth_bytes_per_s": _f("B/s", "achieved per-die bandwidth of fused dispatch messages"),
    "moe_comm.combine_bandwidth_bytes_per_s": _f("B/s", "achieved per-die bandwidth of fused combine messages"),
    "moe_comm.dispatch_startup_per_token_s": _f("s", "part of the fused dispatch start-up paid per local token, on all vector cores", check="nonneg", optional=True),
    "moe_comm.combine_startup_per_token_s": _f("s", "part of the fused combine start-up paid per local token, on all vector cores", check="nonneg", optional=True),
    "moe_comm.issue_bandwidth_bytes_per_s_per_core": _f("B/s", "remote-write rate one vector core issues in a fused dispatch/combine", optional=True),
    "moe_comm.bulk_send_once_per_domain": _i("0/1", "1: bulk (prefill) dispatch/combine cross the scale-out plane once per destination domain and forward inside it", check="nonneg", optional=True),
    # Stream split for two-microbatch decode (cores given to each stream).
    "overlap.decode_attention_matrix_cores": _i("cores", "matrix cores of the attention stream"),
    "overlap.decode_attention_vector_cores": _i("cores", "vector cores of the attention stream"),
    "overlap.decode_moe_matrix_cores": _i("cores", "matrix cores of the MoE stream"),
    "overlap.decode_moe_vector_cores": _i("cores", "vector cores of the MoE stream"),
    "overlap.decode_split_min_attention_matrix_cores": _i("cores", "fewest matrix cores the decode attention stream may hold in a searched split", optional=True),
    "overlap.decode_split_max_attention_matrix_cores": _i("cores", "most matrix cores the decode attention stream may hold in a searched split", optional=True),
    "overlap.decode_split_step_matrix_cores": _i("cores", "step between the searched decode splits", optional=True),
    "overlap.prefill_comm_matrix_cores": _i("cores", "matrix cores taken by communication during prefill overlap", check="nonneg"),
    "overlap.decode_single_batch": _i("0/1", "1: with one microbatch, fused dispatch/combine run in the background and hide behind the same batch's shared expert; absent or 0: serial", check="nonneg", optional=True),
    # Fixed costs.
    "overhead.op_latency_s": _f("s", "fixed launch/synchronisation latency per operator", check="nonneg"),
    "overhead.decode_step_s": _f("s", "per decode step: scheduling, metadata, sampling", check="nonneg"),
    "overhead.prefill_step_s": _f("s", "per prefill batch: scheduling and set-up", check="nonneg"),
    "overhead.rank_jitter_cv": _f("CV", "run-to-run spread of one rank's compute time before a synchronous all-to-all", check="nonneg", optional=True),
    # Memory.
    "memory.reserve_bytes_per_die": _f("B", "HBM kept back for runtime, workspace and fragmentation", check="nonneg"),
}

MODEL_FIELDS: dict[str, Field] = {
    "arch.hidden_size": _i("", "model width d"),
    "arch.num_hidden_layers": _i("layers", "main-model layers"),
    "arch.first_k_dense_replace": _i("layers", "leading layers with a dense FFN (all of them in a dense model)", check="nonneg"),
    "arch.intermediate_size": _i("", "dense FFN width (SwiGLU)"),
    "arch.vocab_size": _i("tokens", "vocabulary size"),
    "arch.max_position_embeddings": _i("tokens", "longest supported context"),
    # Attention: the kind names the operator list; each kind has its own keys (ATTENTION_KEYS).
    "attention.kind": Field("str", None, "", "attention kind: " + ", ".join(("mla", "mla_sparse", "gqa"))),
    "attention.num_attention_heads": _i("heads", "query heads"),
    "attention.q_lora_rank": _i("", "MLA: query down-projection rank", optional=True),
    "attention.kv_lora_rank": _i("", "MLA: compressed KV latent width d_c", optional=True),
    "attention.qk_nope_head_dim": _i("", "MLA: per-head query/key width without RoPE", optional=True),
    "attention.qk_rope_head_dim": _i("", "MLA: decoupled RoPE key width, shared by all heads", optional=True),
    "attention.v_head_dim": _i("", "MLA: per-head value width", optional=True),
    "attention.index_n_heads": _i("heads", "sparse MLA (DSA): indexer heads", optional=True),
    "attention.index_head_dim": _i("", "sparse MLA (DSA): indexer head width (one shared indexer key per token)", optional=True),
    "attention.index_topk": _i("tokens", "sparse MLA (DSA): cached tokens each query attends to", optional=True),
    "attention.num_key_value_heads": _i("heads", "GQA: key-value heads", optional=True),
    "attention.head_dim": _i("", "GQA: per-head query/key/value width", optional=True),
    "attention.rotary_dim": _i("", "GQA: leading head dimensions that get RoPE (partial rotary)", optional=True),
    "attention.qk_norm": _i("0/1", "GQA: 1 if queries and keys are RMS-normalised per head", check="nonneg", optional=True),
    "attention.qkv_bias": _i("0/1", "GQA: 1 if the q, k and v projections carry a bias", check="nonneg", optional=True),
    # MoE: a model without a [moe] table is dense (every layer has the dense FFN).
    "moe.moe_intermediate_size": _i("", "width of one expert (SwiGLU)", optional=True),
    "moe.n_routed_experts": _i("experts", "routed experts", optional=True),
    "moe.n_shared_experts": _i("experts", "shared experts every token visits", check="nonneg", optional=True),
    "moe.num_experts_per_tok": _i("experts", "routed top-k", optional=True),
    "moe.n_group": _i("groups", "expert groups for group-limited routing (1: plain top-k)", optional=True),
    "moe.topk_group": _i("groups", "groups a token's experts may come from (1: plain top-k)", optional=True),
    "mtp.num_nextn_predict_layers": _i("modules", "multi-token-prediction modules", check="nonneg"),
    "precision.matmul": _dtype("large matrix multiplies (projections, experts, dense FFN)"),
    "precision.attention_core": _dtype("attention score and value products"),
    "precision.kv_cache": _dtype("KV-cache elements"),
    "precision.index_cache": _dtype("sparse MLA (DSA): indexer keys in the cache and the indexer score product", optional=True),
    "precision.dispatch": _dtype("MoE dispatch payload", optional=True),
    "precision.combine": _dtype("MoE combine payload", optional=True),
    "precision.lm_head": _dtype("LM head matrix multiply"),
    "precision.activation": _dtype("activations between operators and in collectives"),
    "precision.weights_resident": _dtype("how matmul weights are stored in HBM"),
    "quant.dispatch_scale_bytes_per_token": _f("B", "scale bytes carried with each quantised token (padded)", check="nonneg", optional=True),
    "routing.popularity_skew": _f("CV", "long-run coefficient of variation of expert popularity, before balancing", check="nonneg", optional=True),
    "routing.eplb_residual_frac": _frac("fraction of the long-run popularity spread left by expert-placement load balancing (EPLB)", optional=True),
    "routing.request_skew": _f("CV", "coefficient of variation of expert load within one request's tokens", check="nonneg", optional=True),
    # What the model's authors state, and what their count includes (for `model show`).
    "stated.params_total": _f("params", "total parameters the authors state", optional=True),
    "stated.params_activated": _f("params", "parameters activated per token the authors state", optional=True),
    "stated.counts_embedding": _i("0/1", "1 if the stated counts include the input embedding", check="nonneg", optional=True),
    "stated.counts_lm_head": _i("0/1", "1 if the stated counts include the output layer (LM head)", check="nonneg", optional=True),
    "stated.counts_mtp": _i("0/1", "1 if the stated counts include the MTP modules", check="nonneg", optional=True),
}

_MLA = ("attention.q_lora_rank", "attention.kv_lora_rank", "attention.qk_nope_head_dim", "attention.qk_rope_head_dim", "attention.v_head_dim")
_DSA = ("attention.index_n_heads", "attention.index_head_dim", "attention.index_topk", "precision.index_cache")
#: Keys each attention kind requires (and allows, with `ATTENTION_OPTIONAL`); the other kinds' keys are refused.
ATTENTION_KEYS: dict[str, tuple[str, ...]] = {
    "mla": _MLA,
    "mla_sparse": _MLA + _DSA,
    "gqa": ("attention.num_key_value_heads", "attention.head_dim"),
}
ATTENTION_OPTIONAL: dict[str, tuple[str, ...]] = {
    "mla": (), "mla_sparse": (),
    "gqa": ("attention.rotary_dim", "attention.qk_norm", "attention.qkv_bias"),
}
#: Keys a model with routed experts must give (all of them) and a dense model must leave out.
MOE_KEYS = (
    "moe.moe_intermediate_size", "moe.n_routed_experts", "moe.n_shared_experts", "moe.num_experts_per_tok", "moe.n_group",
    "moe.topk_group", "precision.dispatch", "precision.combine", "quant.dispatch_scale_bytes_per_token",
    "routing.popularity_skew", "routing.eplb_residual_frac", "routing.request_skew",
)
#: Every kind-specific key, whichever kind it belongs to.
KIND_SPECIFIC = tuple(dict.fromkeys(k for keys in (*ATTENTION_KEYS.values(), *ATTENTION_OPTIONAL.values()) for k in keys))

DTYPES = tuple(DTYPE_BYTES)
