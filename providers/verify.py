"""Cross-verification of fetched bars against a second source: the pure comparison.

:func:`compare` lines up two canonical bar frames on the timestamps they share and reports every
field whose relative difference ``|secondary - primary| / |primary|`` is above the tolerance. The
provider manager (:mod:`providers.manager`) decides which bars to compare, asks the second source
and applies the policy; this module does no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from providers.base import BadResponse


@dataclass(frozen=True)
class Discrepancy:
    """One bar field on which two sources disagree beyond the tolerance.

    ``ts`` is the bar's open time (UTC); ``rel_diff`` is ``|secondary - primary| / |primary|``
    (``inf`` when the primary value is 0 and the secondary is not).
    """

    ts: pd.Timestamp
    field: str
    primary_value: float
    secondary_value: float
    rel_diff: float


@dataclass(frozen=True)
class Comparison:
    """What :func:`compare` found: ``compared`` bars (the timestamps both frames hold) and the
    fields among them that differ beyond the tolerance."""

    compared: int
    discrepancies: list[Discrepancy]
    first_ts: pd.Timestamp | None
    last_ts: pd.Timestamp | None

    @property
    def ok(self) -> bool:
        """True when at least one bar was compared and none differed."""
        return self.compared > 0 and not self.discrepancies


class Discrepant(BadResponse):
    """Two sources disagree beyond the tolerance and the policy is ``fail``.

    ``discrepancies`` lists them; the message names the symbol, both providers and the bars.
    """

    def __init__(self, message: str, discrepancies: Sequence[Discrepancy] = ()) -> None:
        super().__init__(message)
        self.discrepancies = list(discrepancies)


def relative_difference(primary: np.ndarray, secondary: np.ndarray) -> np.ndarray:
    """Element-wise ``|secondary - primary| / |primary|``: 0 where both are 0, ``inf`` where only
    the primary is 0, NaN where either value is missing."""
    primary = np.asarray(primary, dtype="float64")
    secondary = np.asarray(secondary, dtype="float64")
    diff = np.abs(secondary - primary)
    scale = np.abs(primary)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = diff / scale
    rel = np.where((scale == 0) & (diff == 0), 0.0, rel)
    return np.where(np.isnan(primary) | np.isnan(secondary), np.nan, rel)


def compare(
    primary: pd.DataFrame, secondary: pd.DataFrame, fields: Sequence[str], tolerance: float
) -> Comparison:
    """Compare ``fields`` of two canonical bar frames on the timestamps they both hold.

    A field differs when its relative difference is strictly above ``tolerance`` (a fraction:
    0.005 is 0.5%); a difference equal to the tolerance passes. Bars only one frame holds are not
    compared (the count of shared bars is ``Comparison.compared``); missing values (NaN) on
    either side are not compared.

    Raises:
        ValueError: when ``tolerance`` is negative or not a number, ``fields`` is empty, or a field
            is missing from either frame.
    """
    if not isinstance(tolerance, int | float) or math.isnan(tolerance) or tolerance < 0:
        raise ValueError(f"tolerance must be a fraction >= 0 (0.005 is 0.5%), got {tolerance!r}")
    if not fields:
        raise ValueError("fields must name at least one bar column, e.g. ['close']")
    for name, frame in (("primary", primary), ("secondary", secondary)):
        missing = [f for f in fields if f not in frame.columns]
        if missing:
            raise ValueError(f"{name} bars lack the field(s) {', '.join(missing)} to compare")
    shared = primary.index.intersection(secondary.index).sort_values()
    if len(shared) == 0:
        return Comparison(0, [], None, None)
    found: list[Discrepancy] = []
    for name in fields:
        left = primary.loc[shared, name].to_numpy(dtype="float64")
        right = secondary.loc[shared, name].to_numpy(dtype="float64")
        rel = relative_difference(left, right)
        for i in np.flatnonzero(np.nan_to_num(rel, nan=0.0) > tolerance).tolist():
            found.append(Discrepancy(shared[i], name, float(left[i]), float(right[i]), float(rel[i])))
    found.sort(key=lambda d: (d.ts, d.field))
    return Comparison(len(shared), found, shared[0], shared[-1])


def describe(discrepancies: Sequence[Discrepancy], limit: int = 5) -> str:
    """A short human summary of ``discrepancies``: the first ``limit`` as
    ``2024-01-01T00:04:00+00:00 close 100 vs 101 (1.00%)``, then how many more."""
    parts = [
        f"{d.ts.isoformat()} {d.field} {d.primary_value:g} vs {d.secondary_value:g} ({d.rel_diff:.2%})"
        for d in discrepancies[:limit]
    ]
    more = len(discrepancies) - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")
