"""``fks trade --paper``: the paper desk, once, every interval, or replaying stored history.

Exit codes: 0 ok, 2 bad input (nothing traded), 5 the REST service could not answer, 6 the
account ended halted (a loss limit, a reconciliation mismatch or ``fks halt``).
"""

from __future__ import annotations

import json
import re
import time
from typing import TYPE_CHECKING, Annotated

import typer

from flows.cli._ui import EXIT_BAD_INPUT, err, fail, out, run_guarded

if TYPE_CHECKING:
    from config.trading import TradeConfig
    from execution.runner import DeskRun

EXIT_SERVICE = 5
EXIT_HALTED = 6
_INTERVAL = re.compile(r"^(\d+)([smhd])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_interval(text: str) -> int:
    """Seconds in an interval such as ``30s``, ``15m``, ``1h`` or ``1d``.

    Raises:
        ValueError: anything else.
    """
    match = _INTERVAL.match(text.strip())
    if match is None or int(match.group(1)) == 0:
        raise ValueError(f"--every takes a positive interval like 30s, 15m, 1h or 1d, not {text!r}")
    return int(match.group(1)) * _SECONDS[match.group(2)]


def _print(run: DeskRun, as_json: bool) -> None:
    if as_json:
        fields = ("account", "cycles", "skipped", "fills", "orders", "refusals", "equity", "halted")
        data: dict[str, object] = {k: getattr(run, k) for k in fields}
        data["first"] = None if run.first is None else run.first.isoformat()
        data["last"] = None if run.last is None else run.last.isoformat()
        out.print_json(json.dumps(data))
        return
    span = "no new bar" if run.first is None else f"{run.first:%Y-%m-%d %H:%M} .. {run.last:%Y-%m-%d %H:%M}"
    out.print(
        f"account {run.account!r}: {run.cycles} cycle(s) ({span}), {run.skipped} already done; "
        f"{run.orders} order(s) sent, {run.refusals} refused, {run.fills} fill(s); equity {run.equity:,.2f}"
        + ("; [bold red]HALTED[/] (`fks resume` lifts it)" if run.halted else "")
    )
    out.print(
        f"look closer: fks orders --account {run.account} · fks positions --account {run.account} · "
        f"fks pnl --account {run.account}"
    )


def trade_command(
    paper: Annotated[
        bool, typer.Option("--paper", help="Trade the paper account (the only kind there is).")
    ] = False,
    once: Annotated[bool, typer.Option("--once", help="One cycle on the latest bars (the default).")] = False,
    every: Annotated[str | None, typer.Option(help="Run a cycle every interval (30s, 15m, 1h, 1d).")] = None,
    replay: Annotated[
        tuple[str, str] | None,
        typer.Option(help="Replay stored history START END (dates or ISO times, UTC) bar by bar."),
    ] = None,
    account: Annotated[str, typer.Option(help="Paper account name.")] = "default",
    symbols: Annotated[str, typer.Option(help="The universe, comma-separated.")] = "SPX",
    model: Annotated[str, typer.Option(help="Served forecaster to ask.")] = "fks-forecaster",
    allocator: Annotated[str | None, typer.Option(help="Ask this served allocator instead.")] = None,
    strategy: Annotated[str, typer.Option(help="long_flat or long_short.")] = "long_flat",
    threshold: Annotated[float, typer.Option(help="Forecast log return to act on.")] = 0.0,
    min_confidence: Annotated[float, typer.Option(help="Flat below this |2 prob_up - 1|.")] = 0.0,
    vol_target: Annotated[float | None, typer.Option(help="Annualised volatility target.")] = None,
    max_weight: Annotated[
        float, typer.Option(help="Largest |weight| of one symbol (fraction of equity).")
    ] = 1.0,
    cash: Annotated[float, typer.Option(help="Initial cash of a new account.")] = 100_000.0,
    slippage_bps: Annotated[float, typer.Option(help="Paper fills: slippage, bps.")] = 1.0,
    spread_bps: Annotated[float, typer.Option(help="Paper fills: full spread, bps.")] = 2.0,
    fee_bps: Annotated[float, typer.Option(help="Paper fills: commission, bps.")] = 1.0,
    volume_share: Annotated[
        float, typer.Option(help="Paper fills: share of a bar's volume (0 = no cap).")
    ] = 0.1,
    latency_bars: Annotated[int, typer.Option(help="Paper fills: bars until an order can fill.")] = 1,
    risk_file: Annotated[
        str | None, typer.Option(help="Risk limits YAML (default config/risk.yaml).")
    ] = None,
    ingest: Annotated[
        bool, typer.Option(help="Ingest the universe's latest bars before a live cycle.")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run as JSON.")] = False,
) -> None:
    """Run the paper desk: served forecasts -> target positions -> risk -> orders -> paper fills."""
    if not paper:
        raise fail("only paper trading exists: pass --paper", EXIT_BAD_INPUT)
    if sum([once, every is not None, replay is not None]) > 1:
        raise fail("choose one of --once, --every INTERVAL and --replay START END", EXIT_BAD_INPUT)
    from flows.execute import execute

    def config() -> TradeConfig:
        from config.trading import TradeConfig

        return TradeConfig.model_validate(
            {
                "account": account,
                "symbols": tuple(s.strip().upper() for s in symbols.split(",") if s.strip()),
                "model": model,
                "allocator": allocator,
                "sizing": {
                    "strategy": strategy,
                    "threshold": threshold,
                    "min_confidence": min_confidence,
                    "vol_target": vol_target,
                    "max_weight": max_weight,
                },
                "paper": {
                    "slippage_bps": slippage_bps,
                    "spread_bps": spread_bps,
                    "fee_bps": fee_bps,
                    "volume_share": volume_share or None,
                    "latency_bars": latency_bars,
                },
                "initial_cash": cash,
                "risk_file": risk_file,
                "ingest": ingest,
            }
        )

    def one(start: str | None = None, end: str | None = None) -> DeskRun:
        from config.settings import get_settings
        from execution.client import ServiceError
        from market.bars import as_utc

        lo = None if start is None else as_utc(start, "--replay START")
        hi = None if end is None else as_utc(end, "--replay END")
        if lo is not None and hi is not None and lo > hi:
            raise fail(
                f"--replay starts at {lo} after it ends at {hi}; give START END oldest first", EXIT_BAD_INPUT
            )
        try:
            with err.status("replaying" if lo is not None else "trading"):
                return execute(config(), get_settings(), lo, hi)
        except ServiceError as exc:
            raise fail(str(exc), EXIT_SERVICE) from None

    def run() -> None:
        if replay is not None:
            result = one(*replay)
            _print(result, as_json)
            if result.halted:
                raise typer.Exit(EXIT_HALTED)
            return
        if every is None:
            result = one()
            _print(result, as_json)
            if result.halted:
                raise typer.Exit(EXIT_HALTED)
            return
        seconds = parse_interval(every)
        err.print(f"trading every {every}; Ctrl-C stops after the cycle in progress")
        try:
            while True:
                _print(one(), as_json)
                time.sleep(seconds - time.time() % seconds)
        except KeyboardInterrupt:
            err.print("stopped")

    run_guarded(run, (ValueError, EXIT_BAD_INPUT))
