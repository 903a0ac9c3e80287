"""Unit tests of the storage package on real SQLite files: engine, migrations, input validation."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from pydantic import SecretStr
from sqlalchemy import Engine, inspect

import storage
from storage import (
    UpsertResult,
    count_bars,
    list_ingest_runs,
    make_engine,
    migrate,
    open_store,
    read_bars,
    start_ingest_run,
    upsert_bars,
)
from storage.db import MIGRATIONS_DIR, VERSION_TABLE, head_revision, newest_migration_file
from storage.schema import Base

COMPARE_OPTS = {"compare_type": True, "version_table": VERSION_TABLE}

EXPECTED_EXPORTS = {
    "make_engine",
    "migrate",
    "open_store",
    "UpsertResult",
    "upsert_bars",
    "read_bars",
    "watermark",
    "bar_summary",
    "bar_gaps",
    "count_bars",
    "upsert_assets",
    "register_asset",
    "get_asset",
    "list_assets",
    "start_ingest_run",
    "finish_ingest_run",
    "list_ingest_runs",
    "IngestRun",
    "delete_bars",
    "QuarantinedRow",
    "QuarantineEntry",
    "quarantine_rows",
    "list_quarantine",
    "get_quarantine",
    "decide_quarantine",
    "quarantine_counts",
    "record_validation",
    "list_validations",
    "ValidationRecord",
    "WarnedBar",
    "list_warnings",
    "CorporateAction",
    "list_corporate_actions",
    "upsert_corporate_actions",
    "audit",
    "list_audit",
    "AuditEntry",
    "FeatureBuild",
    "FeatureRoot",
    "bars_checksum",
    "build_uri",
    "find_build",
    "has_build_file",
    "list_builds",
    "read_features",
    "save_features",
    "record_promotion",
    "list_promotions",
    "PromotionRecord",
}


def _bars(n: int, start: str = "2024-01-01", freq: str = "1min") -> pd.DataFrame:
    rng = np.random.default_rng(3)
    close = 100.0 + np.cumsum(rng.normal(0.0, 0.1, n))
    index = pd.date_range(start, periods=n, freq=freq, tz="UTC", name="ts").as_unit("ns")
    return pd.DataFrame(
        {"open": close, "high": close + 0.2, "low": close - 0.2, "close": close, "volume": rng.random(n)},
        index=index,
    )


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = open_store(f"sqlite:///{tmp_path / 'fks.db'}")
    yield eng
    eng.dispose()


def test_package_exports_exactly_the_public_api() -> None:
    assert set(storage.__all__) == EXPECTED_EXPORTS
    for name in EXPECTED_EXPORTS:
        assert hasattr(storage, name)


def test_make_engine_creates_parent_folder_and_sets_pragmas(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "deeper" / "fks.db"
    eng = make_engine(f"sqlite:///{path}")
    try:
        assert path.parent.is_dir()
        with eng.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar_one() == 1  # NORMAL
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one() == 30000
    finally:
        eng.dispose()


def test_make_engine_rejects_a_malformed_url() -> None:
    with pytest.raises(ValueError, match="invalid database URL"):
        make_engine("not a url")


def test_migrate_creates_tables_and_is_rerunnable(tmp_path: Path) -> None:
    eng = make_engine(f"sqlite:///{tmp_path / 'fks.db'}")
    try:
        migrate(eng)
        migrate(eng)
        names = set(inspect(eng).get_table_names())
        assert {"bars", "assets", "ingest_runs", "fks_alembic_version"} <= names
        with eng.connect() as conn:
            version = conn.exec_driver_sql("SELECT version_num FROM fks_alembic_version").scalar_one()
            assert version == head_revision()
            ddl = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE name = 'bars'").scalar_one()
        assert "WITHOUT ROWID" in ddl
        pk = inspect(eng).get_pk_constraint("bars")
        assert pk["constrained_columns"] == ["symbol", "timeframe", "ts"]
    finally:
        eng.dispose()


def test_migration_files_follow_the_naming_rule_the_fast_head_check_relies_on() -> None:
    from alembic.script import ScriptDirectory

    from storage.db import _alembic_config

    script = ScriptDirectory.from_config(_alembic_config())
    files = sorted((MIGRATIONS_DIR / "versions").glob("[0-9]*.py"))
    assert files, "no migrations found"
    previous = None
    for path in files:
        revision = script.get_revision(path.name[:4])
        assert revision is not None and revision.path == str(path), path.name
        assert revision.down_revision == previous, path.name
        previous = revision.revision
    assert newest_migration_file() == head_revision() == previous


def test_migrate_on_a_database_at_head_does_not_run_alembic(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from alembic import command

    eng = make_engine(f"sqlite:///{tmp_path / 'fks.db'}")
    try:
        migrate(eng)
        calls: list[str] = []
        monkeypatch.setattr(command, "upgrade", lambda config, target: calls.append(target))
        migrate(eng)
        assert calls == []
        with eng.begin() as conn:  # one revision behind: Alembic is asked again
            conn.exec_driver_sql(f"UPDATE {VERSION_TABLE} SET version_num = '0001'")
        migrate(eng)
        assert calls == ["head"]
    finally:
        eng.dispose()


def test_migrated_schema_matches_the_models(engine: Engine) -> None:
    with engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts=COMPARE_OPTS),
            Base.metadata,
        )
    assert diff == []


def test_ingest_run_status_is_constrained(engine: Engine) -> None:
    from sqlalchemy.exc import IntegrityError

    with engine.begin() as conn:
        run_id = start_ingest_run(conn, batch_id="b", symbol="X", timeframe="1d", source="csv", requested={})
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.exec_driver_sql("UPDATE ingest_runs SET status = 'bogus' WHERE id = ?", (run_id,))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda f: f.assign(volume=np.where(np.arange(len(f)) == 5, np.nan, f["volume"])), "volume=nan"),
        (lambda f: f.assign(high=np.where(np.arange(len(f)) == 2, np.inf, f["high"])), "high=inf"),
        (lambda f: f.drop(columns="close"), "lacks column"),
        (lambda f: pd.concat([f, f.iloc[:1]]), "duplicate timestamp"),
        (lambda f: f.set_axis(f.index + pd.Timedelta(microseconds=5)), "finer than a millisecond"),
    ],
)
def test_upsert_rejects_frames_that_are_not_storable(engine: Engine, mutate: object, message: str) -> None:
    frame = mutate(_bars(10))  # type: ignore[operator]
    with pytest.raises(ValueError, match=message), engine.begin() as conn:
        upsert_bars(conn, "BTC", "1m", frame, "synthetic")
    with engine.connect() as conn:
        assert count_bars(conn) == 0


def test_upsert_rejects_bad_keys(engine: Engine) -> None:
    frame = _bars(3)
    with engine.begin() as conn:
        with pytest.raises(ValueError, match="timeframe"):
            upsert_bars(conn, "BTC", "5m", frame, "synthetic")
        with pytest.raises(ValueError, match="symbol"):
            upsert_bars(conn, " ", "1m", frame, "synthetic")
        with pytest.raises(ValueError, match="source"):
            upsert_bars(conn, "BTC", "1m", frame, "")
        with pytest.raises(TypeError, match="DataFrame"):
            upsert_bars(conn, "BTC", "1m", frame.to_numpy(), "synthetic")  # type: ignore[arg-type]


def test_upsert_accepts_ts_column_and_naive_utc(engine: Engine) -> None:
    frame = _bars(5)
    naive = frame.reset_index().assign(ts=lambda d: d["ts"].dt.tz_localize(None))
    with engine.begin() as conn:
        assert upsert_bars(conn, "BTC", "1m", naive, "csv") == UpsertResult(5, 5, 0, 0)
    pd.testing.assert_frame_equal(read_bars(engine, "BTC", "1m"), frame, check_freq=False)


def test_empty_frame_is_a_no_op(engine: Engine) -> None:
    with engine.begin() as conn:
        assert upsert_bars(conn, "BTC", "1m", _bars(0), "csv") == UpsertResult(0, 0, 0, 0)
    empty = read_bars(engine, "BTC", "1m")
    assert empty.empty
    assert list(empty.columns) == ["open", "high", "low", "close", "volume"]
    assert str(empty.index.dtype) == "datetime64[ns, UTC]"


def test_commit_as_you_go_connection_persists_only_after_commit(engine: Engine) -> None:
    with engine.connect() as conn:
        upsert_bars(conn, "BTC", "1m", _bars(4), "csv")
    with engine.connect() as conn:
        assert count_bars(conn) == 0  # closed without commit: rolled back
        upsert_bars(conn, "BTC", "1m", _bars(4), "csv")
        conn.commit()
    with engine.connect() as conn:
        assert count_bars(conn) == 4


def test_requested_is_stored_without_secrets(engine: Engine) -> None:
    requested = {
        "start": pd.Timestamp("2024-01-01", tz="UTC"),
        "path": Path("/data/x.csv"),
        "api_key": "sk-live-123",
        "options": {"Token": "abc", "limit": np.int64(5), "key_id": SecretStr("hidden")},
        "url": "https://user:pw@example.com/v1/bars?apiKey=XYZ&symbol=SPX",
    }
    with engine.begin() as conn:
        start_ingest_run(
            conn, batch_id="b1", symbol="SPX", timeframe="1d", source="polygon", requested=requested
        )
        (run,) = list_ingest_runs(conn)
    stored = run.requested
    assert stored["start"] == "2024-01-01T00:00:00+00:00"
    assert stored["path"] == "/data/x.csv"
    assert stored["api_key"] == "***"
    assert stored["options"] == {"Token": "***", "limit": 5, "key_id": "***"}
    assert "XYZ" not in stored["url"] and "pw" not in stored["url"]
    assert "symbol=SPX" in stored["url"]
    text = repr(stored)
    for secret in ("sk-live-123", "abc", "hidden", "XYZ"):
        assert secret not in text


def test_audit_details_are_stored_as_the_json_column_would_write_them(engine: Engine) -> None:
    """audit_row serialises ``details`` itself (orjson) and binds the text: the stored text is
    orjson's of the redacted details (compact, UTF-8), and reads back as them."""
    import json

    import orjson
    from sqlalchemy import text

    from storage._redact import redacted_json
    from storage.audit import audit, audit_row, list_audit, write_audit_rows

    cases = [
        {},
        {"account": "paper", "from": "submitted", "to": "accepted"},
        {"s": 'é ✓ "quoted" \\ \n', "n": None, "b": True, "i": -3, "f": 0.1 + 0.2, "big": 1e300},
        {"nan": float("nan"), "inf": float("-inf"), "nested": {"token": "x", "k": [1, 2.5, "y"]}},
        {"url": "postgresql://u:pw@host/db", "ts": pd.Timestamp("2024-01-02 03:04:05", tz="UTC")},
    ]
    with engine.begin() as conn:
        rows = [audit_row(actor="t", action="t.row", subject="s:1", details=d) for d in cases]
        write_audit_rows(conn, rows)
        audit(conn, actor="t", action="t.one", subject="s:2", details=cases[-1])
    with engine.connect() as conn:
        stored = [r[0] for r in conn.execute(text("SELECT details FROM audit_log ORDER BY id"))]
        entries = list_audit(conn)
    expected = [orjson.dumps(redacted_json(d)).decode() for d in [*cases, cases[-1]]]
    assert stored == expected
    assert [e.details for e in entries] == [json.loads(t) for t in expected]


def test_the_package_imports_its_names_on_first_use() -> None:
    """``import storage.processes`` (every command's start-up, the temporary server's watchdog)
    imports neither SQLAlchemy nor pandas; ``storage``'s public names still resolve, and a name it
    does not have raises AttributeError."""
    code = (
        "import sys, storage.processes, flows._server, flows._watchdog; "
        "heavy = sorted({'sqlalchemy', 'pandas', 'storage.db'} & set(sys.modules)); "
        "assert not heavy, heavy; "
        "from storage import open_store; from storage.db import open_store as direct; "
        "assert open_store is direct and 'sqlalchemy' in sys.modules; "
        # a name that is also a module's: the submodule imported first (by another module) keeps
        # the package's name the function, as the eager imports did
        "import storage.execution; from storage import audit; "
        "assert callable(audit) and audit.__module__ == 'storage.audit', audit; "
        "import storage; assert storage.audit is audit and sys.modules['storage.audit'].audit is audit; "
        "from storage.audit import audit_row"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert sorted(storage.__all__) == sorted(storage._EXPORTS)  # every lazy name public, once
    for name in storage.__all__:
        assert getattr(storage, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        storage.nothing_here  # noqa: B018
