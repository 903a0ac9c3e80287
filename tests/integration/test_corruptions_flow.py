"""The corruption set through the ingest flow: each bad row quarantined with its reason, absent from
`bars`, and every untouched row of the file stored."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from config.flows import IngestConfig
from config.settings import Settings
from flows.ingest import ingest
from market.calendars import get_calendar
from storage import list_quarantine, read_bars
from tasks.store import store_for
from tests.unit.test_corruptions import CASES, SAMPLE_SPECS, bars

pytestmark = pytest.mark.usefixtures("prefect_server")

# Rows that cannot be read as a bar at all are held back by the CSV reader before the suite runs.
PARSER_CATCHES = {"nan_price", "duplicate_ts"}


def _really_future(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[int]]:
    """The 'future' case against the real clock: a bar one grid step into next week."""
    now = pd.Timestamp.now(tz="UTC")
    ts = get_calendar("24/5").bar_grid("1h", now + pd.Timedelta(days=1), now + pd.Timedelta(days=9))[0]
    row = frame.iloc[[-1]].copy()
    row["ts"] = ts
    return pd.concat([frame, row], ignore_index=True), [len(frame)]


@pytest.mark.parametrize("kind", list(CASES))
def test_each_corruption_is_quarantined_and_the_rest_stored(
    kind: str, settings: Settings, tmp_path: Path
) -> None:
    symbol, corrupt, expected_id = CASES[kind]
    spec = SAMPLE_SPECS[symbol]
    if kind == "future":
        frame, positions = _really_future(bars(symbol))
    else:
        frame, positions, _ = corrupt(bars(symbol))
    path = tmp_path / f"{kind}.csv"
    out = frame.copy()
    out["ts"] = pd.DatetimeIndex(out["ts"]).strftime("%Y-%m-%dT%H:%M:%S")
    out.to_csv(path, index=False)
    name = "X" + kind.upper().replace("_", "")[:20]
    summary = ingest(
        IngestConfig(
            source="csv",
            path=path,
            symbols=[name],
            timeframe=spec.timeframe,
            asset_class=spec.asset_class,
            calendar=spec.calendar,
        ),
        settings,
    )
    outcome = summary.outcomes[0]
    expected = {"parseable_row"} if kind in PARSER_CATCHES else {expected_id}
    assert outcome.quarantined == len(positions), outcome
    assert set(outcome.quarantine_reasons) >= expected
    with store_for(settings).connect() as conn:
        held = list_quarantine(conn, symbol=name)
        stored = read_bars(conn, name, spec.timeframe)
    assert len(held) == len(positions)
    assert all(expected & set(e.failed_expectations) for e in held)
    untouched = frame.drop(index=positions)
    assert len(stored) == len(untouched)  # every other row of the file was stored
    assert set(stored.index) == set(pd.DatetimeIndex(untouched["ts"]))
    for entry in held:
        if entry.ts is not None and kind != "duplicate_ts":
            assert entry.ts not in stored.index  # a bad bar never reaches `bars`
