"""docker-compose.yml, the small team's stack, read as Compose reads it (no docker here): the services
are there, the ``FKS_`` variables are settings that exist (a renamed field of
:class:`config.settings.Settings` fails this) and build valid settings, every URL names a service,
a port it listens on and a database or bucket the stack creates, and the published ports are the
ones the runbook gives. Also the pipeline summary's pointers for a team (no password printed, the
tracking server's own UI)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from sqlalchemy.engine import make_url

from config.settings import Settings
from flows.cli.render import mlflow_ui_hint, shown_url

REPO = Path(__file__).resolve().parents[2]
SERVICES = {"postgres", "minio", "minio-init", "mlflow", "prefect-server", "worker", "fks"}
PUBLISHED = {
    "postgres": {5432},
    "minio": {9000, 9001},
    "mlflow": {5000},
    "prefect-server": {4200},
    "fks": {8000},
}
"""The ports docs/team-setup.md tells people to open (host port = container port)."""
FKS_SERVICES = ("worker", "fks")
NEEDED = {"db_url", "data_dir", "mlflow_tracking_uri", "lake_uri", "s3_endpoint_url"}
_VARIABLE = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def _interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's ``${VAR}`` / ``${VAR:-default}`` substitution (``$$`` is a literal ``$``)."""
    if isinstance(value, dict):
        return {k: _interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value
    parts = value.split("$$")
    return "$".join(_VARIABLE.sub(lambda m: env.get(m.group(1)) or (m.group(2) or ""), p) for p in parts)


def _env_file(path: Path) -> dict[str, str]:
    lines = [line.strip() for line in path.read_text().splitlines()]
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


@pytest.fixture(params=["defaults", "env example"])
def compose(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The file as Compose sees it: with no .env (the defaults), and with docker/team.env.example."""
    env = {} if request.param == "defaults" else _env_file(REPO / "docker" / "team.env.example")
    return dict(_interpolate(yaml.safe_load((REPO / "docker-compose.yml").read_text()), env))


def _flag(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def _listens(service: str, spec: dict[str, Any]) -> set[int]:
    """The ports a service's process listens on, read from its command (or the image's default)."""
    command = [str(c) for c in spec.get("command", [])]
    if service == "postgres":
        return {5432}
    if service == "minio":
        return {int(_flag(command, f).lstrip(":")) for f in ("--address", "--console-address")}
    return {int(_flag(command, "--port"))} if "--port" in command else set()


def _databases() -> set[str]:
    sql = (REPO / "docker" / "postgres" / "10-fks-databases.sql").read_text()
    return set(re.findall(r"^CREATE DATABASE (\w+);", sql, flags=re.MULTILINE))


def _bucket_made(compose: dict[str, Any]) -> set[str]:
    script = "\n".join(compose["services"]["minio-init"]["entrypoint"])
    return set(re.findall(r"mc mb --ignore-existing fks/([\w.-]+)", script))


def _service_url(compose: dict[str, Any], url: str) -> tuple[str, int]:
    """``(service, port)`` of a URL inside the stack, checked to be a port that service listens on."""
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port
    services = compose["services"]
    assert host in services, f"{url}: {host!r} is not a service"
    assert port in _listens(host, services[host]), f"{url}: {host} does not listen on {port}"
    return host, port


def test_the_stack_has_its_services_and_each_starts_from_an_image(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == SERVICES
    for name, spec in services.items():
        assert spec.get("image"), name
        for needed in spec.get("depends_on", []):
            assert needed in services, f"{name} depends on unknown {needed}"
    for name in ("mlflow", "worker", "fks"):  # one image, the project's Dockerfile, for FKS and its MLflow
        assert services[name]["build"] == "." and services[name]["image"] == "fks:local"


def test_fks_variables_are_settings_and_build_valid_settings(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    fields = set(Settings.model_fields)
    for name, spec in compose["services"].items():
        for key in spec.get("environment", {}):
            if key.startswith("FKS_"):
                assert key.removeprefix("FKS_").lower() in fields, f"{name}: {key} is no setting"
    for name in FKS_SERVICES:
        env = compose["services"][name]["environment"]
        assert {k.removeprefix("FKS_").lower() for k in env if k.startswith("FKS_")} >= NEEDED, name
        for key, value in env.items():
            monkeypatch.setenv(key, str(value))
        settings = Settings()
        db = make_url(settings.db_url)
        assert (db.drivername, db.host, db.port) == ("postgresql+psycopg", "postgres", 5432)
        assert db.database in _databases()
        assert _service_url(compose, settings.mlflow_tracking_uri) == ("mlflow", 5000)
        assert settings.s3_endpoint_url and _service_url(compose, settings.s3_endpoint_url)[0] == "minio"
        lake = urlsplit(settings.lake_uri)
        assert lake.scheme == "s3" and lake.netloc in _bucket_made(compose)
        assert _service_url(compose, env["PREFECT_API_URL"]) == ("prefect-server", 4200)
        assert env["AWS_ACCESS_KEY_ID"] == compose["services"]["minio"]["environment"]["MINIO_ROOT_USER"]
        assert (
            env["AWS_SECRET_ACCESS_KEY"] == compose["services"]["minio"]["environment"]["MINIO_ROOT_PASSWORD"]
        )


def test_mlflow_and_prefect_keep_their_state_in_the_stack(compose: dict[str, Any]) -> None:
    services = compose["services"]
    postgres = services["postgres"]["environment"]
    mlflow = [str(c) for c in services["mlflow"]["command"]]
    backend = make_url(_flag(mlflow, "--backend-store-uri"))
    prefect = make_url(services["prefect-server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"])
    for url, driver in ((backend, "postgresql+psycopg"), (prefect, "postgresql+asyncpg")):
        assert (url.drivername, url.host, url.port) == (driver, "postgres", 5432)
        assert (url.username, url.password) == (postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"])
    assert {backend.database, prefect.database} | {"fks"} == _databases()
    destination = urlsplit(_flag(mlflow, "--artifacts-destination"))
    assert destination.scheme == "s3" and destination.netloc in _bucket_made(compose)
    assert "--no-serve-artifacts" not in mlflow  # clients reach artifacts through the server only
    assert _service_url(compose, services["mlflow"]["environment"]["MLFLOW_S3_ENDPOINT_URL"])[0] == "minio"
    assert "mlflow:5000" in _flag(mlflow, "--allowed-hosts").split(",")
    init = [v.split(":")[:2] for v in services["postgres"]["volumes"] if "initdb" in v]
    assert init and all(
        (REPO / source).is_file() and "/docker-entrypoint-initdb.d/" in target for source, target in init
    )


def test_the_stack_s_prefect_server_has_the_server_settings_fks_server_start_gives(
    compose: dict[str, Any],
) -> None:
    from flows._server import SERVER_SETTINGS

    environment = compose["services"]["prefect-server"]["environment"]
    assert {name: environment.get(name) for name in SERVER_SETTINGS} == SERVER_SETTINGS


def test_published_ports_are_the_ports_each_service_listens_on(compose: dict[str, Any]) -> None:
    services = compose["services"]
    published: dict[str, set[int]] = {}
    for name, spec in services.items():
        for mapping in spec.get("ports", []):
            address, host, container = str(mapping).rsplit(":", 2)
            assert address in {"127.0.0.1", "0.0.0.0"} and host == container, mapping
            published.setdefault(name, set()).add(int(container))
    assert published == PUBLISHED
    for name, ports in published.items():
        assert ports <= _listens(name, services[name]), name
    serve = [str(c) for c in services["fks"]["command"]]
    assert serve[0] == "serve" and _flag(serve, "--host") == "0.0.0.0"
    for name in ("mlflow", "prefect-server", "fks"):
        probe = " ".join(services[name]["healthcheck"]["test"])
        port = int(re.search(r"127\.0\.0\.1:(\d+)", probe).group(1))  # type: ignore[union-attr]
        assert port in _listens(name, services[name]), name


def test_fks_commands_of_the_stack_parse() -> None:
    """The service's ``fks serve ...`` and the worker's ``fks worker ...`` are command lines the CLI
    accepts (they are parsed, not run)."""
    import typer

    from flows.cli import app

    services = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    cli = typer.main.get_command(app)
    for name, spec in services.items():
        if spec.get("entrypoint") == ["fks"]:
            args = [str(a) for a in spec["command"]]
            command = cli.commands[args[0]]  # type: ignore[attr-defined]
            context = command.make_context(args[0], args[1:])
            if args[0] == "serve":
                assert context.params["host"] == "0.0.0.0" and context.params["port"] == 8000, name
            else:
                assert args[0] == "worker" and context.params["pool"] == "fks", name


def test_the_summary_prints_no_password_and_the_tracking_servers_ui() -> None:
    shown = shown_url("postgresql+psycopg://fks:s3cret@postgres:5432/fks")
    assert "s3cret" not in shown and shown == "postgresql+psycopg://fks:***@postgres:5432/fks"
    assert shown_url("sqlite:///data/fks.db") == "sqlite:///data/fks.db"
    assert mlflow_ui_hint("http://mlflow:5000") == "the MLflow UI at http://mlflow:5000"
    assert (
        mlflow_ui_hint("sqlite:///mlruns/mlflow.db")
        == "mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db"
    )
