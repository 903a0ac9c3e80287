"""Settings and flow configs: sources of values, defaults, and refusals with a reason."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from config.assets import AssetSpec, load_asset_specs
from config.flows import IngestConfig
from config.settings import PROJECT_ROOT, Settings


def test_defaults_and_db_url_follow_the_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    assert Settings().db_url == f"sqlite:///{PROJECT_ROOT.as_posix()}/data/fks.db"
    monkeypatch.setenv("FKS_DATA_DIR", "/srv/fks")
    assert Settings().db_url == "sqlite:////srv/fks/fks.db"
    assert Settings().lake_uri == "file:///srv/fks/lake"
    monkeypatch.setenv("FKS_DB_URL", "postgresql+psycopg://u@h/fks")
    monkeypatch.setenv("FKS_MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    settings = Settings()
    assert settings.db_url == "postgresql+psycopg://u@h/fks"
    assert settings.mlflow_tracking_uri == "http://127.0.0.1:5000"


def test_no_store_depends_on_the_working_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for name in ("DATA_DIR", "DB_URL", "MLFLOW_TRACKING_URI", "MLFLOW_ARTIFACT_ROOT", "LAKE_URI", "HOME"):
        monkeypatch.delenv(f"FKS_{name}", raising=False)

    def stores() -> tuple[Path, str, str, Path, str]:
        s = Settings()
        return s.data_dir, s.db_url, s.mlflow_tracking_uri, s.mlflow_artifact_root, s.lake_uri

    seen = []
    for where in (tmp_path / "a", tmp_path / "b" / "deeper"):
        where.mkdir(parents=True)
        monkeypatch.chdir(where)
        seen.append(stores())
    assert seen[0] == seen[1]
    assert seen[0] == (
        PROJECT_ROOT / "data",
        f"sqlite:///{PROJECT_ROOT.as_posix()}/data/fks.db",
        f"sqlite:///{PROJECT_ROOT.as_posix()}/mlruns/mlflow.db",
        PROJECT_ROOT / "mlruns" / "artifacts",
        f"file://{PROJECT_ROOT.as_posix()}/data/lake",
    )
    # relative values given by the user are taken under the project home (FKS_HOME) too
    home = tmp_path / "home"
    monkeypatch.setenv("FKS_HOME", str(home))
    monkeypatch.setenv("FKS_DATA_DIR", "runtime")
    monkeypatch.setenv("FKS_MLFLOW_TRACKING_URI", "sqlite:///mlruns/mlflow.db")
    monkeypatch.setenv("FKS_LAKE_URI", "file://lake")
    assert stores() == (
        home / "runtime",
        f"sqlite:///{home.as_posix()}/runtime/fks.db",
        f"sqlite:///{home.as_posix()}/mlruns/mlflow.db",
        home / "mlruns" / "artifacts",
        f"file://{home.as_posix()}/lake",
    )
    monkeypatch.setenv("FKS_DB_URL", "postgresql+psycopg://u@h/fks")
    monkeypatch.setenv("FKS_LAKE_URI", "s3://bucket/prefix")
    assert Settings().db_url == "postgresql+psycopg://u@h/fks" and Settings().lake_uri == "s3://bucket/prefix"


def test_fks_toml_is_read_and_environment_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fks.toml").write_text('data_dir = "/from/toml"\nlake_uri = "s3://bucket/lake"\n')
    assert Settings().data_dir == Path("/from/toml") and Settings().lake_uri == "s3://bucket/lake"
    monkeypatch.setenv("FKS_DATA_DIR", "/from/env")
    assert Settings().data_dir == Path("/from/env")


def test_secrets_are_masked_when_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FKS_POLYGON_API_KEY", "sk-very-secret")
    settings = Settings()
    assert "sk-very-secret" not in repr(settings) and "sk-very-secret" not in settings.model_dump_json()
    assert (
        settings.polygon_api_key is not None
        and settings.polygon_api_key.get_secret_value() == "sk-very-secret"
    )


def test_importing_the_packages_does_no_work() -> None:
    code = (
        "import sys, config, market, storage, providers, tasks.data, flows.cli, flows.ingest\n"
        "assert 'exchange_calendars' not in sys.modules, 'calendar loaded at import'\n"
        "import config.settings as s; assert not hasattr(s, 'settings')\n"
    )
    env = {**os.environ, "FKS_DB_URL": "not-a-url://"}  # any read of settings at import would fail
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def test_shipped_asset_registry() -> None:
    specs = {s.symbol: s for s in load_asset_specs(PROJECT_ROOT / "config" / "assets.yaml")}
    enabled = {k: (v.timeframe, v.calendar) for k, v in specs.items() if v.enabled}
    assert enabled == {"SPX": ("1d", "XNYS"), "GOOGL": ("1d", "XNYS"), "EURUSD": ("1h", "24/5")}
    online = {k: v for k, v in specs.items() if not v.enabled}
    assert {"BTC-USD", "ETH-USD", "SPY", "QQQ", "AAPL"} <= set(online)
    assert all(v.default_source == "auto" for v in online.values())
    assert online["BTC-USD"].symbol_at("binance") == "BTCUSDT"
    assert online["BTC-USD"].symbol_at("coingecko") == "bitcoin"
    assert online["BTC-USD"].symbol_at("polygon") == "X:BTCUSD"
    assert online["AAPL"].symbol_at("sec_edgar") == "0000320193"
    assert online["AAPL"].symbol_at("binance") is None


def test_shipped_providers_policy_loads_and_orders_by_asset_class() -> None:
    from config.providers import load_providers_config

    config = load_providers_config(PROJECT_ROOT / "config" / "providers.yaml")
    assert config.chain("crypto")[0] == "binance"
    assert config.chain("equity")[0] == "yahoo"
    assert config.providers["polygon"].rate.requests == 5
    assert config.providers["alphavantage"].budget is not None


def test_providers_policy_refuses_unknown_providers(tmp_path: Path) -> None:
    from config.providers import load_providers_config

    bad = tmp_path / "providers.yaml"
    bad.write_text("priority: {crypto: [kraken]}\nproviders: {}\n")
    with pytest.raises(ValueError, match="kraken"):
        load_providers_config(bad)


def test_asset_spec_defaults_calendar_from_class_and_rejects_bad_symbols(tmp_path: Path) -> None:
    assert AssetSpec(symbol="btcusd", asset_class="crypto").calendar == "24/7"
    assert AssetSpec(symbol="btcusd").symbol == "BTCUSD"
    with pytest.raises(ValidationError, match="one word"):
        AssetSpec(symbol="A,B")
    broken = tmp_path / "assets.yaml"
    broken.write_text("assets:\n  - symbol: X\n    asset_class: stamps\n")
    with pytest.raises(ValueError, match=r"assets.yaml: asset #1 is invalid"):
        load_asset_specs(broken)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"source": "csv", "symbols": ["A"]}, "needs --path"),
        (
            {"source": "synthetic", "symbols": ["A"], "timeframe": "1m"},
            "needs --symbols, --timeframe, --start",
        ),
        ({"timeframe": "5m"}, "unknown timeframe '5m'"),
        ({"path": "x.csv"}, "need --source"),
        (
            {
                "source": "synthetic",
                "symbols": ["A"],
                "timeframe": "1m",
                "start": "2024-02-01",
                "end": "2024-01-01",
            },
            "must be after --start",
        ),
    ],
)
def test_ingest_config_refuses_inconsistent_requests(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        IngestConfig.model_validate(kwargs)


def test_ingest_config_normalises_symbols_and_times() -> None:
    config = IngestConfig(
        source="synthetic",
        symbols=[" aa ", "bb"],
        timeframe="1H",
        start="2024-01-01",
        end="2024-01-02T05:00:00+02:00",
    )
    assert config.symbols == ["AA", "BB"] and config.timeframe == "1h"
    assert config.start is not None and config.start.tzinfo is not None
    assert config.end is not None and config.end.hour == 3
