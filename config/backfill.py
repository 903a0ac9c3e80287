"""Config of the backfill flow: which series ``fks backfill`` fills, over which window, and how."""

from __future__ import annotations

import uuid
from typing import Literal

import pandas as pd
from pandas.tseries.offsets import BaseOffset
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from config.flows import Symbols, TimeframeName, UtcTime


def chunk_offset(value: str) -> BaseOffset:
    """The pandas offset named by ``value`` (``1D``, ``6h``, ``30D``, ``MS``, ...).

    Raises:
        ValueError: when ``value`` is not a pandas offset alias or is not a positive length.
    """
    try:
        offset = pd.tseries.frequencies.to_offset(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"chunk {value!r} is not a pandas offset: use e.g. 1D, 6h, 30D or MS (month start)"
        ) from None
    if offset.n <= 0:
        raise ValueError(f"chunk {value!r} must be a positive length")
    return offset


class BackfillConfig(BaseModel):
    """What ``fks backfill`` / the ``backfill`` flow fetches.

    ``symbols`` must be registered assets (``config/assets.yaml`` or ``FKS_ASSETS_FILE``), enabled
    or not. ``timeframe`` defaults to each asset's own. ``[start, end)`` (UTC; naive taken as UTC,
    ``end`` defaults to now) is widened to whole chunks aligned to UTC boundaries; the chunk
    length comes from ``backfill_chunk`` in ``config/providers.yaml`` unless ``chunk`` overrides it.

    With ``gaps``, only the ranges that ``fks gaps`` lists are fetched: holes against the calendar
    in stored series and chunks a previous backfill could not get (``symbols`` empty = every
    stored series; ``start``/``end`` optional filters). ``derive_from="1m"`` builds ``1h``/``1d``
    bars from stored minute bars instead of calling providers. ``verify`` cross-checks each
    fetched chunk against a second provider. ``reconcile`` then re-reads each series' provisional
    bars (written by a fallback provider) from the asset's primary and replaces those that differ
    (:func:`ingestion.reconcile.reconcile_series`).
    """

    model_config = ConfigDict(extra="forbid")

    symbols: Symbols = Field(default_factory=list)
    timeframe: TimeframeName = None
    start: UtcTime = None
    end: UtcTime = None
    gaps: bool = False
    derive_from: Literal["1m"] | None = None
    chunk: str | None = None
    verify: bool = True
    reconcile: bool = False
    batch_id: str = Field(default_factory=lambda: uuid.uuid4().hex)

    @field_validator("chunk")
    @classmethod
    def _chunk(cls, value: str | None) -> str | None:
        """A chunk override must be a positive pandas offset."""
        if value is not None:
            chunk_offset(value)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> BackfillConfig:
        """Refuse windows and flag combinations that cannot work."""
        if not self.gaps:
            if not self.symbols:
                raise ValueError("backfill needs --symbols (or --gaps to fill the holes of stored series)")
            if self.start is None:
                raise ValueError("backfill needs --start (or --gaps to fill the holes of stored series)")
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise ValueError(
                f"--end ({self.end:%Y-%m-%d %H:%M}) must be after --start ({self.start:%Y-%m-%d %H:%M})"
            )
        if self.reconcile and self.derive_from is not None:
            raise ValueError("--reconcile re-reads provisional bars from a provider: drop --derive-from")
        if self.derive_from is not None and self.timeframe not in ("1h", "1d"):
            raise ValueError("--derive-from 1m builds 1h or 1d bars: add --timeframe 1h or --timeframe 1d")
        return self


class ReconcileConfig(BaseModel):
    """What ``fks reconcile`` / the ``reconcile`` flow heals: the provisional bars (written by a
    fallback provider) of the stored series of online assets, re-read from each asset's primary.

    ``symbols`` empty = every stored series of an asset with provider symbols; ``timeframe`` None =
    every timeframe.
    """

    model_config = ConfigDict(extra="forbid")

    symbols: Symbols = Field(default_factory=list)
    timeframe: TimeframeName = None
    batch_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
