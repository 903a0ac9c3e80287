"""execution.risk and config.risk: every refusal code at its limit (at the limit accepted, one unit
over refused), the calendar and staleness guards, the kill switch, the shipped config, and a
property test: whatever orders, prices, partial fills and cancels come, an account that sends only
what :func:`execution.risk.check` accepts never has a fill breach a limit."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from config.risk import DEFAULT_RISK_FILE, RiskConfig, load_risk_config, load_risk_configs
from execution.orders import Fill, OrderRequest, OrderType, Side
from execution.risk import (
    OpenOrder,
    RiskCode,
    RiskState,
    breaches,
    check,
    exposure,
    orders_over_limits,
    should_halt,
)

NOW = pd.Timestamp("2024-03-05 15:00", tz="UTC")  # a Tuesday, 10:00 in New York: XNYS is open
LIMITS = RiskConfig(
    max_position_notional=10_000,
    max_gross_exposure=25_000,
    max_net_exposure=15_000,
    max_order_notional=5_000,
    max_orders_per_minute=3,
    max_daily_loss=0.03,
    max_drawdown=0.10,
    min_confidence=0.6,
    max_missing_bars=1,
    max_model_age_days=30,
)
PRICES = {"AAA": 100.0, "BBB": 50.0, "CCC": 10.0}


def state(**changes: object) -> RiskState:
    """An account worth 100000 at NOW with up-to-date hourly bars; ``changes`` override fields
    (without ``cash``, the cash makes the equity 100000 whatever the positions)."""
    held = changes.get("positions", {})
    marks = changes.get("prices", PRICES)
    values: dict[str, object] = {
        "now": NOW,
        "cash": 100_000.0 - sum(q * marks.get(s, 0.0) for s, q in held.items()),  # type: ignore[attr-defined,index]
        "start_of_day_equity": 100_000.0,
        "peak_equity": 100_000.0,
        "prices": PRICES,
        "last_bar_ts": {s: NOW - pd.Timedelta(hours=1) for s in PRICES},
    }
    values.update(changes)
    return RiskState(**values)  # type: ignore[arg-type]


_ids = iter(range(10**9))


def order(symbol: str, side: Side, quantity: float, **fields: object) -> OrderRequest:
    return OrderRequest(f"o{next(_ids)}", "default", symbol, side, quantity, **fields)  # type: ignore[arg-type]


def decide(request: OrderRequest, st_: RiskState, limits: RiskConfig = LIMITS, *, tf: str = "1h",
           calendar: str = "24/7") -> RiskCode | None:  # fmt: skip
    decision = check(request, st_, limits, timeframe=tf, calendar=calendar)
    assert decision.accepted == (decision.code is None)
    if not decision.accepted:
        assert decision.reason, "a refusal must say why"
    return decision.code


BUY, SELL = Side.BUY, Side.SELL


# -- each code at its limit ------------------------------------------------------------------------


def test_a_plain_order_is_accepted() -> None:
    decision = check(order("AAA", BUY, 10), state(), LIMITS, timeframe="1h", calendar="XNYS")
    assert decision.accepted and decision.code is None


def test_max_notional_at_the_limit_and_one_unit_over() -> None:
    assert decide(order("AAA", BUY, 50), state()) is None  # 50 x 100 = 5000
    assert decide(order("AAA", BUY, 51), state()) is RiskCode.MAX_NOTIONAL
    assert decide(order("AAA", SELL, 51), state()) is RiskCode.MAX_NOTIONAL
    # the reference price is the limit, else the stop, not the last price
    limit = {"type": OrderType.LIMIT, "limit_price": 125.0}
    assert decide(order("AAA", BUY, 40, **limit), state()) is None
    assert decide(order("AAA", BUY, 41, **limit), state()) is RiskCode.MAX_NOTIONAL
    stop = {"type": OrderType.STOP, "stop_price": 125.0}
    assert decide(order("AAA", BUY, 41, **stop), state()) is RiskCode.MAX_NOTIONAL


def test_max_position_counts_the_position_and_open_orders_as_filled() -> None:
    held = state(positions={"AAA": 60.0})
    assert decide(order("AAA", BUY, 40), held) is None  # 100 units = 10000
    assert decide(order("AAA", BUY, 41), held) is RiskCode.MAX_POSITION
    pending = state(positions={"AAA": 60.0}, open_orders=(OpenOrder("p", "AAA", BUY, 30.0),))
    assert decide(order("AAA", BUY, 10), pending) is None
    assert decide(order("AAA", BUY, 11), pending) is RiskCode.MAX_POSITION
    short = state(positions={"AAA": -60.0}, open_orders=(OpenOrder("p", "AAA", SELL, 30.0),))
    assert decide(order("AAA", SELL, 10), short) is None
    assert decide(order("AAA", SELL, 11), short) is RiskCode.MAX_POSITION
    # an open sell does not make room for a buy: it may be cancelled
    both = state(positions={"AAA": 60.0}, open_orders=(OpenOrder("s", "AAA", SELL, 30.0),))
    assert decide(order("AAA", BUY, 41), both) is RiskCode.MAX_POSITION


def test_per_symbol_position_limit_overrides_the_default() -> None:
    limits = LIMITS.model_copy(update={"symbol_max_position_notional": {"BBB": 2_000.0}})
    assert decide(order("BBB", BUY, 40), state(), limits) is None  # 40 x 50 = 2000
    assert decide(order("BBB", BUY, 41), state(), limits) is RiskCode.MAX_POSITION
    assert decide(order("AAA", BUY, 41), state(), limits) is None


def test_max_gross_at_the_limit_and_one_unit_over() -> None:
    # gross 10000 + 10000 + 1000 = 21000; the limit is 25000
    held = state(positions={"AAA": 100.0, "BBB": -200.0, "CCC": 100.0})
    assert decide(order("CCC", BUY, 400), held) is None
    assert decide(order("CCC", BUY, 401), held) is RiskCode.MAX_GROSS
    # an open sell of BBB deepens its short side: 500 more of gross
    pending = state(
        positions={"AAA": 100.0, "BBB": -200.0, "CCC": 100.0},
        open_orders=(OpenOrder("p", "BBB", SELL, 10.0),),
    )
    assert decide(order("CCC", BUY, 350), pending) is None
    assert decide(order("CCC", BUY, 351), pending) is RiskCode.MAX_GROSS


def test_max_net_at_the_limit_and_one_unit_over() -> None:
    held = state(positions={"AAA": 100.0, "CCC": 100.0})  # net 11000; the limit is 15000
    assert decide(order("CCC", BUY, 400), held) is None
    assert decide(order("CCC", BUY, 401), held) is RiskCode.MAX_NET
    pending = state(positions={"AAA": 100.0, "CCC": 100.0}, open_orders=(OpenOrder("p", "CCC", BUY, 100.0),))
    assert decide(order("CCC", BUY, 300), pending) is None
    assert decide(order("CCC", BUY, 301), pending) is RiskCode.MAX_NET
    shorts = state(positions={"AAA": -100.0, "CCC": -100.0})
    assert decide(order("CCC", SELL, 400), shorts) is None
    assert decide(order("CCC", SELL, 401), shorts) is RiskCode.MAX_NET


def test_a_book_over_its_limits_can_always_be_reduced_but_not_grown() -> None:
    # prices moved: AAA is now worth 15000 (position limit 10000) and the gross is 30000 (25000)
    over = state(positions={"AAA": 100.0, "BBB": -300.0}, prices={**PRICES, "AAA": 150.0})
    assert breaches(over.positions, over.prices, LIMITS) == (RiskCode.MAX_POSITION, RiskCode.MAX_GROSS)
    wide = LIMITS.model_copy(update={"max_order_notional": 100_000.0})
    assert decide(order("AAA", SELL, 100), over, wide) is None
    assert decide(order("BBB", BUY, 300), over, wide) is None
    assert decide(order("AAA", BUY, 1), over, wide) is RiskCode.MAX_POSITION
    assert decide(order("CCC", BUY, 1), over, wide) is RiskCode.MAX_GROSS
    # buying more than the short flips it: no longer a reduction, refused while gross is over
    assert decide(order("BBB", BUY, 301), over, wide) is RiskCode.MAX_GROSS
    # a reduction counts the other open orders of its side: 250 + 60 would flip the short
    pending = state(
        positions={"AAA": 100.0, "BBB": -300.0},
        prices={**PRICES, "AAA": 150.0},
        open_orders=(OpenOrder("p", "BBB", BUY, 250.0),),
    )
    assert decide(order("BBB", BUY, 50), pending, wide) is None
    assert decide(order("BBB", BUY, 51), pending, wide) is RiskCode.MAX_GROSS


def test_rate_limit_counts_orders_of_the_last_60_seconds() -> None:
    two = (NOW - pd.Timedelta(seconds=59), NOW - pd.Timedelta(seconds=1))
    assert decide(order("AAA", BUY, 1), state(recent_order_times=two)) is None
    three = (*two, NOW)
    assert decide(order("AAA", BUY, 1), state(recent_order_times=three)) is RiskCode.RATE_LIMIT
    old = (NOW - pd.Timedelta(seconds=60), *two)  # exactly 60 s ago is outside the window
    assert decide(order("AAA", BUY, 1), state(recent_order_times=old)) is None


def test_daily_loss_at_the_limit_and_beyond() -> None:
    at = state(cash=97_000.0)  # 3% down on the day
    assert decide(order("AAA", BUY, 1), at) is None
    assert should_halt(at, LIMITS) is None
    beyond = state(cash=96_999.0)
    assert decide(order("AAA", BUY, 1), beyond) is RiskCode.DAILY_LOSS
    halt = should_halt(beyond, LIMITS)
    assert halt is not None and halt.code is RiskCode.DAILY_LOSS and "3.0010%" in halt.reason
    # a reduction still goes through: 10 AAA held, equity 96000
    holding = state(cash=95_000.0, positions={"AAA": 10.0})
    assert decide(order("AAA", SELL, 10), holding) is None
    assert decide(order("AAA", SELL, 11), holding) is RiskCode.DAILY_LOSS


def test_drawdown_at_the_limit_and_beyond() -> None:
    at = state(cash=99_000.0, start_of_day_equity=99_000.0, peak_equity=110_000.0)  # 10% off the peak
    assert decide(order("AAA", BUY, 1), at) is None
    beyond = state(cash=98_999.0, start_of_day_equity=99_000.0, peak_equity=110_000.0)
    assert decide(order("AAA", BUY, 1), beyond) is RiskCode.DRAWDOWN
    halt = should_halt(beyond, LIMITS)
    assert halt is not None and halt.code is RiskCode.DRAWDOWN


def test_low_confidence_only_for_model_orders() -> None:
    registered = state(model_registered_at={("fks-forecaster", "3"): NOW - pd.Timedelta(days=1)})
    model = {"model": "fks-forecaster", "model_version": "3"}
    assert decide(order("AAA", BUY, 1, confidence=0.6, **model), registered) is None
    assert decide(order("AAA", BUY, 1, confidence=0.59, **model), registered) is RiskCode.LOW_CONFIDENCE
    assert decide(order("AAA", BUY, 1, **model), registered) is RiskCode.LOW_CONFIDENCE
    assert decide(order("AAA", BUY, 1), registered) is None  # an operator's order carries no model
    off = LIMITS.model_copy(update={"min_confidence": 0.0})
    assert decide(order("AAA", BUY, 1, **model), registered, off) is None


def test_stale_model_at_the_age_limit() -> None:
    model = {"model": "fks-forecaster", "model_version": "3", "confidence": 0.9}
    at = state(model_registered_at={("fks-forecaster", "3"): NOW - pd.Timedelta(days=30)})
    assert decide(order("AAA", BUY, 1, **model), at) is None
    older = state(model_registered_at={("fks-forecaster", "3"): NOW - pd.Timedelta(days=30, seconds=1)})
    assert decide(order("AAA", BUY, 1, **model), older) is RiskCode.STALE_MODEL
    other_version = state(model_registered_at={("fks-forecaster", "2"): NOW})
    assert decide(order("AAA", BUY, 1, **model), other_version) is RiskCode.STALE_MODEL


def test_stale_fx_at_the_age_limit_and_only_for_foreign_symbols() -> None:
    limit = pd.Timedelta(days=LIMITS.max_fx_age_days)
    at_limit = state(fx_closed_at={"AAA": NOW - limit})
    assert decide(order("AAA", BUY, 1), at_limit) is None
    older = state(fx_closed_at={"AAA": NOW - limit - pd.Timedelta(seconds=1)})
    assert decide(order("AAA", BUY, 1), older) is RiskCode.STALE_FX
    assert decide(order("BBB", BUY, 1), older) is None  # BBB is in the account's currency
    stricter = LIMITS.model_copy(update={"max_fx_age_days": 0.5})
    day_old = state(fx_closed_at={"AAA": NOW - pd.Timedelta(days=1)})
    assert decide(order("AAA", BUY, 1), day_old, stricter) is RiskCode.STALE_FX


def test_stale_data_counts_missing_completed_bars() -> None:
    two_hours = state(last_bar_ts={"AAA": NOW - pd.Timedelta(hours=2)})  # the 14:00 bar is missing
    assert decide(order("AAA", BUY, 1), two_hours) is None
    three_hours = state(last_bar_ts={"AAA": NOW - pd.Timedelta(hours=3)})  # 13:00 and 14:00 missing
    assert decide(order("AAA", BUY, 1), three_hours) is RiskCode.STALE_DATA
    assert decide(order("AAA", BUY, 1), state(last_bar_ts={})) is RiskCode.STALE_DATA
    assert decide(order("DDD", BUY, 1), state()) is RiskCode.STALE_DATA  # no price


def test_stale_data_follows_the_calendar_over_a_weekend() -> None:
    monday = pd.Timestamp("2024-03-04 14:45", tz="UTC")  # 09:45 in New York
    friday_last = pd.Timestamp("2024-03-01 20:30", tz="UTC")  # the last 1h bar of Friday's session
    fresh = state(now=monday, last_bar_ts={"AAA": friday_last})
    assert decide(order("AAA", BUY, 1), fresh, calendar="XNYS") is None
    # on 24/7 the same gap is 65 missing hours
    assert decide(order("AAA", BUY, 1), fresh, calendar="24/7") is RiskCode.STALE_DATA
    thursday_last = pd.Timestamp("2024-02-29 20:30", tz="UTC")  # Friday's 7 bars are missing
    stale = state(now=monday, last_bar_ts={"AAA": thursday_last})
    assert decide(order("AAA", BUY, 1), stale, calendar="XNYS") is RiskCode.STALE_DATA


def test_market_closed_uses_the_calendar() -> None:
    saturday = pd.Timestamp("2024-03-02 15:00", tz="UTC")
    weekend = state(now=saturday, last_bar_ts={"AAA": pd.Timestamp("2024-03-01 20:30", tz="UTC")})
    assert decide(order("AAA", BUY, 1), weekend, calendar="XNYS") is RiskCode.MARKET_CLOSED
    assert decide(order("AAA", BUY, 1), weekend, calendar="24/5") is RiskCode.MARKET_CLOSED
    crypto = state(now=saturday, last_bar_ts={"AAA": saturday - pd.Timedelta(hours=1)})
    assert decide(order("AAA", BUY, 1), crypto, calendar="24/7") is None
    anytime = LIMITS.model_copy(update={"trade_only_in_session": False})
    assert decide(order("AAA", BUY, 1), weekend, anytime, calendar="XNYS") is None
    before_open = state(now=pd.Timestamp("2024-03-05 14:29", tz="UTC"))  # 09:29 in New York
    assert decide(order("AAA", BUY, 1), before_open, calendar="XNYS") is RiskCode.MARKET_CLOSED
    at_open = state(now=pd.Timestamp("2024-03-05 14:30", tz="UTC"))
    assert decide(order("AAA", BUY, 1), at_open, calendar="XNYS") is None
    july_4th = state(now=pd.Timestamp("2024-07-04 15:00", tz="UTC"))
    assert decide(order("AAA", BUY, 1), july_4th, calendar="XNYS") is RiskCode.MARKET_CLOSED


def test_halted_blocks_every_order_reductions_included() -> None:
    halted = state(positions={"AAA": 10.0}, halted=True, halt_reason="operator: fat finger")
    decision = check(order("AAA", SELL, 10), halted, LIMITS, timeframe="1h", calendar="24/7")
    assert decision.code is RiskCode.HALTED and "fat finger" in decision.reason
    assert decide(order("AAA", BUY, 1), halted) is RiskCode.HALTED


def test_orders_for_another_account_are_an_error() -> None:
    other = OrderRequest("x1", "other", "AAA", BUY, 1)
    with pytest.raises(ValueError, match="account 'other'"):
        check(other, state(), LIMITS, timeframe="1h", calendar="24/7")


def test_state_needs_a_price_for_every_symbol_held_or_ordered() -> None:
    with pytest.raises(ValueError, match="no price for DDD"):
        state(positions={"DDD": 1.0})
    with pytest.raises(ValueError, match="no price for EEE"):
        state(open_orders=(OpenOrder("p", "EEE", BUY, 1.0),))


def test_orders_over_limits_names_what_no_longer_fits_after_a_move() -> None:
    book = state(
        positions={"AAA": 50.0},
        open_orders=(
            OpenOrder("keep-sell", "AAA", SELL, 20.0),
            OpenOrder("buy-1", "AAA", BUY, 30.0),
            OpenOrder("buy-2", "AAA", BUY, 20.0),
        ),
    )
    assert orders_over_limits(book, LIMITS) == ()  # 100 units at 100: at the limit
    moved = book.with_prices({"AAA": 125.0})  # 100 units would be 12500
    assert orders_over_limits(moved, LIMITS) == ("buy-2",)  # 80 units = 10000 still fit


def test_state_projection_follows_fills_and_cancels() -> None:
    request = order("AAA", BUY, 10)
    book = state().with_order("a", request)
    assert book.recent_order_times == (NOW,) and book.open_orders == (OpenOrder("a", "AAA", BUY, 10.0),)
    book = book.with_fill(Fill("a", "AAA", BUY, 4.0, 101.0, 1.0, NOW))
    assert book.positions["AAA"] == 4.0 and book.cash == 100_000.0 - 404.0 - 1.0
    assert book.open_orders == (OpenOrder("a", "AAA", BUY, 6.0),)
    assert book.equity == pytest.approx(100_000.0 - 405.0 + 400.0)
    assert book.without_order("a").open_orders == ()
    with pytest.raises(ValueError, match="overfills"):
        book.with_fill(Fill("a", "AAA", BUY, 7.0, 101.0, 0.0, NOW))


# -- the config file ---------------------------------------------------------------------------------


def test_the_shipped_config_loads_and_documents_every_limit() -> None:
    limits = load_risk_config()
    assert limits.account == "default" and limits.trade_only_in_session
    text = DEFAULT_RISK_FILE.read_text(encoding="utf-8")
    for name in RiskConfig.model_fields:
        if name != "account":
            assert f"{name}:" in text, f"config/risk.yaml does not set {name}"
    for code in RiskCode:
        assert code.value in text, f"config/risk.yaml does not document the code {code.value}"


def test_accounts_inherit_default_and_errors_name_the_key(tmp_path: Path) -> None:
    base = DEFAULT_RISK_FILE.read_text(encoding="utf-8")
    file = tmp_path / "risk.yaml"
    file.write_text(base + "  bold:\n    max_gross_exposure: 200000\n", encoding="utf-8")
    configs = load_risk_configs(file)
    assert configs["bold"].max_gross_exposure == 200_000 and configs["bold"].account == "bold"
    assert configs["bold"].max_position_notional == configs["default"].max_position_notional
    with pytest.raises(ValueError, match=r"no risk limits for account 'nope'; accounts: bold, default"):
        load_risk_config(file, "nope")

    file.write_text(base + "  bold:\n    max_gross_exposure: -1\n", encoding="utf-8")
    with pytest.raises(
        ValueError, match=r"accounts\.bold\.max_gross_exposure: Input should be greater than 0"
    ):
        load_risk_config(file, "default")
    file.write_text(base + "  bold:\n    max_gross: 5\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"accounts\.bold\.max_gross: Extra inputs are not permitted"):
        load_risk_config(file)
    file.write_text(base.replace("max_daily_loss: 0.03", "max_daily_loss: 3"), encoding="utf-8")
    with pytest.raises(ValueError, match=r"accounts\.default\.max_daily_loss: Input should be less than"):
        load_risk_config(file)
    file.write_text("version: 1\naccounts:\n  paper: {}\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"accounts\.default is missing"):
        load_risk_config(file)
    with pytest.raises(ValueError, match="not found"):
        load_risk_config(tmp_path / "absent.yaml")


def test_config_is_frozen() -> None:
    with pytest.raises(ValueError):
        LIMITS.max_gross_exposure = 1.0  # type: ignore[misc]


# -- the property: no fill ever breaches a limit ---------------------------------------------------

PROPERTY_LIMITS = RiskConfig(
    max_position_notional=1_000,
    symbol_max_position_notional={"CCC": 400},
    max_gross_exposure=1_500,
    max_net_exposure=900,
    max_order_notional=1_200,
    max_orders_per_minute=10**9,
    max_daily_loss=1.0,
    max_drawdown=1.0,
    max_model_age_days=1,
    trade_only_in_session=False,
)
SYMBOLS = ("AAA", "BBB", "CCC")
TOL = 1e-6

prices_st = st.floats(min_value=1.0, max_value=200.0, allow_nan=False)
submit_st = st.tuples(
    st.just("order"),
    st.sampled_from(SYMBOLS),
    st.sampled_from([BUY, SELL]),
    st.floats(min_value=1.0, max_value=1_300.0, allow_nan=False),  # notional at the last price
    st.sampled_from([OrderType.MARKET, OrderType.LIMIT]),
)
to_limit_st = st.tuples(st.just("to_limit"), st.sampled_from(SYMBOLS), st.sampled_from([BUY, SELL]))
fill_st = st.tuples(
    st.just("fill"),
    st.integers(min_value=0, max_value=50),
    st.one_of(st.just(1.0), st.floats(min_value=0.01, max_value=1.0, allow_nan=False)),
)
cancel_st = st.tuples(st.just("cancel"), st.integers(min_value=0, max_value=50))
price_st = st.tuples(st.just("price"), st.sampled_from(SYMBOLS), prices_st)


def _measures(book: RiskState) -> dict[str, tuple[float, float]]:
    """Each limit's current value and the limit."""
    now = exposure(book.positions, book.prices)
    out = {f"position {s}": (now.positions.get(s, 0.0), PROPERTY_LIMITS.position_limit(s)) for s in SYMBOLS}
    out["gross"] = (now.gross, PROPERTY_LIMITS.max_gross_exposure)
    out["net"] = (abs(now.net), PROPERTY_LIMITS.max_net_exposure)
    return out


def _headroom(book: RiskState, symbol: str, side: Side) -> float:
    """Units that take the symbol's worst case exactly to its position limit (a boundary case)."""
    price = book.prices[symbol]
    pos = book.positions.get(symbol, 0.0)
    same = sum(o.remaining for o in book.open_orders if o.symbol == symbol and o.side is side)
    extreme = pos + same if side is BUY else -(pos - same)
    return PROPERTY_LIMITS.position_limit(symbol) / price - max(extreme, 0.0)


def _run(ops: list[tuple], initial_prices: dict[str, float], strict: bool) -> None:
    """Apply ``ops`` to a book that sends only what ``check`` accepts; after every fill no limit
    may be above ``max(limit, its value before the fill)`` (above the limit at all, when
    ``strict``: prices never move)."""
    book = RiskState(
        now=NOW,
        cash=1_000_000.0,
        start_of_day_equity=1_000_000.0,
        peak_equity=1_000_000.0,
        prices=initial_prices,
        last_bar_ts=dict.fromkeys(SYMBOLS, NOW),
    )
    sent = 0
    for op in ops:
        kind = op[0]
        if kind == "price":
            book = book.with_prices({op[1]: op[2]})
            for order_id in orders_over_limits(book, PROPERTY_LIMITS):
                book = book.without_order(order_id)
        elif kind in ("order", "to_limit"):
            if kind == "order":
                _, symbol, side, notional, type_ = op
                quantity = notional / book.prices[symbol]
            else:
                _, symbol, side = op
                quantity, type_ = _headroom(book, symbol, side), OrderType.MARKET
                if quantity <= 1e-9:
                    continue
            price = book.prices[symbol]
            extra = {"limit_price": price * 0.99} if type_ is OrderType.LIMIT else {}
            request = OrderRequest(f"q{sent}", "default", symbol, side, quantity, type=type_, **extra)
            decision = check(request, book, PROPERTY_LIMITS, timeframe="1h", calendar="24/7")
            if decision.accepted:
                ref = extra.get("limit_price", price)
                assert quantity * ref <= PROPERTY_LIMITS.max_order_notional * (1 + TOL)
                book = book.with_order(f"q{sent}", request)
                sent += 1
        elif kind == "cancel" and book.open_orders:
            book = book.without_order(book.open_orders[op[1] % len(book.open_orders)].order_id)
        elif kind == "fill" and book.open_orders:
            target = book.open_orders[op[1] % len(book.open_orders)]
            quantity = target.remaining * op[2]
            before = _measures(book)
            fill = Fill(
                target.order_id, target.symbol, target.side, quantity, book.prices[target.symbol], 0.0, NOW
            )
            book = book.with_fill(fill)
            for name, (value, limit) in _measures(book).items():
                bound = limit if strict else max(limit, before[name][0])
                assert value <= bound * (1 + TOL) + 1e-9, (
                    f"{name} = {value:.6f} after filling {quantity:g} of {target}, above {bound:.6f}"
                )


initial_prices_st = st.fixed_dictionaries({s: prices_st for s in SYMBOLS})
PROPERTY_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY_SETTINGS
@given(
    initial_prices_st,
    st.lists(st.one_of(submit_st, to_limit_st, fill_st, fill_st, cancel_st), min_size=15, max_size=60),
)
def test_no_fill_breaches_a_limit_at_steady_prices(prices: dict[str, float], ops: list[tuple]) -> None:
    _run(ops, prices, strict=True)


@PROPERTY_SETTINGS
@given(
    initial_prices_st,
    st.lists(
        st.one_of(submit_st, to_limit_st, fill_st, fill_st, cancel_st, price_st), min_size=15, max_size=80
    ),
)
def test_no_fill_adds_to_a_breach_when_prices_move(prices: dict[str, float], ops: list[tuple]) -> None:
    _run(ops, prices, strict=False)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example([("AAA", BUY, 30, False)] * 4)  # the fourth buy passes the position limit
@given(
    st.lists(
        st.tuples(st.sampled_from(sorted(PRICES)), st.sampled_from([BUY, SELL]), st.integers(1, 50),
                  st.booleans()),
        min_size=1, max_size=12,
    )
)  # fmt: skip
def test_a_state_grown_order_by_order_decides_as_one_built_at_once(
    steps: list[tuple[str, Side, int, bool]],
) -> None:
    """``with_order`` widens the worst case a checked state has computed instead of rebuilding
    it, and ``without_order`` drops it: every decision equals that of a state built afresh with
    the same open orders (the cached worst case is never stale)."""
    limits = LIMITS.model_copy(update={"max_orders_per_minute": 1_000})  # the exposure limits decide
    grown = state(positions={"AAA": 20.0, "BBB": -40.0})
    opened: list[OpenOrder] = []
    for k, (symbol, side, quantity, cancel_first) in enumerate(steps):
        if cancel_first and opened:
            gone = opened.pop(0)
            grown = grown.without_order(gone.order_id)
        request = order(symbol, side, float(quantity))
        fresh = state(
            positions={"AAA": 20.0, "BBB": -40.0}, open_orders=tuple(opened),
            recent_order_times=grown.recent_order_times,
        )  # fmt: skip
        code = decide(request, grown, limits)
        assert code == decide(request, fresh, limits)
        if code is None:  # as the desk does: only an order risk passed is sent
            grown = grown.with_order(f"x{k}", request)
            opened.append(OpenOrder(f"x{k}", symbol, side, request.quantity))
