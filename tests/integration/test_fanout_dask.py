"""Fan-out over symbols: ingest and features for eight synthetic symbols on a two-worker Dask
``LocalCluster`` (``FKS_TASK_RUNNER=dask``) store the same bytes as the sequential run.

The cluster's worker processes write to the same SQLite file concurrently (WAL, busy timeout);
the comparison covers every stored bar (all columns but ``ingested_at``, a time), every
``feature_builds`` row (but its id, time and file name) and the feature values in each build's
Parquet file, as raw bytes; and both Data Docs sites hold every validation page (one per series
for the bars, one for the features), the two suites' pages and an index linking them all.
"""

from __future__ import annotations

import hashlib
import re
import struct
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from sqlalchemy import text

from config.flows import FeaturesConfig, IngestConfig
from config.settings import Settings
from flows.features import features
from flows.ingest import ingest
from ingestion.features import features_root
from tasks.runners import fanned_out, task_runner_for
from tasks.store import store_for

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_server")]

SYMBOLS = ["FANA", "FANB", "FANC", "FAND", "FANE", "FANF", "FANG", "FANH"]


def _settings(root: Path, **fields: object) -> Settings:
    return Settings(
        data_dir=root / "data",
        db_url=f"sqlite:///{root / 'fks.db'}",
        mlflow_tracking_uri=f"sqlite:///{root / 'mlruns' / 'mlflow.db'}",
        mlflow_artifact_root=root / "mlruns" / "artifacts",
        **fields,  # type: ignore[arg-type]
    )


def _run(settings: Settings) -> tuple[list[tuple[str, str]], list[tuple[str, str, bool]]]:
    config = IngestConfig.model_validate(
        {
            "source": "synthetic",
            "symbols": SYMBOLS,
            "timeframe": "1d",
            "asset_class": "crypto",
            "start": "2023-09-01",
            "end": "2024-07-01",
            "seed": 11,
        }
    )
    ingested = fanned_out(ingest, settings)(config, settings)
    built = fanned_out(features, settings)(FeaturesConfig(), settings)
    return (
        [(o.symbol, o.status) for o in ingested.outcomes],
        [(o.symbol, o.timeframe, o.cache_hit) for o in built.outcomes],
    )


def _stored_bytes(settings: Settings) -> tuple[bytes, list[tuple[object, ...]], dict[str, bytes]]:
    """The bars (but ``ingested_at``) packed in key order, the feature builds (but id, time and
    file name) and each build's feature values and index, as bytes."""
    bars = bytearray()
    with store_for(settings).connect() as conn:
        for row in conn.execute(
            text(
                "SELECT symbol, timeframe, ts, open, high, low, close, volume, source FROM bars "
                "ORDER BY symbol, timeframe, ts"
            )
        ):
            bars += f"{row[0]}|{row[1]}|{row[8]}|".encode() + struct.pack("<q5d", *row[2:8])
        builds = conn.execute(
            text(
                "SELECT set_name, set_version, symbol, timeframe, bars_first, bars_last, bar_count, "
                "bars_checksum, rows, columns, path FROM feature_builds ORDER BY symbol, timeframe"
            )
        ).all()
    files = {}
    lake = features_root(settings).uri
    for build in builds:
        assert build[-1].startswith(f"{lake}/"), build[-1]  # recorded with its full URI, in the lake
        frame = pq.read_table(build[-1].removeprefix("file://")).to_pandas()
        values = frame.to_numpy(dtype="float64").tobytes()
        index = pd.DatetimeIndex(frame.index).asi8.tobytes()
        files[f"{build[2]}/{build[3]}"] = values + index + ",".join(map(str, frame.columns)).encode()
    return bytes(bars), [tuple(b[:-1]) for b in builds], files


def _data_docs(settings: Settings) -> tuple[list[str], list[str]]:
    """The Data Docs site's validation pages (by suite and series) and suite pages; asserts that
    its index links every page on disk."""
    site = settings.data_dir / "validation" / "gx" / "uncommitted" / "data_docs" / "local_site"
    validations = sorted(p.relative_to(site).as_posix() for p in (site / "validations").rglob("*.html"))
    suites = sorted(p.relative_to(site).as_posix() for p in (site / "expectations").rglob("*.html"))
    index = (site / "index.html").read_text(encoding="utf-8")
    assert all(f'href="{page}"' in index for page in validations + suites)
    # each validation page names its series ("Data asset: FANA 1d bars, ingest run 3"); its path
    # holds the run's name and time, which differ between the runs
    series = sorted(
        re.search(r"Data asset: ([^,<]+)", (site / page).read_text(encoding="utf-8")).group(1)  # type: ignore[union-attr]
        for page in validations
    )
    return series, suites


@pytest.fixture
def dask_address() -> Iterator[tuple[str, object]]:
    """A two-worker LocalCluster (processes, one thread each) and a client to ask its workers."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        yield cluster.scheduler_address, client


def test_dask_fanout_stores_the_bytes_of_the_sequential_run(
    tmp_path: Path, dask_address: tuple[str, object]
) -> None:
    address, client = dask_address
    sequential = _settings(tmp_path / "sequential", task_runner="sequential")
    parallel = _settings(tmp_path / "dask", task_runner="dask", dask_address=address)
    assert type(task_runner_for(parallel)).__name__ == "FanOutDaskTaskRunner"

    expected_outcomes = _run(sequential)
    assert expected_outcomes[0] == [(s, "success") for s in SYMBOLS]
    assert sorted(expected_outcomes[1]) == [(s, "1d", False) for s in SYMBOLS]
    assert _run(parallel) == expected_outcomes  # the same outcomes, in the order of the targets

    # every mapped task ran in the cluster's worker processes, both of which took a share
    executed = client.run(lambda dask_worker: dask_worker.state.executed_count)  # type: ignore[attr-defined]
    assert sorted(executed.values())[0] >= 1 and sum(executed.values()) >= 2 * len(SYMBOLS)

    bars, builds, files = _stored_bytes(sequential)
    dask_bars, dask_builds, dask_files = _stored_bytes(parallel)
    assert len(bars) > len(SYMBOLS) * 300 and len(builds) == len(SYMBOLS)
    assert hashlib.sha256(dask_bars).hexdigest() == hashlib.sha256(bars).hexdigest()
    assert dask_builds == builds
    assert dask_files.keys() == files.keys() and all(dask_files[k] == files[k] for k in files)

    pages, suites = _data_docs(sequential)
    named = sorted(" ".join(page.split()[:3]) for page in pages)  # "FANA 1d features default v..."
    assert named == sorted(f"{s} 1d {kind}" for s in SYMBOLS for kind in ("bars", "features"))
    assert len(suites) == 2
    assert _data_docs(parallel) == (pages, suites)
