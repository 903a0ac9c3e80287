"""Process-wide settings: where data lives and how to reach the stores.

Values come, highest priority first, from keyword arguments, environment variables with the
``FKS_`` prefix (``FKS_DATA_DIR``, ``FKS_DB_URL``, ``FKS_MLFLOW_TRACKING_URI``, ...), an
optional ``fks.toml`` in the working directory, and the defaults below. Nothing is read until
:func:`get_settings` or ``Settings()`` is called.

No store depends on the working directory: relative paths (the defaults ``data``,
``mlruns/artifacts``, ``file://data/lake``, ``sqlite:///data/fks.db``, or relative values given in
the environment or ``fks.toml``) are resolved against the project home (``FKS_HOME``, by default
the folder this checkout lives in), so a worker or a scheduled run started from any directory
finds the same database, lake and MLflow store. The database and the lake default to
``<data_dir>/fks.db`` and ``<data_dir>/lake``; the MLflow store to ``<home>/mlruns/mlflow.db``
(artifacts in ``<home>/mlruns/artifacts``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """FKS settings. See the module docstring for where values come from."""

    model_config = SettingsConfigDict(
        env_prefix="FKS_", toml_file="fks.toml", extra="ignore", validate_default=True
    )

    home: Path = Field(
        default=PROJECT_ROOT,
        description="Project home: relative paths of every setting resolve against it (absolute; "
        "by default the folder of this checkout).",
    )
    data_dir: Path = Field(
        default=Path("data"),
        description="Runtime data: database, lake, reports (relative: under the project home).",
    )
    db_url: str = Field(
        default="",
        description="SQLAlchemy URL of the FKS database; empty means sqlite:///<data_dir>/fks.db. A "
        "relative SQLite path is taken under the project home.",
    )
    mlflow_tracking_uri: str = Field(
        default="",
        description="MLflow tracking URI; empty means $MLFLOW_TRACKING_URI, else "
        "sqlite:///<home>/mlruns/mlflow.db. A relative SQLite path is taken under the project home.",
    )
    mlflow_artifact_root: Path = Field(
        default=Path("mlruns") / "artifacts",
        description="Where new MLflow experiments keep artifacts when the tracking store is local "
        "(relative: under the project home).",
    )
    lake_uri: str = Field(
        default="",
        description="Parquet lake: file://PATH or s3://BUCKET/PREFIX; empty means <data_dir>/lake. A "
        "relative folder is taken under the project home.",
    )
    s3_endpoint_url: str | None = Field(default=None, description="S3 endpoint for the lake (MinIO, moto).")
    samples_dir: Path = Field(
        default=PROJECT_ROOT / "data" / "samples", description="The shipped sample data set."
    )
    assets_file: Path = Field(
        default=PROJECT_ROOT / "config" / "assets.yaml", description="Registry of known assets."
    )
    validation_file: Path = Field(
        default=PROJECT_ROOT / "config" / "validation.yaml",
        description="Validation policy: severities and return bounds per suite.",
    )
    providers_file: Path = Field(
        default=PROJECT_ROOT / "config" / "providers.yaml",
        description="Online providers: priority per asset class, rate limits, breakers, verification.",
    )
    serve_models: list[str] = Field(
        default=["fks-forecaster"],
        description="Registered models the REST service loads (each at @champion, else @challenger).",
    )
    serve_optional_models: list[str] = Field(
        default=["fks-allocator"],
        description="Registered models the REST service loads at @champion when they exist "
        "(/ready does not wait for them); picked up when they appear.",
    )
    serve_poll_interval_s: float = Field(
        default=30.0, gt=0, description="How often the REST service checks the registry for moved aliases."
    )
    serve_max_batch_size: int = Field(
        default=32, ge=1, description="Most windows one forward pass of the REST service runs."
    )
    serve_max_wait_ms: float = Field(
        default=2.0,
        ge=0,
        description="Longest a forecast request waits for others to share its forward pass.",
    )
    serve_auth: bool = Field(
        default=True,
        description="Require an API key (X-API-Key) on the REST service; off only for loopback use.",
    )
    serve_rate_per_minute: int = Field(default=600, ge=1, description="Requests per minute per API key.")
    serve_max_body_bytes: int = Field(
        default=8_000_000, ge=1_000, description="Largest request body the REST service reads."
    )
    serve_cors_origins: list[str] = Field(
        default_factory=list, description="Origins allowed to call the REST service from a browser."
    )
    serve_challenger_share: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="Share of forecast requests answered by a model's @challenger (0: none).",
    )
    serve_shadow: bool = Field(
        default=False,
        description="Score every forecast with the @challenger too, log it, never return it.",
    )
    serve_prediction_queue: int = Field(
        default=10_000,
        ge=1,
        description="Predictions waiting for the background writer; beyond this they are dropped "
        "(counted in /metrics), never blocking a request.",
    )
    serve_feature_cache: int = Field(
        default=512, ge=0, description="Feature windows kept per model, keyed by the bars' checksum (0: off)."
    )
    overview_refresh_s: float = Field(
        default=5.0,
        ge=0.2,
        le=3600,
        description="How often the overview page (GET /) and the asset pages refresh their figures.",
    )
    drift_window_hours: float = Field(
        default=24.0 * 7, gt=0, description="How far back `fks drift` and /v1/drift look at served inputs."
    )
    drift_min_samples: int = Field(
        default=200,
        ge=2,
        description="Fewest served inputs a drift verdict is given on (PSI over 10 bins is noise below a "
        "few hundred: about 0.3 on 30 undrifted inputs).",
    )
    drift_psi_warn: float = Field(
        default=0.1, gt=0, description="PSI from which a feature's verdict is 'shift' (0.1: the usual rule)."
    )
    drift_psi_alert: float = Field(
        default=0.25,
        gt=0,
        description="PSI from which a feature's verdict is 'drift' (0.25: the usual rule).",
    )
    drift_ks_pvalue: float = Field(
        default=0.01,
        gt=0,
        lt=1,
        description="Kolmogorov-Smirnov p-value below which a feature's distribution differs.",
    )
    retrain_drift_psi: float | None = Field(
        default=0.25,
        gt=0,
        description="The retraining check starts a retraining when a served feature's PSI reaches this "
        "(empty: drift never starts one).",
    )
    retrain_min_pnl: float | None = Field(
        default=-0.05,
        description="... or when the paper account's return over its last FKS_RETRAIN_PERF_CYCLES cycles "
        "falls below this fraction (-0.05: a 5% loss; empty: never).",
    )
    retrain_min_hit_rate: float | None = Field(
        default=0.4,
        ge=0,
        le=1,
        description="... or when the share of those cycles that gained (among those whose equity moved) "
        "falls below this (empty: never).",
    )
    retrain_perf_cycles: int = Field(
        default=20, ge=2, description="Paper cycles the live-performance check looks back over."
    )
    retrain_min_cycles: int = Field(
        default=10,
        ge=2,
        description="Fewest paper cycles (with a moved equity, for the hit rate) a performance verdict "
        "is given on.",
    )
    binance_base_url: str = "https://api.binance.com"
    yahoo_base_url: str = "https://query2.finance.yahoo.com"
    polygon_base_url: str = "https://api.polygon.io"
    alphavantage_base_url: str = "https://www.alphavantage.co"
    coingecko_base_url: str = "https://api.coingecko.com/api/v3"
    coinmarketcap_base_url: str = "https://pro-api.coinmarketcap.com"
    sec_edgar_base_url: str = "https://data.sec.gov"
    binance_api_key: SecretStr | None = None
    yahoo_api_key: SecretStr | None = None
    polygon_api_key: SecretStr | None = None
    alphavantage_api_key: SecretStr | None = None
    coingecko_api_key: SecretStr | None = None
    coinmarketcap_api_key: SecretStr | None = None
    sec_edgar_api_key: SecretStr | None = None
    sec_edgar_user_agent: str | None = Field(
        default=None,
        description="SEC EDGAR requires a User-Agent naming you and an e-mail, "
        "e.g. 'Jane Doe jane@example.com'.",
    )
    api_key_blocks: dict[str, str] = Field(
        default_factory=dict,
        description="Provider name -> name of a Prefect Secret block holding its API key, used when "
        "FKS_<PROVIDER>_API_KEY is not set (JSON in the environment: "
        'FKS_API_KEY_BLOCKS=\'{"polygon": "poly"}\').',
    )

    service_url: str = Field(
        default="http://127.0.0.1:8000",
        description="Where the execution desk reaches the REST service (`fks serve` listens on "
        "http://127.0.0.1:8000 by default).",
    )
    service_api_key: SecretStr | None = Field(
        default=None,
        description="API key the execution desk sends to the REST service in X-API-Key (create one "
        "with `fks keys create --name NAME`); never logged.",
    )
    service_timeout_s: float = Field(
        default=10.0, gt=0, description="Seconds the execution desk waits for one REST service answer."
    )
    webhook_urls: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Slack or Discord incoming-webhook URLs that hear of fills, refusals, halts and "
        "errors: a JSON list or comma-separated (FKS_WEBHOOK_URLS=https://hooks.slack.com/...,"
        "https://discord.com/api/webhooks/...). Secrets: they carry tokens, never logged whole.",
    )
    webhook_timeout_s: float = Field(
        default=5.0, gt=0, description="Seconds one webhook delivery may take before it counts as failed."
    )
    zombie_after_s: int | None = Field(
        default=None,
        ge=10,
        description="Seconds without a heartbeat after which `fks deploy --apply`'s automation marks a "
        "running deployed flow run Crashed (its worker or machine died); empty: three heartbeats, "
        "3 x PREFECT_FLOWS_HEARTBEAT_FREQUENCY (540 s by default).",
    )
    task_runner: Literal["sequential", "threads", "dask"] = Field(
        default="threads",
        description="How flows that handle many symbols run their per-symbol tasks: 'sequential' (one "
        "after the other), 'threads' (Prefect's thread pool, in this process) or 'dask' (Dask worker "
        "processes through prefect-dask: a LocalCluster of FKS_DASK_WORKERS, or FKS_DASK_ADDRESS).",
    )
    dask_address: str | None = Field(
        default=None,
        description="Address of a running Dask scheduler (tcp://HOST:8786) for FKS_TASK_RUNNER=dask; "
        "empty means a temporary LocalCluster per flow run.",
    )
    dask_workers: int = Field(
        default=2,
        ge=1,
        description="Worker processes (one thread each) of the temporary LocalCluster of "
        "FKS_TASK_RUNNER=dask.",
    )
    prefect_server_host: str = Field(
        default="127.0.0.1",
        description="Address `fks server start` binds the background Prefect server (and its UI) to.",
    )
    prefect_server_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Port of the background Prefect server; empty means 4200 when free, else a free one.",
    )
    prefect_server_start_timeout_s: float = Field(
        default=120.0, gt=0, description="Seconds `fks server start` waits for the server to be healthy."
    )

    @field_validator("webhook_urls", mode="before")
    @classmethod
    def _split_webhook_urls(cls, value: Any) -> Any:
        """Accept a JSON list or a comma-separated string (as the environment gives it); each URL
        is wrapped in ``SecretStr`` at once. Nothing here raises: pydantic's errors quote the raw
        input, which holds tokens; :class:`execution.notify.Notifier` checks each URL and names a
        bad one by its position only."""
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, str):
            text = value.strip()
            parsed: Any = None
            if text.startswith("["):
                try:
                    parsed = json.loads(text)
                except json.JSONDecodeError:
                    parsed = None
            value = parsed if isinstance(parsed, list) else [p.strip() for p in text.split(",") if p.strip()]
        if isinstance(value, list | tuple):
            return [v if isinstance(v, SecretStr) else SecretStr(str(v)) for v in value]
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Order of precedence: arguments, environment, ``fks.toml``."""
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    def model_post_init(self, context: object, /) -> None:
        """Anchor relative paths at the project home; derive the database URL and the lake from the
        data directory when none was given."""
        self.home = self.home.expanduser().resolve()
        self.data_dir = self._anchored(self.data_dir)
        self.mlflow_artifact_root = self._anchored(self.mlflow_artifact_root)
        if not self.db_url:
            self.db_url = f"sqlite:///{self.data_dir.as_posix()}/fks.db"
        self.db_url = self._anchored_sqlite(self.db_url)
        if not self.mlflow_tracking_uri:
            # `mlflow run` and MLflow users set MLFLOW_TRACKING_URI; honour it unless FKS_ names one
            own = f"sqlite:///{(self.home / 'mlruns' / 'mlflow.db').as_posix()}"
            self.mlflow_tracking_uri = os.environ.get("MLFLOW_TRACKING_URI") or own
        else:
            self.mlflow_tracking_uri = self._anchored_sqlite(self.mlflow_tracking_uri)
        self.lake_uri = self._anchored_lake(self.lake_uri)

    def _anchored(self, path: Path) -> Path:
        """``path`` (``~`` expanded) under the project home when it is relative."""
        path = path.expanduser()
        return path if path.is_absolute() else self.home / path

    def _anchored_sqlite(self, url: str) -> str:
        """A ``sqlite:///relative/file`` URL with its file under the project home; other URLs as given."""
        head, sep, rest = url.partition(":///")
        if not sep or not head.startswith("sqlite") or not rest or rest.startswith((":memory:", "file:")):
            return url
        file, query_sep, query = rest.partition("?")
        if Path(file).is_absolute():
            return url
        return f"{head}:///{self._anchored(Path(file)).as_posix()}{query_sep}{query}"

    def _anchored_lake(self, uri: str) -> str:
        """The lake URI with a local folder made absolute (``file:///...``); ``s3://`` as given."""
        if not uri:
            return f"file://{(self.data_dir / 'lake').as_posix()}"
        if "://" in uri and not uri.startswith("file://"):
            return uri
        folder = uri.removeprefix("file://")
        if not folder:
            return uri  # no folder named: storage.lake refuses it with a message
        return f"file://{self._anchored(Path(folder)).as_posix()}"

    def provider_base_url(self, provider: str) -> str:
        """``FKS_<PROVIDER>_BASE_URL``: where the adapter of ``provider`` sends its requests.

        Raises:
            ValueError: for a provider that has no base URL setting; the message lists those that do.
        """
        value = getattr(self, f"{provider}_base_url", None)
        if not isinstance(value, str):
            fields = type(self).model_fields
            known = sorted(name.removesuffix("_base_url") for name in fields if name.endswith("_base_url"))
            raise ValueError(f"unknown provider {provider!r}: known providers are {', '.join(known)}")
        return value.rstrip("/")

    def provider_api_key(self, provider: str) -> SecretStr | None:
        """``FKS_<PROVIDER>_API_KEY`` as a ``SecretStr``, or None when it is not set."""
        value = getattr(self, f"{provider}_api_key", None)
        return value if isinstance(value, SecretStr) and value.get_secret_value() else None

    def ensure_data_dir(self) -> Path:
        """Create the data directory if needed and return it."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return self.data_dir


def get_settings(**overrides: object) -> Settings:
    """Build settings from the environment and ``fks.toml``; ``overrides`` win over both."""
    return Settings(**overrides)  # type: ignore[arg-type]
