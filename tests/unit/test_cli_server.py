"""``fks server``: which Prefect API a command uses (the environment wins, then a running recorded
server, else Prefect's temporary one), the port, and commands that run no flow import no Prefect."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from config.flows import InputError
from config.settings import Settings
from flows import _server as server
from storage.runs import current_process

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def test_a_running_recorded_server_is_used_unless_the_environment_names_one(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    handlers: None,
    listening: int,
    record_server: Callable[..., None],
) -> None:
    monkeypatch.setenv("FKS_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    assert server.prepare() is None  # nothing recorded: Prefect's temporary server
    assert "PREFECT_API_URL" not in os.environ
    me = current_process()
    record_server(tmp_path, listening, me.pid, me.started)
    assert server.prepare() == f"http://127.0.0.1:{listening}/api"
    assert os.environ["PREFECT_API_URL"] == f"http://127.0.0.1:{listening}/api"
    monkeypatch.setenv("PREFECT_API_URL", "http://elsewhere:4200/api")
    assert server.prepare() == "http://elsewhere:4200/api"  # the environment wins
    assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None)


def test_a_command_gives_the_temporary_server_fks_s_server_settings_unless_the_environment_sets_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, handlers: None
) -> None:
    from prefect.settings import Settings as PrefectSettings

    monkeypatch.setenv("FKS_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_FLUSH_INTERVAL", "3")
    assert server.prepare() is None  # a temporary server will start, from this environment
    recorder = PrefectSettings().server.services.task_run_recorder  # the names are Prefect's settings
    assert recorder.batch_size == int(
        server.SERVER_SETTINGS["PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE"]
    )
    assert recorder.batch_size > 1 and recorder.flush_interval == 3  # the environment wins
    persister = PrefectSettings().server.services.event_persister
    assert persister.batch_size == int(
        server.SERVER_SETTINGS["PREFECT_SERVER_SERVICES_EVENT_PERSISTER_BATCH_SIZE"]
    )
    assert persister.batch_size > 20 and persister.flush_interval == 5  # Prefect's default interval
    for name, value in server.SERVER_SETTINGS.items():  # every name is one of Prefect's settings
        monkeypatch.setenv(name, "not-a-number")
        with pytest.raises(ValueError, match=name.removeprefix("PREFECT_").lower().split("_")[-1]):
            PrefectSettings()
        monkeypatch.setenv(name, value)


def test_a_recorded_server_that_is_gone_or_elsewhere_is_not_used(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    handlers: None,
    listening: int,
    record_server: Callable[..., None],
) -> None:
    monkeypatch.setenv("FKS_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    record_server(tmp_path, listening, child.pid, None)  # its process ended
    assert server.prepare() is None and "PREFECT_API_URL" not in os.environ
    me = current_process()
    record_server(tmp_path, listening, me.pid, me.started, host="another-host")
    assert server.running_server(tmp_path) is None
    assert server.stop_server(tmp_path) is None  # never touches another host's server
    assert server.read_state(tmp_path) is not None
    with socket.socket() as sock:  # the port no longer answers
        sock.bind(("127.0.0.1", 0))
        closed = int(sock.getsockname()[1])
    record_server(tmp_path, closed, me.pid, me.started)
    assert server.running_server(tmp_path) is None


def test_the_port_is_the_configured_one_or_4200_or_a_free_one(tmp_path: Path, listening: int) -> None:
    assert server.choose_port(Settings(data_dir=tmp_path, prefect_server_port=None)) > 0
    with pytest.raises(InputError, match=f"port {listening}"):
        server.choose_port(Settings(data_dir=tmp_path, prefect_server_port=listening))


@pytest.mark.parametrize("command", [["data", "list"], ["quarantine", "list"], ["models", "list"]])
def test_commands_that_run_no_flow_import_no_prefect(tmp_path: Path, command: list[str]) -> None:
    script = (
        "import sys\n"
        f"sys.argv = ['fks', *{command!r}]\n"
        "from flows.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "loaded = sorted(m for m in sys.modules if m == 'prefect' or m.startswith('prefect.'))\n"
        "print('PREFECT-MODULES', len(loaded), loaded[:5])\n"
    )
    env = {
        **{k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"},
        "PYTHONPATH": str(PROJECT_ROOT),
        "FKS_DATA_DIR": str(tmp_path / "data"),
        "FKS_DB_URL": f"sqlite:///{tmp_path / 'fks.db'}",
        "FKS_MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
    }
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert "PREFECT-MODULES 0 []" in done.stdout, done.stdout + done.stderr


def test_the_console_script_exits_with_the_commands_code_after_threads_and_atexit(tmp_path: Path) -> None:
    script = (
        "import atexit, sys, threading, time\n"
        "atexit.register(lambda: print('ATEXIT-RAN', flush=True))\n"
        "threading.Thread(target=lambda: (time.sleep(0.3), print('THREAD-DONE', flush=True))).start()\n"
        "sys.argv = ['fks', 'data', 'no-such-command']\n"
        "from flows.cli import entry\n"
        "entry()\n"
        "print('NOT-REACHED')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "FKS_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stdout + done.stderr  # typer's usage error
    assert "THREAD-DONE" in done.stdout and "ATEXIT-RAN" in done.stdout
    assert "NOT-REACHED" not in done.stdout and "no-such-command" in done.stderr


def test_the_console_script_ends_with_an_idle_thread_pool_alive(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from concurrent.futures import ThreadPoolExecutor\n"
        "pool = ThreadPoolExecutor(2)\n"
        "print(pool.submit(lambda: 'POOL-RAN').result(), flush=True)\n"  # its workers stay, idle
        "sys.argv = ['fks', '--help']\n"
        "from flows.cli import entry\n"
        "entry()\n"
    )
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "FKS_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and "POOL-RAN" in done.stdout, done.stdout + done.stderr


@pytest.mark.parametrize("started", [123456, None])
def test_a_command_s_process_tag_reads_back(started: int | None) -> None:
    from flows._flowruns import parse_process_tag, process_tag

    tag = process_tag("node-1.example", 4321, started)
    assert parse_process_tag(tag) == ("node-1.example", 4321, started)
    assert parse_process_tag("fks-cli") is None
    assert parse_process_tag("fks-cli-process:host:notapid:1") is None


def test_a_command_that_imported_prefect_runs_its_flows_without_heartbeats_and_tagged() -> None:
    import prefect  # noqa: F401  (a flow command has imported it before run_guarded)
    from prefect.context import TagsContext
    from prefect.settings import get_current_settings

    from flows.cli._ui import run_guarded

    seen = run_guarded(
        lambda: (get_current_settings().flows.heartbeat_frequency, TagsContext.get().current_tags)
    )
    me = current_process()
    assert seen[0] is None
    assert {"fks-cli", f"fks-cli-process:{me.host}:{me.pid}:{me.started}"} <= seen[1]
    assert get_current_settings().flows.heartbeat_frequency is not None  # only inside the command's action
