"""One way of writing prices and amounts for the CLI and the overview page."""

from __future__ import annotations

import math

from market.display import is_missing, money_text, price_text


def test_prices_have_two_decimals_from_one_up_and_six_significant_digits_below() -> None:
    assert price_text(50940.4) == "50,940.40" and price_text(1.0) == "1.00"
    assert price_text(0.000012345678) == "1.23457e-05" and price_text(0.5) == "0.5"
    assert price_text(None) == "-" and price_text(math.nan, "–") == "–" and price_text(math.inf) == "-"


def test_money_is_compact_from_the_smallest_unit_asked() -> None:
    assert money_text(1.234e12) == "1.23T" and money_text(4.567e10) == "45.67B"
    assert money_text(7.89e8) == "789.00M" and money_text(12_345.0) == "12,345.00"
    assert money_text(12_345.0, smallest=1e3) == "12.35k" and money_text(-2.5e6) == "-2.50M"
    assert money_text(None, "–") == "–" and is_missing(math.nan) and not is_missing(0.0)
