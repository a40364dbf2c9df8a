"""What-if questions on top of the planner: compare, sweep, sensitivity, capacity and prefix caching.

`core` holds the scenario (hardware, model, workload, SLOs and overrides) and the light re-plan
every command shares: build the decode and prefill grids, take the best deployment per SLO. It
skips what `cmperf plan` adds for explanation (ranked lists, the paper's point, the frontier),
so a sweep can re-plan dozens of times a second.
"""
