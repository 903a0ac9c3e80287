"""Crash safety: a replay killed with SIGKILL at random points and run again ends in the same
orders, fills, positions, cash and equity as an uninterrupted replay."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from config.settings import Settings
from tests.desk_support import REPO, stored_market
from tests.integration.test_desk import risk_file

START, END = "2015-01-02", "2015-07-31"
TABLES = {
    "orders": "SELECT client_order_id, symbol, side, quantity, status, filled_quantity, "
    "round(avg_fill_price, 9), reject_code FROM orders ORDER BY client_order_id",
    "fills": "SELECT broker_fill_id, symbol, side, quantity, round(price, 9), round(fee, 9), ts FROM fills "
    "ORDER BY broker_fill_id",
    "positions": "SELECT symbol, round(quantity, 9), round(avg_cost, 9), round(realised_pnl, 6) "
    "FROM positions",
    "cash": "SELECT name, round(cash, 6) FROM accounts",
    "equity": "SELECT ts, round(equity, 6) FROM equity_history ORDER BY ts",
    "cycles": "SELECT ts, orders, refusals FROM desk_cycles ORDER BY ts",
    "targets": "SELECT ts, symbol, weight, round(quantity, 9), client_order_id FROM desk_targets ORDER BY ts",
}


def _start(db: Path, risk: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = [sys.executable, "-m", "tests.desk_replay_main", f"sqlite:///{db}", str(risk), START, END]
    return subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _cycles(db: Path) -> int:
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM desk_cycles").fetchone()[0])
    except sqlite3.OperationalError:  # not migrated yet, or locked for a moment
        return 0


def _books(db: Path) -> dict[str, list[tuple]]:
    with sqlite3.connect(db) as conn:
        return {name: conn.execute(sql).fetchall() for name, sql in TABLES.items()}


@pytest.mark.slow
def test_a_replay_killed_at_random_points_ends_as_an_uninterrupted_one(tmp_path: Path) -> None:
    risk = risk_file(tmp_path)
    calm, crashed = tmp_path / "calm.db", tmp_path / "crashed.db"
    for db in (calm, crashed):
        stored_market(Settings(db_url=f"sqlite:///{db}", data_dir=tmp_path / "data"))

    whole = _start(calm, risk)
    assert whole.wait(timeout=300) == 0, whole.stderr.read().decode() if whole.stderr else ""

    rng = random.Random(16)
    kills = 0
    for target in sorted(rng.sample(range(5, 140), 6)):
        proc = _start(crashed, risk)
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
    last = _start(crashed, risk)
    assert last.wait(timeout=300) == 0, last.stderr.read().decode() if last.stderr else ""

    calm_books, crashed_books = _books(calm), _books(crashed)
    assert len(calm_books["orders"]) > 20 and len(calm_books["fills"]) > 20
    for name in TABLES:
        assert crashed_books[name] == calm_books[name], name
