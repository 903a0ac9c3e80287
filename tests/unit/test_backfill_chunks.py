"""Backfill chunk planning: alignment, idempotent planning, pending/failed selection, derivation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from sqlalchemy import Engine

from config.backfill import BackfillConfig
from market.bars import canonical_bars
from market.calendars import get_calendar
from market.derive import derive_complete
from market.ranges import closed_until, subtract_ranges
from market.resample import resample_bars
from storage import open_store
from storage.backfill import (
    chunk_progress,
    chunk_ranges,
    claim_chunks,
    group_into_chunks,
    list_chunks,
    mark_done,
    mark_failed,
    missing_ranges,
    pending_chunks,
    plan_chunks,
)


def utc(value: str) -> pd.Timestamp:
    """A UTC timestamp."""
    return pd.Timestamp(value, tz="UTC")


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    """A migrated SQLite store."""
    eng = open_store(f"sqlite:///{tmp_path / 'fks.db'}")
    try:
        yield eng
    finally:
        eng.dispose()


def test_day_chunks_are_aligned_to_utc_midnight_and_cut_at_the_bounds() -> None:
    ranges = chunk_ranges("2024-01-01 12:00", "2024-01-04 06:30", "1D")
    assert ranges == [
        (utc("2024-01-01 12:00"), utc("2024-01-02")),
        (utc("2024-01-02"), utc("2024-01-03")),
        (utc("2024-01-03"), utc("2024-01-04")),
        (utc("2024-01-04"), utc("2024-01-04 06:30")),
    ]
    assert chunk_ranges("2024-01-01", "2024-01-03", "1D") == [
        (utc("2024-01-01"), utc("2024-01-02")),
        (utc("2024-01-02"), utc("2024-01-03")),
    ]


def test_fixed_chunks_align_to_the_epoch_and_anchored_ones_to_their_anchor() -> None:
    six = chunk_ranges("2024-01-01 05:00", "2024-01-01 19:00", "6h")
    assert [s.hour for s, _ in six] == [5, 6, 12, 18]
    months = chunk_ranges("2024-01-15", "2024-03-10", "MS")
    assert months == [
        (utc("2024-01-15"), utc("2024-02-01")),
        (utc("2024-02-01"), utc("2024-03-01")),
        (utc("2024-03-01"), utc("2024-03-10")),
    ]
    # 30D chunks: boundaries are multiples of 30 days since 1970-01-01, whatever the bounds
    a = chunk_ranges("2024-01-01", "2024-03-01", "30D")
    b = chunk_ranges("2023-12-01", "2024-04-01", "30D")
    inner_a = {s for s, _ in a[1:]}
    assert inner_a <= {s for s, _ in b}
    assert all((s - utc("1970-01-01")) % pd.Timedelta(days=30) == pd.Timedelta(0) for s in inner_a)


def test_bad_chunk_lengths_and_windows_are_refused() -> None:
    with pytest.raises(ValueError, match="pandas offset"):
        chunk_ranges("2024-01-01", "2024-01-02", "fortnightly")
    with pytest.raises(ValueError, match="after start"):
        chunk_ranges("2024-01-02", "2024-01-01", "1D")
    with pytest.raises(ValidationError, match="pandas offset"):
        BackfillConfig(symbols=["BTC-USD"], start="2024-01-01", chunk="often")
    with pytest.raises(ValidationError, match="--start"):
        BackfillConfig(symbols=["BTC-USD"])
    with pytest.raises(ValidationError, match="--symbols"):
        BackfillConfig(start="2024-01-01")
    with pytest.raises(ValidationError, match="--timeframe 1h"):
        BackfillConfig(symbols=["BTC-USD"], start="2024-01-01", timeframe="1m", derive_from="1m")
    assert BackfillConfig(gaps=True).symbols == []


def test_gap_ranges_are_grouped_by_chunk() -> None:
    groups = group_into_chunks(
        [
            (utc("2024-01-01 01:00"), utc("2024-01-01 02:00")),
            (utc("2024-01-01 05:00"), utc("2024-01-02 03:00")),  # spans midnight: split there
            (utc("2024-01-03 10:00"), utc("2024-01-03 10:01")),
        ],
        "1D",
    )
    assert groups == [
        (utc("2024-01-01 01:00"), utc("2024-01-01 02:00")),
        (utc("2024-01-01 05:00"), utc("2024-01-02")),
        (utc("2024-01-02"), utc("2024-01-02 03:00")),
        (utc("2024-01-03 10:00"), utc("2024-01-03 10:01")),
    ]
    joined = group_into_chunks(
        [
            (utc("2024-01-01 01:00"), utc("2024-01-01 02:00")),
            (utc("2024-01-01 05:00"), utc("2024-01-02 03:00")),
        ],
        "1D",
        join=pd.Timedelta(hours=3),
    )
    assert joined == [
        (utc("2024-01-01 01:00"), utc("2024-01-02")),
        (utc("2024-01-02"), utc("2024-01-02 03:00")),
    ]
    long_hole = group_into_chunks([(utc("2024-01-01 12:00"), utc("2024-01-04 06:00"))], "1D")
    assert [s for s, _ in long_hole] == [utc("2024-01-01 12:00"), utc("2024-01-02"), utc("2024-01-03"),
                                         utc("2024-01-04")]  # fmt: skip


def test_subtract_ranges_keeps_what_is_not_covered() -> None:
    got = subtract_ranges(
        [(utc("2024-01-01"), utc("2024-01-05"))],
        [(utc("2024-01-02"), utc("2024-01-03")), (utc("2024-01-04"), utc("2024-01-06"))],
    )
    assert got == [(utc("2024-01-01"), utc("2024-01-02")), (utc("2024-01-03"), utc("2024-01-04"))]


def test_planning_is_idempotent_and_keeps_done_chunks_done(engine: Engine) -> None:
    ranges = chunk_ranges("2024-01-01", "2024-01-04", "1D")
    with engine.begin() as conn:
        first = plan_chunks(conn, "BTC-USD", "1m", ranges, batch_id="a")
        assert [c.status for c in first] == ["pending"] * 3
        mark_done(conn, first[1].id, "binance", 1440)
    with engine.begin() as conn:
        again = plan_chunks(conn, "BTC-USD", "1m", ranges, batch_id="b")
        assert [c.id for c in again] == [c.id for c in first]
        assert [c.status for c in again] == ["pending", "done", "pending"]
        assert again[1].provider == "binance" and again[1].rows == 1440 and again[1].attempts == 1
        # another series with the same range is a different chunk
        other = plan_chunks(conn, "ETH-USD", "1m", ranges[:1])
        assert other[0].id not in {c.id for c in first}
    with engine.connect() as conn:
        assert len(list_chunks(conn)) == 4


def test_pending_chunks_are_pending_and_failed_in_time_order(engine: Engine) -> None:
    ranges = chunk_ranges("2024-01-01", "2024-01-05", "1D")
    with engine.begin() as conn:
        planned = plan_chunks(conn, "BTC-USD", "1m", list(reversed(ranges)))
        assert [c.start for c in planned] == [r[0] for r in ranges]
        mark_failed(conn, planned[2].id, "AllProvidersFailed: binance: Unavailable: HTTP 503")
        mark_done(conn, planned[0].id, "binance", 10)
        mark_failed(conn, planned[3].id, "first")
        mark_failed(conn, planned[3].id, "second")
    with engine.connect() as conn:
        todo = pending_chunks(conn, "BTC-USD", "1m")
        assert [(c.start, c.status) for c in todo] == [
            (utc("2024-01-02"), "pending"),
            (utc("2024-01-03"), "failed"),
            (utc("2024-01-04"), "failed"),
        ]
        assert todo[2].attempts == 2 and todo[2].error == "second"
        window = pending_chunks(conn, "BTC-USD", "1m", utc("2024-01-02"), utc("2024-01-04"))
        assert [c.start for c in window] == [utc("2024-01-02"), utc("2024-01-03")]
        assert pending_chunks(conn, "BTC-USD", "1h") == []
        missing = missing_ranges(conn)
        assert list(missing.columns[:6]) == ["id", "symbol", "timeframe", "start", "end", "error"]
        assert list(missing["start"]) == [utc("2024-01-03"), utc("2024-01-04")]
        assert missing["error"].iloc[0].startswith("AllProvidersFailed")
        assert missing_ranges(conn, symbol="ETH-USD").empty
    with engine.begin() as conn:
        mark_done(conn, planned[2].id, "coingecko", 1440)
    with engine.connect() as conn:
        assert list(missing_ranges(conn)["start"]) == [utc("2024-01-04")]
        done = list_chunks(conn, status="done")
        assert [(c.provider, c.error) for c in done] == [("binance", None), ("coingecko", None)]


def test_marking_an_unknown_chunk_fails(engine: Engine) -> None:
    with engine.begin() as conn, pytest.raises(LookupError, match="no backfill chunk"):
        mark_done(conn, 999, "binance", 1)


def test_progress_counts_chunks_finished_by_this_run(engine: Engine) -> None:
    with engine.begin() as conn:
        planned = plan_chunks(conn, "BTC-USD", "1m", chunk_ranges("2024-01-01", "2024-01-04", "1D"))
        mark_failed(conn, planned[0].id, "earlier run")
    since = pd.Timestamp.now(tz="UTC") + pd.Timedelta(milliseconds=5)
    with engine.begin() as conn:
        claim_chunks(conn, [c.id for c in planned], "run-2")
        assert chunk_progress(conn, "run-2", since - pd.Timedelta(days=1)) == (1, 3)
    while pd.Timestamp.now(tz="UTC") <= since:
        pass
    with engine.begin() as conn:
        assert chunk_progress(conn, "run-2", since) == (0, 3)  # the earlier failure is not this run's
        mark_done(conn, planned[1].id, "binance", 1, batch_id="run-2")
        assert chunk_progress(conn, "run-2", since) == (1, 3)


def _minutes(start: str, periods: int, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    index = pd.date_range(start, periods=periods, freq="1min", tz="UTC", name="ts")
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.001, periods)))
    open_ = np.concatenate([[100.0], close[:-1]])
    return canonical_bars(
        pd.DataFrame(
            {
                "open": open_,
                "high": np.maximum(open_, close) + 0.01,
                "low": np.minimum(open_, close) - 0.01,
                "close": close,
                "volume": rng.uniform(1, 5, periods),
            },
            index=index,
        )
    )


def test_derivation_builds_only_complete_periods() -> None:
    calendar = get_calendar("24/7")
    minutes = _minutes("2024-01-01", 6 * 60)  # 00:00..05:59
    holed = minutes.drop(index=minutes.index[[70, 200]])  # 01:10 and 03:20 missing
    bars, incomplete = derive_complete(holed, calendar, "1h", utc("2024-01-01"), utc("2024-01-01 08:00"))
    assert list(incomplete) == [
        utc("2024-01-01 01:00"),
        utc("2024-01-01 03:00"),
        utc("2024-01-01 06:00"),
        utc("2024-01-01 07:00"),
    ]
    expected = resample_bars(minutes, "1h", calendar).drop(
        index=[utc("2024-01-01 01:00"), utc("2024-01-01 03:00")]
    )
    pd.testing.assert_frame_equal(bars, expected, check_freq=False)
    days, open_days = derive_complete(holed, calendar, "1d", utc("2024-01-01"), utc("2024-01-02"))
    assert days.empty and list(open_days) == [utc("2024-01-01")]


def test_derived_equity_hours_follow_the_session() -> None:
    calendar = get_calendar("XNYS")
    grid = calendar.bar_grid("1m", utc("2024-01-03"), utc("2024-01-04"))  # 09:30..16:00 New York
    minutes = _minutes("2024-01-03", len(grid)).set_axis(grid)
    bars, incomplete = derive_complete(minutes, calendar, "1h", utc("2024-01-03"), utc("2024-01-04"))
    assert len(incomplete) == 0 and len(bars) == 7  # 6 full hours and the 15:30-16:00 half hour
    assert bars.index[0] == utc("2024-01-03 14:30")
    pd.testing.assert_frame_equal(bars, resample_bars(minutes, "1h", calendar), check_freq=False)


def test_closed_until_leaves_out_the_bar_still_forming() -> None:
    now = utc("2024-05-01 10:30:42")
    assert closed_until("1m", now) == utc("2024-05-01 10:30")  # the 10:29 bar closed at 10:30
    assert closed_until("1h", now) == utc("2024-05-01 09:31")  # the 09:30 bar closed at 10:30
    assert closed_until("1d", now) == utc("2024-04-30 10:31")  # the day of 04-30 closed at midnight
