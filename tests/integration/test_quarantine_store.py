"""Validation results, quarantine and audit log on a real database (migration 0002).

Every test runs on a fresh SQLite file. When ``TEST_POSTGRES_URL`` names a PostgreSQL server
(for example ``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``, a role that may create
databases) and its driver is installed, every test also runs on a fresh PostgreSQL database.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from pydantic import SecretStr
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import IntegrityError

from storage import (
    QuarantinedRow,
    audit,
    count_bars,
    decide_quarantine,
    get_quarantine,
    list_audit,
    list_ingest_runs,
    list_quarantine,
    list_validations,
    make_engine,
    migrate,
    quarantine_counts,
    quarantine_rows,
    read_bars,
    record_validation,
    start_ingest_run,
    upsert_bars,
)
from storage.db import VERSION_TABLE, head_revision
from storage.schema import Base
from tests.migration_support import db_revision, migrate_to

COMPARE_OPTS = {"compare_type": True, "version_table": VERSION_TABLE}

T0 = pd.Timestamp("2024-03-01 00:00", tz="UTC")


def bars(n: int, start: pd.Timestamp = T0) -> pd.DataFrame:
    close = 100.0 + np.arange(n, dtype=float)
    index = pd.date_range(start, periods=n, freq="1min", tz="UTC", name="ts").as_unit("ns")
    return pd.DataFrame(
        {"open": close, "high": close + 1, "low": close - 1, "close": close, "volume": np.ones(n)},
        index=index,
    )


def bad(i: int, *, ts: pd.Timestamp | None = None, expectation: str = "high_ge_low") -> QuarantinedRow:
    stamp = T0 + pd.Timedelta(minutes=i) if ts is None else ts
    row = {"ts": str(stamp), "open": 1.0, "high": 0.5, "low": 2.0, "close": float("nan"), "volume": "inf"}
    return QuarantinedRow(ts=stamp, row=row, failed_expectations=[expectation], reasons=f"bad row {i}")


def _run(engine: Engine, batch_id: str = "b1", symbol: str = "BTC") -> int:
    with engine.begin() as conn:
        return start_ingest_run(
            conn, batch_id=batch_id, symbol=symbol, timeframe="1m", source="csv", requested={}
        )


# --- migrations ---------------------------------------------------------------------------------


def test_migration_from_empty_creates_the_tables_matching_the_models(url: str) -> None:
    eng = make_engine(url)
    try:
        migrate(eng)
        migrate(eng)  # at head: a no-op
        assert db_revision(eng) == head_revision()
        names = set(inspect(eng).get_table_names())
        assert {"bars", "assets", "ingest_runs", "quarantine", "validation_results", "audit_log"} <= names
        ts = next(c for c in inspect(eng).get_columns("quarantine") if c["name"] == "ts")
        assert ts["nullable"] is True
        indexes = {i["name"]: i["column_names"] for i in inspect(eng).get_indexes("quarantine")}
        assert indexes["ix_quarantine_symbol_timeframe_ts"] == ["symbol", "timeframe", "ts"]
        assert indexes["ix_quarantine_status"] == ["status"]
        with eng.connect() as conn:
            context = MigrationContext.configure(conn, opts=COMPARE_OPTS)
            assert compare_metadata(context, Base.metadata) == []
    finally:
        eng.dispose()


def test_migration_from_0001_keeps_the_data(url: str) -> None:
    eng = make_engine(url)
    try:
        migrate_to(eng, "0001")
        assert db_revision(eng) == "0001"
        assert "quarantine" not in inspect(eng).get_table_names()
        frame = bars(50)
        with eng.begin() as conn:
            upsert_bars(conn, "BTC", "1m", frame, "csv")
            # a run as 0001 stored it (today's start_ingest_run writes columns 0011 added)
            conn.exec_driver_sql(
                "INSERT INTO ingest_runs (batch_id, symbol, timeframe, source, requested, status, "
                "started_at) VALUES ('old', 'BTC', '1m', 'csv', '{\"path\": \"x\"}', 'running', 1)"
            )
            run_id = conn.exec_driver_sql("SELECT id FROM ingest_runs").scalar_one()
        migrate(eng)
        assert db_revision(eng) == head_revision()
        pd.testing.assert_frame_equal(read_bars(eng, "BTC", "1m"), frame, check_freq=False)
        with eng.begin() as conn:
            assert [r.id for r in list_ingest_runs(conn)] == [run_id]
            (qid,) = quarantine_rows(
                conn, symbol="BTC", timeframe="1m", source="csv", rows=[bad(60)], ingest_run_id=run_id
            )
            assert get_quarantine(conn, [qid])[0].ingest_run_id == run_id
    finally:
        eng.dispose()


# --- quarantine ---------------------------------------------------------------------------------


def test_quarantine_round_trip_and_idempotent_reingest(engine: Engine) -> None:
    run_id = _run(engine)
    rows = [bad(1), bad(2), bad(3, expectation="close_not_null")]
    with engine.begin() as conn:
        ids = quarantine_rows(
            conn, symbol="BTC", timeframe="1m", source="csv", rows=rows, ingest_run_id=run_id
        )
    assert len(ids) == 3 and len(set(ids)) == 3
    with engine.connect() as conn:
        entries = list_quarantine(conn)
    assert [e.id for e in entries] == ids
    first = entries[0]
    assert first.ts == T0 + pd.Timedelta(minutes=1)
    assert str(first.ts.tz) == "UTC"
    assert first.row == {
        "ts": "2024-03-01 00:01:00+00:00",
        "open": 1.0,
        "high": 0.5,
        "low": 2.0,
        "close": "nan",
        "volume": "inf",
    }
    assert first.failed_expectations == ["high_ge_low"]
    assert first.reasons == "bad row 1"
    assert (first.source, first.symbol, first.timeframe) == ("csv", "BTC", "1m")
    assert first.ingest_run_id == run_id and first.validation_id is None
    assert first.status == "quarantined"
    assert first.decided_at is None and first.decided_by is None and first.decision_note is None
    assert abs(pd.Timestamp.now(tz="UTC") - first.created_at) < pd.Timedelta(minutes=5)

    # Re-ingesting the same file stores nothing new and returns the pending ids.
    run2 = _run(engine, batch_id="b2")
    with engine.begin() as conn:
        again = quarantine_rows(
            conn, symbol="BTC", timeframe="1m", source="csv", rows=[*rows, rows[0]], ingest_run_id=run2
        )
    assert again == [*ids, ids[0]]
    # Another value at the same ts, or the same row for another symbol, is a new row.
    changed = QuarantinedRow(
        ts=rows[0].ts, row={**rows[0].row, "high": 0.25}, failed_expectations=["x"], reasons="r"
    )
    with engine.begin() as conn:
        more = quarantine_rows(conn, symbol="BTC", timeframe="1m", source="csv", rows=[changed])
        other = quarantine_rows(conn, symbol="ETH", timeframe="1m", source="csv", rows=rows[:1])
        assert len(list_quarantine(conn, status=None)) == 5
    assert more[0] not in ids and other[0] not in ids


def test_numpy_values_and_naive_timestamps_are_stored_plainly(engine: Engine) -> None:
    row = {
        "open": np.float64(np.nan),
        "high": np.float64(-np.inf),
        "n": np.int64(7),
        "when": pd.Timestamp("2024-01-01"),
    }
    item = QuarantinedRow(
        ts=pd.Timestamp("2024-03-01 00:05"), row=row, failed_expectations=["a", "b"], reasons="r"
    )
    with engine.begin() as conn:
        (qid,) = quarantine_rows(conn, symbol="BTC", timeframe="1m", source="csv", rows=[item])
        (entry,) = get_quarantine(conn, [qid])
        assert quarantine_rows(conn, symbol="BTC", timeframe="1m", source="csv", rows=[item]) == [qid]
    assert entry.ts == T0 + pd.Timedelta(minutes=5)
    assert entry.row == {"open": "nan", "high": "-inf", "n": 7, "when": "2024-01-01T00:00:00"}
    assert entry.failed_expectations == ["a", "b"]


def test_rows_without_a_parsable_timestamp_are_kept_with_null_ts(engine: Engine) -> None:
    unparsable = QuarantinedRow(
        ts=None, row={"ts": "not a date", "open": "1"}, failed_expectations=["ts_parsable"], reasons="bad ts"
    )
    nat = QuarantinedRow(
        ts=pd.NaT, row={"ts": "", "open": "2"}, failed_expectations=["ts_parsable"], reasons="empty"
    )
    with engine.begin() as conn:
        ids = quarantine_rows(
            conn, symbol="BTC", timeframe="1m", source="csv", rows=[unparsable, nat, bad(1)]
        )
        assert quarantine_rows(conn, symbol="BTC", timeframe="1m", source="csv", rows=[nat, unparsable]) == [
            ids[1],
            ids[0],
        ]
        entries = get_quarantine(conn, ids)
        stored = conn.execute(text("SELECT COUNT(*) FROM quarantine WHERE ts IS NULL")).scalar_one()
    assert [e.ts for e in entries[:2]] == [None, None]
    assert entries[0].row == {"ts": "not a date", "open": "1"}
    assert stored == 2


def test_list_filters(engine: Engine) -> None:
    with engine.begin() as conn:
        btc = quarantine_rows(conn, symbol="BTC", timeframe="1m", source="csv", rows=[bad(1), bad(2)])
        eth = quarantine_rows(conn, symbol="ETH", timeframe="1m", source="csv", rows=[bad(1)])
        hourly = quarantine_rows(conn, symbol="BTC", timeframe="1h", source="csv", rows=[bad(1)])
        decide_quarantine(conn, btc[:1], status="dropped", actor="alice")
    with engine.connect() as conn:
        assert [e.id for e in list_quarantine(conn)] == [btc[1], *eth, *hourly]
        assert [e.id for e in list_quarantine(conn, status=None)] == [*btc, *eth, *hourly]
        assert [e.id for e in list_quarantine(conn, status="dropped")] == btc[:1]
        assert list_quarantine(conn, status="released") == []
        assert [e.id for e in list_quarantine(conn, symbol="BTC")] == [btc[1], *hourly]
        assert [e.id for e in list_quarantine(conn, symbol="BTC", timeframe="1m", status=None)] == btc
        assert [e.id for e in list_quarantine(conn, timeframe="1h")] == hourly
        with pytest.raises(ValueError, match="status 'pending'"):
            list_quarantine(conn, status="pending")


def test_decisions_write_audit_rows_in_the_same_transaction(engine: Engine) -> None:
    with engine.begin() as conn:
        ids = quarantine_rows(
            conn, symbol="BTC", timeframe="1m", source="csv", rows=[bad(i) for i in range(4)]
        )
    with engine.begin() as conn:
        decide_quarantine(conn, ids[:2], status="released", actor="alice", note="checked against binance")
        decide_quarantine(conn, [ids[2]], status="dropped", actor="bob")
    with engine.connect() as conn:
        released = get_quarantine(conn, ids[:2])
        (dropped,) = get_quarantine(conn, [ids[2]])
        assert [e.id for e in list_quarantine(conn)] == [ids[3]]
        releases = list_audit(conn, action="quarantine.release")
        drops = list_audit(conn, action="quarantine.drop")
        assert len(list_audit(conn)) == 3
    assert {e.status for e in released} == {"released"}
    assert {e.decided_by for e in released} == {"alice"}
    assert {e.decision_note for e in released} == {"checked against binance"}
    assert all(e.decided_at is not None and str(e.decided_at.tz) == "UTC" for e in released)
    assert dropped.status == "dropped" and dropped.decided_by == "bob" and dropped.decision_note is None
    assert [a.subject for a in releases] == [f"quarantine:{ids[0]}", f"quarantine:{ids[1]}"]
    assert releases[0].actor == "alice"
    assert releases[0].details["from"] == "quarantined" and releases[0].details["to"] == "released"
    assert releases[0].details["note"] == "checked against binance"
    assert releases[0].details["ts"] == (T0).isoformat()
    assert [a.subject for a in drops] == [f"quarantine:{ids[2]}"]


def test_a_refused_decision_writes_nothing(engine: Engine) -> None:
    with engine.begin() as conn:
        ids = quarantine_rows(
            conn, symbol="BTC", timeframe="1m", source="csv", rows=[bad(i) for i in range(3)]
        )
        decide_quarantine(conn, [ids[1]], status="released", actor="alice")

    def state() -> list[tuple[object, ...]]:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT id, status, decided_at, decided_by FROM quarantine ORDER BY id"))
            return [tuple(r) for r in rows] + [(len(list_audit(conn)),)]

    before = state()
    with pytest.raises(ValueError, match=rf"already decided: {ids[1]} \(released\)"), engine.begin() as conn:
        decide_quarantine(conn, ids, status="dropped", actor="bob")
    assert state() == before
    with pytest.raises(LookupError, match=r"id 999, 998"), engine.begin() as conn:
        decide_quarantine(conn, [ids[0], 999, 998], status="dropped", actor="bob")
    assert state() == before
    with engine.begin() as conn:
        with pytest.raises(ValueError, match="'quarantined' is not a decision"):
            decide_quarantine(conn, ids, status="quarantined", actor="bob")
        with pytest.raises(ValueError, match="actor"):
            decide_quarantine(conn, ids, status="dropped", actor=" ")
        decide_quarantine(conn, [], status="dropped", actor="bob")  # nothing to do
    assert state() == before
    # An error after a decision in the same transaction rolls the decision and its audit back.
    with pytest.raises(RuntimeError, match="boom"), engine.begin() as conn:
        decide_quarantine(conn, [ids[0]], status="dropped", actor="bob")
        raise RuntimeError("boom")
    assert state() == before


def test_unknown_ids(engine: Engine) -> None:
    with engine.begin() as conn:
        ids = quarantine_rows(conn, symbol="BTC", timeframe="1m", source="csv", rows=[bad(1), bad(2)])
    with engine.connect() as conn:
        assert [e.id for e in get_quarantine(conn, [ids[1], ids[0], ids[1]])] == [ids[1], ids[0]]
        assert get_quarantine(conn, []) == []
        with pytest.raises(
            LookupError, match=r"no quarantined row with id 4242; list them with `fks quarantine list`"
        ):
            get_quarantine(conn, [ids[0], 4242])
        with pytest.raises(TypeError, match="ints"):
            get_quarantine(conn, ["1"])  # type: ignore[list-item]


def test_quarantine_rejects_bad_input(engine: Engine) -> None:
    with engine.begin() as conn:
        with pytest.raises(ValueError, match="symbol"):
            quarantine_rows(conn, symbol="", timeframe="1m", source="csv", rows=[bad(1)])
        with pytest.raises(TypeError, match="QuarantinedRow"):
            quarantine_rows(conn, symbol="BTC", timeframe="1m", source="csv", rows=[{"ts": 1}])  # type: ignore[list-item]
        with pytest.raises(ValueError, match="no failed expectation"):
            item = QuarantinedRow(ts=None, row={}, failed_expectations=[], reasons="")
            quarantine_rows(conn, symbol="BTC", timeframe="1m", source="csv", rows=[item])
        assert quarantine_rows(conn, symbol="BTC", timeframe="1m", source="csv", rows=[]) == []
    with pytest.raises(IntegrityError), engine.begin() as conn:
        quarantine_rows(conn, symbol="BTC", timeframe="1m", source="csv", rows=[bad(1)], ingest_run_id=777)
    with engine.begin() as conn:
        (qid,) = quarantine_rows(conn, symbol="BTC", timeframe="1m", source="csv", rows=[bad(1)])
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(text("UPDATE quarantine SET status = 'bogus' WHERE id = :id"), {"id": qid})


def test_counts_by_expectation(engine: Engine) -> None:
    run1, run2, other = _run(engine, "b1"), _run(engine, "b1", symbol="ETH"), _run(engine, "b2")
    with engine.begin() as conn:
        vid = record_validation(
            conn,
            batch_id="b3",
            symbol="SOL",
            timeframe="1m",
            suite="bars",
            suite_version="1",
            trigger="validate",
            rows_checked=1,
            rows_failed=1,
            rows_warned=0,
            success=False,
            outcomes=[],
            gaps={},
            docs_path=None,
            ingest_run_id=None,
        )
        two = QuarantinedRow(
            ts=T0, row={"a": 1}, failed_expectations=["high_ge_low", "ohlc_positive"], reasons="r"
        )
        quarantine_rows(
            conn, symbol="BTC", timeframe="1m", source="csv", rows=[bad(1), two], ingest_run_id=run1
        )
        quarantine_rows(
            conn,
            symbol="ETH",
            timeframe="1m",
            source="csv",
            rows=[bad(1, expectation="ts_unique")],
            ingest_run_id=run2,
        )
        quarantine_rows(conn, symbol="BTC", timeframe="1m", source="csv", rows=[bad(9)], ingest_run_id=other)
        ids = quarantine_rows(
            conn, symbol="SOL", timeframe="1m", source="csv", rows=[bad(5)], validation_id=vid
        )
        decide_quarantine(conn, ids, status="dropped", actor="alice")
    with engine.connect() as conn:
        assert quarantine_counts(conn, "b1") == {"high_ge_low": 2, "ohlc_positive": 1, "ts_unique": 1}
        assert quarantine_counts(conn, batch_id="b2") == {"high_ge_low": 1}
        assert quarantine_counts(conn, "b3") == {"high_ge_low": 1}
        assert quarantine_counts(conn, "b3", status="quarantined") == {}
        assert quarantine_counts(conn, ingest_run_ids=[run2]) == {"ts_unique": 1}
        assert quarantine_counts(conn, ingest_run_ids=[]) == {}
        assert quarantine_counts(conn) == {"high_ge_low": 4, "ohlc_positive": 1, "ts_unique": 1}
        assert quarantine_counts(conn, batch_id="nope") == {}
        with pytest.raises(ValueError, match="not both"):
            quarantine_counts(conn, "b1", ingest_run_ids=[run1])


# --- validation results and audit ---------------------------------------------------------------


def test_validation_results_round_trip(engine: Engine) -> None:
    run_id = _run(engine)
    outcomes = [
        {
            "id": "high_ge_low",
            "severity": "error",
            "success": False,
            "unexpected_count": np.int64(3),
            "reason": "3 rows",
        },
        {
            "id": "volume_ratio",
            "severity": "warning",
            "success": True,
            "unexpected_count": 0,
            "reason": float("nan"),
        },
    ]
    gaps = {
        "missing_bars": 12,
        "gap_count": 2,
        "longest": {"start": T0, "end": T0 + pd.Timedelta(minutes=10), "bars": 10},
    }
    with engine.begin() as conn:
        vid = record_validation(
            conn,
            batch_id="b1",
            symbol="BTC",
            timeframe="1m",
            suite="bars",
            suite_version="2024.1",
            trigger="ingest",
            rows_checked=100,
            rows_failed=3,
            rows_warned=1,
            success=False,
            outcomes=outcomes,
            gaps=gaps,
            docs_path="data/validation/docs/index.html",
            ingest_run_id=run_id,
        )
        record_validation(
            conn,
            batch_id="b2",
            symbol="ETH",
            timeframe="1h",
            suite="bars",
            suite_version="2024.1",
            trigger="release",
            rows_checked=0,
            rows_failed=0,
            rows_warned=0,
            success=True,
            outcomes=[],
            gaps={},
            docs_path=None,
            ingest_run_id=None,
        )
        (qid,) = quarantine_rows(
            conn, symbol="BTC", timeframe="1m", source="csv", rows=[bad(1)], validation_id=vid
        )
        assert get_quarantine(conn, [qid])[0].validation_id == vid
    with engine.connect() as conn:
        (record,) = list_validations(conn, batch_id="b1")
        assert [r.symbol for r in list_validations(conn)] == ["BTC", "ETH"]
        assert [r.batch_id for r in list_validations(conn, symbol="ETH")] == ["b2"]
        assert list_validations(conn, batch_id="b1", symbol="ETH") == []
    assert record.id == vid
    assert (record.suite, record.suite_version, record.trigger) == ("bars", "2024.1", "ingest")
    assert (record.rows_checked, record.rows_failed, record.rows_warned) == (100, 3, 1)
    assert record.success is False
    assert record.outcomes[0]["unexpected_count"] == 3
    assert record.outcomes[1]["reason"] == "nan"
    assert record.gaps == {
        "missing_bars": 12,
        "gap_count": 2,
        "longest": {"start": T0.isoformat(), "end": "2024-03-01T00:10:00+00:00", "bars": 10},
    }
    assert record.docs_path == "data/validation/docs/index.html"
    assert record.ingest_run_id == run_id
    assert str(record.created_at.tz) == "UTC"


def test_validation_input_is_checked(engine: Engine) -> None:
    args = dict(
        batch_id="b",
        symbol="BTC",
        timeframe="1m",
        suite="bars",
        suite_version="1",
        trigger="ingest",
        rows_checked=1,
        rows_failed=0,
        rows_warned=0,
        success=True,
        outcomes=[],
        gaps={},
        docs_path=None,
        ingest_run_id=None,
    )
    with engine.begin() as conn:
        with pytest.raises(ValueError, match="trigger 'nightly'"):
            record_validation(conn, **{**args, "trigger": "nightly"})  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="rows_failed must not be negative"):
            record_validation(conn, **{**args, "rows_failed": -1})  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="success must be a bool"):
            record_validation(conn, **{**args, "success": 1})  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="suite must be"):
            record_validation(conn, **{**args, "suite": ""})  # type: ignore[arg-type]
    with pytest.raises(IntegrityError), engine.begin() as conn:
        record_validation(conn, **{**args, "ingest_run_id": 31337})  # type: ignore[arg-type]
    with engine.connect() as conn:
        assert list_validations(conn) == []


def test_audit_details_are_stored_without_secrets(engine: Engine) -> None:
    details = {
        "api_key": "sk-live-123",
        "options": {"Token": "abc", "limit": np.int64(5), "key": SecretStr("hidden")},
        "url": "https://user:pw@example.com/v1?apiKey=XYZ&symbol=SPX",
        "at": T0,
        "ratio": math.inf,
    }
    with engine.begin() as conn:
        aid = audit(conn, actor="cli:alice", action="asset.register", subject="asset:SPX", details=details)
        audit(conn, actor="cli:alice", action="other", subject="x", details={})
        (entry,) = list_audit(conn, action="asset.register")
        assert len(list_audit(conn)) == 2
        with pytest.raises(ValueError, match="actor"):
            audit(conn, actor="", action="a", subject="s", details={})
        with pytest.raises(TypeError, match="mapping"):
            audit(conn, actor="a", action="a", subject="s", details=[])  # type: ignore[arg-type]
    assert entry.id == aid
    assert (entry.actor, entry.action, entry.subject) == ("cli:alice", "asset.register", "asset:SPX")
    assert entry.details["api_key"] == "***"
    assert entry.details["options"] == {"Token": "***", "limit": 5, "key": "***"}
    assert entry.details["at"] == T0.isoformat()
    assert entry.details["ratio"] == "inf"
    assert "symbol=SPX" in entry.details["url"]
    for secret in ("sk-live-123", "abc", "hidden", "XYZ", "pw@"):
        assert secret not in repr(entry.details)
    assert abs(pd.Timestamp.now(tz="UTC") - entry.at) < pd.Timedelta(minutes=5)


def test_bars_are_untouched_by_quarantine(engine: Engine) -> None:
    with engine.begin() as conn:
        upsert_bars(conn, "BTC", "1m", bars(10), "csv")
        ids = quarantine_rows(conn, symbol="BTC", timeframe="1m", source="csv", rows=[bad(20)])
        decide_quarantine(conn, ids, status="released", actor="alice")
        assert count_bars(conn) == 10
