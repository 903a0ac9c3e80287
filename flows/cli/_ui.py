"""What every ``fks`` command shares: the consoles, the exit codes and the guard that applies them,
tables, the progress bar polled from the store, and the quieting of the libraries' logs.

Exit codes: 0 success, 2 bad usage or bad input (nothing written), 3 some rows were quarantined
(every good row was stored), 4 refused (the promotion gate said no), 1 unexpected error.

Only ``typer`` and ``rich`` are imported here at module level, so that ``fks --help`` stays fast;
the project's packages are imported inside the functions that need them.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import datetime
from typing import TYPE_CHECKING, Protocol, TypeAlias, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from flows._logs import drop_reported_failures

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from config.settings import Settings

out = Console()
err = Console(stderr=True)

EXIT_UNEXPECTED = 1
EXIT_BAD_INPUT = 2
EXIT_QUARANTINED = 3
EXIT_REFUSED = 4

T = TypeVar("T")

Handler: TypeAlias = int | Callable[[Exception], int] | None
"""What :func:`run_guarded` does with one kind of failure: an exit code (print ``error: <the
exception's message>`` and exit with it), a function that reports the exception and returns the
exit code, or ``None`` (leave it to the standard handling)."""


class QuarantineCounts(Protocol):
    """What :func:`exit_if_quarantined` reads of an outcome (ingest, validate, lake import): the rows
    quarantined, in all and by reason."""

    @property
    def quarantined(self) -> int: ...

    @property
    def quarantine_reasons(self) -> Mapping[str, int]: ...


def fail(message: str, code: int) -> typer.Exit:
    """Print ``error: message`` on stderr and return the exit to raise: ``raise fail(...) from None``."""
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def message(exc: BaseException) -> str:
    """The text of ``exc`` as its raiser wrote it.

    ``str()`` of a ``KeyError`` is the ``repr`` of its argument (quoted, escapes doubled); every
    other exception's ``str()`` is its message, which may itself start or end with a quote (a
    quoted model name) and is kept whole.
    """
    if isinstance(exc, KeyError) and len(exc.args) == 1 and isinstance(exc.args[0], str):
        return exc.args[0]
    return str(exc)


def run_guarded(action: Callable[[], T], *handlers: tuple[type[Exception], Handler]) -> T:
    """Run ``action`` and turn known failures into the CLI's exit codes.

    ``handlers`` are ``(exception type, handler)`` pairs tried first, in order (see :data:`Handler`).
    Then the standard handling: invalid settings or options (pydantic), bad input, a bad data
    file, an unsupported request or an unknown name exit 2 with the message. Anything else
    propagates: ``main`` reports it as an unexpected error (exit 1).
    """
    from pydantic import ValidationError

    from config.flows import InputError
    from providers.base import DataFileError, NotSupported

    try:
        with flow_runs():
            return action()
    except Exception as exc:
        for kind, handle in handlers:
            if not isinstance(exc, kind):
                continue
            if handle is None:
                break
            if isinstance(handle, int):
                raise fail(message(exc), handle) from None
            raise typer.Exit(handle(exc)) from None
        if isinstance(exc, ValidationError):
            problems = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
            raise fail(problems, EXIT_BAD_INPUT) from None
        if isinstance(exc, InputError | DataFileError | NotSupported | LookupError):
            raise fail(message(exc), EXIT_BAD_INPUT) from None
        raise


def flow_runs() -> AbstractContextManager[object]:
    """What a command's flow runs are run in: :func:`flows._flowruns.command_flow_runs` (no
    heartbeats, tagged with this process, dead commands' runs marked ``Crashed``) for a command
    that has imported Prefect (its flow module, imported before :func:`run_guarded`); nothing for
    the others, which never import it."""
    if "prefect" not in sys.modules:
        return nullcontext()
    from flows._flowruns import command_flow_runs

    return command_flow_runs()


def exit_if_quarantined(outcomes: Sequence[QuarantineCounts]) -> None:
    """Print the quarantine summary by reason and exit 3 when any row was quarantined."""
    reasons: dict[str, int] = {}
    for o in outcomes:
        for reason, count in o.quarantine_reasons.items():
            reasons[reason] = reasons.get(reason, 0) + count
    total = sum(o.quarantined for o in outcomes)
    if not total:
        return
    by_reason = ", ".join(f"{reason}: {count}" for reason, count in sorted(reasons.items()))
    err.print(
        f"[bold yellow]{total} row(s) quarantined[/] ({by_reason}); every good row was stored. "
        "Review them with `fks quarantine list`, then `fks quarantine release ID...` "
        "or `fks quarantine drop ID...`.",
        soft_wrap=True,
    )
    raise typer.Exit(EXIT_QUARANTINED)


def symbol_list(symbol: list[str] | None, symbols: str | None) -> list[str]:
    """The symbols of the repeatable ``--symbol`` followed by those of the comma-separated ``--symbols``."""
    names = list(symbol or [])
    if symbols:
        names += [s for s in symbols.split(",") if s.strip()]
    return names


def actor() -> str:
    """Who runs the command (the login name, ``unknown`` when the system cannot tell): kept in audits."""
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def fmt_ts(value: datetime | None) -> str:
    """A timestamp as a date, or to the minute when it has a time of day; ``-`` for none."""
    if value is None:
        return "-"
    return value.strftime("%Y-%m-%d" if (value.hour, value.minute) == (0, 0) else "%Y-%m-%d %H:%M")


def span(first: datetime | None, last: datetime | None) -> str:
    """``first .. last`` (see :func:`fmt_ts`), ``-`` when there is nothing."""
    return f"{fmt_ts(first)} .. {fmt_ts(last)}" if first else "-"


def table(title: str, columns: list[str], rows: list[list[str]], numeric: set[str]) -> Table:
    """A table with its title on the left; the ``numeric`` columns are right-aligned."""
    result = Table(title=title, title_justify="left")
    for col in columns:
        result.add_column(col, justify="right" if col in numeric else "left")
    for row in rows:
        result.add_row(*row)
    return result


@contextmanager
def polled_progress(
    settings: Settings, label: str, read: Callable[[Connection], tuple[int, int, str]]
) -> Iterator[None]:
    """Show a progress bar while the body runs, fed every 0.5 s by ``read(conn)`` on the store:
    ``(finished, total, description)`` (an empty description keeps ``label``)."""
    from tasks.store import store_for

    stop = threading.Event()
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err, transient=True, disable=not err.is_terminal) as progress:
        task_id = progress.add_task(label, total=None)

        def poll() -> None:
            engine = store_for(settings)
            while not stop.wait(0.5):
                try:
                    with engine.connect() as conn:
                        finished, total, description = read(conn)
                except Exception:  # the schema may not exist yet on a new database
                    continue
                progress.update(
                    task_id, total=max(total, 1), completed=finished, description=description or label
                )

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        try:
            yield
        finally:
            stop.set()
            poller.join(timeout=2)


def progress_from_runs(settings: Settings, batch_id: str, label: str) -> AbstractContextManager[None]:
    """A progress bar fed by the ``ingest_runs`` rows of ``batch_id`` (naming the series running)."""
    from storage import list_ingest_runs

    def read(conn: Connection) -> tuple[int, int, str]:
        runs = list_ingest_runs(conn, batch_id=batch_id)
        running = [r.symbol for r in runs if r.status == "running"]
        return (
            sum(r.status != "running" for r in runs),
            len(runs),
            f"{label} {', '.join(running)}" if running else "",
        )

    return polled_progress(settings, label, read)


def quiet_libraries() -> None:
    """Before a command runs: quiet Prefect, TensorFlow, MLflow and Great Expectations, keep tables
    wide when the output is piped, and drop Prefect's copies of the failures the CLI reports."""
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault(
        "TF_CPP_MIN_LOG_LEVEL", "3"
    )  # TensorFlow's C++ chatter; Python errors still surface
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # oneDNN kernels round differently run to run
    for console in (out, err):
        if not console.is_terminal:
            console.width = max(
                console.width, 160
            )  # piped or captured: do not squeeze tables into 80 columns
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("mlflow.pyfunc").setLevel(logging.ERROR)  # the CloudPickle notice on every log_model
    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # retracing notices
    drop_reported_failures()
    # Great Expectations sets this one to INFO when it is imported (after this runs), and then says
    # "Created temporary directory ... for ephemeral docs site" on every validation: a filter stays
    ge_base = logging.getLogger("great_expectations.data_context.types.base")
    if _warnings_and_above not in ge_base.filters:
        ge_base.addFilter(_warnings_and_above)


def _warnings_and_above(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING
