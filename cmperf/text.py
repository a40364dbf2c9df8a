"""Text made safe to show: the one escaping of control characters every message and report uses.

Its own module (only the standard library) so that `cmperf.errors` and `cmperf.inputs` both use it
without importing each other.
"""

from __future__ import annotations

import re
from typing import Any

# C0 controls but tab and newline, DEL, C1 controls, and the Unicode controls that reorder or hide
# text (bidirectional overrides and isolates, zero-width joiners, the BOM): none belongs in a name,
# note or cell, and each can rewrite what a terminal or a markdown viewer shows.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]")


def _escape(m: re.Match) -> str:
    c = m.group(0)
    return f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}"


def safe_text(text: Any) -> str:
    """Text fit for a terminal or a markdown file: control characters become visible escapes."""
    s = str(text)
    return _UNSAFE.sub(_escape, s) if _UNSAFE.search(s) else s
