"""The CSV provider: column and timestamp detection, row problems, errors, and the shipped samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from market.bars import BAR_COLUMNS, Timeframe
from providers.base import BadResponse, DataFileError, Provider, RowProblem
from providers.csv import CsvProvider, ParsedBars, parse_bars_csv

SAMPLES = Path(__file__).resolve().parents[2] / "data" / "samples"


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


@pytest.fixture
def write(tmp_path: Path):
    def _write(text: str, name: str = "bars.csv") -> Path:
        path = tmp_path / name
        path.write_text(text.lstrip("\n"), encoding="utf-8")
        return path

    return _write


def daily_rows(dates: list[str]) -> str:
    return "".join(f"{d},{10 + i},{11 + i},{9 + i},{10.5 + i},{1000 + i}\n" for i, d in enumerate(dates))


# --- timestamp formats -------------------------------------------------------------------------


def test_iso_dates(write) -> None:
    path = write("Date,Open,High,Low,Close,Volume\n" + daily_rows(["2024-01-02", "2024-01-03", "2024-01-04"]))
    parsed = parse_bars_csv(path)
    assert isinstance(parsed, ParsedBars)
    assert list(parsed.bars.index) == [utc("2024-01-02"), utc("2024-01-03"), utc("2024-01-04")]
    assert parsed.bars.index.name == "ts"
    assert str(parsed.bars.index.dtype) == "datetime64[ns, UTC]"
    assert list(parsed.bars.columns) == list(BAR_COLUMNS)
    assert all(parsed.bars.dtypes == np.float64)
    assert parsed.timeframe is Timeframe.D1
    assert parsed.date_format_used == "ISO8601"
    assert parsed.problems == [] and parsed.warnings == [] and parsed.ignored_columns == []
    assert parsed.bars.loc[utc("2024-01-03"), "close"] == 11.5


def test_iso_datetimes_with_offsets_are_converted_to_utc(write) -> None:
    path = write(
        "timestamp,open,high,low,close,volume\n"
        "2024-03-01T09:30:00+02:00,1,2,0.5,1.5,10\n"
        "2024-03-01T10:30:00+0200,1,2,0.5,1.5,10\n"
        "2024-03-01 09:30:00Z,1,2,0.5,1.5,10\n"
        "2024-03-01T05:30:00.000-05:00,1,2,0.5,1.5,10\n"
    )
    parsed = parse_bars_csv(path)
    assert list(parsed.bars.index) == [utc(f"2024-03-01 {h}:30") for h in ("07", "08", "09", "10")]
    assert parsed.timeframe is Timeframe.H1
    assert parsed.date_format_used == "ISO8601"


def test_iso_offsets_give_exact_utc_values(write) -> None:
    path = write(
        "Datetime,Open,High,Low,Close,Volume\n"
        "2024-03-01T09:30:00+02:00,1,2,0.5,1.5,10\n"
        "2024-03-01T05:31:00-02:00,1,2,0.5,1.5,10\n"
    )
    assert list(parse_bars_csv(path).bars.index) == [utc("2024-03-01 07:30"), utc("2024-03-01 07:31")]


def test_month_first_slash_dates(write) -> None:
    path = write("Date,Open,High,Low,Close,Volume\n" + daily_rows(["1/10/2020", "1/13/2020", "1/14/2020"]))
    parsed = parse_bars_csv(path)
    assert parsed.date_format_used == "%m/%d/%Y"
    assert list(parsed.bars.index) == [utc("2020-01-10"), utc("2020-01-13"), utc("2020-01-14")]


def test_day_first_slash_dates_detected_by_a_day_above_12(write) -> None:
    path = write("Date,Open,High,Low,Close,Volume\n" + daily_rows(["10/01/2020", "13/01/2020", "14/01/2020"]))
    parsed = parse_bars_csv(path)
    assert parsed.date_format_used == "%d/%m/%Y"
    assert list(parsed.bars.index) == [utc("2020-01-10"), utc("2020-01-13"), utc("2020-01-14")]


def test_slash_dates_with_12_hour_clock(write) -> None:
    path = write(
        "Date,Open,High,Low,Close,Volume\n"
        "1/13/2020 9:30 AM,1,2,0.5,1.5,10\n"
        "1/13/2020 1:30 PM,1,2,0.5,1.5,10\n"
    )
    parsed = parse_bars_csv(path)
    assert parsed.date_format_used == "%m/%d/%Y %I:%M %p"
    assert list(parsed.bars.index) == [utc("2020-01-13 09:30"), utc("2020-01-13 13:30")]


def test_dotted_day_first_dates(write) -> None:
    path = write(
        "Gmt time,Open,High,Low,Close,Volume\n"
        "01.02.2017 22:00:00.000,1.05,1.06,1.04,1.055,100\n"
        "01.02.2017 23:00:00.000,1.05,1.06,1.04,1.055,100\n"
        "02.02.2017 00:00:00.000,1.05,1.06,1.04,1.055,100\n"
    )
    parsed = parse_bars_csv(path)
    assert parsed.date_format_used == "%d.%m.%Y %H:%M:%S.%f"
    assert parsed.bars.index[0] == utc("2017-02-01 22:00")
    assert parsed.bars.index[-1] == utc("2017-02-02 00:00")
    assert parsed.timeframe is Timeframe.H1


def test_dotted_dates_with_gmt_offset(write) -> None:
    path = write(
        "Local time,Open,High,Low,Close,Volume\n"
        "01.02.2017 09:00:00.000 GMT+0100,1,2,0.5,1.5,10\n"
        "01.02.2017 09:01:00.000 GMT+0100,1,2,0.5,1.5,10\n"
    )
    parsed = parse_bars_csv(path)
    assert list(parsed.bars.index) == [utc("2017-02-01 08:00"), utc("2017-02-01 08:01")]
    assert parsed.timeframe is Timeframe.M1


def test_epoch_seconds(write) -> None:
    path = write("time,open,high,low,close,volume\n1704067200,1,2,0.5,1.5,10\n1704067260,1,2,0.5,1.5,10\n")
    parsed = parse_bars_csv(path)
    assert parsed.date_format_used == "epoch_s"
    assert list(parsed.bars.index) == [utc("2024-01-01 00:00"), utc("2024-01-01 00:01")]
    assert parsed.timeframe is Timeframe.M1


def test_epoch_milliseconds(write) -> None:
    path = write(
        "open_time,o,h,l,c,v,close_time\n"
        "1704067200000,1,2,0.5,1.5,10,1704070799999\n"
        "1704070800000,1,2,0.5,1.5,10,1704074399999\n"
    )
    parsed = parse_bars_csv(path)
    assert parsed.date_format_used == "epoch_ms" and parsed.ignored_columns == ["close_time"]
    assert list(parsed.bars.index) == [utc("2024-01-01 00:00"), utc("2024-01-01 01:00")]
    assert parsed.timeframe is Timeframe.H1


def test_epoch_microseconds_and_nanoseconds(write) -> None:
    us = write("ts,open,high,low,close\n1704067200000000,1,2,0.5,1.5\n", "us.csv")
    ns = write("ts,open,high,low,close\n1704067200000000000,1,2,0.5,1.5\n", "ns.csv")
    assert parse_bars_csv(us).date_format_used == "epoch_us"
    assert parse_bars_csv(ns).date_format_used == "epoch_ns"
    assert parse_bars_csv(ns).bars.index[0] == utc("2024-01-01")


def test_explicit_date_format_settles_ambiguous_dates(write) -> None:
    path = write("Date,Open,High,Low,Close,Volume\n" + daily_rows(["03/04/2020", "04/04/2020"]))
    day_first = parse_bars_csv(path, date_format="%d/%m/%Y")
    assert day_first.date_format_used == "%d/%m/%Y"
    assert list(day_first.bars.index) == [utc("2020-04-03"), utc("2020-04-04")]
    month_first = parse_bars_csv(path, date_format="%m/%d/%Y")
    assert list(month_first.bars.index) == [utc("2020-03-04"), utc("2020-04-04")]


def test_explicit_epoch_format(write) -> None:
    path = write("time,open,high,low,close\n1704067200000,1,2,0.5,1.5\n")
    parsed = parse_bars_csv(path, date_format="epoch_ms")
    assert parsed.date_format_used == "epoch_ms"
    assert parsed.bars.index[0] == utc("2024-01-01")


def test_explicit_date_format_mismatch_names_line_and_value(write) -> None:
    path = write("Date,Open,High,Low,Close\n2020-01-02,1,2,0.5,1.5\n2020/01/03,1,2,0.5,1.5\n")
    with pytest.raises(DataFileError) as info:
        parse_bars_csv(path, date_format="%Y-%m-%d")
    err = info.value
    assert (err.row, err.column) == (3, "Date")
    assert str(path) in str(err) and "'2020/01/03'" in str(err) and "--date-format" in str(err)


def test_date_format_that_is_not_a_strftime_format_is_refused(write) -> None:
    path = write("Date,Open,High,Low,Close\n2020-01-02,1,2,0.5,1.5\n")
    with pytest.raises(DataFileError, match=r"not a strftime format.*%Y-%m-%d"):
        parse_bars_csv(path, date_format="YYYY-MM-DD")


def test_ambiguous_slash_dates_are_refused_with_both_formats(write) -> None:
    path = write("Date,Open,High,Low,Close,Volume\n" + daily_rows(["03/04/2020", "04/04/2020", "05/04/2020"]))
    with pytest.raises(DataFileError) as info:
        parse_bars_csv(path)
    err, text = info.value, str(info.value)
    assert err.column == "Date" and err.row == 2
    assert str(path) in text
    assert "'03/04/2020'" in text and "ambiguous" in text
    assert "--date-format %m/%d/%Y" in text and "--date-format %d/%m/%Y" in text


def test_ambiguous_dates_with_times_spell_out_the_full_formats(write) -> None:
    path = write("Date,Open,High,Low,Close\n03/04/2020 10:00,1,2,0.5,1.5\n")
    with pytest.raises(DataFileError) as info:
        parse_bars_csv(path)
    assert "--date-format '%m/%d/%Y %H:%M'" in str(info.value)
    assert "--date-format '%d/%m/%Y %H:%M'" in str(info.value)


def test_dates_that_are_both_month_first_and_day_first_are_refused(write) -> None:
    path = write(
        "Date,Open,High,Low,Close\n" + daily_rows(["01/13/2020", "14/01/2020"]).replace(",1001\n", "\n")
    )
    with pytest.raises(DataFileError) as info:
        parse_bars_csv(path)
    assert "disagree" in str(info.value) and "--date-format" in str(info.value)
    assert info.value.column == "Date"


def test_unparseable_timestamp_names_its_line(write) -> None:
    path = write("Date,Open,High,Low,Close,Volume\n" + daily_rows(["2024-01-02", "2024-01-03", "2024-13-45"]))
    with pytest.raises(DataFileError) as info:
        parse_bars_csv(path)
    err = info.value
    assert (err.row, err.column) == (4, "Date")
    assert f"{path}, row 4, column 'Date'" in str(err)
    assert "'2024-13-45'" in str(err) and "--date-format" in str(err)


def test_garbage_timestamp_names_its_line(write) -> None:
    path = write("Date,Open,High,Low,Close\n2024-01-02,1,2,0.5,1.5\nyesterday,1,2,0.5,1.5\n")
    with pytest.raises(DataFileError) as info:
        parse_bars_csv(path)
    assert (info.value.row, info.value.column) == (3, "Date")
    assert "cannot read timestamp 'yesterday'" in str(info.value) and "--date-format" in str(info.value)


def test_mixed_timestamp_formats_name_the_first_odd_line(write) -> None:
    path = write(
        "Date,Open,High,Low,Close\n2024-01-02,1,2,0.5,1.5\n2024-01-03,1,2,0.5,1.5\n01/04/2024,1,2,0.5,1.5\n"
    )
    with pytest.raises(DataFileError) as info:
        parse_bars_csv(path)
    assert (info.value.row, info.value.column) == (4, "Date")
    assert "mixes formats" in str(info.value) and "'01/04/2024'" in str(info.value)


def test_small_integers_are_not_taken_for_epoch_times(write) -> None:
    path = write(",open,high,low,close\n0,1,2,0.5,1.5\n1,1,2,0.5,1.5\n")
    with pytest.raises(DataFileError) as info:
        parse_bars_csv(path)
    assert info.value.row == 2 and "not a plausible bar time" in str(info.value)
    assert "--date-format" in str(info.value)


def test_daily_bars_at_local_midnight_keep_their_session_date(write) -> None:
    path = write(
        "Date,Open,High,Low,Close,Volume\n"
        "2024-03-08 00:00:00-05:00,1,2,0.5,1.5,10\n"
        "2024-03-11 00:00:00-04:00,1,2,0.5,1.5,10\n"
        "2024-03-12 00:00:00-04:00,1,2,0.5,1.5,10\n"
    )
    parsed = parse_bars_csv(path)
    assert list(parsed.bars.index) == [utc("2024-03-08"), utc("2024-03-11"), utc("2024-03-12")]
    assert parsed.timeframe is Timeframe.D1
    assert any("session dates" in w for w in parsed.warnings)


# --- columns -------------------------------------------------------------------------------------


def test_headers_match_in_any_case_and_spelling(write) -> None:
    path = write(" DATE ;OPEN;High;low;CLOSE;Vol.\n2024-01-02;1;2;0.5;1.5;10\n2024-01-03;1;2;0.5;1.5;20\n")
    parsed = parse_bars_csv(path)
    assert len(parsed.bars) == 2 and parsed.bars["volume"].tolist() == [10.0, 20.0]
    assert parsed.columns["ts"] == "DATE" and parsed.columns["volume"] == "Vol."


def test_unnamed_index_column_as_pandas_writes_it(write) -> None:
    index = pd.date_range("2024-01-01 09:00", periods=3, freq="1min", tz="UTC")
    frame = pd.DataFrame(
        {"Open": 1.0, "High": 2.0, "Low": 0.5, "Close": [1.1, 1.2, 1.3], "Volume": 5}, index=index
    )
    path = write(frame.to_csv())
    assert path.read_text().startswith(",Open")
    parsed = parse_bars_csv(path)
    assert list(parsed.bars.index) == list(index)
    assert parsed.bars["close"].tolist() == [1.1, 1.2, 1.3]
    assert parsed.timeframe is Timeframe.M1 and parsed.columns["ts"] == "Unnamed: 0"


def test_canonical_frame_round_trips_through_to_csv(write) -> None:
    index = pd.date_range("2024-01-01", periods=4, freq="1h", tz="UTC", name="ts")
    values = np.arange(20, dtype="float64").reshape(4, 5) + 0.25
    frame = pd.DataFrame(values, index=index, columns=list(BAR_COLUMNS))
    parsed = parse_bars_csv(write(frame.to_csv()))
    pd.testing.assert_frame_equal(parsed.bars, frame.set_axis(index.as_unit("ns")), check_freq=False)


def test_adj_close_is_ignored_by_default(write) -> None:
    path = write("Date,Open,High,Low,Close,Adj Close,Volume\n2024-01-02,8,12,6,10,5,100\n")
    parsed = parse_bars_csv(path)
    assert parsed.ignored_columns == ["Adj Close"]
    assert parsed.bars.iloc[0].tolist() == [8.0, 12.0, 6.0, 10.0, 100.0]


def test_adjust_scales_prices_by_adj_close_and_volume_inversely(write) -> None:
    path = write(
        "Date,Open,High,Low,Close,Adj Close,Volume\n"
        "2024-01-02,8,12,6,10,5,100\n"
        "2024-01-03,20,22,18,20,20,50\n"
    )
    parsed = parse_bars_csv(path, adjust=True)
    assert parsed.ignored_columns == []
    assert parsed.columns["adj_close"] == "Adj Close"
    assert parsed.bars.iloc[0].tolist() == [4.0, 6.0, 3.0, 5.0, 200.0]
    assert parsed.bars.iloc[1].tolist() == [20.0, 22.0, 18.0, 20.0, 50.0]


def test_adjust_without_adj_close_is_an_error(write) -> None:
    path = write("Date,Open,High,Low,Close,Volume\n2024-01-02,8,12,6,10,100\n")
    with pytest.raises(DataFileError) as info:
        parse_bars_csv(path, adjust=True)
    text = str(info.value)
    assert str(path) in text and "Adj Close" in text and "--adjust" in text and "'Volume'" in text


def test_openint_is_ignored_and_split_date_time_columns_are_joined(write) -> None:
    path = write(
        "Date,Time,Open,High,Low,Close,Volume,OpenInt\n"
        "2024-01-02,09:00:00,1,2,0.5,1.5,10,0\n"
        "2024-01-02,10:00:00,1,2,0.5,1.5,10,0\n"
    )
    parsed = parse_bars_csv(path)
    assert parsed.ignored_columns == ["OpenInt"]
    assert list(parsed.bars.index) == [utc("2024-01-02 09:00"), utc("2024-01-02 10:00")]
    assert parsed.columns["ts"] == "Date+Time" and parsed.timeframe is Timeframe.H1


def test_stooq_text_layout(write) -> None:
    path = write(
        "<TICKER>,<PER>,<DATE>,<TIME>,<OPEN>,<HIGH>,<LOW>,<CLOSE>,<VOL>,<OPENINT>\n"
        "EURUSD,60,20240102,090000,1,2,0.5,1.5,0,0\n"
        "EURUSD,60,20240102,100000,1,2,0.5,1.5,0,0\n"
    )
    parsed = parse_bars_csv(path)
    assert list(parsed.bars.index) == [utc("2024-01-02 09:00"), utc("2024-01-02 10:00")]
    assert parsed.ignored_columns == ["<TICKER>", "<PER>", "<OPENINT>"]


def test_metatrader_tab_export_with_year_first_dotted_dates(write) -> None:
    path = write(
        "<DATE>\t<TIME>\t<OPEN>\t<HIGH>\t<LOW>\t<CLOSE>\t<TICKVOL>\t<VOL>\t<SPREAD>\n"
        "2024.01.02\t00:00:00\t1.1\t1.2\t1.0\t1.15\t100\t7\t5\n"
        "2024.01.02\t01:00:00\t1.1\t1.2\t1.0\t1.15\t100\t8\t5\n"
    )
    parsed = parse_bars_csv(path)
    assert parsed.date_format_used == "%Y.%m.%d %H:%M:%S"
    assert list(parsed.bars.index) == [utc("2024-01-02 00:00"), utc("2024-01-02 01:00")]
    assert parsed.bars["volume"].tolist() == [7.0, 8.0]
    assert parsed.ignored_columns == ["<TICKVOL>", "<SPREAD>"]


def test_compact_dates(write) -> None:
    path = write("Date,Open,High,Low,Close\n20240102,1,2,0.5,1.5\n20240103,1,2,0.5,1.5\n")
    parsed = parse_bars_csv(path)
    assert parsed.date_format_used == "%Y%m%d" and parsed.bars.index[1] == utc("2024-01-03")


def test_yfinance_three_line_header(write) -> None:
    path = write(
        "Price,Close,High,Low,Open,Volume\nTicker,SPY,SPY,SPY,SPY,SPY\nDate,,,,,\n"
        "2024-01-02,472.6,473.6,470.5,472.1,123\n2024-01-03,468.7,471.1,468.1,470.4,456\n"
    )
    parsed = parse_bars_csv(path)
    assert list(parsed.bars.index) == [utc("2024-01-02"), utc("2024-01-03")]
    assert parsed.bars.iloc[0].tolist() == [472.1, 473.6, 470.5, 472.6, 123.0]
    assert parsed.problems == []


def test_missing_volume_is_zero_with_a_warning(write) -> None:
    path = write("Date,Open,High,Low,Close\n2024-01-02,1,2,0.5,1.5\n")
    parsed = parse_bars_csv(path)
    assert parsed.bars["volume"].tolist() == [0.0]
    assert parsed.warnings == ["no volume column: volume set to 0.0"]


def test_missing_close_names_the_column_and_what_was_found(write) -> None:
    path = write("Date,Open,High,Low,Volume\n2024-01-02,1,2,0.5,10\n")
    with pytest.raises(DataFileError) as info:
        parse_bars_csv(path)
    text = str(info.value)
    assert text.startswith(str(path))
    assert "no close column" in text
    assert "'Date', 'Open', 'High', 'Low', 'Volume'" in text
    assert "Close" in info.value.hint and "rename the header" in info.value.hint


def test_missing_time_column(write) -> None:
    path = write("Symbol,Open,High,Low,Close\nX,1,2,0.5,1.5\n")
    with pytest.raises(DataFileError, match=r"no date/time column; the columns are 'Symbol'"):
        parse_bars_csv(path)


def test_first_line_of_data_instead_of_a_header(write) -> None:
    path = write("2024-01-02,1,2,0.5,1.5,10\n2024-01-03,1,2,0.5,1.5,10\n")
    with pytest.raises(DataFileError) as info:
        parse_bars_csv(path)
    assert "looks like data, not a header" in str(info.value) and "Date,Open,High,Low,Close" in str(
        info.value
    )


# --- rows ----------------------------------------------------------------------------------------


BAD_ROWS = (
    "Date,Open,High,Low,Close,Volume\n"
    "2024-01-02,1,2,0.5,1.5,10\n"
    "2024-01-03,abc,2,0.5,1.5,10\n"
    "2024-01-04,1,2,0.5,NaN,10\n"
    "2024-01-05,1,2,0.5,,10\n"
    "2024-01-08,1,2,0.5,1.5,10\n"
)


def test_bad_numbers_are_collected_as_row_problems(write) -> None:
    parsed = parse_bars_csv(write(BAD_ROWS))
    assert parsed.problems == [
        RowProblem(3, "Open", "abc", "not a number"),
        RowProblem(4, "Close", "NaN", "missing value"),
        RowProblem(5, "Close", "", "empty value"),
    ]
    assert list(parsed.bars.index) == [utc("2024-01-02"), utc("2024-01-08")]


def test_strict_provider_refuses_bad_rows(write) -> None:
    path = write(BAD_ROWS)
    with pytest.raises(DataFileError) as info:
        CsvProvider(path).fetch_bars("X", "1d")
    err = info.value
    assert (err.row, err.column) == (3, "Open")
    assert [p.row for p in err.rows] == [3, 4, 5]
    text = str(err)
    assert text.startswith(f"{path}, row 3, column 'Open'")
    assert (
        "bad value 'abc' (not a number); lines that cannot become bars: 3, 4, 5" in text
        and "Fix or remove those rows" in text
    )


def test_lenient_provider_returns_the_good_rows(write) -> None:
    provider = CsvProvider(write(BAD_ROWS), strict=False)
    bars = provider.fetch_bars("X", "1d")
    assert list(bars.index) == [utc("2024-01-02"), utc("2024-01-08")]
    assert len(provider.parsed.problems) == 3


def test_infinite_and_non_numeric_volume_are_problems(write) -> None:
    path = write("Date,Open,High,Low,Close,Volume\n2024-01-02,1,2,0.5,inf,10\n2024-01-03,1,2,0.5,1.5,lots\n")
    problems = parse_bars_csv(path).problems
    assert problems == [
        RowProblem(2, "Close", "inf", "not a finite number"),
        RowProblem(3, "Volume", "lots", "not a number"),
    ]


def test_conflicting_duplicates_are_problems_exact_duplicates_are_dropped(write) -> None:
    path = write(
        "Date,Open,High,Low,Close,Volume\n"
        "2024-01-02,1,2,0.5,1.5,10\n"
        "2024-01-03,1,2,0.5,1.5,10\n"
        "2024-01-02,1.0,2.00,0.5,1.5,10\n"
        "2024-01-04,1,2,0.5,1.5,10\n"
        "2024-01-04,1,2,0.5,1.6,10\n"
    )
    parsed = parse_bars_csv(path)
    assert parsed.dropped_duplicates == 1
    assert [(p.row, p.column, p.value) for p in parsed.problems] == [
        (5, "Date", "2024-01-04"),
        (6, "Date", "2024-01-04"),
    ]
    assert "line 6" in parsed.problems[0].reason and "other values" in parsed.problems[0].reason
    assert list(parsed.bars.index) == [utc("2024-01-02"), utc("2024-01-03")]
    assert any("duplicate" in w for w in parsed.warnings)


def test_unsorted_rows_are_sorted_and_blank_lines_keep_line_numbers(write) -> None:
    path = write(
        "Date,Open,High,Low,Close,Volume\n"
        "2024-01-04,3,3,3,3,3\n"
        "\n"
        "2024-01-02,1,1,1,1,1\n"
        "2024-01-03,2,x,2,2,2\n"
    )
    parsed = parse_bars_csv(path)
    assert list(parsed.bars.index) == [utc("2024-01-02"), utc("2024-01-04")]
    assert parsed.problems == [RowProblem(5, "High", "x", "not a number")]
    assert parsed.rows_read == 3


def test_empty_timestamp_is_a_row_problem(write) -> None:
    path = write("Date,Open,High,Low,Close\n2024-01-02,1,2,0.5,1.5\n,1,2,0.5,1.5\n")
    assert parse_bars_csv(path).problems == [RowProblem(3, "Date", "", "empty timestamp")]


def test_semicolons_with_decimal_commas_and_tabs(write) -> None:
    semi = write("Date;Open;High;Low;Close;Volume\n02.01.2024;1,5;2,25;0,75;1,125;10\n", "semi.csv")
    assert parse_bars_csv(semi).bars.iloc[0].tolist() == [1.5, 2.25, 0.75, 1.125, 10.0]
    tabs = write("Date\tOpen\tHigh\tLow\tClose\n2024-01-02\t1\t2\t0.5\t1.5\n", "tabs.tsv")
    assert parse_bars_csv(tabs).bars.iloc[0].tolist() == [1.0, 2.0, 0.5, 1.5, 0.0]


def test_quoted_thousands_separators(write) -> None:
    path = write('Date,Open,High,Low,Close,Volume\n2024-01-02,"1,234.5",1300,1200,1250,"1,000,000"\n')
    assert parse_bars_csv(path).bars.iloc[0].tolist() == [1234.5, 1300.0, 1200.0, 1250.0, 1e6]


# --- unreadable files ----------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.csv"
    with pytest.raises(DataFileError, match=r"nope\.csv: no such file\. Check the path"):
        parse_bars_csv(path)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "the file is empty"),
        (b"\x00\x01\x02binary", "binary file"),
        (b"\x1f\x8b\x08\x00gz", "gzip-compressed"),
        (b"PK\x03\x04rest", "Excel workbook"),
        (b'{"bars": []}', "holds JSON"),
        (b"<html><body>Too many requests</body></html>", "HTML"),
        (b"Date,Open,High,Low,Close\n", "no data lines"),
    ],
)
def test_unreadable_files_say_why_and_how_to_fix(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(DataFileError) as info:
        parse_bars_csv(path)
    assert str(info.value).startswith(str(path))
    assert expected in str(info.value)
    assert info.value.hint


def test_folder_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match=r"is a folder, not a file\. Pass the CSV file itself"):
        parse_bars_csv(tmp_path)


def test_data_file_error_is_a_bad_response_and_a_value_error(tmp_path: Path) -> None:
    with pytest.raises(BadResponse):
        CsvProvider(tmp_path / "nope.csv").fetch_bars("X", "1d")
    with pytest.raises(ValueError):
        parse_bars_csv(tmp_path / "nope.csv")


def test_line_with_too_many_fields(write) -> None:
    path = write("Date,Open,High,Low,Close\n2024-01-02,1,2,0.5,1.5\n2024-01-03,1,2,0.5,1.5,9,9\n")
    with pytest.raises(DataFileError) as info:
        parse_bars_csv(path)
    assert info.value.row == 3 and "7 fields but the header has 5" in str(info.value)


# --- the provider --------------------------------------------------------------------------------


def hourly_file(write) -> Path:
    rows = "".join(f"2024-01-02 {h:02d}:00,1,2,0.5,{h},10\n" for h in range(6))
    return write("Datetime,Open,High,Low,Close,Volume\n" + rows)


def test_provider_satisfies_the_contract(write) -> None:
    provider = CsvProvider(hourly_file(write))
    assert isinstance(provider, Provider) and provider.name == "csv"


def test_timeframe_mismatch_says_which_timeframe_to_pass(write) -> None:
    path = hourly_file(write)
    with pytest.raises(DataFileError) as info:
        CsvProvider(path).fetch_bars("EURUSD", Timeframe.D1)
    text = str(info.value)
    assert text.startswith(str(path)) and "holds 1h bars, not 1d" in text and "Pass --timeframe 1h" in text


def test_spacing_that_fits_no_timeframe(write) -> None:
    path = write("Date,Open,High,Low,Close\n" + "".join(f"2024-01-{d:02d},1,2,0.5,1.5\n" for d in (1, 8, 15)))
    assert parse_bars_csv(path).timeframe is None
    with pytest.raises(DataFileError, match=r"7 days apart .*none of 1m, 1h, 1d.*Resample"):
        CsvProvider(path).fetch_bars("X", "1d")


def test_start_inclusive_end_exclusive(write) -> None:
    provider = CsvProvider(hourly_file(write))
    bars = provider.fetch_bars("X", "1h", start=pd.Timestamp("2024-01-02 01:00"), end=utc("2024-01-02 04:00"))
    assert list(bars.index) == [utc(f"2024-01-02 {h:02d}:00") for h in (1, 2, 3)]
    assert bars["close"].tolist() == [1.0, 2.0, 3.0]
    assert len(provider.fetch_bars("X", "1h")) == 6
    assert provider.fetch_bars("X", "1h", start=utc("2025-01-01")).empty


def test_provider_parses_once(write) -> None:
    path = hourly_file(write)
    provider = CsvProvider(path)
    first = provider.fetch_bars("X", "1h")
    path.unlink()
    pd.testing.assert_frame_equal(provider.fetch_bars("X", "1h"), first)
    first.iloc[0, 0] = -1.0  # callers get copies
    assert provider.fetch_bars("X", "1h").iloc[0, 0] == 1.0


# --- the shipped samples -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "rows", "first", "last", "timeframe", "fmt"),
    [
        ("sp500_daily.csv", 5031, "1999-01-04", "2018-12-31", Timeframe.D1, "%m/%d/%Y"),
        ("googl_daily.csv", 2335, "2009-05-22", "2018-08-29", Timeframe.D1, "ISO8601"),
        (
            "eurusd_hourly.csv",
            6225,
            "2017-01-01 22:00",
            "2017-12-29 21:00",
            Timeframe.H1,
            "%d.%m.%Y %H:%M:%S.%f",
        ),
    ],
)
def test_samples(name: str, rows: int, first: str, last: str, timeframe: Timeframe, fmt: str) -> None:
    parsed = parse_bars_csv(SAMPLES / name)
    assert len(parsed.bars) == rows == parsed.rows_read
    assert parsed.problems == [] and parsed.dropped_duplicates == 0
    assert parsed.bars.index[0] == utc(first) and parsed.bars.index[-1] == utc(last)
    assert parsed.timeframe is timeframe and parsed.date_format_used == fmt
    assert parsed.bars.index.is_monotonic_increasing and parsed.bars.index.is_unique
    bars = CsvProvider(SAMPLES / name).fetch_bars("X", timeframe)
    assert len(bars) == rows


def test_sample_values_and_ignored_columns() -> None:
    spx = parse_bars_csv(SAMPLES / "sp500_daily.csv")
    assert spx.ignored_columns == ["Adj Close"]
    assert spx.bars.iloc[0].tolist() == [1229.22998, 1248.810059, 1219.099976, 1228.099976, 877000000.0]
    eur = parse_bars_csv(SAMPLES / "eurusd_hourly.csv")
    assert eur.ignored_columns == [] and eur.warnings == []
    assert eur.bars.iloc[-1].tolist() == [1.19984, 1.2013, 1.19931, 1.20075, 4885529785.0]
    googl = parse_bars_csv(SAMPLES / "googl_daily.csv", adjust=True)  # Adj Close equals Close there
    pd.testing.assert_frame_equal(googl.bars, parse_bars_csv(SAMPLES / "googl_daily.csv").bars)
