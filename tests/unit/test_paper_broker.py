"""execution.broker.PaperBroker: fills only on bars after the decision (plus latency), prices
hand-computed to the cent (slippage and half the spread against the trader, limits and stops on
the bar's high and low, gap-through opens), partial fills by volume share, IOC and DAY, stable
fill ids, idempotent submits and replays, and an account that is exactly the sum of its fills."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from execution.broker import Bar, Broker, BrokerFill, PaperBroker, PaperCosts
from execution.orders import OrderRequest, OrderStatus, OrderType, Side, TimeInForce

BUY, SELL = Side.BUY, Side.SELL
DAY0 = pd.Timestamp("2024-03-04", tz="UTC")
# slippage 5 bps + half of a 10 bps spread: market and stop fills move 10 bps against the trader
COSTS = PaperCosts(slippage_bps=5, spread_bps=10, fee_bps=0, min_fee=0, volume_share=None, latency_bars=1)


def day(n: int) -> pd.Timestamp:
    return DAY0 + pd.Timedelta(days=n)


def bar(ts: pd.Timestamp, o: float, h: float, lo: float, c: float, v: float = 1e6) -> Bar:
    return Bar(ts, o, h, lo, c, v)


def flat(ts: pd.Timestamp, price: float = 100.0, v: float = 1e6) -> Bar:
    return Bar(ts, price, price, price, price, v)


def request(cid: str, side: Side, quantity: float, **fields: object) -> OrderRequest:
    return OrderRequest(cid, "default", "AAA", side, quantity, **fields)  # type: ignore[arg-type]


def cents(x: float) -> float:
    return round(x, 2)


def priced(fills: list[BrokerFill]) -> list[tuple[str, float]]:
    return [(f.order_id, f.price) for f in fills]


def test_paper_broker_is_a_broker() -> None:
    assert isinstance(PaperBroker(), Broker)


def test_never_fills_on_the_decision_bar() -> None:
    broker = PaperBroker(COSTS)
    broker.on_bar("AAA", bar(day(0), 100, 101, 99, 100.5))
    broker.submit(request("m1", BUY, 10), decided_at=day(0))  # decided at day 0's close
    assert broker.on_bar("AAA", bar(day(0), 100, 101, 99, 100.5)) == []  # a replay of the decision bar
    fills = broker.on_bar("AAA", bar(day(1), 102, 103, 101, 102.5))
    assert [(f.ts, f.quantity, cents(f.price)) for f in fills] == [(day(1), 10, 102.10)]


def test_an_order_submitted_before_its_decision_bar_arrives_still_waits_for_the_next_bar() -> None:
    broker = PaperBroker(COSTS)
    broker.submit(request("m1", BUY, 10, decided_at=day(0)))  # decided_at from the request
    assert broker.on_bar("AAA", bar(day(0), 100, 101, 99, 100.5)) == []
    assert broker.order("m1").status is OrderStatus.ACCEPTED
    assert [f.ts for f in broker.on_bar("AAA", flat(day(1)))] == [day(1)]


def test_latency_of_whole_bars() -> None:
    broker = PaperBroker(PaperCosts(volume_share=None, latency_bars=3))
    broker.submit(request("m1", BUY, 1), decided_at=day(0))
    assert broker.on_bar("AAA", flat(day(1))) == []
    assert broker.on_bar("AAA", flat(day(2))) == []
    assert [f.ts for f in broker.on_bar("AAA", flat(day(3)))] == [day(3)]


def test_market_fill_prices_and_fees_to_the_cent() -> None:
    costs = PaperCosts(slippage_bps=5, spread_bps=10, fee_bps=10, min_fee=1.0, volume_share=None)
    broker = PaperBroker(costs, cash=10_000.0)
    broker.submit(request("b", BUY, 10), decided_at=day(0))
    broker.submit(request("s", SELL, 1), decided_at=day(0))
    buy, sell = broker.on_bar("AAA", bar(day(1), 100, 105, 95, 104))
    assert cents(buy.price) == 100.10 and buy.price == pytest.approx(100.10, abs=1e-9)  # 100 * 1.001
    assert cents(sell.price) == 99.90  # 100 * 0.999
    assert buy.fee == pytest.approx(1.001)  # 10 bps of 1001.00
    assert sell.fee == 1.0  # 10 bps of 99.90 is 0.0999: the minimum fee
    assert broker.account().cash == pytest.approx(10_000 - 1001.0 - 1.001 + 99.90 - 1.0)


def test_limit_orders_fill_on_the_low_and_high_at_the_better_of_open_and_limit() -> None:
    broker = PaperBroker(COSTS)
    broker.submit(request("lb", BUY, 1, type=OrderType.LIMIT, limit_price=95.0), decided_at=day(0))
    broker.submit(request("ls", SELL, 1, type=OrderType.LIMIT, limit_price=105.0), decided_at=day(0))
    assert broker.on_bar("AAA", bar(day(1), 100, 104.99, 95.01, 100)) == []  # neither touched
    fills = broker.on_bar("AAA", bar(day(2), 100, 105, 95, 100))  # both touched: at their limits
    assert {f.order_id: f.price for f in fills} == {"lb": 95.0, "ls": 105.0}
    # a gap through the limit fills at the (better) open, no slippage
    broker.submit(request("lb2", BUY, 1, type=OrderType.LIMIT, limit_price=95.0), decided_at=day(2))
    broker.submit(request("ls2", SELL, 1, type=OrderType.LIMIT, limit_price=105.0), decided_at=day(2))
    fills = broker.on_bar("AAA", bar(day(3), 90, 91, 89, 90))
    assert {f.order_id: f.price for f in fills} == {"lb2": 90.0}
    fills = broker.on_bar("AAA", bar(day(4), 110, 111, 109, 110))
    assert {f.order_id: f.price for f in fills} == {"ls2": 110.0}


def test_stop_orders_trigger_on_the_high_and_low_and_pay_like_market_orders() -> None:
    broker = PaperBroker(COSTS)
    broker.submit(request("sb", BUY, 1, type=OrderType.STOP, stop_price=110.0), decided_at=day(0))
    broker.submit(request("ss", SELL, 1, type=OrderType.STOP, stop_price=90.0), decided_at=day(0))
    assert broker.on_bar("AAA", bar(day(1), 100, 109.99, 90.01, 100)) == []
    fills = broker.on_bar("AAA", bar(day(2), 100, 111, 89, 100))
    # 110 * 1.001 and 90 * 0.999
    assert {f.order_id: cents(f.price) for f in fills} == {"sb": 110.11, "ss": 89.91}
    # a gap through the stop fills at the (worse) open
    broker.submit(request("sb2", BUY, 1, type=OrderType.STOP, stop_price=110.0), decided_at=day(2))
    broker.submit(request("ss2", SELL, 1, type=OrderType.STOP, stop_price=90.0), decided_at=day(2))
    fills = broker.on_bar("AAA", bar(day(3), 120, 121, 119, 120))
    assert {f.order_id: cents(f.price) for f in fills} == {"sb2": 120.12}
    fills = broker.on_bar("AAA", bar(day(4), 80, 81, 79, 80))
    assert {f.order_id: cents(f.price) for f in fills} == {"ss2": 79.92}


def test_stop_limit_triggers_then_acts_as_a_limit() -> None:
    broker = PaperBroker(COSTS)
    stop_limit = {"type": OrderType.STOP_LIMIT, "stop_price": 105.0, "limit_price": 106.0}
    broker.submit(request("a", BUY, 1, **stop_limit), decided_at=day(0))
    # triggered at 105, within the limit: fills at the trigger price, no slippage
    assert priced(broker.on_bar("AAA", bar(day(1), 100, 107, 99, 106))) == [("a", 105.0)]

    broker.submit(request("b", BUY, 1, **stop_limit), decided_at=day(1))
    # gaps through the stop above the limit and comes back to it: fills at the limit
    assert priced(broker.on_bar("AAA", bar(day(2), 108, 109, 105.5, 107))) == [("b", 106.0)]

    broker.submit(request("c", BUY, 1, **stop_limit), decided_at=day(2))
    assert broker.on_bar("AAA", bar(day(3), 108, 109, 107, 108)) == []  # triggered, never back to 106
    # from the trigger on it is a limit buy at 106: day 4 opens below it and fills at the open
    assert priced(broker.on_bar("AAA", bar(day(4), 100, 104, 99, 100.5))) == [("c", 100.0)]

    # a limit below the stop: after the trigger the bar's order of prices is unknown, so the
    # trigger bar fills nothing and the limit works from the next bar
    below = {"type": OrderType.STOP_LIMIT, "stop_price": 105.0, "limit_price": 103.0}
    broker.submit(request("d", BUY, 1, **below), decided_at=day(4))
    assert broker.on_bar("AAA", bar(day(5), 100, 106, 99, 104)) == []
    assert priced(broker.on_bar("AAA", bar(day(6), 104, 104.5, 102.5, 103))) == [("d", 103.0)]
    # and a stop-limit sell mirrors it
    sell = {"type": OrderType.STOP_LIMIT, "stop_price": 95.0, "limit_price": 94.0}
    broker.submit(request("e", SELL, 1, **sell), decided_at=day(6))
    assert priced(broker.on_bar("AAA", bar(day(7), 100, 100, 93, 94))) == [("e", 95.0)]


def test_partial_fills_by_volume_share_across_bars_oldest_order_first() -> None:
    broker = PaperBroker(PaperCosts(slippage_bps=0, spread_bps=0, fee_bps=0, volume_share=0.1))
    broker.submit(request("big", BUY, 120), decided_at=day(0))
    broker.submit(request("late", BUY, 30), decided_at=day(0))
    first = broker.on_bar("AAA", flat(day(1), v=500))  # 50 units of this bar for the account
    assert [(f.order_id, f.quantity) for f in first] == [("big", 50)]
    assert broker.order("big").status is OrderStatus.PARTIALLY_FILLED and broker.order("big").remaining == 70
    second = broker.on_bar("AAA", flat(day(2), v=800))  # 80 units
    assert [(f.order_id, f.quantity) for f in second] == [("big", 70), ("late", 10)]
    assert broker.order("big").status is OrderStatus.FILLED
    assert broker.on_bar("AAA", flat(day(3), v=0)) == []  # no volume, no fill
    third = broker.on_bar("AAA", flat(day(4), v=1000))
    assert [(f.order_id, f.quantity) for f in third] == [("late", 20)]
    assert [f.broker_fill_id for f in broker.fills()] == ["big-1", "big-2", "late-1", "late-2"]
    assert broker.order("big").filled_quantity == 120 and broker.open_orders() == []


def test_ioc_rest_is_cancelled_after_the_first_eligible_bar() -> None:
    broker = PaperBroker(PaperCosts(volume_share=0.1, latency_bars=2))
    broker.submit(request("ioc", BUY, 120, time_in_force=TimeInForce.IOC), decided_at=day(0))
    assert broker.on_bar("AAA", flat(day(1), v=500)) == []  # still in latency
    fills = broker.on_bar("AAA", flat(day(2), v=500))
    assert [f.quantity for f in fills] == [50]
    order = broker.order("ioc")
    assert order.status is OrderStatus.CANCELLED and order.filled_quantity == 50 and order.remaining == 0
    assert broker.on_bar("AAA", flat(day(3), v=500)) == []
    # an IOC limit that does not touch its first eligible bar is cancelled unfilled
    ioc_limit = {"type": OrderType.LIMIT, "limit_price": 90.0, "time_in_force": TimeInForce.IOC}
    broker.submit(request("ioc2", BUY, 1, **ioc_limit), decided_at=day(3))
    broker.on_bar("AAA", flat(day(4)))
    broker.on_bar("AAA", flat(day(5)))
    assert broker.order("ioc2").status is OrderStatus.CANCELLED and broker.order("ioc2").filled_quantity == 0
    assert broker.on_bar("AAA", flat(day(6), 89)) == []


def test_day_orders_expire_at_the_close_of_their_session() -> None:
    # XNYS hourly bars open at 14:30 ... 20:30 UTC in March before daylight saving time
    broker = PaperBroker(PaperCosts(volume_share=None), calendars={"AAA": "XNYS"})
    day_limit = {"type": OrderType.LIMIT, "limit_price": 90.0, "time_in_force": TimeInForce.DAY}
    tue = pd.Timestamp("2024-03-05", tz="UTC")
    broker.submit(request("d1", BUY, 1, **day_limit), decided_at=tue + pd.Timedelta(hours=19, minutes=30))
    broker.submit(request("d2", BUY, 1, **day_limit), decided_at=tue + pd.Timedelta(hours=20, minutes=30))
    broker.on_bar("AAA", flat(tue + pd.Timedelta(hours=20, minutes=30)))  # d1's first eligible bar
    assert broker.order("d1").status is OrderStatus.ACCEPTED
    wed_open = tue + pd.Timedelta(days=1, hours=14, minutes=30)
    broker.on_bar("AAA", flat(wed_open))
    assert broker.order("d1").status is OrderStatus.EXPIRED  # Tuesday's session is over
    # d2 was decided on Tuesday's last bar: it works Wednesday's whole session
    assert broker.order("d2").status is OrderStatus.ACCEPTED
    broker.on_bar("AAA", flat(wed_open + pd.Timedelta(hours=6)))  # 20:30, the last bar
    assert broker.order("d2").status is OrderStatus.ACCEPTED
    assert broker.expire(wed_open + pd.Timedelta(hours=6, minutes=29)) == []
    assert broker.expire(wed_open + pd.Timedelta(hours=6, minutes=30)) == ["d2"]  # 21:00 UTC close
    assert broker.order("d2").status is OrderStatus.EXPIRED
    assert broker.fills() == []


def test_day_orders_on_daily_bars_live_for_one_session() -> None:
    broker = PaperBroker(PaperCosts(volume_share=None), calendars={"AAA": "XNYS"})
    day_limit = {"type": OrderType.LIMIT, "limit_price": 90.0, "time_in_force": TimeInForce.DAY}
    broker.submit(request("d", BUY, 1, **day_limit), decided_at=day(0))  # Monday's bar
    broker.on_bar("AAA", flat(day(1)))  # Tuesday: not touched
    assert broker.order("d").status is OrderStatus.ACCEPTED
    broker.on_bar("AAA", flat(day(2), 89))  # Wednesday would fill, but the order has expired
    assert broker.order("d").status is OrderStatus.EXPIRED and broker.fills() == []


def test_cancel_and_rejections() -> None:
    broker = PaperBroker(COSTS)
    broker.submit(request("c", BUY, 1), decided_at=day(0))
    assert broker.cancel("c") is True and broker.cancel("c") is False and broker.cancel("nope") is False
    assert broker.on_bar("AAA", flat(day(1))) == [] and broker.order("c").status is OrderStatus.CANCELLED
    bracket = broker.submit(request("br", BUY, 1, take_profit=110.0, stop_loss=90.0), decided_at=day(1))
    assert bracket.status is OrderStatus.REJECTED and "children" in bracket.reason
    other = broker.submit(OrderRequest("x", "other", "AAA", BUY, 1), decided_at=day(1))
    assert other.status is OrderStatus.REJECTED and "'other'" in other.reason
    undated = broker.submit(request("u", BUY, 1))
    assert undated.status is OrderStatus.REJECTED and "decided_at" in undated.reason
    assert [o.order_id for o in broker.orders()] == ["c"]


def _session(broker: PaperBroker) -> list[BrokerFill]:
    broker.submit(request("a", BUY, 70), decided_at=day(0))
    broker.submit(request("b", SELL, 40, type=OrderType.LIMIT, limit_price=101.0), decided_at=day(1))
    broker.submit(request("c", BUY, 15, type=OrderType.STOP, stop_price=103.0), decided_at=day(1))
    broker.on_bar("AAA", bar(day(1), 100, 101, 99, 100.5, 300))
    broker.on_bar("AAA", bar(day(2), 100.5, 102, 100, 101.5, 400))
    broker.on_bar("AAA", bar(day(3), 101.5, 104, 101, 103.5, 500))
    broker.on_bar("AAA", bar(day(4), 103.5, 104, 103, 103.0, 500))
    return broker.fills()


def test_fills_and_their_ids_are_stable_and_replays_change_nothing() -> None:
    costs = PaperCosts(slippage_bps=3, spread_bps=4, fee_bps=2, min_fee=0.5, volume_share=0.1)
    first = _session(PaperBroker(costs, cash=50_000.0))
    broker = PaperBroker(costs, cash=50_000.0)
    second = _session(broker)
    assert first == second and len(first) >= 5
    seen: dict[str, int] = {}
    for fill in first:  # each order's fills are numbered 1, 2, ... in the order they happen
        seen[fill.order_id] = seen.get(fill.order_id, 0) + 1
        assert fill.broker_fill_id == f"{fill.order_id}-{seen[fill.order_id]}"
    assert len({f.broker_fill_id for f in first}) == len(first)
    # submitting again and replaying bars changes nothing
    ack = broker.submit(request("a", BUY, 70), decided_at=day(0))
    assert ack.order_id == "a" and ack.status is OrderStatus.ACCEPTED
    assert broker.on_bar("AAA", bar(day(2), 100.5, 102, 100, 101.5, 400)) == []
    assert broker.fills() == second
    assert broker.fills(since=day(3)) == [f for f in second if f.ts >= day(3)]


def test_account_is_the_sum_of_its_fills() -> None:
    costs = PaperCosts(slippage_bps=3, spread_bps=4, fee_bps=2, min_fee=0.5, volume_share=0.1)
    broker = PaperBroker(costs, cash=50_000.0)
    fills = _session(broker)
    account = broker.account()
    assert account.cash == pytest.approx(50_000.0 + sum(f.cash_flow for f in fills), abs=1e-9)
    assert dict(account.positions) == {"AAA": pytest.approx(sum(f.signed_quantity for f in fills))}
    assert account.fees == pytest.approx(sum(f.fee for f in fills))
    assert account.equity == pytest.approx(account.cash + account.positions["AAA"] * 103.0)
    for order in broker.orders():
        mine = [f for f in fills if f.order_id == order.order_id]
        assert order.filled_quantity == pytest.approx(sum(f.quantity for f in mine))
        if mine:
            vwap = sum(f.quantity * f.price for f in mine) / sum(f.quantity for f in mine)
            assert order.average_price == pytest.approx(vwap)


def test_frames_feed_bar_by_bar() -> None:
    index = pd.DatetimeIndex([day(0), day(1), day(2)], name="ts")
    frame = pd.DataFrame(
        {"open": [100.0, 101.0, 102.0], "high": [101.0] * 3, "low": [99.0] * 3, "close": [100.0] * 3,
         "volume": [1e6] * 3},
        index=index,
    )  # fmt: skip
    broker = PaperBroker(COSTS)
    broker.submit(request("m", BUY, 1), decided_at=day(0))
    fills = broker.on_bars("AAA", frame)
    assert [(f.ts, cents(f.price)) for f in fills] == [(day(1), 101.10)]


def test_costs_and_bars_are_validated() -> None:
    with pytest.raises(ValueError, match="latency_bars"):
        PaperCosts(latency_bars=0)
    with pytest.raises(ValueError, match="volume_share"):
        PaperCosts(volume_share=0.0)
    with pytest.raises(ValueError, match="slippage_bps"):
        PaperCosts(slippage_bps=-1)
    with pytest.raises(ValueError, match="below low"):
        Bar(day(0), 100, 99, 101, 100, 1)
    with pytest.raises(ValueError, match="volume"):
        Bar(day(0), 100, 101, 99, 100, math.nan)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("open", 0.0, "open must be a positive price"),
        ("high", math.inf, "high must be a positive price"),
        ("low", -1.0, "low must be a positive price"),
        ("close", math.nan, "close must be a positive price"),
        ("volume", -1.0, "volume must be >= 0"),
        ("volume", math.inf, "volume must be >= 0"),
        ("high", 98.0, "high 98.0 is below low 99"),
    ],
)
def test_a_bar_names_what_is_wrong_with_it(field: str, value: float, message: str) -> None:
    fields = {"open": 100.0, "high": 101.0, "low": 99.0, "close": 100.0, "volume": 1.0, field: value}
    with pytest.raises(ValueError, match=message):
        Bar(day(0), **fields)
    good = Bar(pd.Timestamp("2024-01-02 00:00", tz="Europe/Paris"), 100, 101, 99, 100, 0)
    assert good.ts == pd.Timestamp("2024-01-01 23:00", tz="UTC") and str(good.ts.tz) == "UTC"
