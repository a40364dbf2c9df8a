"""What-if commands for capacity planners: compare, sweep, sensitivity, capacity."""

from cmperf.cli import app  # noqa: F401
