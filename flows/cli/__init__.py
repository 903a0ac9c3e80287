"""The ``fks`` command line: one command per flow, plus views of the store and the quarantine.

:data:`app` is built here from the command modules of this package, each registered explicitly;
:func:`main` is the console script. The shared parts (consoles, exit codes, the error guard,
tables, progress) are in :mod:`flows.cli._ui`, the summaries in :mod:`flows.cli.render`.

Exit codes: 0 success, 2 bad usage or bad input (nothing written), 3 some rows were quarantined
(every good row was stored), 4 refused (the promotion gate), 1 unexpected error.
"""

from __future__ import annotations

import contextlib
import os
import sys

import typer

from flows._server import prepare, stop_temporary_servers
from flows.cli import (
    actions,
    backfill,
    backtest,
    data,
    deploy,
    drift,
    features,
    keys,
    lake,
    market,
    models,
    pipeline,
    promote,
    providers,
    quarantine,
    serve,
    server,
    trade,
    trading,
    train,
)
from flows.cli._ui import EXIT_UNEXPECTED, err, quiet_libraries

__all__ = ["app", "main"]

app = typer.Typer(
    name="fks",
    help="FKS: market data, features, models, backtests and paper trading, orchestrated by Prefect.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

app.command("ingest")(data.ingest_command)
app.command("pipeline")(pipeline.pipeline_command)
app.command("validate")(data.validate_command)
app.command("features")(features.features_command)
app.command("backtest")(backtest.backtest_command)
app.command("promote")(promote.promote_command)
app.command("rollback")(promote.rollback_command)
app.command("backfill")(backfill.backfill_command)
app.command("gaps")(backfill.gaps_command)
app.command("reconcile")(backfill.reconcile_command)
app.command("serve")(serve.serve_command)
app.command("drift")(drift.drift_command)
app.command("trade")(trade.trade_command)
app.command("halt")(trading.halt_command)
app.command("resume")(trading.resume_command)
app.command("orders")(trading.orders_command)
app.command("positions")(trading.positions_command)
app.command("pnl")(trading.pnl_command)
app.command("deploy")(deploy.deploy_command)
app.command("worker")(deploy.worker_command)
app.command("status")(deploy.status_command)

app.add_typer(data.data_app, name="data")
app.add_typer(train.train_app, name="train")
app.add_typer(quarantine.quarantine_app, name="quarantine")
app.add_typer(lake.lake_app, name="lake", help="Export bars to the Parquet lake (local or S3); import them.")
app.add_typer(market.fundamentals_app, name="fundamentals", help="SEC EDGAR company facts and filings.")
app.add_typer(market.market_app, name="market", help="Market overview (CoinMarketCap listings).")
app.add_typer(
    providers.providers_app, name="providers", help="Online providers: breakers, budgets, discrepancies."
)
app.add_typer(
    actions.actions_app, name="actions", help="Corporate actions (splits) recorded from the providers."
)
app.add_typer(keys.keys_app, name="keys", help="API keys of the REST service (X-API-Key).")
app.add_typer(
    models.models_app, name="models", help="Registered models: versions, aliases, metrics, gate decisions."
)
app.add_typer(server.server_app, name="server")


def main() -> None:
    """Console-script entry point: quiet the libraries, run the app; an unexpected failure prints
    one line and exits 1. A running ``fks server`` is used; a temporary Prefect server started by
    the command is ended on every exit Python can catch (see :func:`flows._server.prepare`)."""
    quiet_libraries()
    prepare()
    try:
        app()
    except SystemExit:
        raise
    except Exception as exc:  # an unexpected failure: say what it was, exit 1
        err.print(f"[bold red]unexpected error:[/] {type(exc).__name__}: {exc}", soft_wrap=True)
        raise SystemExit(EXIT_UNEXPECTED) from exc
    finally:
        stop_temporary_servers()


def entry() -> None:
    """The ``fks`` console script (and ``python -m flows.cli``): :func:`main`, then a quick exit.

    Once the command has finished, the process ends without tearing down every imported module (a
    second or so after a flow run with TensorFlow, pandas and Prefect loaded): the threads that
    are not daemons are joined and the ``atexit`` handlers run first (Prefect ends its temporary
    server and sends its last logs and events there; logging flushes its handlers), then the
    standard streams are flushed and the process exits with the command's code.
    """
    try:
        main()
    except SystemExit as exc:
        code = exc.code
    else:
        code = 0
    if isinstance(code, str):  # SystemExit("message"): printed, exit 1, as Python does
        sys.stderr.write(code + "\n")
        code = 1
    _exit_now(0 if code is None else int(code))


def _exit_now(code: int) -> None:
    """Exit the process with ``code`` once the work is done: non-daemon threads joined, ``atexit``
    handlers run, standard streams flushed; module teardown and garbage collection skipped."""
    import atexit
    import threading

    # what the interpreter's own shutdown does first: the threading module's exit hooks (which tell
    # idle ThreadPoolExecutor workers to stop), then a join of every thread that is not a daemon
    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is not None:
        shutdown()
    else:  # pragma: no cover - an interpreter without it: the ordinary exit
        raise SystemExit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing more to say
            stream.flush()
    os._exit(code)
