"""Commands that check the model against measurements: validate, calibrate."""

from cmperf.cli import app  # noqa: F401
