"""The synthetic market through ingestion (library steps, no Prefect): paths keyed by name, a
resumed ingest that continues the path, and a default run that FKS's own validation accepts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from config.flows import IngestConfig
from config.settings import Settings
from ingestion.ingest import IngestOutcome, ingest_target, ingest_targets
from market.bars import BAR_COLUMNS
from providers.synthetic import SyntheticMarket, simulate
from storage import read_bars
from tasks.store import store_for


def _settings(root: Path) -> Settings:
    return Settings(
        data_dir=root / "data",
        db_url=f"sqlite:///{root / 'fks.db'}",
        mlflow_tracking_uri=f"sqlite:///{root / 'mlruns' / 'mlflow.db'}",
        mlflow_artifact_root=root / "mlruns" / "artifacts",
    )


def _ingest(settings: Settings, **fields: object) -> list[IngestOutcome]:
    config = IngestConfig.model_validate({"source": "synthetic", "timeframe": "1m", "seed": 7, **fields})
    engine = store_for(settings)
    return [ingest_target(engine, settings, t) for t in ingest_targets(engine, settings, config)]


def _stored(settings: Settings, symbol: str) -> pd.DataFrame:
    with store_for(settings).connect() as conn:
        return read_bars(conn, symbol, "1m")


def test_resumed_ingest_in_another_order_continues_the_path(tmp_path: Path) -> None:
    # Issue 19: `--symbols B,A --end later` after `A,B` spliced B's path onto A (22.66 -> 34.58).
    settings = _settings(tmp_path)
    common = {"asset_class": "crypto", "start": "2024-01-01"}
    first = _ingest(settings, symbols=["A", "B"], end="2024-01-02", **common)
    second = _ingest(settings, symbols=["B", "A"], end="2024-01-03", **common)
    assert [o.inserted for o in first] == [1440, 1440]
    # the watermark bar is re-fetched unchanged, the rest is new: nothing was revised
    assert [(o.symbol, o.inserted, o.updated, o.unchanged) for o in second] == [
        ("B", 1440, 0, 1),
        ("A", 1440, 0, 1),
    ]
    assert all(o.quarantined == 0 and o.warned == 0 for o in first + second)
    # one long run of the market the first ingest described (seed 7, A then B, 24/7 from --start)
    market = SyntheticMarket(seed=7, symbols=("A", "B"), calendar="24/7", origin="2024-01-01")
    one_run = simulate(market, "1m", "2024-01-03")
    old_end = pd.Timestamp("2024-01-02", tz="UTC")
    for symbol in ("A", "B"):
        stored = _stored(settings, symbol)[list(BAR_COLUMNS)]
        pd.testing.assert_frame_equal(stored, one_run[symbol], check_exact=True, check_freq=False)
        after = stored.index.get_loc(old_end)
        assert stored["open"].iloc[after] == stored["close"].iloc[after - 1]  # no splice
    assert not np.allclose(one_run["A"]["close"], one_run["B"]["close"])


def test_default_two_month_minute_run_passes_the_validation_policy(tmp_path: Path) -> None:
    # `fks ingest --source synthetic --symbols A,B --timeframe 1m --start 2024-01-01 --end 2024-03-01`:
    # equity on XNYS by default; neither quarantined rows nor return_in_bound warnings.
    settings = _settings(tmp_path)
    outcomes = _ingest(settings, symbols=["A", "B"], start="2024-01-01", end="2024-03-01")
    assert [(o.symbol, o.status, o.inserted) for o in outcomes] == [
        ("A", "success", 15_990),
        ("B", "success", 15_990),
    ]
    assert [(o.quarantined, o.quarantine_reasons, o.warned) for o in outcomes] == [(0, {}, 0), (0, {}, 0)]


def test_an_ingest_of_every_enabled_asset_rechecks_synthetic_series_up_to_where_they_were_generated(
    tmp_path: Path,
) -> None:
    # `make run` twice: the pipeline's first stage ingests every enabled asset, which included the
    # synthetic universe its allocator stage had registered, and failed ("pass end=").
    settings = _settings(tmp_path)
    first = _ingest(settings, symbols=["A", "B"], asset_class="crypto", start="2024-01-01", end="2024-01-02")
    later = _ingest(settings, symbols=["B"], start="2024-01-01", end="2024-01-03")  # B extended by hand
    engine = store_for(settings)
    every = ingest_targets(engine, settings, IngestConfig())  # every enabled asset, no --end
    targets = [t for t in every if t.source == "synthetic"]  # beside the shipped samples' CSVs
    assert {t.symbol: str(t.end) for t in targets} == {
        "A": "2024-01-02 00:00:00+00:00",  # the end it was registered with
        "B": "2024-01-03 00:00:00+00:00",  # one bar past its last stored bar
    }
    again = [ingest_target(engine, settings, t) for t in targets]
    assert [(o.status, o.inserted, o.unchanged) for o in again] == [("success", 0, 1), ("success", 0, 1)]
    assert len(_stored(settings, "A")) == first[0].inserted
    assert len(_stored(settings, "B")) == first[1].inserted + later[0].inserted


def test_a_synthetic_series_registered_before_ends_were_kept_is_rechecked_from_its_bars(
    tmp_path: Path,
) -> None:
    from sqlalchemy import text

    settings = _settings(tmp_path)
    _ingest(settings, symbols=["A"], asset_class="crypto", start="2024-01-01", end="2024-01-01 06:00")
    engine = store_for(settings)
    with engine.begin() as conn:  # as an older FKS registered it: no "end" in its source options
        raw = conn.execute(text("SELECT source_options FROM assets WHERE symbol = 'A'")).scalar_one()
        options = json.loads(raw) if isinstance(raw, str) else dict(raw)
        assert options.pop("end") == "2024-01-01T06:00:00+00:00"
        conn.execute(
            text("UPDATE assets SET source_options = :o WHERE symbol = 'A'"), {"o": json.dumps(options)}
        )
    (target,) = [t for t in ingest_targets(engine, settings, IngestConfig()) if t.source == "synthetic"]
    assert str(target.end) == "2024-01-01 06:00:00+00:00" and "end" not in target.options
    (outcome,) = [ingest_target(engine, settings, target)]
    assert (outcome.status, outcome.inserted, outcome.unchanged) == ("success", 0, 1)
