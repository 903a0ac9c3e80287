"""``fks halt`` / ``fks resume`` (the kill switch of a paper account) and ``fks orders`` /
``fks positions`` (its book).

Exit codes: 0 ok, 2 an unknown account or bad input.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from flows.cli._ui import out, run_guarded, table

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
    """The account's positions (average cost, realised P&L), cash and halt state."""
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
        rows = [
            [p.symbol, f"{p.quantity:g}", f"{p.avg_cost:.4f}", f"{p.realised_pnl:.2f}"] for p in positions
        ]
        out.print(table(f"Positions of {account}", ["symbol", "quantity", "avg cost", "realised P&L"], rows,
                        {"quantity", "avg cost", "realised P&L"}))  # fmt: skip
        halted = f"halted ({state.reason})" if state.halted else "trading"
        out.print(f"cash {found.cash:,.2f} {found.base_currency}; {halted}")

    run_guarded(run)
