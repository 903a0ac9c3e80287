"""Feature builds any worker can read: two workers, each with its own ``FKS_DATA_DIR``, share one
database and one lake (a local folder, or S3 on moto's server mode on loopback). Worker A builds
features in this process; worker B, a separate process with another data dir and the same
database and lake settings, reads them point in time and gets the same frames.

Every test runs on a fresh SQLite file, and on a fresh PostgreSQL database when
``TEST_POSTGRES_URL`` names a server.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pandas as pd
import pytest
from sqlalchemy import Engine

from config.settings import PROJECT_ROOT, Settings
from ingestion.features import features_root
from storage import FeatureBuild, has_build_file, read_features, save_features
from storage.lake import LakeError
from tests.integration.test_feature_store import features_of, hour_bars

BUCKET = "fks-features"
KEY = {"set_name": "core", "set_version": "1", "symbol": "BTC", "timeframe": "1h"}
T1 = pd.Timestamp("2025-01-10 00:00", tz="UTC")
T2 = pd.Timestamp("2025-02-10 00:00", tz="UTC")
AS_OF = {
    "first build, cut": pd.Timestamp("2025-01-20 12:30", tz="UTC"),  # before the second build
    "second build": T2,
}

READER = textwrap.dedent(
    """
    import sys
    import pandas as pd
    from config.settings import Settings
    from ingestion.features import features_root
    from storage import make_engine, read_features

    settings = Settings()  # FKS_DATA_DIR, FKS_DB_URL, FKS_LAKE_URI, FKS_S3_ENDPOINT_URL
    engine = make_engine(settings.db_url)
    with engine.connect() as conn:
        for i, as_of in enumerate(sys.argv[2:]):
            frame = read_features(conn, features_root(settings), set_name="core", set_version="1",
                                  symbol="BTC", timeframe="1h", as_of=pd.Timestamp(as_of))
            frame.to_pickle(f"{sys.argv[1]}/{i}.pkl")
    engine.dispose()
    """
)


@pytest.fixture
def s3(s3_endpoint: str, fake_aws_credentials: None) -> Iterator[Any]:
    """A boto3 client of the moto server with fake credentials, and a fresh bucket."""
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    client.create_bucket(Bucket=BUCKET)
    try:
        yield client
    finally:
        for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
            client.delete_object(Bucket=BUCKET, Key=item["Key"])
        client.delete_bucket(Bucket=BUCKET)


@pytest.fixture(params=["folder", "s3"])
def lake(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """The lake settings both workers share: a local folder outside both data dirs, or S3."""
    if request.param == "folder":
        return {"lake_uri": f"file://{(tmp_path / 'shared-lake').as_posix()}"}
    endpoint: str = request.getfixturevalue("s3_endpoint")
    request.getfixturevalue("s3")
    return {"lake_uri": f"s3://{BUCKET}/research", "s3_endpoint_url": endpoint}


def worker(tmp_path: Path, name: str, url: str, lake: dict[str, str]) -> Settings:
    """A worker's settings: its own data dir, the shared database and lake."""
    return Settings(data_dir=tmp_path / name, db_url=url, **lake)  # type: ignore[arg-type]


def read_in_another_process(settings: Settings, out: Path) -> list[pd.DataFrame]:
    """What worker B, a separate process configured by ``FKS_*`` variables, reads at each ``AS_OF``."""
    out.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FKS_")}
    env |= {
        "FKS_DATA_DIR": str(settings.data_dir),
        "FKS_DB_URL": settings.db_url,
        "FKS_LAKE_URI": settings.lake_uri,
        "PYTHONPATH": str(PROJECT_ROOT),
    }
    if settings.s3_endpoint_url:
        env["FKS_S3_ENDPOINT_URL"] = settings.s3_endpoint_url
    stamps = [t.isoformat() for t in AS_OF.values()]
    done = subprocess.run(
        [sys.executable, "-c", READER, str(out), *stamps],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        env=env,
        check=False,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    return [pd.read_pickle(out / f"{i}.pkl") for i in range(len(stamps))]


def build_twice(engine: Engine, settings: Settings) -> list[FeatureBuild]:
    """Worker A's two builds of the series: 600 bars at T1, then 900 bars at T2."""
    builds = []
    for n, built_at in ((600, T1), (900, T2)):
        bars = hour_bars(n)
        with engine.begin() as conn:
            builds.append(
                save_features(
                    conn,
                    features_root(settings),
                    **KEY,
                    features=features_of(bars),
                    bars=bars,
                    built_at=built_at,
                )
            )
    return builds


def test_a_worker_with_another_data_dir_reads_the_builds_of_another(
    engine: Engine, url: str, lake: dict[str, str], tmp_path: Path
) -> None:
    a = worker(tmp_path, "worker-a", url, lake)
    b = worker(tmp_path, "worker-b", url, lake)
    builds = build_twice(engine, a)
    root = a.lake_uri.rstrip("/") + "/features/"
    assert all(
        build.path.startswith(root) and build.path.endswith(f"build-{build.id}.parquet") for build in builds
    )
    assert not (a.data_dir / "features").exists() and not (b.data_dir / "features").exists()
    with engine.connect() as conn:
        expected = [read_features(conn, features_root(a), **KEY, as_of=t) for t in AS_OF.values()]
        assert all(has_build_file(features_root(b), build) for build in builds)  # B's cache hits
    cut = AS_OF["first build, cut"]
    assert len(expected[0]) == 19 * 24 + 13 and expected[0].index.max() <= cut  # no look-ahead
    pd.testing.assert_frame_equal(expected[0], features_of(hour_bars(600)).loc[:cut], check_freq=False)
    pd.testing.assert_frame_equal(expected[1], features_of(hour_bars(900)), check_freq=False)

    got = read_in_another_process(b, tmp_path / "read-by-b")

    for mine, theirs in zip(expected, got, strict=True):
        pd.testing.assert_frame_equal(theirs, mine)
    assert not (b.data_dir / "features").exists()


def test_s3_builds_restore_and_fail_with_what_to_fix(
    engine: Engine, url: str, s3_endpoint: str, s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake = {"lake_uri": f"s3://{BUCKET}/research", "s3_endpoint_url": s3_endpoint}
    a = worker(tmp_path, "worker-a", url, lake)
    bars = hour_bars(300)
    with engine.begin() as conn:
        build = save_features(
            conn, features_root(a), **KEY, features=features_of(bars), bars=bars, built_at=T1
        )
    key = f"research/features/core/1/BTC/1h/build-{build.id}.parquet"
    assert build.path == f"s3://{BUCKET}/{key}"
    s3.delete_object(Bucket=BUCKET, Key=key)
    with engine.connect() as conn, pytest.raises(FileNotFoundError) as missing:
        read_features(conn, features_root(a), **KEY)
    assert build.path in str(missing.value) and "fks features" in str(missing.value)

    b = worker(tmp_path, "worker-b", url, lake)
    with engine.begin() as conn:  # a vanished object is written again where its row says
        assert save_features(conn, features_root(b), **KEY, features=features_of(bars), bars=bars) == build
    assert s3.head_object(Bucket=BUCKET, Key=key)["ContentLength"] > 0
    with engine.connect() as conn:
        pd.testing.assert_frame_equal(
            read_features(conn, features_root(b), **KEY), features_of(bars), check_freq=False
        )

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    with engine.connect() as conn, pytest.raises(LakeError) as refused:
        read_features(conn, features_root(b), **KEY)
    message = str(refused.value)
    assert build.path in message and "no AWS credentials" in message and "FKS_S3_ENDPOINT_URL" in message
