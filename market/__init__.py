"""Market primitives shared by every layer: the canonical bar frame, timeframes, calendars, resampling,
split adjustment, derivation of complete hours and days from minutes, and time-range arithmetic."""

from market.adjust import SplitLike, apply_splits
from market.bars import BAR_COLUMNS, Timeframe, canonical_bars, empty_bars
from market.calendars import Calendar, GapReport, calendar_for_asset_class, find_gaps, get_calendar
from market.derive import derive_complete
from market.ranges import Range, clip_ranges, closed_until, subtract_ranges
from market.resample import resample_bars

__all__ = [
    "BAR_COLUMNS",
    "Calendar",
    "GapReport",
    "Range",
    "SplitLike",
    "Timeframe",
    "apply_splits",
    "calendar_for_asset_class",
    "canonical_bars",
    "clip_ranges",
    "closed_until",
    "derive_complete",
    "empty_bars",
    "find_gaps",
    "get_calendar",
    "resample_bars",
    "subtract_ranges",
]
