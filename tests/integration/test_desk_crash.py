"""Crash safety: a replay killed with SIGKILL at random points and run again ends in the same
orders, fills, positions, cash and equity as an uninterrupted replay; on a SQLite file and (with
TEST_POSTGRES_URL) PostgreSQL."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from config.settings import Settings
from storage import make_engine
from tests.desk_support import REPO, stored_market
from tests.integration.test_desk import risk_file

START, END = "2015-01-02", "2015-07-31"
TABLES = {
    "orders": "SELECT client_order_id, symbol, side, quantity, status, filled_quantity, avg_fill_price, "
    "reject_code FROM orders ORDER BY client_order_id",
    "fills": "SELECT broker_fill_id, symbol, side, quantity, price, fee, ts FROM fills "
    "ORDER BY broker_fill_id",
    "positions": "SELECT symbol, quantity, avg_cost, realised_pnl FROM positions ORDER BY symbol",
    "cash": "SELECT name, cash FROM accounts ORDER BY name",
    "equity": "SELECT ts, equity FROM equity_history ORDER BY ts",
    "cycles": "SELECT ts, orders, refusals FROM desk_cycles ORDER BY ts",
    "targets": "SELECT ts, symbol, weight, quantity, client_order_id FROM desk_targets ORDER BY ts, symbol",
}


def _start(url: str, risk: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = [sys.executable, "-m", "tests.desk_replay_main", url, str(risk), START, END]
    return subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _cycles(engine: Engine) -> int:
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT COUNT(*) FROM desk_cycles")).scalar_one())
    except DBAPIError:  # not migrated yet, or locked for a moment
        return 0


def _rounded(value: Any) -> Any:
    return round(value, 6) if isinstance(value, float) else value


def _books(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    with engine.connect() as conn:
        return {
            name: [tuple(_rounded(v) for v in row) for row in conn.execute(text(sql))]
            for name, sql in TABLES.items()
        }


@pytest.fixture(params=["sqlite", "postgresql"])
def urls(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """Two fresh databases of one kind: the uninterrupted replay's and the crashed one's."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'calm.db'}", f"sqlite:///{tmp_path / 'crashed.db'}"
    fresh: Callable[[str], str] = request.getfixturevalue("fresh_postgres")
    return fresh("fks_calm"), fresh("fks_crashed")


@pytest.mark.slow
def test_a_replay_killed_at_random_points_ends_as_an_uninterrupted_one(
    tmp_path: Path, urls: tuple[str, str]
) -> None:
    risk = risk_file(tmp_path)
    calm_url, crashed_url = urls
    for url in urls:
        stored_market(Settings(db_url=url, data_dir=tmp_path / "data"))
    calm, crashed = make_engine(calm_url), make_engine(crashed_url)
    try:
        whole = _start(calm_url, risk)
        assert whole.wait(timeout=300) == 0, whole.stderr.read().decode() if whole.stderr else ""

        rng = random.Random(16)
        kills = 0
        for target in sorted(rng.sample(range(5, 140), 6)):
            proc = _start(crashed_url, risk)
            deadline = time.monotonic() + 120
            while _cycles(crashed) < target and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.005)
            time.sleep(rng.uniform(0, 0.03))  # land anywhere inside the next cycle
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                kills += 1
            else:
                assert proc.returncode == 0, proc.stderr.read().decode() if proc.stderr else ""
        assert kills >= 5
        last = _start(crashed_url, risk)
        assert last.wait(timeout=300) == 0, last.stderr.read().decode() if last.stderr else ""

        calm_books, crashed_books = _books(calm), _books(crashed)
    finally:
        calm.dispose()
        crashed.dispose()
    assert len(calm_books["orders"]) > 20 and len(calm_books["fills"]) > 20
    for name in TABLES:
        assert crashed_books[name] == calm_books[name], name
