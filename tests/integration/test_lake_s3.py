"""The lake round trip through S3: moto's server mode on loopback, the real flows and the `fks lake` CLI.

The series are registered assets (BTC-USD crypto 24/7, EURUSD FX 24/5) with bars on their calendars,
since import validates every bar with the ``bars`` suite.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import boto3
import numpy as np
import pandas as pd
import pytest
import typer
from sqlalchemy import Engine, text
from typer.testing import CliRunner

from config.flows import InputError
from config.lake import LakeExportConfig, LakeImportConfig
from config.settings import Settings
from flows.cli.lake import lake_app
from flows.lake import lake_export, lake_import
from market.bars import canonical_bars
from market.calendars import get_calendar
from storage import upsert_bars
from storage.lake import LakeError, LakeUnreachable, open_lake
from tasks.store import store_for

pytestmark = pytest.mark.usefixtures("prefect_server")

BUCKET = "fks-lake"
SERIES = {("BTC-USD", "1m"): ("2024-01-01 20:00", 600), ("EURUSD", "1h"): ("2023-12-01", 1500)}
CALENDARS = {"BTC-USD": "24/7", "EURUSD": "24/5"}  # as config/assets.yaml registers them


@pytest.fixture
def s3(s3_endpoint: str, fake_aws_credentials: None) -> Iterator[object]:
    """A boto3 client of the moto server with fake credentials, and a fresh versioned bucket."""
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    client.create_bucket(Bucket=BUCKET)
    client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    try:
        yield client
    finally:
        versions = client.list_object_versions(Bucket=BUCKET).get("Versions", [])
        for v in versions:
            client.delete_object(Bucket=BUCKET, Key=v["Key"], VersionId=v["VersionId"])
        client.delete_bucket(Bucket=BUCKET)


def _bars(symbol: str, timeframe: str, start: str, periods: int, seed: int) -> pd.DataFrame:
    """``periods`` bars of a seeded random walk on the symbol's calendar from ``start``."""
    rng = np.random.default_rng(seed)
    grid = get_calendar(CALENDARS[symbol]).bar_grid(
        timeframe, start, pd.Timestamp(start) + pd.Timedelta(days=400)
    )
    index = grid[:periods]
    close = 1.1 * np.exp(np.cumsum(rng.normal(0.0, 0.001, periods)))
    open_ = np.concatenate([[1.1], close[:-1]])
    return canonical_bars(
        pd.DataFrame(
            {
                "open": open_,
                "high": np.maximum(open_, close) * 1.0005,
                "low": np.minimum(open_, close) * 0.9995,
                "close": close,
                "volume": rng.uniform(1.0, 50.0, periods),
            },
            index=index,
        )
    )


def _fill(engine: Engine) -> None:
    with engine.begin() as conn:
        for seed, ((symbol, tf), (start, n)) in enumerate(SERIES.items()):
            upsert_bars(conn, symbol, tf, _bars(symbol, tf, start, n, seed), source="synthetic")


def _rows(engine: Engine) -> list[tuple[object, ...]]:
    sql = "SELECT symbol, timeframe, ts, open, high, low, close, volume, source FROM bars ORDER BY 1, 2, 3"
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql))]


def _versions(client: object) -> list[tuple[str, str]]:
    listed = client.list_object_versions(Bucket=BUCKET).get("Versions", [])  # type: ignore[attr-defined]
    return sorted((v["Key"], v["VersionId"]) for v in listed)


def _on_s3(settings: Settings, endpoint: str) -> Settings:
    return settings.model_copy(
        update={"lake_uri": f"s3://{BUCKET}/research/bars", "s3_endpoint_url": endpoint}
    )


def test_s3_round_trip_is_exact_and_reexport_puts_nothing(
    settings: Settings, s3: object, s3_endpoint: str, tmp_path: Path
) -> None:
    source = _on_s3(settings, s3_endpoint)
    _fill(store_for(source))

    first = lake_export(LakeExportConfig(), source)
    assert [(o.symbol, o.timeframe, o.rows, o.written, o.unchanged) for o in first.outcomes] == [
        ("BTC-USD", "1m", 600, 2, 0),
        ("EURUSD", "1h", 1500, 3, 0),
    ]
    keys = [k for k, _ in _versions(s3)]
    assert "research/bars/symbol=BTC-USD/timeframe=1m/date=2024-01-02/bars.parquet" in keys
    assert "research/bars/symbol=EURUSD/timeframe=1h/date=2024-02/bars.parquet" in keys
    before = _versions(s3)

    again = lake_export(LakeExportConfig(), source)
    assert [(o.written, o.unchanged, o.deleted) for o in again.outcomes] == [(0, 2, 0), (0, 3, 0)]
    assert _versions(s3) == before  # not one new object version: nothing was PUT

    fresh = settings.model_copy(update={"db_url": f"sqlite:///{tmp_path / 'fresh.db'}"})
    fresh = _on_s3(fresh, s3_endpoint)
    imported = lake_import(LakeImportConfig(), fresh)
    assert [(o.symbol, o.partitions, o.inserted, o.quarantined) for o in imported.outcomes] == [
        ("BTC-USD", 2, 600, 0),
        ("EURUSD", 3, 1500, 0),
    ]
    assert imported.refused == []
    assert _rows(store_for(fresh)) == _rows(store_for(source))  # every value and source, exactly

    window = LakeImportConfig(symbols=["eurusd"], start=pd.Timestamp("2024-01-10").to_pydatetime())
    partial = lake_import(window, fresh)
    since = int((_bars("EURUSD", "1h", "2023-12-01", 1500, 1).index >= "2024-01-10").sum())
    assert [(o.partitions, o.inserted, o.updated, o.unchanged) for o in partial.outcomes] == [
        (2, 0, 0, since)
    ]


def test_missing_bucket_and_unknown_symbols_are_refused(
    settings: Settings, s3: object, s3_endpoint: str
) -> None:
    missing = open_lake("s3://no-such-bucket/x", endpoint_url=s3_endpoint)
    with pytest.raises(LakeError, match=r"bucket 'no-such-bucket' does not exist.*create it.*FKS_LAKE_URI"):
        missing.partitions()
    source = _on_s3(settings, s3_endpoint)
    _fill(store_for(source))
    with pytest.raises(InputError, match="the store has no bars of MSFT"):
        lake_export(LakeExportConfig(symbols=["MSFT"]), source)
    with pytest.raises(InputError, match="holds no bars; export some with `fks lake export`"):
        lake_import(LakeImportConfig(), source)


def test_fks_lake_cli(
    settings: Settings, s3: object, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = _on_s3(settings, s3_endpoint)
    _fill(store_for(source))
    monkeypatch.setenv("FKS_DB_URL", source.db_url)
    monkeypatch.setenv("FKS_DATA_DIR", str(source.data_dir))
    monkeypatch.setenv("FKS_LAKE_URI", source.lake_uri)
    monkeypatch.setenv("FKS_S3_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("COLUMNS", "200")
    app = typer.Typer()
    app.add_typer(lake_app, name="lake")
    runner = CliRunner()

    done = runner.invoke(app, ["lake", "export", "--symbol", "EURUSD", "--start", "2024-01-01"])
    assert done.exit_code == 0, done.output
    assert "EURUSD 1h" in done.output and "BTC-USD" not in done.output
    again = runner.invoke(app, ["lake", "import", "--symbols", "EURUSD", "--timeframe", "1h"])
    assert again.exit_code == 0, again.output
    assert "EURUSD 1h" in again.output

    bad_tf = runner.invoke(app, ["lake", "export", "--timeframe", "5m"])
    assert bad_tf.exit_code == 2 and "use one of 1m, 1h, 1d" in bad_tf.output
    monkeypatch.setenv("FKS_LAKE_URI", "ftp://host/lake")
    bad_uri = runner.invoke(app, ["lake", "export"])
    assert bad_uri.exit_code == 2 and "s3://BUCKET/PREFIX" in bad_uri.output
    monkeypatch.setenv("FKS_LAKE_URI", "s3://no-such-bucket/lake")
    no_bucket = runner.invoke(app, ["lake", "import"])
    assert no_bucket.exit_code == 2 and "create it" in no_bucket.output


def test_missing_credentials_and_unreachable_endpoint_say_what_to_fix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    closed = "http://127.0.0.1:9"  # the discard port: nothing listens there
    with pytest.raises(LakeError, match=r"no AWS credentials.*AWS_ACCESS_KEY_ID"):
        open_lake(f"s3://{BUCKET}/x", endpoint_url=closed).partitions()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with pytest.raises(
        LakeUnreachable, match=r"cannot reach S3 at http://127\.0\.0\.1:9.*FKS_S3_ENDPOINT_URL"
    ):
        open_lake(f"s3://{BUCKET}/x", endpoint_url=closed).partitions()
