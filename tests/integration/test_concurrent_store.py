"""Many workers, one store: processes that open a fresh database at once migrate it once, and
register the same assets at once without colliding (SQLite file and PostgreSQL)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
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


def _fresh_postgres(base: str) -> str:
    name = f"fks_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return base.rsplit("/", 1)[0] + f"/{name}"


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_four_processes_on_a_fresh_database_migrate_once_and_register_together(
    dialect: str, tmp_path: Path
) -> None:
    if dialect == "postgresql":
        base = os.environ.get("TEST_POSTGRES_URL")
        if not base:
            pytest.skip("TEST_POSTGRES_URL is not set (make test starts a throwaway PostgreSQL)")
        url = _fresh_postgres(base)
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
