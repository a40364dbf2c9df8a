"""Money and energy per token, from a throughput and the hardware file's `[power]` and `[cost]`.

Symbols: X tokens/s per device, p price of one device for an hour ($/h), W electrical power per
device (W), N devices, R requests/s, O output tokens per request.

    $ per million tokens   = p / 3600 / X * 1e6
    tokens per joule       = X / W
    whole P/D split:         $/M output tokens = p N / 3600 / (R O) * 1e6,  tokens/J = R O / (N W)

Power per device W is the package power plus its share of the rest of the node,
W = W_package + W_node_other / packages_per_node, or, where a file gives only the all-in power of
the whole system, W = W_system / devices_per_system.

Assumes: devices draw their full-load power whenever they are provisioned (idle devices of a
split are paid for and powered); price is per device-hour all-in, as the hardware file states its
basis (kind `assumed`; override with `--set cost.package_dollars_per_hour=...`). Source of the
formulas: definitions; of the inputs: the hardware file, each value with its own source.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cmperf.units import HOUR_S, MILLION


def dollars_per_million_tokens(dollars_per_device_hour, tokens_per_s_per_device):
    """$/M tokens = p / 3600 / X * 1e6 (numpy-broadcastable)."""
    return np.asarray(dollars_per_device_hour, float) / HOUR_S / np.asarray(tokens_per_s_per_device, float) * MILLION


def tokens_per_joule(tokens_per_s_per_device, watts_per_device):
    """tokens/J = X / W (numpy-broadcastable)."""
    return np.asarray(tokens_per_s_per_device, float) / np.asarray(watts_per_device, float)


@dataclass(frozen=True)
class Economics:
    """What one device costs and draws, with the basis of each, from a hardware spec."""

    dollars_per_device_hour: float | None
    watts_per_device: float | None
    power_basis: str

    def per_token(self, tokens_per_s_per_device: float) -> dict:
        """$/M tokens and tokens/J at X tokens/s per device; None where the file has no data."""
        x = float(tokens_per_s_per_device)
        ok = x > 0
        return {
            "dollars_per_m_tokens": float(dollars_per_million_tokens(self.dollars_per_device_hour, x)) if ok and self.dollars_per_device_hour else None,
            "tokens_per_joule": float(tokens_per_joule(x, self.watts_per_device)) if ok and self.watts_per_device else None,
        }

    def whole(self, devices: float, output_tokens_per_s: float) -> dict:
        """$/M output tokens and output tokens/J of N devices that together emit R O tokens/s."""
        return self.per_token(output_tokens_per_s / devices) if devices > 0 else self.per_token(0.0)

    def dollars_per_hour(self, devices: float) -> float | None:
        return self.dollars_per_device_hour * devices if self.dollars_per_device_hour else None

    def watts(self, devices: float) -> float | None:
        return self.watts_per_device * devices if self.watts_per_device else None


def economics(hw) -> Economics:
    """Per-device price and power of a hardware spec (either may be None when the file lacks it)."""
    price = hw.get("cost.package_dollars_per_hour")
    if hw.has("power.system_watts"):
        devices = hw["system.nodes"] * hw["node.packages"]
        return Economics(price, hw["power.system_watts"] / devices, f"all-in system power / {devices} devices")
    if hw.has("power.package_watts"):
        if hw.has("power.node_other_watts"):
            w = hw["power.package_watts"] + hw["power.node_other_watts"] / hw["node.packages"]
            return Economics(price, w, "package + its share of the rest of the node")
        return Economics(price, hw["power.package_watts"], "package only (node power not known)")
    return Economics(price, None, "not in the hardware file")
