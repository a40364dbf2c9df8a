"""cmperf: an analytical performance model of LLM inference serving on scale-up supernodes."""

__version__ = "0.1.0"
