"""Check the model against published results, and fit it to a user's own measurements.

Two commands use this package: `cmperf validate` and `cmperf calibrate`.

validate
--------
`published.csv` (shipped with the package) holds every published figure cmperf can be checked against,
one row each, with its source:

    case, hardware, evaluator, kind, params, metric, published, unit, tolerance_pct, error_basis, source, note

- `evaluator` says how the prediction is computed (decode, prefill, fused_comm, gemm, attention,
  bulk_comm; see `cases.EVALUATORS`); `params` are its `key=value` inputs separated by `;`.
- `kind` says what the comparison is worth: `predicted` (the row played no part in setting any
  constant), `fitted` (a constant of the hardware or model file was fitted to this row or to a set
  containing it, so agreement is expected) or `input` (the published figure is itself a model input;
  the row only checks that the hardware file carries it).
- `error_basis` is `relative` (error in % of the published value) or `points` (difference in
  percentage points, for utilisations).
- `tolerance_pct` is the honest per-row tolerance: rows with a known model gap carry a note saying
  so and the tolerance they actually meet.
Predictions are computed at run time from the model (never stored), so a change to a cost formula
shows up here at once.

calibrate
---------
`cmperf calibrate MEASUREMENTS.csv` fits efficiency parameters of a hardware file to measurements
by bounded least squares on relative residuals, and writes a new hardware file with the fitted values
(kind "fitted") and provenance. The measurements file is a CSV with a header row; blank lines and
lines starting with `#` are skipped. Columns:

    kind    gemm | dispatch | combine | decode | prefill            (required)
    value   the measured number, > 0                                  (required)
    unit    the unit of value (see below)                             (required)
    metric  what was measured (see below)
    label, note, comment   free text, ignored

and the parameters of each kind (a row leaves the other kinds' columns empty):

    gemm      m, n, k (required), groups [1], dtype (required: int8, fp8, bf16, fp16 ...),
              metric tflops (unit TFLOPS) or seconds (unit s, ms or us).
              (groups x) GEMM of m x k by k x n, weights k x n per group.
    dispatch  ep, tokens (required): fused MoE dispatch/combine of `tokens` tokens per rank
    combine   over `ep` ranks; metric seconds (may be left empty), unit s, ms or us.
    decode    devices, ep, batch, kv_len, microbatches, mtp, mtp_acceptance, eplb (each optional:
              empty means cmperf's default, as in `cmperf estimate decode`);
              metric tpot_ms (unit ms, s or us) or tokens_per_s (per device, unit tokens/s).
    prefill   devices, ep, tokens_per_device, input_len, microbatches, eplb (optional, as above);
              metric tokens_per_s (per device, unit tokens/s).

Example:

    kind,m,n,k,groups,dtype,ep,tokens,metric,value,unit
    gemm,4096,7168,16384,1,fp8,,,tflops,1358,TFLOPS
    dispatch,,,,,,8,128,seconds,116,us
"""
