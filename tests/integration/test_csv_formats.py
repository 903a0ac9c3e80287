"""Each CSV timestamp format, from file to the SQLite bar store and back, with exact UTC times."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from providers.csv import CsvProvider
from storage import open_store, read_bars, upsert_bars

EXPECTED = pd.DatetimeIndex(["2024-03-04 14:00", "2024-03-04 15:00", "2024-03-04 16:00"], tz="UTC", name="ts")
PRICES = ["100.5,101.0,100.0,100.8,1200", "100.8,101.5,100.6,101.2,900", "101.2,101.3,100.1,100.4,1500"]


def _times(fmt: str) -> list[str]:
    return {
        "iso": ["2024-03-04 14:00:00", "2024-03-04 15:00:00", "2024-03-04 16:00:00"],
        "iso_offset": ["2024-03-04T09:00:00-05:00", "2024-03-04T10:00:00-05:00", "2024-03-04T11:00:00-05:00"],
        "mdy": ["3/4/2024 14:00", "3/4/2024 15:00", "3/4/2024 16:00"],
        "dmy": ["04/03/2024 14:00", "04/03/2024 15:00", "04/03/2024 16:00"],
        "dotted": ["04.03.2024 14:00:00.000", "04.03.2024 15:00:00.000", "04.03.2024 16:00:00.000"],
        "epoch_s": [str(int(t.timestamp())) for t in EXPECTED],
        "epoch_ms": [str(int(t.timestamp() * 1000)) for t in EXPECTED],
    }[fmt]


@pytest.mark.parametrize(
    ("fmt", "date_format"),
    [
        ("iso", None),
        ("iso_offset", None),
        ("mdy", None),
        ("dmy", "%d/%m/%Y %H:%M"),
        ("dotted", None),
        ("epoch_s", None),
        ("epoch_ms", None),
    ],
)
def test_format_round_trips_through_sqlite(tmp_path: Path, fmt: str, date_format: str | None) -> None:
    # "mdy" has a day above 12 (no ambiguity); "dmy" 04/03 is ambiguous, so it needs the explicit format
    times = _times(fmt)
    if fmt == "mdy":
        times = [t.replace("3/4/", "3/14/") for t in times]
    path = tmp_path / f"{fmt}.csv"
    path.write_text(
        "Timestamp,Open,High,Low,Close,Volume\n"
        + "".join(f"{t},{p}\n" for t, p in zip(times, PRICES, strict=True))
    )
    bars = CsvProvider(path, date_format=date_format).fetch_bars("X", "1h")
    engine = open_store(f"sqlite:///{tmp_path / 'fks.db'}")
    with engine.begin() as conn:
        result = upsert_bars(conn, "X", "1h", bars, source="csv")
    assert result.inserted == 3
    stored = read_bars(engine, "X", "1h")
    expected = (EXPECTED + pd.Timedelta(days=10 if fmt == "mdy" else 0)).as_unit("ns")
    pd.testing.assert_index_equal(stored.index, expected, check_exact=True)
    assert stored["close"].tolist() == [100.8, 101.2, 100.4]
    assert stored["volume"].tolist() == [1200.0, 900.0, 1500.0]
