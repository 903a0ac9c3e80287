"""Many workers, one store: processes that open a fresh database at once migrate it once, and
register the same assets at once without colliding (SQLite file and PostgreSQL); four ``fks ingest``
processes started at once on a fresh database and one data directory (shared Data Docs) all
succeed and leave the data one run leaves."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import create_engine, text

from config.flows import IngestConfig, Source
from config.settings import Settings
from ingestion.ingest import ingest_target, ingest_targets
from storage import open_store, read_bars
from tests.desk_support import REPO

WORKER = """
import sys
from config.assets import load_asset_specs
from config.settings import Settings
from storage import open_store, upsert_assets, register_asset, get_asset
engine = open_store(sys.argv[1])
specs = load_asset_specs(Settings().assets_file)
with engine.begin() as conn:
    upsert_assets(conn, specs)
new = specs[0].model_copy(update={"symbol": "NEWCO"})
with engine.begin() as conn:
    if get_asset(conn, "NEWCO") is None:
        register_asset(conn, new)
"""


def _fresh_url(dialect: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A fresh, empty database: a new SQLite file, or a new PostgreSQL database (skips without one)."""
    if dialect == "postgresql":
        return str(request.getfixturevalue("fresh_postgres")("fks"))
    return f"sqlite:///{tmp_path / 'fresh.db'}"


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_four_processes_on_a_fresh_database_migrate_once_and_register_together(
    dialect: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = _fresh_url(dialect, tmp_path, request)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, url], cwd=REPO, env=env, stderr=subprocess.PIPE)
        for _ in range(4)
    ]
    errors = [p.stderr.read().decode() if p.stderr else "" for p in procs]
    codes = [p.wait(timeout=120) for p in procs]
    assert codes == [0, 0, 0, 0], "\n".join(errors)
    engine = create_engine(url)
    with engine.connect() as conn:
        versions = conn.execute(text("SELECT version_num FROM fks_alembic_version")).all()
        symbols = [r[0] for r in conn.execute(text("SELECT symbol FROM assets ORDER BY symbol")).all()]
    engine.dispose()
    assert len(versions) == 1
    assert symbols.count("NEWCO") == 1 and "SPX" in symbols


# a known symbol (the registry's SPX, from its sample) and a new one (a file under a new name)
INGESTS = [
    ["ingest", "--symbols", "SPX"],
    ["ingest", "--source", "csv", "--path", str(REPO / "data" / "samples" / "googl_daily.csv"),
     "--symbols", "NEWCO", "--timeframe", "1d"],
]  # fmt: skip


def _stored(url: str) -> dict[str, pd.DataFrame]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {s: read_bars(conn, s, "1d") for s in ("SPX", "NEWCO")}
    finally:
        engine.dispose()


@pytest.mark.usefixtures("prefect_server")
@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_four_ingests_at_once_on_a_fresh_store_validate_without_sharing_a_context(
    dialect: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = _fresh_url(dialect, tmp_path, request)
    data = tmp_path / "data"  # one data directory: one Data Docs site for every process
    env = {**os.environ, "PYTHONPATH": str(REPO), "FKS_DB_URL": url, "FKS_DATA_DIR": str(data)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "flows.cli", *INGESTS[i % 2]],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for i in range(4)
    ]
    errors = [p.stderr.read().decode() if p.stderr else "" for p in procs]
    codes = [p.wait(timeout=600) for p in procs]
    assert all(code in (0, 3) for code in codes), "\n".join(errors)

    # the same ingests, one after the other, in a store of their own: the data must be the same
    reference = Settings(data_dir=tmp_path / "reference", db_url=f"sqlite:///{tmp_path / 'reference.db'}")
    engine = open_store(reference.db_url)
    configs = [
        IngestConfig(symbols=["SPX"]),
        IngestConfig(source=Source.CSV, path=REPO / "data" / "samples" / "googl_daily.csv", symbols=["NEWCO"],
                     timeframe="1d"),
    ]  # fmt: skip
    for config in configs:
        for target in ingest_targets(engine, reference, config):
            ingest_target(engine, reference, target)
    engine.dispose()
    got, expected = _stored(url), _stored(reference.db_url)
    for symbol in ("SPX", "NEWCO"):
        assert len(expected[symbol]) > 1000
        pd.testing.assert_frame_equal(got[symbol], expected[symbol], check_freq=False)
    # every process published its pages into the one site; no half-written file is left behind
    site = data / "validation" / "gx" / "uncommitted" / "data_docs" / "local_site"
    pages = list((site / "validations").rglob("*.html"))
    assert len(pages) >= 4
    index = (site / "index.html").read_text(encoding="utf-8")
    assert all(p.relative_to(site).as_posix() in index for p in pages)
    assert not [p for p in site.rglob("*.tmp")]
    assert not list((data / "validation" / "gx" / ".staging").iterdir())  # each process cleaned up
