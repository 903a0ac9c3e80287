"""API keys of the REST service: stored as hashes, shown once, listed, revoked (store and CLI)."""

from __future__ import annotations

import re

from sqlalchemy import text
from typer.testing import CliRunner

from config.settings import Settings
from flows.cli import app
from storage import open_store
from storage.api_keys import create_api_key, find_api_key, hash_key, list_api_keys, revoke_api_key


def test_keys_are_stored_as_hashes_and_revoked(settings: Settings) -> None:
    engine = open_store(settings.db_url)
    try:
        with engine.begin() as conn:
            key, plain = create_api_key(conn, "notebook")
            assert plain.startswith("fks_") and len(plain) > 40 and key.prefix == plain[:10]
            stored = conn.execute(text("SELECT key_hash FROM api_keys")).scalars().all()
            assert stored == [hash_key(plain)] and plain not in str(stored)
            assert find_api_key(conn, plain) == key and find_api_key(conn, plain + "x") is None
            revoked = revoke_api_key(conn, "notebook")
            assert revoked.revoked and find_api_key(conn, plain).revoked  # type: ignore[union-attr]
            assert revoke_api_key(conn, "notebook").revoked_at == revoked.revoked_at  # idempotent
            assert [k.name for k in list_api_keys(conn)] == ["notebook"]
    finally:
        engine.dispose()


def test_cli_keys_create_list_revoke(settings: Settings) -> None:
    env = {"FKS_DB_URL": settings.db_url, "FKS_DATA_DIR": str(settings.data_dir), "COLUMNS": "200"}
    runner = CliRunner()
    empty = runner.invoke(app, ["keys", "list"], env=env)
    assert empty.exit_code == 0 and "No API keys" in empty.output
    made = runner.invoke(app, ["keys", "create", "--name", "bot"], env=env)
    assert made.exit_code == 0, made.output
    plain = re.search(r"fks_\S+", made.output)
    assert plain and "shown only now" in made.output
    again = runner.invoke(app, ["keys", "create", "--name", "bot"], env=env)
    assert again.exit_code == 2 and "exists already" in again.output
    bad = runner.invoke(app, ["keys", "create", "--name", "no spaces"], env=env)
    assert bad.exit_code == 2
    listed = runner.invoke(app, ["keys", "list"], env=env)
    secret = plain.group(0)
    assert "bot" in listed.output and secret not in listed.output and secret[:10] in listed.output
    assert runner.invoke(app, ["keys", "revoke", "bot"], env=env).exit_code == 0
    unknown = runner.invoke(app, ["keys", "revoke", "nobody"], env=env)
    assert unknown.exit_code == 2 and "no API key named 'nobody'" in unknown.output
