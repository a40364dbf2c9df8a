"""Frozen, validated descriptions of hardware, model and workload. Only `loader` reads files."""

from cmperf.specs.loader import Spec, load_hardware, load_model, known_names

__all__ = ["Spec", "load_hardware", "load_model", "known_names"]
