"""Configs of the lake flows: which series ``fks lake export`` and ``fks lake import`` move."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from config.flows import Symbols, TimeframeName, UtcTime


class _LakeSelection(BaseModel):
    """Series and window: ``symbols`` (empty = all), ``timeframe`` (None = all), ``[start, end)`` UTC."""

    model_config = ConfigDict(extra="forbid")

    symbols: Symbols = Field(default_factory=list)
    timeframe: TimeframeName = None
    start: UtcTime = None
    end: UtcTime = None

    @model_validator(mode="after")
    def _ordered(self) -> _LakeSelection:
        """Refuse an empty window."""
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise ValueError(
                f"--end ({self.end:%Y-%m-%d %H:%M}) must be after --start ({self.start:%Y-%m-%d %H:%M})"
            )
        return self


class LakeExportConfig(_LakeSelection):
    """What ``fks lake export`` writes to ``FKS_LAKE_URI``: stored bars of ``symbols`` (empty = every
    stored series) at ``timeframe`` (None = every timeframe) with ``start <= ts < end`` (UTC; None
    leaves that side open)."""


class LakeImportConfig(_LakeSelection):
    """What ``fks lake import`` reads back from ``FKS_LAKE_URI`` into the store: the lake's series of
    ``symbols`` (empty = every series in the lake) at ``timeframe`` (None = every timeframe) with
    ``start <= ts < end`` (UTC; None leaves that side open)."""
