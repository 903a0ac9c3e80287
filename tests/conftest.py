"""Shared fixtures: isolated settings per test, one Prefect test server per session, fresh
PostgreSQL databases (when ``TEST_POSTGRES_URL`` names a server)."""

from __future__ import annotations

import os
import re
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from config.settings import Settings


def pytest_configure(config: pytest.Config) -> None:
    """Keep Prefect's home and the FKS environment of the developer out of the tests."""
    os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="fks-prefect-home-")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # oneDNN kernels round differently run to run
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    for name in [n for n in os.environ if n.startswith("FKS_")]:
        del os.environ[name]
    # Prefect configures logging once per process, when `prefect.main` is first imported: a
    # `logging.config.dictConfig` that is not incremental, so it closes every handler of the process.
    # absl's handler (made when TensorFlow is imported) then closes its stream, pytest's capture file
    # when a test imported TensorFlow, unless that stream is the current sys.stderr; inside typer's
    # CliRunner it is not. A flow command run in process (`fks halt`) as the first importer of
    # `prefect.main` killed the session ("I/O operation on closed file", "lost sys.stderr"). Here,
    # before any test, no such handler exists; later setups are incremental and close nothing.
    # (tests/integration/test_prefect_logging_setup.py)
    from prefect.logging.configuration import ensure_logging_setup

    ensure_logging_setup()


def pytest_report_header(config: pytest.Config) -> str:
    """One line saying whether the PostgreSQL twins of the store tests run, and why not."""
    url = os.environ.get("TEST_POSTGRES_URL", "")
    if url:
        return f"PostgreSQL twins: on {url.split('@')[-1]}"
    return (
        "PostgreSQL twins: skipped, TEST_POSTGRES_URL is not set (`make test` and `.ci/run` start a "
        "throwaway server when PostgreSQL's binaries are installed: apt-get install postgresql)"
    )


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[str]:
    """A temporary Prefect server for the whole session; its URL is exported for subprocesses. A
    watchdog (:mod:`flows._watchdog`) ends the server if the session dies without ending it (a
    killed test run used to leave it running, with its port and database)."""
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    from flows._watchdog import start_watchdog, stop_watchdog

    with prefect_test_harness(server_startup_timeout=120):
        url = str(PREFECT_API_URL.value())
        os.environ["PREFECT_API_URL"] = url
        process = getattr(SubprocessASGIServer._instances.get(None), "server_process", None)
        watchdog = None if process is None else start_watchdog(process.pid)
        try:
            yield url
        finally:
            if watchdog is not None:
                stop_watchdog(watchdog)  # the harness ends the server itself
            os.environ.pop("PREFECT_API_URL", None)


NO_POSTGRES = (
    "TEST_POSTGRES_URL is not set: it names a PostgreSQL role that may create databases, e.g. "
    "postgresql+psycopg://postgres@127.0.0.1:5432/postgres (`make test` and `.ci/run` start a throwaway "
    "server when PostgreSQL's binaries are installed)"
)


@pytest.fixture
def fresh_postgres() -> Iterator[Callable[[str], str]]:
    """``fresh_postgres(prefix)``: the URL of a new, empty database (nothing migrated) named
    ``<prefix>_<12 hex digits>`` on the ``TEST_POSTGRES_URL`` server; every database made is dropped
    after the test (open connections included). Skips the test when ``TEST_POSTGRES_URL`` is unset."""
    base = os.environ.get("TEST_POSTGRES_URL", "")
    if not base:
        pytest.skip(NO_POSTGRES)
    from sqlalchemy.engine import make_url

    from storage import make_engine

    admin = make_engine(base).execution_options(isolation_level="AUTOCOMMIT")
    made: list[str] = []

    def create(prefix: str) -> str:
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,40}", prefix):
            raise ValueError(f"database prefix {prefix!r}: lower-case letters, digits and _ only")
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
        made.append(name)
        return make_url(base).set(database=name).render_as_string(hide_password=False)

    try:
        yield create
    finally:
        with admin.connect() as conn:
            for name in made:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server (server mode, in this process) on a free loopback port: its URL. Clients
    need credentials, any will do (``testing``/``testing``)."""
    import logging

    from moto.server import ThreadedMotoServer

    access_log = logging.getLogger("werkzeug")
    level = access_log.level
    access_log.setLevel(logging.WARNING)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()
        access_log.setLevel(level)


@pytest.fixture
def fake_aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """boto3 sees only fake credentials (``testing``), region us-east-1 and no endpoint, profile or
    instance metadata of the machine: what a client of the moto server (``s3_endpoint``) needs."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings whose database, data directory and MLflow store live in this test's temporary folder."""
    return Settings(
        data_dir=tmp_path / "data",
        db_url=f"sqlite:///{tmp_path / 'fks.db'}",
        mlflow_tracking_uri=f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}",
        mlflow_artifact_root=tmp_path / "mlruns" / "artifacts",
    )


@pytest.fixture
def samples_dir() -> Path:
    """The shipped sample data."""
    return Path(__file__).resolve().parent.parent / "data" / "samples"
