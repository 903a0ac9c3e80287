"""execution.broker.PaperBroker's per-symbol order queues: many symbols, volume caps, cancels,
IOC/DAY and saves/restores in between give the same fills as one broker fed the same way
without restores, oldest order (by seq) first."""

from __future__ import annotations

import random

import pandas as pd

from execution.broker import Bar, BrokerFill, PaperBroker, PaperCosts
from execution.orders import OrderRequest, OrderStatus, OrderType, Side, TimeInForce

DAY0 = pd.Timestamp("2024-03-04", tz="UTC")
COSTS = PaperCosts(slippage_bps=5, spread_bps=10, fee_bps=1, min_fee=0, volume_share=0.5, latency_bars=1)
SYMBOLS = ["AAA", "BBB", "CCC"]


def _drive(restore_every: int | None) -> tuple[list[BrokerFill], list[tuple[str, OrderStatus, float]], str]:
    rng = random.Random(11)
    broker = PaperBroker(COSTS, cash=1e6)
    fills: list[BrokerFill] = []
    n = 0
    for step in range(60):
        ts = DAY0 + pd.Timedelta(hours=step)
        for _ in range(rng.randrange(0, 4)):
            n += 1
            kind = rng.choice([OrderType.MARKET, OrderType.LIMIT])
            tif = rng.choice([TimeInForce.GTC, TimeInForce.IOC, TimeInForce.DAY])
            fields: dict[str, object] = {"type": kind, "time_in_force": tif}
            if kind is OrderType.LIMIT:
                fields["limit_price"] = 100 + rng.uniform(-2, 2)
            req = OrderRequest(
                f"o{n}",
                "default",
                rng.choice(SYMBOLS),
                rng.choice([Side.BUY, Side.SELL]),
                float(rng.randrange(1, 40)),
                **fields,  # type: ignore[arg-type]
            )
            broker.submit(req, decided_at=ts - pd.Timedelta(minutes=1))
        if n and rng.random() < 0.2:
            broker.cancel(f"o{rng.randrange(1, n + 1)}")
        if restore_every and step % restore_every == 0:
            saved = broker.state()
            broker = PaperBroker(COSTS, cash=0.0)
            broker.restore(saved)
        for symbol in rng.sample(SYMBOLS, k=rng.randrange(1, 4)):
            price = 100 + rng.uniform(-2, 2)
            bar = Bar(ts, price, price + 1, price - 1, price, float(rng.randrange(10, 60)))
            fills += broker.on_bar(symbol, bar)
    opened = [(o.order_id, o.status, o.filled_quantity) for o in broker.open_orders()]
    return fills, opened, broker.state()


def test_restores_in_between_change_no_fill() -> None:
    plain = _drive(None)
    assert len(plain[0]) > 20
    assert _drive(4) == plain
    assert _drive(1) == plain


def test_restored_orders_fill_oldest_seq_first_under_a_volume_cap() -> None:
    broker = PaperBroker(PaperCosts(fee_bps=0, min_fee=0, volume_share=0.1, latency_bars=1))
    for cid in ["a", "b", "c"]:
        broker.submit(OrderRequest(cid, "default", "AAA", Side.BUY, 10.0), decided_at=DAY0)
    broker.cancel("b")
    again = PaperBroker(PaperCosts(fee_bps=0, min_fee=0, volume_share=0.1, latency_bars=1))
    again.restore(broker.state())
    again.submit(OrderRequest("d", "default", "AAA", Side.BUY, 10.0), decided_at=DAY0)
    got = []
    for k in range(1, 5):
        bar = Bar(DAY0 + pd.Timedelta(days=k), 100, 100, 100, 100, 100.0)
        got += [(f.order_id, f.quantity) for f in again.on_bar("AAA", bar)]
    assert got == [("a", 10.0), ("c", 10.0), ("d", 10.0)]
    assert again.open_orders() == []
