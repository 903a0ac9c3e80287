"""Validation in Prefect flow runs: re-validation, policy changes, release and drop of quarantined rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from config.flows import IngestConfig, InputError, ValidateConfig
from config.settings import Settings
from expectations.quarantine import drop_quarantined, release_quarantined
from flows.ingest import ingest
from flows.validate import validate
from storage import count_bars, list_audit, list_quarantine, list_validations, read_bars
from tasks.store import store_for

pytestmark = pytest.mark.usefixtures("prefect_server")


def test_samples_revalidate_clean_and_a_stricter_policy_moves_bars_to_quarantine(
    settings: Settings, tmp_path: Path
) -> None:
    ingest(IngestConfig(), settings)
    clean = validate(ValidateConfig(), settings)
    assert {(o.symbol, o.quarantined) for o in clean.outcomes} == {("SPX", 0), ("GOOGL", 0), ("EURUSD", 0)}
    assert {o.rows_checked for o in clean.outcomes} == {5031, 2335, 6225}
    with store_for(settings).connect() as conn:
        assert {v.trigger for v in list_validations(conn, batch_id=clean.batch_id)} == {"validate"}

    policy = yaml.safe_load(settings.validation_file.read_text())
    policy["returns"]["bounds"]["equity"]["1d"] = {"window": 60, "k": 1.0, "floor": 0.001}
    policy["suites"]["bars"]["severity"]["return_in_bound"] = "critical"  # a big move is a warning by default
    strict_file = tmp_path / "strict.yaml"
    strict_file.write_text(yaml.safe_dump(policy))
    strict = settings.model_copy(update={"validation_file": strict_file})
    result = validate(ValidateConfig(symbols=["GOOGL"]), strict)
    moved = result.outcomes[0].quarantined
    reasons = set(result.outcomes[0].quarantine_reasons)
    assert moved > 50 and "return_in_bound" in reasons and reasons <= {"return_in_bound", "no_spike"}
    with store_for(settings).connect() as conn:
        assert count_bars(conn, "GOOGL") == 2335 - moved
        held = list_quarantine(conn, symbol="GOOGL")
        stored = read_bars(conn, "GOOGL", "1d")
    assert len(held) == moved and not set(e.ts for e in held) & set(stored.index)


def test_a_real_one_way_move_is_stored_and_listed_as_a_warning(
    settings: Settings, samples_dir: Path, tmp_path: Path
) -> None:
    from storage import list_warnings

    frame = pd.read_csv(samples_dir / "googl_daily.csv")
    i = 1800
    for col in ("Open", "High", "Low", "Close", "Adj Close"):
        frame.loc[i:, col] = frame.loc[i:, col] * 0.65  # a -35 % earnings gap that stays
    path = tmp_path / "gap.csv"
    frame.to_csv(path, index=False)
    gap_ts = pd.Timestamp(frame.loc[i, "Date"], tz="UTC")
    summary = ingest(IngestConfig(source="csv", path=path, symbols=["GAPPY"], timeframe="1d"), settings)
    assert summary.outcomes[0].quarantined == 0
    with store_for(settings).connect() as conn:
        assert gap_ts in read_bars(conn, "GAPPY", "1d").index
        warned = list_warnings(conn, symbol="GAPPY")
        assert list_quarantine(conn, symbol="GAPPY") == []
    assert [(w.ts, w.expectation) for w in warned] == [(gap_ts, "return_in_bound")]
    assert "kept, check the news" in warned[0].reason
    # re-validating flags it again: still one entry per bar and expectation, from the latest run
    validate(ValidateConfig(symbols=["GAPPY"]), settings)
    with store_for(settings).connect() as conn:
        again = list_warnings(conn, symbol="GAPPY")
    assert [(w.ts, w.expectation) for w in again] == [(gap_ts, "return_in_bound")]
    assert again[0].validation_id > warned[0].validation_id


def _spiky_copy(samples_dir: Path, tmp_path: Path) -> tuple[Path, pd.Timestamp]:
    frame = pd.read_csv(samples_dir / "googl_daily.csv")
    i = 1000
    for col in ("Open", "High", "Low", "Close", "Adj Close"):
        frame.loc[i, col] = frame.loc[i, col] * 1.5  # a 50 % fat-finger bar that reverts the next day
    path = tmp_path / "spiky.csv"
    frame.to_csv(path, index=False)
    return path, pd.Timestamp(frame.loc[i, "Date"], tz="UTC")


def test_release_stores_a_reviewed_row_and_drop_keeps_it_out(
    settings: Settings, samples_dir: Path, tmp_path: Path
) -> None:
    path, spike_ts = _spiky_copy(samples_dir, tmp_path)
    summary = ingest(IngestConfig(source="csv", path=path, symbols=["SPIKY"], timeframe="1d"), settings)
    assert summary.outcomes[0].quarantined >= 1
    engine = store_for(settings)
    with engine.connect() as conn:
        held = {e.ts: e for e in list_quarantine(conn, symbol="SPIKY")}
    assert spike_ts in held and "no_spike" in held[spike_ts].failed_expectations
    spike = held[spike_ts]

    released = release_quarantined(engine, [spike.id], settings=settings, actor="analyst", note="checked")
    assert [r.ts for r in released] == [spike_ts]
    with engine.connect() as conn:
        stored = read_bars(conn, "SPIKY", "1d")
        assert np.isclose(stored.loc[spike_ts, "close"], spike.row["close"])
        assert [a.details["note"] for a in list_audit(conn, action="quarantine.release")] == ["checked"]
        assert list_validations(conn, symbol="SPIKY")[-1].trigger == "release"
    with pytest.raises(InputError, match="already decided"):
        release_quarantined(engine, [spike.id], settings=settings, actor="analyst")

    others = [e.id for ts, e in held.items() if ts != spike_ts]
    if others:
        drop_quarantined(engine, others, actor="analyst", note="bad prints")
        with engine.connect() as conn:
            assert {e.status for e in list_quarantine(conn, status=None, symbol="SPIKY")} == {
                "released",
                "dropped",
            }
    # the released row stays stored on re-validation: its waivers are remembered
    assert validate(ValidateConfig(symbols=["SPIKY"]), settings).outcomes[0].quarantined == 0


def test_a_row_that_cannot_become_a_bar_cannot_be_released(
    settings: Settings, samples_dir: Path, tmp_path: Path
) -> None:
    lines = (samples_dir / "googl_daily.csv").read_text().splitlines()
    lines[99] = lines[99].replace(lines[99].split(",")[4], "abc", 1)
    path = tmp_path / "text_in_price.csv"
    path.write_text("\n".join(lines) + "\n")
    summary = ingest(IngestConfig(source="csv", path=path, symbols=["TXT"], timeframe="1d"), settings)
    assert summary.outcomes[0].quarantine_reasons == {"parseable_row": 1}
    engine = store_for(settings)
    with engine.connect() as conn:
        (entry,) = list_quarantine(conn, symbol="TXT")
    with pytest.raises(InputError, match="cannot become a bar"):
        release_quarantined(engine, [entry.id], settings=settings, actor="analyst")
    with engine.connect() as conn:
        assert list_quarantine(conn, symbol="TXT")[0].status == "quarantined"


def test_a_recorded_split_turns_a_split_like_jump_into_a_warning(
    settings: Settings, samples_dir: Path, tmp_path: Path
) -> None:
    from storage import CorporateAction, list_warnings, upsert_corporate_actions

    frame = pd.read_csv(samples_dir / "googl_daily.csv")
    i = 1200
    for col in ("Open", "High", "Low", "Close", "Adj Close"):
        frame.loc[i:, col] = frame.loc[i:, col] / 2.0  # unadjusted 2-for-1 from row i on
    path = tmp_path / "split.csv"
    frame.to_csv(path, index=False)
    ex_date = pd.Timestamp(frame.loc[i, "Date"], tz="UTC")
    config = IngestConfig(source="csv", path=path, symbols=["SPLIT"], timeframe="1d")
    first = ingest(config, settings)
    assert first.outcomes[0].quarantined == 1  # no split recorded: split_like, quarantined
    with store_for(settings).connect() as conn:
        assert "split_like" in list_quarantine(conn, symbol="SPLIT")[0].failed_expectations

    other = IngestConfig(source="csv", path=path, symbols=["SPLIT2"], timeframe="1d")
    with store_for(settings).begin() as conn:
        split = CorporateAction(symbol="SPLIT2", ex_date=ex_date, kind="split", ratio=2.0, source="manual")
        upsert_corporate_actions(conn, [split])
    second = ingest(other, settings)
    assert second.outcomes[0].quarantined == 0  # recorded: stored, flagged as unadjusted
    with store_for(settings).connect() as conn:
        warned = list_warnings(conn, symbol="SPLIT2")
        assert ex_date in read_bars(conn, "SPLIT2", "1d").index
    assert [(w.ts, w.expectation) for w in warned] == [(ex_date, "split_unadjusted")]


def test_adjust_splits_back_adjusts_with_the_recorded_splits(
    settings: Settings, samples_dir: Path, tmp_path: Path
) -> None:
    from storage import CorporateAction, list_warnings, upsert_corporate_actions

    frame = pd.read_csv(samples_dir / "googl_daily.csv")
    original = frame.copy()
    i = 1200
    for col in ("Open", "High", "Low", "Close", "Adj Close"):
        frame.loc[i:, col] = frame.loc[i:, col] / 2.0  # unadjusted 2-for-1 from row i on
    frame.loc[i:, "Volume"] = frame.loc[i:, "Volume"] * 2
    path = tmp_path / "split.csv"
    frame.to_csv(path, index=False)
    ex_date = pd.Timestamp(frame.loc[i, "Date"], tz="UTC")
    with store_for(settings).begin() as conn:
        split = CorporateAction(symbol="ADJ", ex_date=ex_date, kind="split", ratio=2.0, source="manual")
        upsert_corporate_actions(conn, [split])
    config = IngestConfig(source="csv", path=path, symbols=["ADJ"], timeframe="1d", adjust_splits=True)
    summary = ingest(config, settings)
    assert summary.outcomes[0].quarantined == 0
    with store_for(settings).connect() as conn:
        stored = read_bars(conn, "ADJ", "1d")
        assert list_warnings(conn, symbol="ADJ") == []  # adjusted: no jump left to flag
    # before the ex-date, prices are halved and volumes doubled: the series is continuous
    before = stored.index < ex_date
    np.testing.assert_allclose(stored.loc[before, "close"], original.loc[: i - 1, "Close"] / 2.0)
    np.testing.assert_allclose(stored.loc[~before, "close"], frame.loc[i:, "Close"])
    np.testing.assert_allclose(stored.loc[before, "volume"], original.loc[: i - 1, "Volume"] * 2.0)
