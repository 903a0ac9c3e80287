"""The paper desk on a real store: a replay equals the backtest of the same decisions, a second
run sends nothing twice, a loss limit halts it mid-replay, the broker's saved state restores."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Engine, text

from backtest.engine import run
from config.settings import Settings
from config.trading import PaperCostsConfig, TradeConfig
from execution.broker import Bar, PaperBroker, PaperCosts
from execution.orders import OrderRequest, OrderType, Side
from execution.runner import open_desk, run_once, run_replay
from market.rebalance import Costs
from models.forecaster.family import forecast_positions
from storage import read_bars
from storage.desk import count_cycles, list_targets
from storage.execution import list_equity, list_fills, list_orders
from tests.desk_support import MomentumAdvisor, stored_market

START, END = pd.Timestamp("2015-01-02", tz="UTC"), pd.Timestamp("2015-06-30", tz="UTC")
EXACT = PaperCostsConfig(slippage_bps=0, spread_bps=0, fee_bps=3, volume_share=None)

WIDE = """version: 1
accounts:
  default:
    max_position_notional: 1.0e12
    max_gross_exposure: 1.0e12
    max_net_exposure: 1.0e12
    max_order_notional: 1.0e12
    max_orders_per_minute: 100
    max_daily_loss: 1.0
    max_drawdown: {drawdown}
    max_model_age_days: 100000
"""


def risk_file(tmp_path: Path, drawdown: float = 1.0) -> Path:
    path = tmp_path / f"risk-{drawdown}.yaml"
    path.write_text(WIDE.format(drawdown=drawdown))
    return path


@pytest.fixture
def engine(settings: Settings) -> Engine:
    return stored_market(settings)


def _backtest(engine: Engine, costs: Costs, strategy: str = "long_short") -> pd.Series:
    bars = read_bars(engine, "SPX", "1d")
    window = bars.loc[START:END]
    positions = forecast_positions(MomentumAdvisor.forecasts(bars).loc[window.index], strategy, 0.0)
    return run(window, positions, costs=costs, initial_capital=100_000.0).equity


def _equity(engine: Engine) -> pd.Series:
    with engine.connect() as conn:
        return list_equity(conn, "default")["equity"]


def test_a_replay_holds_the_backtest_equity_to_1e6_with_spread_and_partial_fills_off(
    engine: Engine, tmp_path: Path
) -> None:
    config = TradeConfig(risk_file=risk_file(tmp_path), paper=EXACT, sizing={"strategy": "long_short"})
    advisor = MomentumAdvisor()
    run_ = run_replay(open_desk(engine, config, advisor), engine, START, END)
    expected = _backtest(engine, Costs(commission_bps=3, slippage_bps=0))
    equity = _equity(engine)
    assert equity.index.equals(expected.index) and run_.cycles == len(expected)
    assert run_.orders > 30 and run_.refusals == 0 and not run_.halted
    np.testing.assert_allclose(equity.to_numpy(), expected.to_numpy(), rtol=1e-6, atol=0)
    assert advisor.calls == len(expected)  # one request per bar, the last sized at the next stored open

    # the same replay again: every cycle is skipped, nothing is sent twice
    with engine.connect() as conn:
        orders = len(list_orders(conn, "default"))
    again = run_replay(open_desk(engine, config, MomentumAdvisor()), engine, START, END)
    assert again.cycles == 0 and again.skipped == len(expected)
    with engine.connect() as conn:
        assert len(list_orders(conn, "default")) == orders
        assert count_cycles(conn, "default") == len(expected)
        targets = list_targets(conn, "default")
    assert set(targets["model"]) == {"momentum"} and (targets["weight"].abs() <= 1).all()


def test_a_eur_quoted_symbol_in_a_usd_account_replays_its_backtest_in_usd(
    engine: Engine, tmp_path: Path
) -> None:
    """SPX quoted in EUR at a constant 1.25 USD: the desk sizes, checks risk and marks in USD, the
    OMS and the paper broker book every fill at 1.25, so the equity is the backtest's (which is
    scale-free in price) and the books reconcile on every cycle; 1.25 too many units, or cash
    booked in EUR, would not hold the equity."""
    from storage.bars import upsert_bars

    days = pd.date_range("2014-12-01", "2015-07-10", freq="D", tz="UTC", name="ts")
    fx = pd.DataFrame({c: 1.25 for c in ("open", "high", "low", "close")} | {"volume": 1.0}, index=days)
    with engine.begin() as conn:
        upsert_bars(conn, "EURUSD", "1d", fx, source="test")
    config = TradeConfig(risk_file=risk_file(tmp_path), paper=EXACT, sizing={"strategy": "long_short"})
    desk = open_desk(engine, config, MomentumAdvisor(), currencies={"SPX": "EUR"})
    run_ = run_replay(desk, engine, START, END)
    assert run_.orders > 30 and run_.refusals == 0 and not run_.halted  # reconciled every cycle
    expected = _backtest(engine, Costs(commission_bps=3, slippage_bps=0))
    np.testing.assert_allclose(_equity(engine).to_numpy(), expected.to_numpy(), rtol=1e-6, atol=0)
    with engine.connect() as conn:
        rates = pd.read_sql(text("SELECT DISTINCT fx_rate FROM fills"), conn)["fx_rate"].tolist()
    assert rates == [1.25]
    (position,) = desk.oms.positions().values()
    assert position.avg_cost_base == pytest.approx(position.avg_cost * 1.25)


def test_a_stale_fx_rate_refuses_the_orders_of_a_foreign_symbol(engine: Engine, tmp_path: Path) -> None:
    """EURUSD stops a month before the replay: every order of the EUR-quoted SPX is refused with
    ``stale_fx`` (code and reason stored on the order) and nothing trades; with a limit that the
    month fits in, the same replay trades."""
    from storage.bars import upsert_bars

    days = pd.date_range("2014-11-01", "2014-12-01", freq="D", tz="UTC", name="ts")
    fx = pd.DataFrame({c: 1.25 for c in ("open", "high", "low", "close")} | {"volume": 1.0}, index=days)
    with engine.begin() as conn:
        upsert_bars(conn, "EURUSD", "1d", fx, source="test")
    end = START + pd.Timedelta(days=20)
    config = TradeConfig(risk_file=risk_file(tmp_path), paper=EXACT, sizing={"strategy": "long_short"})
    desk = open_desk(engine, config, MomentumAdvisor(), currencies={"SPX": "EUR"})
    refused = run_replay(desk, engine, START, end)
    with engine.connect() as conn:
        orders = list_orders(conn, "default")
    assert refused.refusals == len(orders) > 0
    assert {(o.status, o.reject_code) for o in orders} == {("rejected", "stale_fx")}
    assert "2014-12-02 00:00 UTC" in (orders[0].reject_reason or "")  # when the last EURUSD bar closed
    assert _equity(engine).nunique() == 1  # nothing traded

    lenient = tmp_path / "lenient.yaml"
    lenient.write_text(WIDE.format(drawdown=1.0) + "    max_fx_age_days: 60\n")
    config = TradeConfig(account="lenient", risk_file=lenient, paper=EXACT, sizing={"strategy": "long_short"})
    desk = open_desk(engine, config, MomentumAdvisor(), currencies={"SPX": "EUR"})
    traded = run_replay(desk, engine, START, end)
    assert traded.orders > 0 and traded.refusals == 0


def test_the_spread_is_the_whole_difference_from_the_backtest(engine: Engine, tmp_path: Path) -> None:
    paper = PaperCostsConfig(slippage_bps=0, spread_bps=10, fee_bps=3, volume_share=None)
    config = TradeConfig(risk_file=risk_file(tmp_path), paper=paper)
    run_replay(open_desk(engine, config, MomentumAdvisor()), engine, START, END)
    expected = _backtest(engine, Costs(commission_bps=3, slippage_bps=0), strategy="long_flat")
    with engine.connect() as conn:
        fills = pd.read_sql(text("SELECT quantity, price FROM fills"), conn)
    half_spread_paid = float((fills["quantity"] * fills["price"]).sum()) * (5e-4 / (1 + 5e-4))
    gap = float(expected.iloc[-1] - _equity(engine).iloc[-1])
    assert gap > 0
    # the half spread on every fill, plus the second-order effect of holding fewer units
    assert gap == pytest.approx(half_spread_paid, rel=0.1)


def test_a_loss_limit_halts_mid_replay_cancels_and_notifies(engine: Engine, tmp_path: Path) -> None:
    notes: list[tuple[str, dict[str, Any]]] = []
    config = TradeConfig(
        risk_file=risk_file(tmp_path, drawdown=0.02), paper=EXACT, sizing={"strategy": "long_short"}
    )
    desk = open_desk(engine, config, MomentumAdvisor(), notify=lambda kind, d: notes.append((kind, dict(d))))
    run_ = run_replay(desk, engine, START, END)
    assert run_.halted
    halts = [d for kind, d in notes if kind == "halt"]
    assert len(halts) == 1 and halts[0]["reason"].startswith("drawdown")
    halted_at = pd.Timestamp(halts[0]["ts"])
    equity = _equity(engine)
    assert equity.index[-1] == equity.index.max() and len(equity) == run_.cycles  # marking went on
    with engine.connect() as conn:
        orders = list_orders(conn, "default")
    assert orders and max(o.decided_at for o in orders if o.decided_at is not None) < halted_at
    assert not [o for o in orders if o.status in ("submitted", "accepted", "partially_filled")]
    assert any(kind == "fill" for kind, _ in notes)


def test_the_paper_brokers_saved_state_goes_on_like_the_original() -> None:
    costs = PaperCosts(slippage_bps=2, spread_bps=4, fee_bps=1, volume_share=0.5, latency_bars=2)
    stamps = pd.date_range("2024-03-04", periods=8, freq="D", tz="UTC")
    bars = [Bar(t, 100 + i, 103 + i, 98 + i, 101 + i, 40.0) for i, t in enumerate(stamps)]

    def request(cid: str, side: Side, qty: float, **kw: Any) -> OrderRequest:
        return OrderRequest(cid, "default", "SPY", side, qty, decided_at=stamps[0], **kw)

    def fresh() -> PaperBroker:
        broker = PaperBroker(costs, cash=10_000.0)
        broker.on_bar("SPY", bars[0])
        broker.submit(request("a", Side.BUY, 50))
        broker.submit(request("b", Side.SELL, 10, type=OrderType.LIMIT, limit_price=104.5))
        broker.on_bar("SPY", bars[1])
        broker.on_bar("SPY", bars[2])
        return broker

    original, saved = fresh(), fresh()
    restored = PaperBroker(costs, cash=0.0)
    restored.restore(saved.state())
    later_a = [f for b in bars[3:] for f in original.on_bar("SPY", b)]
    later_b = [f for b in bars[3:] for f in restored.on_bar("SPY", b)]
    assert later_a == later_b and later_a
    assert original.account() == restored.account()
    with pytest.raises(ValueError, match="account"):
        PaperBroker(costs, account="other").restore(saved.state())
    with pytest.raises(ValueError, match="not a saved paper broker state"):
        PaperBroker(costs).restore("{}")


def test_a_live_cycle_decides_on_the_last_stored_bar_once(engine: Engine, tmp_path: Path) -> None:
    config = TradeConfig(risk_file=risk_file(tmp_path), paper=EXACT, sizing={"max_weight": 0.5})
    now = pd.Timestamp("2019-01-02 15:00", tz="UTC")  # the next session, markets open
    first = run_once(open_desk(engine, config, MomentumAdvisor()), engine, now=now)
    assert first.cycles == 1 and first.last == pd.Timestamp("2018-12-31", tz="UTC")
    with engine.connect() as conn:
        orders = list_orders(conn, "default")
        targets = list_targets(conn, "default")
    # the last bar rose: long, half the account (max_weight), sized at the last close, sent now
    assert targets["weight"].tolist() == [0.5] and len(orders) == 1 and orders[0].status == "accepted"
    assert orders[0].quantity == pytest.approx(0.5 * 100_000 / (1 + 3e-4 * 0.5) / 2506.85, rel=1e-3)
    again = run_once(open_desk(engine, config, MomentumAdvisor()), engine, now=now)
    assert again.cycles == 0 and again.skipped == 1


def test_a_cycle_records_sends_and_acks_its_orders_in_one_transaction(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two symbols trading on the same bars: each cycle commits its fills with its mark, its
    orders with their sends and acks, and the cycle itself (three commits), a cycle's orders and a
    bar's fills going through the list operations' groups (one by one only when there is one),
    with the audit history of one change per transition."""
    from sqlalchemy import event

    from execution.oms import OrderManager
    from storage import list_audit

    engine = stored_market(settings, ("SPX", "GOOGL"))
    config = TradeConfig(
        risk_file=risk_file(tmp_path),
        paper=EXACT,
        symbols=("SPX", "GOOGL"),
        sizing={"strategy": "long_short"},
    )
    singles = {name: 0 for name in ("submit", "accept", "apply_fill")}
    for name in singles:
        method = getattr(OrderManager, name)

        def counted(
            self: OrderManager, *args: Any, _name: str = name, _method: Any = method, **kw: Any
        ) -> Any:
            singles[_name] += 1
            return _method(self, *args, **kw)

        monkeypatch.setattr(OrderManager, name, counted)
    commits: list[Any] = []
    listener = commits.append
    event.listen(engine, "commit", listener)
    desk = open_desk(engine, config, MomentumAdvisor())
    opened = len(commits)
    run_ = run_replay(desk, engine, START, START + pd.Timedelta(days=40))
    event.remove(engine, "commit", listener)

    assert run_.cycles > 20 and run_.orders > 20 and run_.refusals == 0
    assert len(commits) - opened == 3 * run_.cycles
    with engine.connect() as conn:
        orders = list_orders(conn, "default")
        fills = list_fills(conn, "default")
        audit = list_audit(conn)
    # one by one only where a cycle had one order, or a bar one fill (a group of one)
    per_cycle = pd.Series([o.decided_at for o in orders]).value_counts()
    per_bar = pd.Series([f.ts for f in fills]).value_counts()
    assert (per_cycle == 2).sum() > 5 and (per_bar == 2).sum() > 5
    assert singles == {
        "submit": int((per_cycle == 1).sum()),
        "accept": int((per_cycle == 1).sum()),
        "apply_fill": int((per_bar == 1).sum()),
    }
    assert {o.symbol for o in orders} == {"SPX", "GOOGL"} and all(o.status == "filled" for o in orders[:-2])
    steps: dict[str, list[tuple[str, Any]]] = {}
    for entry in audit:
        if entry.subject.startswith("order:"):
            steps.setdefault(entry.subject, []).append((entry.action, entry.details.get("to")))
    filled = [o for o in orders if o.status == "filled"]
    assert filled and all(
        steps[f"order:{o.id}"]
        == [("order.created", "new"), ("order.transition", "submitted"), ("order.transition", "accepted"),
            ("order.transition", "filled"), ("order.fill", None)]
        for o in filled
    )  # fmt: skip
