"""Bar-store ingest benchmark: ``storage.upsert_bars`` against two anchors, measured in the same run.

Run ``python -m benchmarks.ingest`` (or ``python benchmarks/ingest.py``); options: ``--rows N``
(default 1,000,000 one-minute bars of one symbol) and ``--repeats K`` (default 3; each figure is
the fastest of K runs). Each run of each measurement happens in a fresh Python process on fresh
SQLite files in a temporary folder, so figures and memory do not leak into one another. Prints
one JSON object with rows, seconds and rows/s of each measurement, the anchor ratios, the
targets and whether they pass, and the peak resident memory (``ru_maxrss``) of the process that
ran our load and re-ingest (the anchors' peaks are reported beside it).

Measurements (every SQLite connection with the pragmas of :func:`storage.db.make_engine`):

* ``ours_first_load``: ``open_store`` (migrations included) then ``upsert_bars`` of the whole
  frame in one transaction, into a fresh file.
* ``ours_reingest``: ``upsert_bars`` of the same frame again (all rows duplicates).
* ``to_sql``: anchor, ``DataFrame.to_sql(if_exists="append", index=False)`` into a fresh file
  whose ``bars`` table is created first with the DDL our migrations produce (same columns, same
  primary key ``(symbol, timeframe, ts)``, ``WITHOUT ROWID``), with ``ts`` and ``ingested_at`` as
  the same int64 epoch milliseconds we store; the frame preparation is inside the timed region.
* ``raw_upsert_first_load`` / ``raw_upsert_reingest``: anchor, plain ``sqlite3`` executemany of
  ``INSERT ... ON CONFLICT(symbol, timeframe, ts) DO UPDATE SET ... WHERE`` any of OHLCV or
  ``source`` changed (``IS NOT``), as our upsert does, so a re-ingest of unchanged rows writes
  nothing; same DDL as ours, parameter tuples built from the frame inside the timed region.

Targets: our first load and re-ingest at least 3x faster than ``to_sql`` and at most 1.5x the
time of the raw upsert; peak RSS under 1500 MB.

PostgreSQL (only when ``TEST_POSTGRES_URL`` names a server and a role that may create databases;
the report's ``postgresql`` object, otherwise ``null``): each run of each measurement gets a fresh
database migrated by ``open_store`` before the clock starts, so every one writes into the same
``bars`` table (same columns, primary key ``(symbol, timeframe, ts)``, a hypertable where
TimescaleDB is loaded), in a fresh process:

* ``pg_ours_first_load`` / ``pg_ours_reingest``: ``open_store`` (an up-to-date check) then
  ``upsert_bars`` of the whole frame in one transaction; then the same again (all rows unchanged).
* ``pg_copy``: the physical anchor, one binary ``COPY bars FROM STDIN`` of the same rows, its
  payload built from the frame with numpy inside the timed region (the fastest way in).
* ``pg_to_sql``: the common anchor, ``DataFrame.to_sql(if_exists="append", index=False)`` of the
  same prepared frame as the SQLite ``to_sql`` (preparation timed).

PostgreSQL targets: our first load at least 0.5x ``COPY``'s rows/s, and a re-ingest of unchanged
bars faster than our first load.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import shutil
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import repeat
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

SYMBOL = "BENCH"
TIMEFRAME = "1m"
SOURCE = "synthetic"
TARGET_VS_TO_SQL = 3.0
TARGET_VS_RAW = 1.5
TARGET_RSS_MB = 1500.0
TARGET_PG_VS_COPY = 0.5
PG_KINDS = ("pg_ours", "pg_copy", "pg_to_sql")
VALUE_COLUMNS = ("open", "high", "low", "close", "volume")


def make_minute_bars(rows: int, seed: int = 7) -> pd.DataFrame:
    """A seeded random walk of ``rows`` one-minute bars from 2020-01-01 UTC, with valid OHLC.

    Prices are log-normal steps (0.05 % per minute) from 100; each bar opens at the previous
    close; high and low lie outside open and close; volume is log-normal. Canonical frame.
    """
    rng = np.random.default_rng(seed)
    log_close = np.log(100.0) + np.cumsum(rng.normal(0.0, 5e-4, rows))
    close = np.exp(log_close)
    open_ = np.empty(rows)
    open_[0] = 100.0
    open_[1:] = close[:-1]
    top = np.maximum(open_, close)
    bottom = np.minimum(open_, close)
    high = top * (1.0 + np.abs(rng.normal(0.0, 2e-4, rows)))
    low = bottom * (1.0 - np.abs(rng.normal(0.0, 2e-4, rows)))
    volume = np.round(rng.lognormal(3.0, 1.0, rows), 4)
    index = pd.date_range("2020-01-01", periods=rows, freq="1min", tz="UTC", name="ts").as_unit("ns")
    return pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": volume}, index=index
    )


def _sqlite_connect(path: Path) -> sqlite3.Connection:
    from storage.db import SQLITE_PRAGMAS

    con = sqlite3.connect(path)
    for pragma in SQLITE_PRAGMAS:
        con.execute(pragma)
    return con


def _bars_ddl(folder: Path) -> str:
    """The CREATE TABLE statement that our migrations produce for ``bars``."""
    from storage.db import open_store

    engine = open_store(f"sqlite:///{folder / 'ddl.db'}")
    try:
        with engine.connect() as conn:
            return str(conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE name = 'bars'").scalar_one())
    finally:
        engine.dispose()


def _timed(func: Callable[[], Any]) -> float:
    gc.collect()
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def _ours(folder: Path, frame: pd.DataFrame) -> tuple[float, float, tuple[int, ...]]:
    from storage import open_store, upsert_bars

    url = f"sqlite:///{folder / 'ours.db'}"
    results: list[Any] = []

    def first_load() -> None:
        engine = open_store(url)
        with engine.begin() as conn:
            results.append(upsert_bars(conn, SYMBOL, TIMEFRAME, frame, SOURCE))
        engine.dispose()

    def reingest() -> None:
        engine = open_store(url)
        with engine.begin() as conn:
            results.append(upsert_bars(conn, SYMBOL, TIMEFRAME, frame, SOURCE))
        engine.dispose()

    first = _timed(first_load)
    again = _timed(reingest)
    first_result, again_result = results
    if first_result.inserted != len(frame) or again_result.unchanged != len(frame):
        raise RuntimeError(f"unexpected upsert results {first_result} / {again_result}")
    return first, again, (first_result.inserted, again_result.unchanged)


def _ts_ms(frame: pd.DataFrame) -> np.ndarray:
    """The frame's UTC bar open times as int64 epoch milliseconds, as the store keeps them."""
    return pd.DatetimeIndex(frame.index).as_unit("ms").asi8


def _to_sql_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame as rows of ``bars``: key columns, int64 epoch-ms ``ts``, ``source``, ``ingested_at``."""
    table = frame.reset_index(drop=True)
    table.insert(0, "ts", _ts_ms(frame))
    table.insert(0, "timeframe", TIMEFRAME)
    table.insert(0, "symbol", SYMBOL)
    table["source"] = SOURCE
    table["ingested_at"] = int(time.time() * 1000)
    return table


def _to_sql(folder: Path, frame: pd.DataFrame, ddl: str) -> float:
    from storage.db import make_engine

    engine = make_engine(f"sqlite:///{folder / 'to_sql.db'}")

    def load() -> None:
        table = _to_sql_table(frame)
        with engine.begin() as conn:
            conn.exec_driver_sql(ddl)
            table.to_sql("bars", conn, if_exists="append", index=False)

    seconds = _timed(load)
    engine.dispose()
    return seconds


def _raw_upsert_sql() -> str:
    """Our upsert written out by hand: update a conflicting row only when one of its values changed."""
    columns = ("symbol", "timeframe", "ts", *VALUE_COLUMNS, "source", "ingested_at")
    updates = ", ".join(f"{c} = excluded.{c}" for c in (*VALUE_COLUMNS, "source", "ingested_at"))
    changed = " OR ".join(f"bars.{c} IS NOT excluded.{c}" for c in (*VALUE_COLUMNS, "source"))
    return (
        f"INSERT INTO bars ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
        f"ON CONFLICT(symbol, timeframe, ts) DO UPDATE SET {updates} WHERE {changed}"
    )


def _raw_upsert(folder: Path, frame: pd.DataFrame, ddl: str) -> tuple[float, float]:
    path = folder / "raw.db"
    sql = _raw_upsert_sql()

    def load(create: bool) -> None:
        con = _sqlite_connect(path)
        if create:
            con.execute(ddl)
        n = len(frame)
        stamp = int(time.time() * 1000)
        rows = list(
            zip(
                repeat(SYMBOL, n),
                repeat(TIMEFRAME, n),
                _ts_ms(frame).tolist(),
                *(frame[c].to_numpy().tolist() for c in VALUE_COLUMNS),
                repeat(SOURCE, n),
                repeat(stamp, n),
                strict=True,
            )
        )
        with con:
            con.executemany(sql, rows)
        con.close()

    first = _timed(lambda: load(True))
    again = _timed(lambda: load(False))
    return first, again


@contextmanager
def _pg_database(admin_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database on ``admin_url``'s server, migrated to head; dropped afterwards."""
    from sqlalchemy.engine import make_url

    from storage import make_engine, open_store

    admin = make_engine(admin_url).execution_options(isolation_level="AUTOCOMMIT")
    name = f"fks_bench_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        open_store(url).dispose()  # migrations run here, before any clock starts
        yield url
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()


def _pg_ours(url: str, frame: pd.DataFrame) -> tuple[float, float]:
    from storage import open_store, upsert_bars

    results: list[Any] = []

    def load() -> None:
        engine = open_store(url)
        with engine.begin() as conn:
            results.append(upsert_bars(conn, SYMBOL, TIMEFRAME, frame, SOURCE))
        engine.dispose()

    first = _timed(load)
    again = _timed(load)
    first_result, again_result = results
    if first_result.inserted != len(frame) or again_result.unchanged != len(frame):
        raise RuntimeError(f"unexpected upsert results {first_result} / {again_result}")
    return first, again


def _pg_copy_payload(frame: pd.DataFrame, stamp: int) -> np.ndarray:
    """The frame's rows of ``bars`` in PostgreSQL's binary COPY format, as one record array
    (the header and trailer are written around it)."""
    symbol, timeframe, source = SYMBOL.encode(), TIMEFRAME.encode(), SOURCE.encode()
    layout = [("count", ">i2"), ("symbol_len", ">i4"), ("symbol", f"S{len(symbol)}")]
    layout += [
        ("timeframe_len", ">i4"),
        ("timeframe", f"S{len(timeframe)}"),
        ("ts_len", ">i4"),
        ("ts", ">i8"),
    ]
    for column in VALUE_COLUMNS:
        layout += [(f"{column}_len", ">i4"), (column, ">f8")]
    layout += [("source_len", ">i4"), ("source", f"S{len(source)}"), ("ingested_at_len", ">i4")]
    layout += [("ingested_at", ">i8")]
    rows = np.empty(len(frame), dtype=np.dtype(layout))
    rows["count"] = 10
    for name, value in (("symbol", symbol), ("timeframe", timeframe), ("source", source)):
        rows[f"{name}_len"] = len(value)
        rows[name] = value
    for name in ("ts", "ingested_at", *VALUE_COLUMNS):
        rows[f"{name}_len"] = 8
    rows["ts"] = _ts_ms(frame)
    rows["ingested_at"] = stamp
    for column in VALUE_COLUMNS:
        rows[column] = frame[column].to_numpy()
    return rows


def _pg_copy(url: str, frame: pd.DataFrame) -> float:
    from storage import make_engine

    engine = make_engine(url)
    columns = ", ".join(("symbol", "timeframe", "ts", *VALUE_COLUMNS, "source", "ingested_at"))

    def load() -> None:
        payload = _pg_copy_payload(frame, int(time.time() * 1000))
        with engine.begin() as conn:
            driver: Any = conn.connection.driver_connection
            cursor = driver.cursor()
            with cursor.copy(f"COPY bars ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.write(b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0))
                data = payload.view(np.uint8).data  # streamed in 4 MiB slices, never copied whole
                for offset in range(0, len(data), 1 << 22):
                    copy.write(data[offset : offset + (1 << 22)])
                copy.write(struct.pack(">h", -1))
            cursor.close()

    seconds = _timed(load)
    with engine.connect() as conn:
        stored = conn.exec_driver_sql("SELECT COUNT(*) FROM bars").scalar_one()
    engine.dispose()
    if stored != len(frame):
        raise RuntimeError(f"COPY stored {stored} rows, expected {len(frame)}")
    return seconds


def _pg_to_sql(url: str, frame: pd.DataFrame) -> float:
    from storage import make_engine

    engine = make_engine(url)

    def load() -> None:
        table = _to_sql_table(frame)
        with engine.begin() as conn:
            table.to_sql("bars", conn, if_exists="append", index=False)

    seconds = _timed(load)
    engine.dispose()
    return seconds


def _pg_worker(kind: str, frame: pd.DataFrame, admin_url: str) -> dict[str, float]:
    with _pg_database(admin_url) as url:
        if kind == "pg_ours":
            first, again = _pg_ours(url, frame)
            return {"pg_ours_first_load": first, "pg_ours_reingest": again}
        if kind == "pg_copy":
            return {"pg_copy": _pg_copy(url, frame)}
        return {"pg_to_sql": _pg_to_sql(url, frame)}


def _pg_report(best: dict[str, float], rows: int, admin_url: str) -> dict[str, Any]:
    from sqlalchemy.engine import make_url

    from storage import make_engine

    engine = make_engine(admin_url)
    with engine.connect() as conn:
        version = str(conn.exec_driver_sql("SHOW server_version").scalar_one())
        timescale = conn.exec_driver_sql(
            "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
        ).first()
    engine.dispose()
    ratios = {
        "first_load_vs_copy": best["pg_copy"] / best["pg_ours_first_load"],
        "reingest_vs_first_load": best["pg_ours_first_load"] / best["pg_ours_reingest"],
        "first_load_vs_to_sql": best["pg_to_sql"] / best["pg_ours_first_load"],
        "reingest_vs_to_sql": best["pg_to_sql"] / best["pg_ours_reingest"],
    }
    passes = {
        "first_load_vs_copy": ratios["first_load_vs_copy"] >= TARGET_PG_VS_COPY,
        "reingest_vs_first_load": best["pg_ours_reingest"] < best["pg_ours_first_load"],
    }
    names = ("pg_ours_first_load", "pg_ours_reingest", "pg_copy", "pg_to_sql")
    return {
        "server": f"PostgreSQL {version} at {make_url(admin_url).host}",
        "timescaledb_available": timescale is not None,
        "results": {name: _figure(rows, best[name]) for name in names},
        "ratios": {name: round(value, 3) for name, value in ratios.items()},
        "targets": {"first_load_vs_copy": f">= {TARGET_PG_VS_COPY}", "reingest_vs_first_load": "> 1"},
        "pass": passes,
        "all_pass": all(passes.values()),
    }


def _figure(rows: int, seconds: float) -> dict[str, float | int]:
    return {"rows": rows, "seconds": round(seconds, 4), "rows_per_s": round(rows / seconds)}


def _worker(kind: str, rows: int, folder: Path) -> dict[str, Any]:
    """One measurement in this process: seconds of each step and this process's peak RSS (MB)."""
    frame = make_minute_bars(rows)
    if kind == "ours":
        first, again, _ = _ours(folder, frame)
        seconds = {"ours_first_load": first, "ours_reingest": again}
    elif kind == "to_sql":
        seconds = {"to_sql": _to_sql(folder, frame, _bars_ddl(folder))}
    elif kind == "raw":
        first, again = _raw_upsert(folder, frame, _bars_ddl(folder))
        seconds = {"raw_upsert_first_load": first, "raw_upsert_reingest": again}
    elif kind in PG_KINDS:
        seconds = _pg_worker(kind, frame, os.environ["TEST_POSTGRES_URL"])
    else:
        raise ValueError(f"unknown worker {kind!r}; use ours, to_sql, raw or one of {PG_KINDS}")
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB
    return {"seconds": seconds, "peak_rss_mb": rss_mb}


def _spawn(kind: str, rows: int, folder: Path) -> dict[str, Any]:
    """Run :func:`_worker` in a fresh interpreter so that each figure and its memory stand alone."""
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, "--rows", str(rows)]
    command += ["--folder", str(folder)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"benchmark worker {kind!r} failed:\n{done.stderr.strip()}")
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def run(rows: int = 1_000_000, repeats: int = 3) -> dict[str, Any]:
    """Run every measurement ``repeats`` times, each in its own process on fresh files; return the report."""
    best: dict[str, float] = {}
    rss: dict[str, float] = {}
    admin_url = os.environ.get("TEST_POSTGRES_URL", "")
    kinds = ("ours", "to_sql", "raw", *(PG_KINDS if admin_url else ()))
    with tempfile.TemporaryDirectory(prefix="fks-bench-") as tmp:
        for i in range(repeats):
            for kind in kinds:
                folder = Path(tmp) / f"{kind}{i}"
                folder.mkdir()
                report = _spawn(kind, rows, folder)
                for name, seconds in report["seconds"].items():
                    best[name] = min(seconds, best.get(name, float("inf")))
                rss[kind] = max(report["peak_rss_mb"], rss.get(kind, 0.0))
                shutil.rmtree(folder)

    postgresql = _pg_report(best, rows, admin_url) if admin_url else None
    for name in ("pg_ours_first_load", "pg_ours_reingest", "pg_copy", "pg_to_sql"):
        best.pop(name, None)
    ratios = {
        "first_load_vs_to_sql": best["to_sql"] / best["ours_first_load"],
        "reingest_vs_to_sql": best["to_sql"] / best["ours_reingest"],
        "first_load_vs_raw_upsert": best["ours_first_load"] / best["raw_upsert_first_load"],
        "reingest_vs_raw_upsert": best["ours_reingest"] / best["raw_upsert_reingest"],
    }
    passes = {
        "first_load_vs_to_sql": ratios["first_load_vs_to_sql"] >= TARGET_VS_TO_SQL,
        "reingest_vs_to_sql": ratios["reingest_vs_to_sql"] >= TARGET_VS_TO_SQL,
        "first_load_vs_raw_upsert": ratios["first_load_vs_raw_upsert"] <= TARGET_VS_RAW,
        "reingest_vs_raw_upsert": ratios["reingest_vs_raw_upsert"] <= TARGET_VS_RAW,
        "peak_rss_mb": rss["ours"] < TARGET_RSS_MB,
    }
    return {
        "benchmark": "ingest",
        "rows": rows,
        "repeats": repeats,
        "statistic": f"fastest of {repeats}, each run in a fresh process on fresh SQLite files",
        "sqlite_version": sqlite3.sqlite_version,
        "python": sys.version.split()[0],
        "results": {name: _figure(rows, seconds) for name, seconds in best.items()},
        "ratios": {name: round(value, 3) for name, value in ratios.items()},
        "targets": {
            "first_load_vs_to_sql": f">= {TARGET_VS_TO_SQL}",
            "reingest_vs_to_sql": f">= {TARGET_VS_TO_SQL}",
            "first_load_vs_raw_upsert": f"<= {TARGET_VS_RAW}",
            "reingest_vs_raw_upsert": f"<= {TARGET_VS_RAW}",
            "peak_rss_mb": f"< {TARGET_RSS_MB}",
        },
        "pass": passes,
        "all_pass": all(passes.values()) and (postgresql is None or postgresql["all_pass"]),
        "peak_rss_mb": round(rss["ours"], 1),
        "anchor_peak_rss_mb": {"to_sql": round(rss["to_sql"], 1), "raw_upsert": round(rss["raw"], 1)},
        "postgresql": postgresql,
    }


def main(argv: list[str] | None = None) -> None:
    """Parse the command line, run the benchmark and print its JSON object on stdout."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=1_000_000, help="bars to ingest (default 1,000,000)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure, fastest kept (default 3)")
    parser.add_argument("--worker", choices=("ours", "to_sql", "raw", *PG_KINDS), help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rows < 1 or args.repeats < 1:
        parser.error("--rows and --repeats must be positive")
    if args.worker is not None:
        if args.folder is None:
            parser.error("--worker needs --folder")
        print(json.dumps(_worker(args.worker, args.rows, args.folder)))
        return
    print(json.dumps(run(args.rows, args.repeats), indent=2))


if __name__ == "__main__":
    if __package__ in (None, ""):  # run as a script: make the repository importable
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
