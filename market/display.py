"""How prices and money amounts are written for people: one rule for the CLI's tables and the
overview page, so both show the same figure the same way."""

from __future__ import annotations

import math

__all__ = ["is_missing", "money_text", "price_text"]

_SIZES = ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k"))


def is_missing(value: object) -> bool:
    """True for ``None``, NaN and infinities: a figure that is not known."""
    return value is None or (isinstance(value, float) and not math.isfinite(value))


def price_text(value: float | None, missing: str = "-") -> str:
    """A price: two decimals from 1 up, six significant digits below (coins worth fractions of a
    cent); ``missing`` when unknown."""
    if value is None or is_missing(value):
        return missing
    return f"{value:,.2f}" if abs(value) >= 1 else f"{value:.6g}"


def money_text(value: float | None, missing: str = "-", *, smallest: float = 1e6) -> str:
    """An amount compactly: 1.23T, 45.67B, 789.00M (and 12.34k when ``smallest`` is 1e3), with two
    decimals below ``smallest``; ``missing`` when unknown."""
    if value is None or is_missing(value):
        return missing
    for size, suffix in _SIZES:
        if size >= smallest and abs(value) >= size:
            return f"{value / size:,.2f}{suffix}"
    return f"{value:,.2f}"
