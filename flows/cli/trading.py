"""``fks halt`` / ``fks resume`` (the kill switch of a paper account), ``fks orders`` /
``fks positions`` (its book) and ``fks pnl`` (the book valued at the last stored closes).

Exit codes: 0 ok, 2 an unknown account or bad input.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from flows.cli._ui import EXIT_BAD_INPUT, fmt_ts, out, run_guarded, table

if TYPE_CHECKING:
    from execution.oms import OrderManager

AccountOption = Annotated[str, typer.Option(help="Paper account name.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the rows as JSON.")]


def _manager(account: str) -> OrderManager:
    from config.settings import get_settings
    from execution.oms import OrderManager
    from tasks.store import store_for

    return OrderManager(store_for(get_settings()), account, actor="cli")


def halt_command(
    reason: Annotated[str, typer.Option(help="Why trading stops (kept in the audit log).")],
    account: AccountOption = "default",
) -> None:
    """The kill switch: no new order is taken for the account and its open orders are cancelled."""

    def run() -> None:
        _, cancelled = _manager(account).kill(reason)
        out.print(f"account {account!r} halted ({reason}); {len(cancelled)} open order(s) cancelled")

    run_guarded(run)


def resume_command(
    account: AccountOption = "default",
    reason: Annotated[str, typer.Option(help="Why trading resumes.")] = "",
) -> None:
    """Lift the kill switch of the account."""

    def run() -> None:
        _manager(account).resume(reason or None)
        out.print(f"account {account!r} trades again")

    run_guarded(run)


def orders_command(
    account: AccountOption = "default",
    open_only: Annotated[bool, typer.Option("--open", help="Only orders not yet final.")] = False,
    as_json: JsonOption = False,
) -> None:
    """The account's orders, newest first: side, quantity, type, status, fills, refusal code."""
    from config.settings import get_settings
    from execution.oms import OPEN_STATES
    from storage.execution import get_account, list_orders
    from tasks.store import store_for

    def run() -> None:
        with store_for(get_settings()).connect() as conn:
            if get_account(conn, account) is None:
                raise LookupError(
                    f"no paper account {account!r}; check --account (the trading flow opens accounts)"
                )
            statuses = [s.value for s in OPEN_STATES] if open_only else None
            orders = list(reversed(list_orders(conn, account, statuses=statuses)))
        if as_json:
            out.print_json(json.dumps([o.__dict__ for o in orders], default=str))
            return
        rows = [
            [
                o.client_order_id, o.symbol, o.side, f"{o.quantity:g}", o.type, o.status,
                f"{o.filled_quantity:g}", "-" if o.avg_fill_price is None else f"{o.avg_fill_price:.4f}",
                o.reject_code or "-", f"{o.updated_at:%Y-%m-%d %H:%M}",
            ]
            for o in orders
        ]  # fmt: skip
        columns = [
            "order",
            "symbol",
            "side",
            "qty",
            "type",
            "status",
            "filled",
            "avg price",
            "code",
            "updated (UTC)",
        ]
        out.print(table(f"Orders of {account}", columns, rows, {"qty", "filled", "avg price"}))

    run_guarded(run)


def positions_command(account: AccountOption = "default", as_json: JsonOption = False) -> None:
    """The account's positions (average cost and realised P&L in the symbol's currency and in the
    account's: a foreign symbol's fills are booked at the FX rate of their time), cash and halt
    state."""
    from config.settings import get_settings
    from storage.execution import get_account, get_trading_state, list_positions
    from tasks.store import store_for

    def run() -> None:
        with store_for(get_settings()).connect() as conn:
            found = get_account(conn, account)
            if found is None:
                raise LookupError(
                    f"no paper account {account!r}; check --account (the trading flow opens accounts)"
                )
            positions = list_positions(conn, account)
            state = get_trading_state(conn, account)
        if as_json:
            payload = {
                "account": account, "cash": found.cash, "halted": state.halted, "halt_reason": state.reason,
                "positions": [p.__dict__ for p in positions],
            }  # fmt: skip
            out.print_json(json.dumps(payload, default=str))
            return
        ccy = found.base_currency
        rows = [
            [p.symbol, f"{p.quantity:g}", f"{p.avg_cost:.4f}", f"{p.realised_pnl:.2f}",
             f"{p.avg_cost_base or 0.0:.4f}", f"{p.realised_pnl_base or 0.0:.2f}"]
            for p in positions
        ]  # fmt: skip
        columns = ["symbol", "quantity", "avg cost", "realised P&L", f"avg cost {ccy}", f"realised {ccy}"]
        out.print(table(f"Positions of {account}", columns, rows, set(columns[1:])))
        halted = f"halted ({state.reason})" if state.halted else "trading"
        out.print(f"cash {found.cash:,.2f} {found.base_currency}; {halted}")

    run_guarded(run)


def pnl_command(
    account: AccountOption = "default",
    as_json: JsonOption = False,
    base: Annotated[
        str | None, typer.Option("--base", help="Report currency (default: the account's), e.g. EUR.")
    ] = None,
) -> None:
    """The account's book valued now: per symbol quantity, average cost, the last stored close,
    market value, unrealised and realised P&L; then cash, equity, exposure, fees and the
    drawdown of the equity marks. Prices and FX rates come from the stored bars (only bars
    already closed); non-USD assets are converted with the stored FX pairs."""
    from config.assets import load_asset_specs
    from config.settings import get_settings
    from execution.portfolio import account_drawdown, value_account
    from storage.execution import get_account, get_trading_state
    from tasks.store import store_for

    def run() -> None:
        settings = get_settings()
        currencies = {spec.symbol: spec.currency for spec in load_asset_specs(settings.assets_file)}
        with store_for(settings).connect() as conn:
            valuation = value_account(conn, account, base=base, currencies=currencies)
            dd = account_drawdown(conn, account)
            state = get_trading_state(conn, account)
            found = get_account(conn, account)
        own = "" if found is None else f" {found.base_currency}"
        if as_json:
            payload = {
                "account": account,
                "halted": state.halted,
                "halt_reason": state.reason,
                **valuation.to_dict(),
                "drawdown": None if dd is None else {
                    "points": dd.points, "peak": dd.peak, "peak_at": dd.peak_at.isoformat(), "last": dd.last,
                    "last_at": dd.last_at.isoformat(), "current": dd.current, "max": dd.max,
                },
            }  # fmt: skip
            out.print_json(json.dumps(payload))
            return
        ccy = valuation.base
        rows = [
            [
                r.symbol, r.currency, f"{r.quantity:g}", f"{r.avg_cost:,.4f}",
                "-" if r.price is None else f"{r.price:,.4f}", fmt_ts(valuation.prices_as_of.get(r.symbol)),
                f"{r.market_value_base:,.2f}", f"{r.unrealised_pnl_base:,.2f}", f"{r.realised_pnl_base:,.2f}",
            ]
            for r in valuation.rows
        ]  # fmt: skip
        columns = ["symbol", "ccy", "quantity", "avg cost", "price", "bar (UTC)",
                   f"value {ccy}", f"unrealised {ccy}", f"realised {ccy}"]  # fmt: skip
        numeric = {"quantity", "avg cost", "price", f"value {ccy}", f"unrealised {ccy}", f"realised {ccy}"}
        at = fmt_ts(valuation.at)
        out.print(table(f"P&L of {account} at {at} UTC ({ccy})", columns, rows, numeric))
        v = valuation
        figures = {
            "cash": v.cash, "market value": v.market_value, "equity": v.equity,
            "gross exposure": v.gross_exposure, "net exposure": v.net_exposure,
            "unrealised P&L": v.unrealised_pnl, "realised P&L (gross)": v.realised_pnl, "fees": v.fees,
            "total P&L (net of fees)": v.total_pnl,
        }  # fmt: skip
        totals = [[name, f"{value:,.2f}"] for name, value in figures.items()]
        if dd is not None:
            totals += [
                ["drawdown now", f"{dd.current:.2%}"], ["max drawdown", f"{dd.max:.2%}"],
                ["equity marks", f"{dd.points} (last {fmt_ts(dd.last_at)}, peak {dd.peak:,.2f}{own})"],
            ]  # fmt: skip
        out.print(table(f"Totals ({ccy})", ["", "value"], totals, {"value"}))
        if dd is None:
            out.print("no equity marks yet: drawdown appears once the account is marked to market")
        out.print(f"halted ({state.reason})" if state.halted else "trading")

    run_guarded(run, (ValueError, EXIT_BAD_INPUT))
