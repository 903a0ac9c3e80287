"""Timestamp inference for bar files: the format of a column of timestamps, and its UTC values.

:func:`parse_timestamps` reads a column of timestamp texts (indexed by line number) with a given
format (a strftime format, ``ISO8601``, ``epoch_s`` / ``epoch_ms`` / ``epoch_us`` / ``epoch_ns``)
or detects it from the values: ISO 8601, year first with ``/`` or ``.``, ``A/B/YYYY`` (month or
day first, settled by the values or refused as ambiguous), ``DD.MM.YYYY`` (Dukascopy, also with
``GMT+0100``), ``YYYYMMDD[ HHMM[SS]]`` and Unix epochs told apart by magnitude. The formats and
rules are listed in :mod:`providers.csv` (section *Timestamps*). :func:`infer_timeframe` reads
the bar length from the spacing of the timestamps.

Errors are :class:`providers.base.DataFileError`, naming the file, line and column and the fix.
No I/O: the file around the column is :mod:`providers.csv`'s business.
"""

from __future__ import annotations

import re
import shlex
from typing import Literal

import numpy as np
import pandas as pd

from market.bars import Timeframe
from providers.base import DataFileError

__all__ = ["check_date_format", "infer_timeframe", "kind_of", "median_spacing", "parse_timestamps"]

_EpochUnit = Literal["s", "ms", "us", "ns"]
_EPOCH_UNITS: dict[str, _EpochUnit] = {"epoch_s": "s", "epoch_ms": "ms", "epoch_us": "us", "epoch_ns": "ns"}
_CLOCK = r"(?:[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:\s?[AaPp][Mm])?)?"
_TZ = r"(?P<tz>\s?(?:(?:GMT|UTC)(?:[+-]\d{2}:?\d{2})?|Z|[+-]\d{2}:?\d{2}))?"
# Date part of each kind of timestamp, in the order they are tried.
_KINDS: dict[str, str] = {
    "ISO 8601": r"\d{4}-\d{2}-\d{2}",
    "YYYY/MM/DD": r"\d{4}[/.]\d{1,2}[/.]\d{1,2}",
    "A/B/YYYY": r"\d{1,2}/\d{1,2}/\d{4}",
    "A-B-YYYY": r"\d{1,2}-\d{1,2}-\d{4}",
    "DD.MM.YYYY": r"\d{1,2}\.\d{1,2}\.\d{4}",
    "YYYYMMDD": r"\d{8}",
    "epoch": r"\d+(?:\.\d+)?",
}
_ISO_FULL = (
    r"(?P<naive>\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?)?)"
    r"(?P<tz>Z|[+-]\d{2}(?::?\d{2})?)?"
)
_ISO_OFFSET = r"\d:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}(?::?\d{2})?)$"
_COMPACT_FULL = r"(?P<naive>\d{8}(?:[ T](?:\d{4}|\d{6}))?)"
_FORMAT_HINT = (
    "Pass --date-format (date_format= in Python) with the column's strftime format, "
    "e.g. --date-format '%Y-%m-%d %H:%M', or epoch_s / epoch_ms for Unix times"
)


def _full_pattern(kind: str) -> str:
    if kind == "ISO 8601":
        return _ISO_FULL
    if kind == "YYYYMMDD":
        return _COMPACT_FULL
    if kind == "epoch":
        return r"(?P<naive>\d+(?:\.\d+)?)"
    return f"(?P<naive>{_KINDS[kind]}{_CLOCK})" + _TZ


def check_date_format(date_format: str | None, display: str) -> str | None:
    """``date_format`` normalised: None (detect) for None or blank, ``ISO8601`` for ``ISO``/``iso8601``,
    ``epoch_*`` lower-cased, else the strftime format as given (stripped).

    Raises:
        DataFileError: when ``date_format`` is none of those (no ``%`` code); ``display`` names the file.
    """
    if date_format is None or not date_format.strip():
        return None
    text = date_format.strip()
    if text.lower() in _EPOCH_UNITS:
        return text.lower()
    if text.upper() in ("ISO8601", "ISO"):
        return "ISO8601"
    if "%" not in text:
        raise DataFileError(
            display,
            f"--date-format {text!r} is not a strftime format",
            hint="Use % codes such as %Y-%m-%d %H:%M or %d/%m/%Y, or ISO8601, epoch_s, epoch_ms",
        )
    return text


def kind_of(value: str) -> str | None:
    """The kind of timestamp ``value`` is (``ISO 8601``, ``A/B/YYYY``, ``epoch``, ...), None if none."""
    for kind in _KINDS:
        if re.fullmatch(_full_pattern(kind), value):
            return kind
    return None


def parse_timestamps(
    values: pd.Series, column: str, date_format: str | None, display: str
) -> tuple[pd.Series, str, list[str]]:
    """UTC timestamps of the non-empty ``values`` (index: line numbers), the format used, notes.

    ``date_format`` (normalised by :func:`check_date_format`) reads them as told; None detects the
    format from the values. ``column`` and ``display`` (the file) go into error messages.

    Raises:
        DataFileError: when a value cannot be read in the format, the column mixes formats or
            epoch units, an epoch is implausible, or day and month order cannot be settled.
    """
    if values.empty:
        return pd.Series(pd.DatetimeIndex([], tz="UTC"), index=values.index), date_format or "ISO8601", []
    if date_format is not None:
        return _parse_explicit(values, column, date_format, display), date_format, []

    first_line, first = values.index[0], values.iloc[0]
    kind = kind_of(first)
    if kind == "YYYYMMDD" and pd.isna(pd.to_datetime(first[:8], format="%Y%m%d", errors="coerce")):
        kind = "epoch"
    if kind is None:
        raise DataFileError(
            display, f"cannot read timestamp {first!r}", hint=_FORMAT_HINT, row=int(first_line), column=column
        )
    if kind == "epoch":
        stamps, used = _parse_epoch_auto(values, column, display)
        return stamps, used, []

    naive_fmt, tz_fmt = _format_of(kind, first)
    if kind in ("A/B/YYYY", "A-B-YYYY"):
        naive_fmt, stamps = _settle_day_order(values, column, naive_fmt, tz_fmt, display)
    else:
        stamps = pd.to_datetime(values, format=naive_fmt + tz_fmt, utc=True, errors="coerce")
    fmt = naive_fmt + tz_fmt
    failed = stamps.isna()
    if failed.any():
        _raise_bad_stamp(values, failed, column, fmt, kind, display)
    notes: list[str] = []
    if tz_fmt or (kind == "ISO 8601" and values.str.contains(_ISO_OFFSET, regex=True).any()):
        stamps, notes = _session_dates(values, stamps, kind, naive_fmt)
    return stamps, fmt, notes


def _format_of(kind: str, value: str) -> tuple[str, str]:
    """The strftime format of ``value`` split in its naive part and its offset part."""
    if kind == "ISO 8601":
        return "ISO8601", ""
    date_match = re.match(_KINDS[kind], value)
    assert date_match is not None  # the caller matched the kind
    token = date_match.group(0)
    if kind == "YYYY/MM/DD":
        seps = re.findall(r"[/.]", token)
        date_fmt = f"%Y{seps[0]}%m{seps[1]}%d"
    elif kind == "A/B/YYYY":
        date_fmt = "%m/%d/%Y"
    elif kind == "A-B-YYYY":
        date_fmt = "%m-%d-%Y"
    elif kind == "DD.MM.YYYY":
        date_fmt = "%d.%m.%Y"
    else:
        date_fmt = "%Y%m%d"
    rest = value[len(token) :]
    clock = re.match(
        r"(?P<sep>[ T])(?P<H>\d{1,2})(?P<c>:?)(?P<M>\d{2})"
        r"(?:(?P=c)(?P<S>\d{2})(?P<F>\.\d{1,9})?)?(?P<ampm>\s?[AaPp][Mm])?",
        rest,
    )
    clock_fmt = ""
    if clock is not None:
        colon = clock["c"]
        clock_fmt = clock["sep"] + ("%I" if clock["ampm"] else "%H") + colon + "%M"
        if clock["S"]:
            clock_fmt += colon + "%S" + (".%f" if clock["F"] else "")
        if clock["ampm"]:
            clock_fmt += (" " if clock["ampm"].startswith(" ") else "") + "%p"
        rest = rest[clock.end() :]
    tz = re.fullmatch(r"(\s?)(GMT|UTC)?(Z|[+-]\d{2}:?\d{2})?", rest)
    tz_fmt = ""
    if tz is not None and rest:
        tz_fmt = tz[1] + (tz[2] or "") + ("%z" if tz[3] else "")
    return date_fmt + clock_fmt, tz_fmt


def _settle_day_order(
    values: pd.Series, column: str, month_first: str, tz_fmt: str, display: str
) -> tuple[str, pd.Series]:
    """Month-first or day-first for ``A/B/YYYY`` dates (the naive format and the timestamps).

    A value that only one order can read (a number above 12 in the other place) settles it;
    when none does and the two orders read some value differently, the file is refused.
    """
    day_first = month_first.replace("%m", "%_").replace("%d", "%m").replace("%_", "%d")
    by_month = pd.to_datetime(values, format=month_first + tz_fmt, utc=True, errors="coerce")
    by_day = pd.to_datetime(values, format=day_first + tz_fmt, utc=True, errors="coerce")
    only_month = by_month.notna() & by_day.isna()  # its second number is above 12
    only_day = by_day.notna() & by_month.isna()  # its first number is above 12
    if only_month.any() and only_day.any():
        line_m, line_d = _first(only_month), _first(only_day)
        raise DataFileError(
            display,
            f"the dates disagree: line {line_m} ({values.loc[line_m]!r}) is month first, "
            f"line {line_d} ({values.loc[line_d]!r}) is day first",
            hint="Make the column use one order, or p" + _FORMAT_HINT[1:],
            row=max(line_m, line_d),
            column=column,
        )
    if only_month.any():
        return month_first, by_month
    if only_day.any():
        return day_first, by_day
    differing = by_month.notna() & by_day.notna() & (by_month != by_day)
    if not differing.any():
        return month_first, by_month  # every date reads the same either way
    line = _first(differing)
    raise DataFileError(
        display,
        f"the dates are ambiguous: no value has a number above 12 before or after the first separator, "
        f"so {values.loc[line]!r} could be month first or day first",
        hint=f"Pass --date-format {shlex.quote(month_first + tz_fmt)} (month first) or "
        f"--date-format {shlex.quote(day_first + tz_fmt)} (day first)",
        row=line,
        column=column,
    )


def _raise_bad_stamp(
    values: pd.Series, failed: pd.Series, column: str, fmt: str, kind: str, display: str
) -> None:
    line = _first(failed)
    value = str(values.loc[line])
    first_line, first = values.index[0], values.iloc[0]
    value_kind = kind_of(value)
    if value_kind is None:
        problem = f"cannot read timestamp {value!r} (the column reads as {fmt})"
    elif value_kind != kind:
        problem = (
            f"timestamp {value!r} is {value_kind}, but line {first_line} ({first!r}) is {kind}; "
            "the column mixes formats"
        )
    else:
        problem = f"timestamp {value!r} does not match {fmt}, the format of line {first_line} ({first!r})"
    raise DataFileError(display, problem, hint=_FORMAT_HINT, row=line, column=column)


def _session_dates(
    values: pd.Series, stamps: pd.Series, kind: str, naive_fmt: str
) -> tuple[pd.Series, list[str]]:
    """Daily bars at local midnight with an offset keep their wall-clock date, at 00:00 UTC."""
    if (stamps == stamps.dt.normalize()).all():
        return stamps, []  # already at 00:00 UTC
    if infer_timeframe(pd.DatetimeIndex(stamps.drop_duplicates().sort_values())) is not Timeframe.D1:
        return stamps, []  # intraday bars: the offsets are real
    parts = values.str.extract(_full_pattern(kind))
    if (parts["tz"].fillna("").str.strip() == "").all():
        return stamps, []
    wall = pd.to_datetime(parts["naive"], format=naive_fmt, utc=True, errors="coerce")
    if wall.isna().any() or not (wall == wall.dt.normalize()).all() or (wall == stamps).all():
        return stamps, []
    if infer_timeframe(pd.DatetimeIndex(wall.drop_duplicates().sort_values())) is not Timeframe.D1:
        return stamps, []
    return wall, ["daily bars stamped at local midnight with an offset: kept as session dates at 00:00 UTC"]


def _parse_epoch_auto(values: pd.Series, column: str, display: str) -> tuple[pd.Series, str]:
    numbers = pd.to_numeric(values, errors="coerce")
    failed = numbers.isna()
    if failed.any():
        _raise_bad_stamp(values, failed, column, "a Unix epoch number", "epoch", display)
    units: tuple[_EpochUnit, ...] = ("s", "ms", "us", "ns")
    magnitude = numbers.abs().to_numpy(dtype="float64")
    scale = pd.Series(np.searchsorted([1e11, 1e14, 1e17], magnitude, side="right"), index=values.index)
    differs = scale != scale.iloc[0]
    if differs.any():
        line = _first(differs)
        raise DataFileError(
            display,
            f"timestamp {values.loc[line]!r} is in epoch_{units[scale.loc[line]]} but line {values.index[0]} "
            f"({values.iloc[0]!r}) is in epoch_{units[scale.iloc[0]]}; the column mixes units",
            hint="Use one unit for the whole column",
            row=line,
            column=column,
        )
    unit = units[int(scale.iloc[0])]
    try:
        stamps = _from_epoch(numbers, unit)
    except (OverflowError, pd.errors.OutOfBoundsDatetime):
        line = _first(numbers.abs() == numbers.abs().max())
        raise DataFileError(
            display,
            f"{values.loc[line]!r} is too large for a Unix time",
            hint=_FORMAT_HINT,
            row=line,
            column=column,
        ) from None
    low, high = pd.Timestamp("1971-01-01", tz="UTC"), pd.Timestamp("2100-01-01", tz="UTC")
    implausible = pd.Series((stamps.to_numpy() < low) | (stamps.to_numpy() >= high), index=values.index)
    if implausible.any():
        line = _first(implausible)
        raise DataFileError(
            display,
            f"{values.loc[line]!r} read as epoch_{unit} is {stamps.loc[line]:%Y-%m-%d %H:%M}, "
            "not a plausible bar time (row numbers, or a date without separators?)",
            hint=_FORMAT_HINT,
            row=line,
            column=column,
        )
    return stamps, f"epoch_{unit}"


def _parse_explicit(values: pd.Series, column: str, date_format: str, display: str) -> pd.Series:
    if date_format in _EPOCH_UNITS:
        numbers = pd.to_numeric(values, errors="coerce")
        failed = numbers.isna()
        if not failed.any():
            try:
                return _from_epoch(numbers, _EPOCH_UNITS[date_format])
            except (OverflowError, pd.errors.OutOfBoundsDatetime):
                failed = numbers.abs() == numbers.abs().max()
        line = _first(failed)
        raise DataFileError(
            display,
            f"timestamp {values.loc[line]!r} is not a Unix time in {date_format}",
            hint="Check --date-format (epoch_s, epoch_ms, epoch_us, epoch_ns) or leave it out to detect it",
            row=line,
            column=column,
        )
    try:
        stamps = pd.to_datetime(values, format=date_format, utc=True, errors="coerce")
    except ValueError as exc:
        raise DataFileError(
            display,
            f"--date-format {date_format!r} is not a valid format ({exc})",
            hint="Use strftime codes such as %Y-%m-%d %H:%M",
        ) from None
    failed = stamps.isna()
    if failed.any():
        line = _first(failed)
        raise DataFileError(
            display,
            f"timestamp {values.loc[line]!r} does not match --date-format {date_format!r}",
            hint="Fix the format (strftime codes, e.g. %d/%m/%Y %H:%M) or leave it out to detect it",
            row=line,
            column=column,
        )
    return stamps


def _first(mask: pd.Series) -> int:
    """The line number (index label) of the first true value of ``mask``."""
    return int(mask.index[int(np.argmax(mask.to_numpy(dtype=bool)))])


def _from_epoch(numbers: pd.Series, unit: _EpochUnit) -> pd.Series:
    stamps = pd.to_datetime(pd.Series(numbers.to_numpy(), index=numbers.index), unit=unit, utc=True)
    return stamps


def median_spacing(index: pd.Index) -> pd.Timedelta:
    """The lower median of the gaps between consecutive timestamps of sorted ``index`` (0 below two)."""
    if len(index) < 2:
        return pd.Timedelta(0)
    gaps = np.sort(np.diff(pd.DatetimeIndex(index).as_unit("ns").asi8))
    return pd.Timedelta(int(gaps[(len(gaps) - 1) // 2]), unit="ns")  # the lower median: a real spacing


def infer_timeframe(index: pd.Index) -> Timeframe | None:
    """The timeframe whose bar length is the median spacing of ``index`` (sorted, unique); None
    when it is none of them or there are fewer than two timestamps."""
    if len(index) < 2:
        return None
    spacing = median_spacing(index)
    return next((tf for tf in Timeframe if tf.delta == spacing), None)
