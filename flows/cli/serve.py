"""``fks serve``: the REST service over the registered models (see :mod:`serving`).

Exit codes: 0 stopped cleanly, 2 bad input (port, workers).
"""

from __future__ import annotations

from typing import Annotated

import typer

from flows.cli._ui import EXIT_BAD_INPUT, run_guarded


def serve_command(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
) -> None:
    """Serve forecasts of the registered models over REST (OpenAPI at /docs) until stopped.

    Loads each model of FKS_SERVE_MODELS (default the forecaster) at @champion, at @challenger
    while there is no champion, and swaps versions when an alias moves."""
    from serving.server import serve

    run_guarded(lambda: serve(host, port, workers), (ValueError, EXIT_BAD_INPUT))
