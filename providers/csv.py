"""Bars from a CSV file: any OHLCV export, its columns and timestamp format detected.

:func:`parse_bars_csv` reads one file into a :class:`ParsedBars` (the good bars plus every row
that could not become a bar); :class:`CsvProvider` puts it behind the provider contract
(:class:`providers.base.Provider`). A file holds one symbol at one timeframe.

Reading
    The delimiter is the one of ``,`` ``;`` tab ``|`` that occurs most in the header line.
    Text is UTF-8 (a byte-order mark is fine), else Latin-1. Blank lines are skipped; row
    numbers in errors and problems are line numbers in the file (the header is line 1).

Columns
    Names match case-insensitively, ignoring spaces, underscores and punctuation.

    - Time: ``datetime``, ``timestamp``, ``open time``, ``ts``, ``gmt time``, ``time``,
      ``date``, ``local time`` and similar (the first in that order wins; other time-like
      columns are ignored), else an unnamed first column (a saved pandas index, written as an
      empty header). Separate ``Date`` and ``Time`` columns (Stooq, MetaTrader) are joined with a
      space before parsing. The layout that ``yfinance.download(...).to_csv()`` writes (header
      rows ``Price``/``Ticker``/``Date``) is read too.
    - ``open``/``o``, ``high``/``h``, ``low``/``l``, ``close``/``c``/``last`` are required.
    - ``volume``/``vol``/``v`` is optional: without it (or when it is empty on every line)
      volume is ``0.0`` and :attr:`ParsedBars.warnings` says so.
    - ``Adj Close`` (``adjusted close``) is ignored unless ``adjust=True``: then open, high,
      low and close are multiplied by ``adj_close / close`` and volume divided by it, so that
      dollar volume is preserved.
    - Any other column (``OpenInt``, ``Dividends``, ...) is ignored and listed in
      :attr:`ParsedBars.ignored_columns`.

Timestamps
    Without ``date_format`` the format is detected from the values:

    - ISO 8601: ``2020-01-31``, ``2020-01-31 14:30``, ``2020-01-31T14:30:00.5Z``,
      ``...+02:00`` (offsets are converted to UTC);
    - year first with ``/`` or ``.``: ``2020/01/31``, ``2020.01.31 14:30`` (MetaTrader);
    - ``A/B/YYYY`` or ``A-B-YYYY`` with an optional time (``14:30``, ``2:30 PM``): month first
      when some ``B`` exceeds 12, day first when some ``A`` does; when no value settles it the
      file is ambiguous and refused, naming both ``--date-format`` candidates;
    - ``DD.MM.YYYY[ HH:MM[:SS[.fff]]]``, day first (Dukascopy), also with ``GMT+0100``;
    - ``YYYYMMDD`` with an optional ``HHMM[SS]`` (Stooq text files);
    - Unix epoch numbers: seconds, milliseconds, microseconds or nanoseconds, told apart by
      magnitude (an auto-detected epoch must land in 1971-2099).

    Timestamps without an offset are UTC. ``date_format`` overrides detection: a strftime
    format (``%d/%m/%Y %H:%M``; for split Date and Time columns it applies to ``DATE TIME``),
    ``ISO8601``, or ``epoch_s`` / ``epoch_ms`` / ``epoch_us`` / ``epoch_ns``. Daily bars stamped
    at local midnight with a UTC offset (``2020-01-02 00:00:00-05:00``, as yfinance writes
    them) keep their session date at 00:00 UTC, FKS's convention for ``1d`` bars.

Rows
    A timestamp that cannot be read stops the parse (a wrong format would misread every row).
    Other faults are collected in :attr:`ParsedBars.problems` and their rows left out of the
    bars: a price or volume that is empty, NaN, infinite or not a number, an empty timestamp,
    and timestamps that repeat with different values (every such row is a problem). Rows that
    repeat exactly are dropped and counted. The bars come out sorted. Numbers may carry
    thousands separators in comma-delimited files (``"1,234.5"``) and a decimal comma in files
    delimited otherwise (``1,5``). Plausibility of the values (``high >= low``, positive
    prices) is checked later, by the validation suites.

Errors
    :class:`providers.base.DataFileError` (a ``ValueError`` and a ``BadResponse``) for files
    that cannot be read as bars: missing, empty, binary, JSON/HTML, no header, a required column
    missing, unreadable or ambiguous timestamps. Its message names the file, line and column and
    says how to fix it. :meth:`CsvProvider.fetch_bars` also raises it when the file holds
    another timeframe than the one asked, and (when ``strict``) when some rows are bad.

Example::

    parsed = parse_bars_csv("data/samples/sp500_daily.csv")
    parsed.timeframe            # Timeframe.D1
    parsed.date_format_used     # '%m/%d/%Y'
    provider = CsvProvider("data/samples/sp500_daily.csv")
    bars = provider.fetch_bars("SPX", "1d", start=pd.Timestamp("2018-01-01"))
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from market.bars import BAR_COLUMNS, Timeframe, as_utc, canonical_bars, empty_bars
from providers.base import DataFileError, RowProblem
from providers.timestamps import check_date_format, infer_timeframe, kind_of, median_spacing, parse_timestamps

__all__ = ["CsvProvider", "ParsedBars", "parse_bars_csv"]

log = logging.getLogger(__name__)

_DELIMITERS = (",", ";", "\t", "|")

# Normalised names of time columns, best first.
_TIME_NAMES = (
    "datetime",
    "timestamp",
    "opentime",
    "ts",
    "datetimeutc",
    "timestamputc",
    "dateutc",
    "timeutc",
    "utctime",
    "gmttime",
    "time",
    "date",
    "localtime",
    "datetimelocal",
    "day",
    "tradedate",
    "tradingday",
    "unixtime",
    "epoch",
    "t",
)
_DAY_NAMES = ("date", "day", "tradedate", "tradingday")
_ALIASES: dict[str, tuple[str, ...]] = {
    "open": ("open", "o", "openprice"),
    "high": ("high", "h", "highprice"),
    "low": ("low", "l", "lowprice"),
    "close": ("close", "c", "closeprice", "last", "lastprice"),
    "volume": ("volume", "vol", "v", "totalvolume", "tickvolume", "tickvol"),
}
_ADJ_CLOSE_NAMES = ("adjclose", "adjustedclose", "adjcloseprice", "closeadj", "closeadjusted")
_NA_TOKENS = frozenset({"nan", "null", "none", "na", "n/a", "#n/a", "nat", "-", "--"})

_TIME_OF_DAY = r"(?:\d{1,2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:\s?[AaPp][Mm])?|\d{4}|\d{6})"


@dataclass(frozen=True)
class ParsedBars:
    """What :func:`parse_bars_csv` made of a file.

    Attributes:
        bars: the good rows as a canonical bar frame (see :mod:`market.bars`), sorted by ``ts``.
        problems: rows left out of ``bars``, one :class:`RowProblem` per bad cell, by line.
        dropped_duplicates: rows dropped because an identical row (same timestamp, same values)
            came earlier in the file.
        ignored_columns: file columns not used, as written in the header.
        timeframe: the bar length read from the median spacing of the file's readable
            timestamps (``1m``, ``1h``, ``1d``); ``None`` when it is none of them or there are
            fewer than two.
        date_format_used: the strftime format the timestamps were read with, ``ISO8601``, or
            ``epoch_s`` / ``epoch_ms`` / ``epoch_us`` / ``epoch_ns``.
        warnings: things worth knowing that did not stop the parse (no volume column, ...).
        path: the file, as given.
        columns: which file column fed each field (``ts``, ``open``, ..., ``adj_close``); a
            ``ts`` built from separate date and time columns reads ``Date+Time``.
        rows_read: data lines read (blank lines not counted).
    """

    bars: pd.DataFrame
    problems: list[RowProblem]
    dropped_duplicates: int
    ignored_columns: list[str]
    timeframe: Timeframe | None
    date_format_used: str
    warnings: list[str] = field(default_factory=list)
    path: str = ""
    columns: dict[str, str] = field(default_factory=dict)
    rows_read: int = 0


def parse_bars_csv(
    path: str | os.PathLike[str], *, date_format: str | None = None, adjust: bool = False
) -> ParsedBars:
    """Read an OHLCV CSV file into canonical bars plus the rows that could not become bars.

    See the module documentation for the columns, timestamp formats and row rules.

    Args:
        path: the CSV file.
        date_format: how to read the timestamps, when detection is not wanted or cannot decide:
            a strftime format, ``ISO8601``, or ``epoch_s`` / ``epoch_ms`` / ``epoch_us`` /
            ``epoch_ns``. ``None`` detects it.
        adjust: scale open, high, low, close by ``Adj Close / Close`` (volume by the inverse).

    Returns:
        A :class:`ParsedBars`; row faults are in its ``problems``, not raised.

    Raises:
        DataFileError: the file cannot be read, lacks a time or price column, its timestamps
            cannot be read or are ambiguous, or ``adjust`` is asked of a file without
            ``Adj Close``. The message names the file, line and column and the fix.
    """
    display = str(path)
    date_format = check_date_format(date_format, display)
    raw, delimiter, notes = _read_table(Path(path), display)
    raw, cols = _find_columns(raw, display, adjust=adjust)
    notes += cols.notes
    rows_read = len(raw)

    problems: list[RowProblem] = []
    stamp_raw = raw[cols.ts].str.strip()
    ts_label = cols.ts
    if cols.time is not None:
        stamp_raw = stamp_raw + " " + raw[cols.time].str.strip()
        ts_label = f"{cols.ts}+{cols.time}"
        stamp_raw = stamp_raw.str.strip()
    empty_ts = stamp_raw == ""
    problems += [RowProblem(int(line), ts_label, "", "empty timestamp") for line in raw.index[empty_ts]]
    stamps, fmt_used, ts_notes = parse_timestamps(stamp_raw[~empty_ts], ts_label, date_format, display)
    notes += ts_notes

    values: dict[str, np.ndarray] = {}
    bad = empty_ts.to_numpy().copy()
    for role in (*BAR_COLUMNS, "adj_close"):
        name = cols.fields.get(role)
        if name is None:
            continue
        numbers, cell_problems = _numbers(raw[name], name, decimal_comma=delimiter != ",")
        problems += cell_problems
        bad |= ~np.isfinite(numbers)
        values[role] = numbers
    if "volume" not in values:
        values["volume"] = np.zeros(len(raw))
    if adjust:
        close = values["close"]
        with np.errstate(divide="ignore", invalid="ignore"):
            factor = values.pop("adj_close") / close
        broken = ~np.isfinite(factor) & ~bad
        adj_name = cols.fields["adj_close"]
        problems += [
            RowProblem(int(line), adj_name, str(raw.at[line, adj_name]), "cannot scale: close is 0")
            for line in raw.index[broken]
        ]
        bad |= broken
        with np.errstate(divide="ignore", invalid="ignore"):
            for role in ("open", "high", "low", "close"):
                values[role] = values[role] * factor
            values["volume"] = values["volume"] / factor

    frame = pd.DataFrame({c: values[c] for c in BAR_COLUMNS}, index=raw.index)
    frame.insert(0, "ts", stamps.reindex(raw.index))
    good = frame[~bad]
    good, dropped, dup_problems = _resolve_duplicates(good, stamp_raw, ts_label)
    problems += dup_problems
    if dropped:
        notes.append(f"dropped {dropped} exact duplicate row(s) (same timestamp, same values)")
    order = {name: i for i, name in enumerate(raw.columns)}
    problems.sort(key=lambda p: (p.row, order.get(p.column, -1)))

    bars = canonical_bars(good) if len(good) else empty_bars()
    columns = {"ts": ts_label, **cols.fields}
    # The spacing is read from every readable timestamp, so that bad rows do not widen it.
    all_stamps = pd.DatetimeIndex(stamps.dropna().drop_duplicates().sort_values())
    return ParsedBars(
        bars=bars,
        problems=problems,
        dropped_duplicates=dropped,
        ignored_columns=cols.ignored,
        timeframe=infer_timeframe(all_stamps),
        date_format_used=fmt_used,
        warnings=notes,
        path=display,
        columns=columns,
        rows_read=rows_read,
    )


class CsvProvider:
    """The ``csv`` provider: bars of one symbol from one CSV file.

    The file is parsed on the first call (or the first read of :attr:`parsed`) and kept on
    the instance; later calls only slice it, and changes to the file are not seen. The symbol
    passed to :meth:`fetch_bars` only labels the request: the file holds one series.

    Args:
        path: the CSV file (see :mod:`providers.csv` for what it may look like).
        date_format: as in :func:`parse_bars_csv`; ``None`` detects the format.
        adjust: scale prices by the file's ``Adj Close`` column.
        strict: refuse a file with any bad row (the default); when false, bad rows are
            left out and only logged, and :attr:`parsed` lists them.
    """

    name: str = "csv"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        date_format: str | None = None,
        adjust: bool = False,
        strict: bool = True,
    ) -> None:
        self.path = Path(path)
        self.date_format = date_format
        self.adjust = adjust
        self.strict = strict
        self._parsed: ParsedBars | None = None

    def __repr__(self) -> str:
        return f"CsvProvider({str(self.path)!r}, date_format={self.date_format!r}, adjust={self.adjust})"

    @property
    def parsed(self) -> ParsedBars:
        """The whole file as parsed, problems included (nothing raised for bad rows).

        Raises:
            DataFileError: when the file cannot be read as bars at all (see :func:`parse_bars_csv`).
        """
        if self._parsed is None:
            self._parsed = parse_bars_csv(self.path, date_format=self.date_format, adjust=self.adjust)
            for note in self._parsed.warnings:
                log.warning("%s: %s", self.path, note)
            if self._parsed.problems and not self.strict:
                log.warning(
                    "%s: left out %d bad cell(s) on %d row(s); the first: %s",
                    self.path,
                    len(self._parsed.problems),
                    len({p.row for p in self._parsed.problems}),
                    _describe(self._parsed.problems[0]),
                )
        return self._parsed

    def fetch_bars(
        self,
        symbol: str,
        timeframe: Timeframe | str,
        start: pd.Timestamp | None = None,
        end: pd.Timestamp | None = None,
    ) -> pd.DataFrame:
        """Return the file's bars with ``start <= ts < end`` (UTC; naive bounds are taken as UTC).

        Raises:
            DataFileError: the file cannot be read (see :func:`parse_bars_csv`); it holds bars
                of another timeframe than ``timeframe`` (the message names the right
                ``--timeframe``); or, when ``strict``, some rows are bad: ``row`` and
                ``column`` point at the first, ``rows`` lists them all.
            ValueError: ``timeframe`` is not ``1m``, ``1h`` or ``1d``.
        """
        wanted = Timeframe.parse(timeframe)
        parsed = self.parsed
        bars = parsed.bars
        if parsed.timeframe is not None and parsed.timeframe is not wanted:
            raise DataFileError(
                str(self.path),
                f"the file holds {parsed.timeframe.value} bars, not {wanted.value}",
                hint=f"Pass --timeframe {parsed.timeframe.value}",
            )
        if parsed.timeframe is None and len(bars) >= 2:
            raise DataFileError(
                str(self.path),
                f"the bars are {_fmt_delta(median_spacing(bars.index))} apart (median), "
                f"which is none of 1m, 1h, 1d, so they cannot be {wanted.value} bars",
                hint="Resample the file to 1-minute, hourly or daily bars first",
            )
        if self.strict and parsed.problems:
            first = parsed.problems[0]
            lines = sorted({p.row for p in parsed.problems})
            listed = ", ".join(str(n) for n in lines[:10]) + (", ..." if len(lines) > 10 else "")
            raise DataFileError(
                str(self.path),
                f"bad value {first.value!r} ({first.reason}); lines that cannot become bars: {listed}",
                hint=(
                    "Fix or remove those rows, or ingest the file with `fks ingest --source csv` "
                    "(bad rows go to quarantine)"
                ),
                row=first.row,
                column=first.column,
                rows=list(parsed.problems),
            )
        mask = np.ones(len(bars), dtype=bool)
        if start is not None:
            mask &= bars.index >= as_utc(start, "start")
        if end is not None:
            mask &= bars.index < as_utc(end, "end")
        return bars[mask].copy()


# ---------------------------------------------------------------------------------------------
# Reading the table


def _read_table(path: Path, display: str) -> tuple[pd.DataFrame, str, list[str]]:
    """The file as strings, indexed by line number, blank lines removed; its delimiter; notes."""
    if not path.exists():
        raise DataFileError(display, "no such file", hint="Check the path and the file name")
    if path.is_dir():
        raise DataFileError(display, "is a folder, not a file", hint="Pass the CSV file itself")
    try:
        with path.open("rb") as handle:
            head = handle.read(1 << 16)
    except OSError as exc:
        raise DataFileError(
            display, f"cannot be read ({exc.strerror})", hint="Check the file's permissions"
        ) from None
    _check_head(head, display)
    encoding = "utf-8-sig"
    try:
        text = head[: head.rfind(b"\n") + 1 or len(head)].decode(encoding)
    except UnicodeDecodeError:
        encoding = "latin-1"
        text = head.decode(encoding)
    lines = text.splitlines()
    leading_blank = next((i for i, line in enumerate(lines) if line.strip()), len(lines))
    header = lines[leading_blank] if leading_blank < len(lines) else ""
    delimiter = max(_DELIMITERS, key=header.count)
    notes: list[str] = []
    try:
        frame = _read_csv(path, delimiter, leading_blank, encoding, notes)
    except UnicodeDecodeError:
        frame = _read_csv(path, delimiter, leading_blank, "latin-1", notes)
    except pd.errors.EmptyDataError:
        raise DataFileError(
            display, "has no header line", hint="Add one such as Date,Open,High,Low,Close,Volume"
        ) from None
    except pd.errors.ParserError as exc:
        found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
        if found is None:
            raise DataFileError(
                display, f"is not readable as CSV ({exc})", hint="Export it again as CSV"
            ) from None
        expected, line, saw = (int(g) for g in found.groups())
        raise DataFileError(
            display,
            f"this line has {saw} fields but the header has {expected}",
            hint=f"Give every line as many fields as the header; quote values that contain {delimiter!r}",
            row=line,
        ) from None
    frame = frame.fillna("")
    frame.columns = pd.Index([str(c).strip() for c in frame.columns])
    frame.index = pd.RangeIndex(leading_blank + 2, leading_blank + 2 + len(frame))
    frame = frame[(frame != "").any(axis=1)] if len(frame.columns) else frame
    if frame.empty:
        raise DataFileError(
            display,
            "has a header but no data lines",
            hint="Export the data again; each bar needs its own line",
        )
    return frame, delimiter, notes


def _check_head(head: bytes, display: str) -> None:
    fix = "A bar file is text with a header line such as Date,Open,High,Low,Close,Volume and one line per bar"
    if not head.strip():
        raise DataFileError(display, "the file is empty", hint=fix)
    if head.startswith(b"\x1f\x8b"):
        raise DataFileError(display, "is gzip-compressed, not CSV text", hint="Decompress it first (gunzip)")
    if head.startswith(b"PK\x03\x04"):
        raise DataFileError(
            display,
            "is a ZIP archive or an Excel workbook, not CSV text",
            hint="Unzip it, or save the sheet as CSV",
        )
    if b"\x00" in head:
        raise DataFileError(display, "is a binary file, not CSV text", hint=fix)
    start = head.lstrip().removeprefix(b"\xef\xbb\xbf")[:1]
    if start in (b"{", b"["):
        raise DataFileError(display, "holds JSON, not CSV", hint=f"Convert it to CSV. {fix}")
    first_line = head.lstrip().split(b"\n", 1)[0]
    markup = re.match(rb"\s*<(!doctype|html|\?xml|head|body)", head, re.IGNORECASE) is not None
    if start == b"<" and (markup or not any(d.encode() in first_line for d in _DELIMITERS)):
        raise DataFileError(
            display, "holds HTML or XML, not CSV (a saved error page?)", hint="Download the data again as CSV"
        )


def _read_csv(path: Path, delimiter: str, skip: int, encoding: str, notes: list[str]) -> pd.DataFrame:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", pd.errors.ParserWarning)
        frame = pd.read_csv(
            path,
            sep=delimiter,
            dtype=str,
            keep_default_na=False,
            skip_blank_lines=False,
            skipinitialspace=True,
            skiprows=skip,
            index_col=False,
            encoding=encoding,
        )
    if any(issubclass(w.category, pd.errors.ParserWarning) for w in caught):
        notes.append("some lines have more fields than the header; the extra fields were ignored")
    return frame


# ---------------------------------------------------------------------------------------------
# Columns


@dataclass
class _Columns:
    ts: str
    time: str | None
    fields: dict[str, str]
    ignored: list[str]
    notes: list[str]


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _find_columns(raw: pd.DataFrame, display: str, *, adjust: bool) -> tuple[pd.DataFrame, _Columns]:
    names = list(raw.columns)
    norms = {name: _norm(name) for name in names}
    notes: list[str] = []
    raw, ts, time = _find_time_columns(raw, names, norms)

    used = {c for c in (ts, time) if c is not None}
    fields: dict[str, str] = {}
    for role, aliases in _ALIASES.items():
        for alias in aliases:
            match = next((n for n in names if norms[n] == alias and n not in used), None)
            if match is not None:
                fields[role] = match
                used.add(match)
                break
    adj = next((n for n in names if norms[n] in _ADJ_CLOSE_NAMES and n not in used), None)

    missing = ([] if ts is not None else ["date/time"]) + [
        r for r in ("open", "high", "low", "close") if r not in fields
    ]
    if missing:
        found = ", ".join(repr(n) for n in names)
        if _looks_like_data(names):
            raise DataFileError(
                display,
                f"the first line looks like data, not a header ({found})",
                hint="Add a header line such as Date,Open,High,Low,Close,Volume",
            )
        raise DataFileError(
            display,
            f"no {' or '.join(missing)} column; the columns are {found}",
            hint="Expected a date/time column (Date, Time, Datetime, Timestamp, or an unnamed first column) "
            "and Open, High, Low, Close, optionally Volume, in any case; rename the header",
        )
    if adjust:
        if adj is None:
            raise DataFileError(
                display,
                f"adjusting was asked but there is no Adj Close column; the columns are "
                f"{', '.join(repr(n) for n in names)}",
                hint="Drop --adjust to use the prices as they are, or use a file with an Adj Close column",
            )
        fields["adj_close"] = adj
        used.add(adj)
    if "volume" in fields and (raw[fields["volume"]].str.strip() == "").all():
        notes.append(f"column {fields['volume']!r} is empty on every line: volume set to 0.0")
        del fields["volume"]
    elif "volume" not in fields:
        notes.append("no volume column: volume set to 0.0")
    ignored = [n for n in names if n not in used]
    return raw, _Columns(ts=ts or "", time=time, fields=fields, ignored=ignored, notes=notes)


def _find_time_columns(
    raw: pd.DataFrame, names: list[str], norms: dict[str, str]
) -> tuple[pd.DataFrame, str | None, str | None]:
    """Pick the time column (and a separate time-of-day column); drop yfinance's extra header rows."""
    day = next((n for n in names if norms[n] in _DAY_NAMES), None)
    clock = next((n for n in names if norms[n] == "time"), None)
    if day is not None and clock is not None:
        clock_values = raw[clock].str.strip()
        clock_values = clock_values[clock_values != ""]
        day_values = raw[day].str.strip()
        if (
            len(clock_values)
            and clock_values.str.fullmatch(_TIME_OF_DAY).all()
            and not day_values.str.contains(":", regex=False).any()
        ):
            return raw, day, clock
    ranked = sorted((n for n in names if norms[n] in _TIME_NAMES), key=lambda n: _TIME_NAMES.index(norms[n]))
    if ranked:
        return raw, ranked[0], None
    first = names[0] if names else ""
    if first == "" or re.fullmatch(r"Unnamed: \d+", first):
        return raw, first, None
    if norms.get(first) == "price" and raw[first].iloc[0].strip().lower() == "ticker":
        # yfinance >= 0.2.51 writes three header rows: Price / Ticker / Date.
        label = raw[first].str.strip().str.lower()
        extra = 0
        while extra < len(raw) and label.iloc[extra] in ("ticker", "date", "datetime"):
            extra += 1
        return raw.iloc[extra:], first, None
    return raw, None, None


def _looks_like_data(names: list[str]) -> bool:
    def is_number(text: str) -> bool:
        return re.fullmatch(r"[+-]?\d+(?:\.\d+)?(?:\.\d+)?", text.strip()) is not None

    stamp = any(kind_of(n.strip()) not in (None, "epoch") for n in names)
    return stamp or sum(is_number(n) for n in names) >= 2


# ---------------------------------------------------------------------------------------------
# Values and duplicates


def _numbers(raw: pd.Series, column: str, *, decimal_comma: bool) -> tuple[np.ndarray, list[RowProblem]]:
    """The column as float64 (NaN where bad) and one problem per bad cell."""
    numbers = pd.to_numeric(raw, errors="coerce").to_numpy(dtype="float64", na_value=np.nan, copy=True)
    bad = ~np.isfinite(numbers)
    if not bad.any():
        return numbers, []
    # Second chance for the failures only: a decimal comma (in files not delimited by commas)
    # or thousands separators (in comma-delimited files, where such values are quoted).
    text = raw[bad].str.strip()
    if decimal_comma:
        cleaned = text.str.replace(r"^([+-]?\d+),(\d+)$", r"\1.\2", regex=True)
    else:
        thousands = text.str.fullmatch(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
        cleaned = text.where(~thousands, text.str.replace(",", "", regex=False))
    numbers[bad] = pd.to_numeric(cleaned, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    text = text[~np.isfinite(numbers[bad])]
    problems = [
        RowProblem(int(line), column, str(value), _number_problem(str(value)))
        for line, value in zip(text.index, text, strict=True)
    ]
    return numbers, problems


def _number_problem(value: str) -> str:
    low = value.lower()
    if value == "":
        return "empty value"
    if low in _NA_TOKENS:
        return "missing value"
    if low.lstrip("+-") in ("inf", "infinity"):
        return "not a finite number"
    if re.fullmatch(r"[+-]?\d+,\d+", value):
        return "not a number (a decimal comma? use '.' for decimals)"
    return "not a number"


def _resolve_duplicates(
    good: pd.DataFrame, stamp_raw: pd.Series, column: str
) -> tuple[pd.DataFrame, int, list[RowProblem]]:
    """Drop exact repeats of a timestamp; turn repeats with other values into problems."""
    repeated = good["ts"].duplicated(keep=False)
    if not repeated.any():
        return good, 0, []
    groups = good[repeated].groupby("ts", sort=False)
    conflicting = groups[list(BAR_COLUMNS)].nunique().max(axis=1) > 1
    problems: list[RowProblem] = []
    drop_lines: list[int] = []
    conflict_keys = set(conflicting.index[conflicting.to_numpy(dtype=bool)])
    dropped = 0
    for ts, members in groups.groups.items():
        lines = sorted(int(x) for x in members)
        if ts in conflict_keys:
            for line in lines:
                others = ", ".join(str(o) for o in lines if o != line)
                reason = f"timestamp repeats with other values (line {others})"
                problems.append(RowProblem(line, column, str(stamp_raw.loc[line]), reason))
            drop_lines += lines
        else:
            drop_lines += lines[1:]
            dropped += len(lines) - 1
    return good.drop(index=drop_lines), dropped, problems


def _fmt_delta(delta: pd.Timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds and seconds % size == 0:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return str(delta)


def _describe(problem: RowProblem) -> str:
    return f"line {problem.row}, column {problem.column!r}: {problem.reason} ({problem.value!r})"
