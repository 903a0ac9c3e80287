"""The local Prefect server FKS starts and finds: ``fks server``'s background server (its state
file under ``<data_dir>/prefect/``, start, stop) and the set-up every command and every
``python -m flows.<name>`` runs first (:func:`prepare`: the background server when one runs, else a
temporary server with FKS's settings that is ended on SIGTERM and SIGHUP too; a watchdog ends it
after a SIGKILL, :mod:`flows._temporary_server`).

Used by the CLI (:mod:`flows.cli.server` holds the ``fks server`` commands) and by
:mod:`flows._main`. Only the standard library (and :mod:`storage.processes`, standard library only)
is imported at module level: commands that run no flow must not pay for Prefect.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from storage.processes import process_running, process_started

if TYPE_CHECKING:
    from types import FrameType

    from config.settings import Settings

DEFAULT_PORT = 4200

SERVER_SETTINGS: dict[str, str] = {
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "100",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_FLUSH_INTERVAL": "1",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_BATCH_SIZE": "500",
}
"""Prefect server settings FKS gives the servers it starts (``fks server start`` and the temporary
server of a command) unless the environment sets them:

- the task run recorder writes the task runs' states in batches, at most one second after they
  happen, instead of one transaction per state event (Prefect's default batch size is 1). Every
  task run sends three or four such events; one at a time they cost the server ~25 ms of CPU per
  task run, taken from the flows it records on a machine with few cores; in batches about half.
  The UI and the API show a task run's latest state up to a second later;
- the event persister stores events in batches of up to 500 instead of 20 (its flush interval
  stays Prefect's 5 s): a 16-task flow run sends ~70 events, stored in one transaction after the
  run instead of three or four during it: ~10 % less server CPU in all (0.56-0.63 s against
  0.62-0.69 s for two such runs) and less of it while the flow's tasks run. Automations see
  events at once (they read the event stream, not the table); ``/events/filter`` may show an
  event up to 5 s later, as Prefect's default does whenever fewer than 20 are waiting."""

STATE_FILE = "server.json"
PID_FILE = "server.pid"
LOG_FILE = "server.log"


@dataclass(frozen=True)
class ServerState:
    """The background server as ``fks server start`` recorded it."""

    url: str
    """The API URL (``http://HOST:PORT/api``): what ``PREFECT_API_URL`` is set to."""
    ui: str
    """The UI address (``http://HOST:PORT``)."""
    pid: int
    pid_started: int | None
    host: str
    """The machine it runs on (its pid means nothing elsewhere)."""
    port: int
    log: str
    started_at: str


def server_dir(data_dir: Path) -> Path:
    """Where the background server's state, pid and log live: ``<data_dir>/prefect``."""
    return data_dir / "prefect"


def read_state(data_dir: Path) -> ServerState | None:
    """The recorded server, or None when none is recorded (or the record cannot be read)."""
    try:
        raw = json.loads((server_dir(data_dir) / STATE_FILE).read_text(encoding="utf-8"))
        return ServerState(**raw)
    except (OSError, ValueError, TypeError):
        return None


def write_state(data_dir: Path, state: ServerState) -> None:
    """Record ``state`` as the background server of ``data_dir`` (what :func:`read_state` reads)."""
    folder = server_dir(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / STATE_FILE).write_text(json.dumps(asdict(state), indent=2), encoding="utf-8")


def _port_answers(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _alive(state: ServerState) -> bool:
    return state.host == socket.gethostname() and process_running(state.pid, state.pid_started)


def running_server(data_dir: Path) -> ServerState | None:
    """The recorded server when its process still runs on this host and its port answers."""
    state = read_state(data_dir)
    if state is None or not _alive(state):
        return None
    return state if _port_answers(_connect_host(state), state.port) else None


def _connect_host(state: ServerState) -> str:
    host = state.url.split("//", 1)[1].rsplit(":", 1)[0].strip("[]")
    return host or "127.0.0.1"


def server_healthy(url: str, timeout: float = 2.0) -> bool:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


# -- every command ---------------------------------------------------------------------------------


def prepare() -> str | None:
    """Before a command runs: end Prefect's temporary server on SIGTERM and SIGHUP too, give the
    temporary server :data:`SERVER_SETTINGS` and no analytics (where the environment sets none),
    and point Prefect at the background server when one runs (``PREFECT_API_URL`` in the
    environment wins).

    Returns the API URL the command will use, None when it would start a temporary server.
    Never imports Prefect, never fails: a problem here leaves the command to Prefect's defaults.
    """
    _end_on_signals()
    for name, value in SERVER_SETTINGS.items():  # for the temporary server, if one is started
        os.environ.setdefault(name, value)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # no phoning home from a research box
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    try:
        from config.settings import get_settings

        state = running_server(get_settings().data_dir)
    except Exception:  # invalid settings are the command's to report
        return None
    if state is None:
        return None
    os.environ["PREFECT_API_URL"] = state.url
    return state.url


def _end_on_signals() -> None:
    """Turn SIGTERM and SIGHUP into ``SystemExit`` so that ``atexit`` runs: Prefect stops its
    temporary server there (SIGINT already raises ``KeyboardInterrupt``; SIGKILL cannot be caught)."""

    def exit_on(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is None:
            continue
        try:
            if signal.getsignal(sig) in (signal.SIG_DFL, None):
                signal.signal(sig, exit_on)
        except ValueError:  # not the main thread (an embedding host): leave its handlers alone
            return


def stop_temporary_servers() -> None:
    """Stop the temporary servers Prefect started in this process (no-op when Prefect's server
    module was never imported). Prefect also does this at exit; calling it early is harmless."""
    module = sys.modules.get("prefect.server.api.server")
    if module is None:
        return
    for server in list(getattr(module.SubprocessASGIServer, "_instances", {}).values()):
        try:
            server.stop()
        except Exception:
            continue


# -- the commands ------------------------------------------------------------------------------------


def _free_port(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _any_free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def choose_port(settings: Settings) -> int:
    """The configured port (which must be free), else 4200 when free, else a free one.

    Raises:
        InputError: the configured port is taken.
    """
    from config.flows import InputError

    host = settings.prefect_server_host
    if settings.prefect_server_port is not None:
        if not _free_port(host, settings.prefect_server_port):
            raise InputError(
                f"port {settings.prefect_server_port} on {host} is taken; free it or set "
                "FKS_PREFECT_SERVER_PORT to another (or leave it empty for a free one)"
            )
        return settings.prefect_server_port
    return DEFAULT_PORT if _free_port(host, DEFAULT_PORT) else _any_free_port(host)


def _url_host(host: str) -> str:
    connect = "127.0.0.1" if host in ("0.0.0.0", "") else ("::1" if host == "::" else host)
    return f"[{connect}]" if ":" in connect else connect


def start_server(settings: Settings) -> ServerState:
    """Start the background server (or return the one running) and record it.

    Raises:
        InputError: the configured port is taken.
        RuntimeError: the server exited or did not become healthy in time (the log's tail says why).
    """
    data_dir = settings.data_dir
    running = running_server(data_dir)
    if running is not None:
        return running
    folder = server_dir(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    port = choose_port(settings)
    host = settings.prefect_server_host
    ui = f"http://{_url_host(host)}:{port}"
    log_path = folder / LOG_FILE
    env = SERVER_SETTINGS | {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env |= {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_API_URL": f"{ui}/api"}
    command = [sys.executable, "-m", "prefect", "server", "start", "--host", host, "--port", str(port)]
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # outlives this command, out of reach of its terminal's Ctrl-C
            close_fds=True,
        )
    deadline = time.monotonic() + settings.prefect_server_start_timeout_s
    while not server_healthy(f"{ui}/api"):
        if process.poll() is not None:
            raise RuntimeError(
                f"the Prefect server exited with code {process.returncode}; its log ({log_path}):\n"
                + _tail(log_path)
            )
        if time.monotonic() > deadline:
            _terminate(process.pid)
            raise RuntimeError(
                f"the Prefect server did not answer within {settings.prefect_server_start_timeout_s:g} s; "
                f"its log ({log_path}):\n" + _tail(log_path)
            )
        time.sleep(0.25)
    state = ServerState(
        url=f"{ui}/api",
        ui=ui,
        pid=process.pid,
        pid_started=process_started(process.pid),
        host=socket.gethostname(),
        port=port,
        log=str(log_path),
        started_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )
    (folder / PID_FILE).write_text(f"{process.pid}\n", encoding="utf-8")
    write_state(data_dir, state)
    return state


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _terminate(pid: int, grace_s: float = 15.0) -> None:
    """SIGTERM the server's process group (the server and its workers), SIGKILL after ``grace_s``."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    except PermissionError:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):  # reap it when it is our child
            os.waitpid(pid, os.WNOHANG)
        if not process_running(pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def stop_server(data_dir: Path) -> ServerState | None:
    """Stop the recorded server when it runs on this host; forget it. Returns what was stopped."""
    state = read_state(data_dir)
    folder = server_dir(data_dir)
    if state is not None and state.host != socket.gethostname():
        return None  # another machine's server: its pid means nothing here
    stopped = None
    if state is not None and _alive(state):
        _terminate(state.pid)
        stopped = state
    for name in (STATE_FILE, PID_FILE):
        (folder / name).unlink(missing_ok=True)
    return stopped
