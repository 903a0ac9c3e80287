"""Many workers, one store: processes that open a fresh database at once migrate it once, and
register the same assets at once without colliding (SQLite file and PostgreSQL)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

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


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_four_processes_on_a_fresh_database_migrate_once_and_register_together(
    dialect: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if dialect == "postgresql":
        url = request.getfixturevalue("fresh_postgres")("fks")
    else:
        url = f"sqlite:///{tmp_path / 'fresh.db'}"
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
