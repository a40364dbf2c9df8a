"""Results as records and DataFrames: the one place pandas is imported, and only when asked for."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any


class Frame(ABC):
    """A result that can be read as flat records and as a pandas DataFrame."""

    @abstractmethod
    def to_records(self) -> list[dict]:
        """The result as flat records, one dict per row."""

    def to_frame(self):
        """`to_records()` as a pandas DataFrame (pandas is imported here, not before)."""
        import pandas as pd

        return pd.DataFrame(self.to_records())


@dataclass(frozen=True)
class Table(Frame):
    """Rows of a what-if answer (compare, sweep, capacity), the notes on them, and the full result."""

    kind: str
    rows: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    detail: Any = field(default=None, repr=False, compare=False)

    def to_records(self) -> list[dict]:
        return [dict(r) for r in self.rows]
