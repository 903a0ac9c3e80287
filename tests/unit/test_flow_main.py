"""``python -m flows.<name>`` (:mod:`flows._main`): the ``--field value`` flags, ``--help``, the
exit codes, and the same Prefect server set-up as an ``fks`` command."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import BaseModel, Field, field_validator

from config.flows import InputError
from flows._main import parse_flags, run_from_argv, usage
from flows._server import SERVER_SETTINGS
from storage.runs import current_process

ANALYTICS = "PREFECT_SERVER_ANALYTICS_ENABLED"


class Config(BaseModel):
    symbols: list[str] = Field(default_factory=list, description="the series")
    timeframe: str = Field(description="bar size")
    full: bool = False
    limit: int | None = None

    @field_validator("limit")
    @classmethod
    def _positive(cls, value: int | None) -> int | None:
        if value is not None and value <= 0:
            raise ValueError("must be positive")
        return value


class Done(BaseModel):
    symbols: list[str]
    timeframe: str
    full: bool
    limit: int | None
    environment: dict[str, str | None]
    prefect_api_url: str | None


def job(config: Config) -> Done:
    """Pretend to work on the series."""
    if config.timeframe == "5m":
        raise InputError("no 5m bars stored: ingest them first")
    from prefect.settings import get_current_settings

    seen = {name: os.environ.get(name) for name in (*SERVER_SETTINGS, "PREFECT_API_URL", ANALYTICS)}
    return Done(**config.model_dump(), environment=seen, prefect_api_url=get_current_settings().api.url)


@pytest.fixture
def no_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, handlers: None) -> None:
    """No background server recorded (an empty data directory) and no API URL in the environment."""
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("FKS_DATA_DIR", str(tmp_path))


def test_flags_name_fields_lists_take_many_values_and_bools_stand_alone() -> None:
    given = ["--symbols", "SPX", "GOOGL,AAPL", "--timeframe=1d", "--full", "--symbols", "EURUSD"]
    assert parse_flags(given, Config) == {
        "symbols": ["SPX", "GOOGL", "AAPL", "EURUSD"],
        "timeframe": "1d",
        "full": True,
    }
    assert parse_flags(["--no-full", "--limit", "3"], Config) == {"full": False, "limit": "3"}
    assert parse_flags(["--full", "false"], Config) == {"full": "false"}  # a value, as pydantic reads it
    assert parse_flags([], Config) == {}


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["SPX"], "unexpected argument 'SPX'"),
        (["--symbol", "X"], "unknown flag --symbol; the flags are: --symbols, --timeframe, --full, --limit"),
        (["--timeframe"], "--timeframe needs a value"),
        (["--no-full", "yes"], "--no-full takes no value"),
        (["--timeframe", "1d", "1h"], "--timeframe takes one value, got 2: 1d 1h"),
        (["--no-timeframe"], "unknown flag --no-timeframe"),
    ],
)
def test_a_bad_flag_says_which_and_how(argv: list[str], says: str) -> None:
    with pytest.raises(InputError) as raised:
        parse_flags(argv, Config)
    assert says in str(raised.value)


def test_help_lists_every_field_with_its_default_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    text = usage(job, Config, "python -m flows.job")
    assert text.splitlines()[0] == "usage: python -m flows.job [--FIELD VALUE ...]"
    assert "Pretend to work on the series." in text
    lines = {line.split()[0]: line for line in text.splitlines() if line.startswith("  --")}
    assert set(lines) == {"--symbols", "--timeframe", "--full", "--limit"}
    assert "VALUE ..." in lines["--symbols"] and "the series" in lines["--symbols"]
    assert "(required)" in lines["--timeframe"]
    assert "--no-full" in lines["--full"] and "(default: False)" in lines["--full"]
    assert "(default: None)" in lines["--limit"]
    with pytest.raises(SystemExit) as done:
        run_from_argv(job, Config, ["--help"], prog="python -m flows.job")
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == text


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        ([], "error: --timeframe: Field required"),
        (["--timeframe", "1d", "--limit", "0"], "error: --limit: must be positive"),
        (["--timeframe", "1d", "--limit", "many"], "error: --limit: Input should be a valid integer"),
        (["--timeframe", "1d", "--bogus", "1"], "error: unknown flag --bogus"),
        (["--timeframe", "5m"], "error: no 5m bars stored: ingest them first"),  # raised by the flow
    ],
)
def test_bad_input_exits_2_with_the_reason_on_stderr(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str], no_server: None
) -> None:
    with pytest.raises(SystemExit) as done:
        run_from_argv(job, Config, argv)
    assert done.value.code == 2
    captured = capsys.readouterr()
    assert says in captured.err and captured.out == ""


def test_the_flow_runs_with_the_cli_s_server_set_up_and_its_result_is_printed_as_json(
    capsys: pytest.CaptureFixture[str], no_server: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The flow starts as an ``fks`` command would: with no background server, Prefect's temporary
    server will get FKS's server settings (unless the environment sets one) and no analytics, and
    SIGTERM ends the process through ``SystemExit`` (so that Prefect stops that server)."""
    from prefect.settings import get_current_settings

    name, other = list(SERVER_SETTINGS)[:2]
    monkeypatch.setenv(other, "7")
    before = get_current_settings().api.url  # None, or the test session's server once it runs
    result = run_from_argv(job, Config, ["--symbols", "SPX,GOOGL", "--timeframe", "1h", "--full"])
    assert isinstance(result, Done)
    printed = json.loads(capsys.readouterr().out)
    assert printed == result.model_dump(mode="json")
    assert printed["symbols"] == ["SPX", "GOOGL"] and printed["full"] is True
    assert printed["environment"][name] == SERVER_SETTINGS[name]
    assert printed["environment"][other] == "7"  # the environment wins
    assert printed["environment"]["PREFECT_API_URL"] is None  # no server recorded: a temporary one
    assert printed["prefect_api_url"] == before  # no server found: Prefect's own choice stands
    assert printed["environment"][ANALYTICS] == "false"  # which does not phone home
    assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None)


def test_a_running_fks_server_is_the_flow_s_prefect_api_though_prefect_was_imported_first(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    no_server: None,
    tmp_path: Path,
    listening: int,
    record_server: Callable[..., None],
) -> None:
    """``python -m flows.<name>`` imports the flow's module (and Prefect, which reads its settings
    then) before it finds the background server: Prefect must still use that server, not start a
    temporary one."""
    import prefect  # noqa: F401 - imported before run_from_argv, as the flow's module does
    from prefect.settings import get_current_settings

    asked: list[str] = []  # the dead commands' runs are looked for on that server (it answers none here)
    monkeypatch.setattr("flows._flowruns.crash_dead_command_runs", lambda url, timeout=5.0: asked.append(url))
    me = current_process()
    record_server(tmp_path, listening, me.pid, me.started)
    before = get_current_settings().api.url  # None, or the test session's server once it runs
    result = run_from_argv(job, Config, ["--timeframe", "1d"])
    assert result.prefect_api_url == f"http://127.0.0.1:{listening}/api"
    assert json.loads(capsys.readouterr().out)["prefect_api_url"] == result.prefect_api_url
    assert get_current_settings().api.url == before  # only for the flow's run
    assert asked == [f"http://127.0.0.1:{listening}/api"]
