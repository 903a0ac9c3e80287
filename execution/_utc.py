"""UTC timestamps on the desk's hot paths (private to ``execution``)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd

from market.bars import as_utc


def utc(value: Any, what: str = "timestamp") -> pd.Timestamp:
    """:func:`market.bars.as_utc`, returning a ``pd.Timestamp`` that is in UTC already as it is
    (the common case: bars, fills and decisions are stamped in UTC) without a conversion.

    Raises:
        ValueError: as :func:`market.bars.as_utc`.
    """
    if type(value) is pd.Timestamp and value.tzinfo is dt.UTC:
        return value
    return as_utc(value, what)
