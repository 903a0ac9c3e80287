"""The paper desk: one cycle of served decisions -> risk -> OMS -> paper broker -> books, and the
restart that loses nothing.

A cycle at decision bar ``ts`` (the open time of the last bar its decisions see):

1. **Resync** the OMS with the paper broker: an order the OMS holds open that the broker does not
   know (it was recorded just before a crash) is sent (keyed by ``client_order_id``; the broker
   answers the same ack for the same key); a ``SUBMITTED`` order the broker took is marked
   ``ACCEPTED``.
2. **Bars to the broker**: each symbol's bars after the broker's last one, up to ``ts``, one bar
   time after another; each bar time's fills are applied to the OMS together
   (:meth:`~execution.oms.OrderManager.apply_fills`, idempotent by ``broker_fill_id``) before the
   next bars, bracket children sent,
   cancelled OCO siblings cancelled at the broker; each fill notified. Then an order the broker
   still holds but the OMS has closed (a cancel recorded just before a crash, after these bars'
   fills) is cancelled at the broker.
3. **Mark** the account at the closes of ``ts`` (``equity_history``, in the transaction that books
   step 2's fills); when the daily loss or the
   drawdown limit is crossed (:func:`execution.risk.should_halt`) the account is halted, its open
   orders cancelled, and a ``halt`` notified.
4. **Decide** (unless halted or there is no quote to size at): ask the :class:`Advisor` (the REST
   service) for every symbol, turn the answers into target weights and the changed targets into
   quantities (:mod:`execution.sizing`), cancel the symbol's older open orders, run each order
   through :func:`execution.risk.check` (a refusal is stored on the order with its reason code and
   notified), then record the orders in the OMS, send them to the paper broker and record its
   acks, in one OMS transaction (:meth:`~execution.oms.OrderManager.submit_many`,
   :meth:`~execution.oms.OrderManager.accept_many`).
5. **Reconcile** the OMS's positions and cash with the broker's
   (:func:`execution.portfolio.reconcile_and_halt`): a mismatch halts and notifies.
6. **Finish**: the targets, the paper broker's state and the cycle row, in one transaction
   (:func:`storage.desk.finish_cycle`). The last finished cycle is the account's cursor.

**Crash safety.** Every OMS change is written in a transaction with its audit rows, keyed for
idempotency (``client_order_id`` for orders, ``broker_fill_id`` for fills); client order ids are
derived from the account's decision (``<ts>-<symbol>``), so deciding again sends nothing twice.
The paper broker's state is saved only with a finished cycle: it belongs to the cycle like the
OMS's uncommitted rows, which is why step 2 books a bar's fills and sends the bracket children
they place in one transaction, and step 4 records, sends and acknowledges in one (a crash before
the commit forgets the sends with the rows; one after it finds the orders in the OMS and resyncs
them, step 1). A live venue's sends cannot be undone: a live desk would record and commit before
sending, and record the acks in a second transaction. After a ``kill -9`` anywhere in cycle ``k``,
the restarted desk restores the broker as of cycle ``k - 1``, resyncs (step 1) and runs cycle ``k``
again: the broker makes the same fills under the same ids (the OMS counts each once), the
decisions are the same, and the orders recorded before the crash are found, not duplicated.

**Timing.** Decisions are made on closed bars only and sized at ``quotes``: in a replay the
opens of the next bars, where the orders then fill (the backtest's next-open execution); live,
the last closes. ``now`` is the time the orders are sent (for the session, stale-data and rate
checks).
"""

from __future__ import annotations

import bisect
import hashlib
import logging
import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import pandas as pd
from sqlalchemy import Engine

from config.risk import RiskConfig
from config.trading import TradeConfig
from execution.broker import Bar, BrokerFill, OrderAck, PaperBroker, PaperCosts
from execution.oms import FillOutcome, Order, OrderManager, TradingHalted
from execution.orders import FINAL_STATES, OrderRequest, OrderStatus, Side
from execution.portfolio import reconcile_and_halt
from execution.risk import OpenOrder, RiskState, check, orders_over_limits, should_halt
from execution.sizing import confidence, forecast_weights, rebalance_quantities, vol_scale
from market.calendars import get_calendar
from storage.desk import Target, finish_cycle, last_cycle, load_venue, targets_at
from storage.execution import EquityPoint, list_equity

__all__ = ["Advice", "Advisor", "CycleReport", "Desk", "Notify", "client_order_id"]

Notify = Callable[[str, Mapping[str, Any]], object]
"""``notify(kind, details)``: kind is ``fill``, ``refusal``, ``halt`` or ``error``."""

_RATE_WINDOW = pd.Timedelta(seconds=60)
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Advice:
    """One symbol's answer from a served model: who answered (``model``, ``version``) and what:
    a forecaster's ``forecast`` (log return) and ``prob_up``, or an allocator's ``weight``."""

    symbol: str
    model: str
    version: str
    forecast: float | None = None
    prob_up: float | None = None
    weight: float | None = None


class Advisor(Protocol):
    """Where the desk's decisions come from: the REST service, over HTTP (never a model loaded
    in-process: the served model is what trades)."""

    @property
    def history(self) -> int:
        """Raw bars to send per symbol (the served model's ``min_bars``)."""
        ...

    def advise(self, bars: Mapping[str, pd.DataFrame], weights: Mapping[str, float]) -> list[Advice]:
        """Answers for every symbol of ``bars`` (each its last ``history`` closed bars), given
        the account's current ``weights``."""
        ...

    def registered_at(self, model: str, version: str) -> pd.Timestamp | None:
        """When the served ``model`` ``version`` was registered (for the stale-model check)."""
        ...


@dataclass(frozen=True)
class CycleReport:
    """What one cycle did: its decision bar, fills booked, orders sent and refused, the equity it
    marked, whether the account is halted, and ``skipped`` when the cycle had run already."""

    ts: pd.Timestamp
    fills: int = 0
    orders: int = 0
    refusals: int = 0
    equity: float = math.nan
    halted: bool = False
    skipped: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)


def client_order_id(ts: pd.Timestamp, symbol: str) -> str:
    """The idempotency key of the desk's order for ``symbol`` decided at bar ``ts``:
    ``<yyyymmddTHHMM>-<symbol>``, shortened with a digest when it would pass 64 characters."""
    key = f"{pd.Timestamp(ts):%Y%m%dT%H%M}-{symbol}"
    if len(key) <= 64:
        return key
    return f"{key[:47]}-{hashlib.blake2b(key.encode(), digest_size=8).hexdigest()}"


_OHLCV = ("open", "high", "low", "close", "volume")


class Desk:
    """One paper account's desk: its OMS, its paper broker (restored from the last finished
    cycle), its risk limits, the advisor it asks and where it notifies.

    Args:
        engine: the FKS database.
        config: the desk (account, universe, sizing, paper costs, initial cash).
        risk: the account's limits.
        advisor: the served models (:class:`Advisor`).
        calendars: each symbol's calendar name; timeframes: each symbol's bar timeframe.
        currencies: each symbol's quote currency (``config/assets.yaml``); a symbol not named is
            in the account's currency. A foreign symbol's fills are booked in the account's
            currency at the stored FX rate of their time (:mod:`execution.oms`), and the desk
            sizes and checks risk on its prices converted at the decision bar's rate.
        notify: called on fills, refusals, halts and errors (never raises into the desk).
    """

    def __init__(
        self,
        engine: Engine,
        config: TradeConfig,
        risk: RiskConfig,
        advisor: Advisor,
        *,
        calendars: Mapping[str, str],
        timeframes: Mapping[str, str],
        notify: Notify | None = None,
        actor: str = "desk",
        currencies: Mapping[str, str] | None = None,
    ) -> None:
        if risk.account != config.account:
            raise ValueError(
                f"risk limits are account {risk.account!r}'s, the desk trades {config.account!r}"
            )
        missing = [s for s in config.symbols if s not in calendars or s not in timeframes]
        if missing:
            raise ValueError(f"no calendar or timeframe for {', '.join(missing)}; register the assets first")
        self.config = config
        self.risk = risk
        self.advisor = advisor
        self._engine = engine
        self._calendars = dict(calendars)
        self._timeframes = dict(timeframes)
        self._notify_cb = notify
        self.oms = OrderManager(
            engine,
            config.account,
            initial_cash=config.initial_cash,
            base_currency=config.base_currency,
            actor=actor,
            currencies=currencies,
        )
        p = config.paper
        costs = PaperCosts(p.slippage_bps, p.spread_bps, p.fee_bps, p.min_fee, p.volume_share, p.latency_bars)
        foreign = any(self.oms.currency(s) != self.oms.base_currency for s in config.symbols)
        self.broker = PaperBroker(
            costs,
            account=config.account,
            cash=config.initial_cash,
            calendars=self._calendars,
            fx=self.oms.fx_rate if foreign else None,
        )
        with engine.connect() as conn:
            saved = load_venue(conn, config.account)
            cursor = last_cycle(conn, config.account)
            self._previous = (
                {}
                if cursor is None
                else {s: t.weight for s, t in targets_at(conn, config.account, cursor.ts).items()}
            )
            marks = list_equity(conn, config.account)
        if saved is not None:
            self.broker.restore(saved[1])
        self.cursor: pd.Timestamp | None = None if cursor is None else cursor.ts
        self._peak = float(marks["equity"].max()) if len(marks) else config.initial_cash
        # marks in time order (a cycle marks after every earlier one): ts list for bisect, equities
        self._mark_ts: list[pd.Timestamp] = list(marks.index)
        self._mark_eq: list[float] = [float(e) for e in marks["equity"]]
        self._sent: deque[pd.Timestamp] = deque()
        self._registrations: dict[tuple[str, str], pd.Timestamp] = {}

    # -- one cycle ------------------------------------------------------------------------------

    def cycle(
        self,
        ts: pd.Timestamp,
        bars: Mapping[str, pd.DataFrame],
        quotes: Mapping[str, float] | None,
        now: pd.Timestamp,
    ) -> CycleReport:
        """Run the cycle at decision bar ``ts`` (see the module documentation).

        ``bars``: per symbol, its canonical bars up to ``ts`` (at least the advisor's history);
        ``quotes``: the prices orders are sized at (None: decide nothing this cycle); ``now``:
        when orders are sent. A cycle at or before the cursor is skipped.
        """
        ts = pd.Timestamp(ts)
        if self.cursor is not None and ts <= self.cursor:
            return CycleReport(ts, skipped=True)
        with self.oms.session():  # the cycle's OMS transactions on one connection
            self._resync(ts)
            closes = {s: float(b["close"].iloc[-1]) for s, b in bars.items() if len(b)}
            fills, point = self._feed(ts, bars, closes)
            self._cancel_closed()
            halted = self._check_losses(point.equity, ts, now, self._in_base(closes, ts))
            orders = refusals = 0
            targets: list[Target] = []
            if not halted and quotes is not None:
                targets, orders, refusals = self._decide(ts, bars, quotes, now)
            if not reconcile_and_halt(self.oms, self.broker, notify=self._notify).ok:
                halted = True
            with self._engine.begin() as conn:
                finish_cycle(
                    conn,
                    self.config.account,
                    ts,
                    targets,
                    equity=point.equity,
                    orders=orders,
                    refusals=refusals,
                    venue_state=self.broker.state(),
                )
            self.cursor = ts
            self._previous.update({t.symbol: t.weight for t in targets})
            return CycleReport(ts, len(fills), orders, refusals, point.equity, halted or self.halted())

    # -- the steps ------------------------------------------------------------------------------

    def _resync(self, ts: pd.Timestamp) -> None:
        """Send the OMS's open orders the broker does not know (recorded just before a crash);
        mark ``SUBMITTED`` ones the broker took as accepted."""
        known = {o.order_id for o in self.broker.orders()}
        for order in self.oms.open_orders():
            if order.client_order_id not in known:
                self._send(order, ts)
            elif order.status is OrderStatus.SUBMITTED:
                self.oms.accept(order.id)

    def _cancel_closed(self) -> None:
        """Cancel at the broker the orders the OMS has closed (a cancel recorded just before a
        crash). Run after the cycle's bars: the fills they brought came before that cancel."""
        for broker_order in self.broker.open_orders():
            mine = self.oms.order_by_client_id(broker_order.order_id)
            if mine is None or mine.status in FINAL_STATES:
                self.broker.cancel(broker_order.order_id)

    def _send(self, order: Order, ts: pd.Timestamp) -> Order:
        """Send an OMS order to the broker, decided at ``ts`` at the earliest, and record the ack."""
        return self._record_ack(order, self._submit(order, ts))

    def _submit(self, order: Order, ts: pd.Timestamp) -> OrderAck:
        """Send an OMS order to the broker, decided at ``ts`` at the earliest."""
        decided = ts if order.decided_at is None else max(pd.Timestamp(order.decided_at), ts)
        return self.broker.submit(order.broker_request, decided_at=decided)

    def _record_ack(self, order: Order, ack: OrderAck) -> Order:
        """The broker's answer to ``order`` into the OMS (accepted, or rejected with its reason)."""
        if not ack.accepted:
            return self.oms.reject(order.id, "broker", ack.reason)
        if order.status is OrderStatus.SUBMITTED:
            return self.oms.accept(order.id)
        return order

    def _feed(
        self, ts: pd.Timestamp, bars: Mapping[str, pd.DataFrame], closes: Mapping[str, float]
    ) -> tuple[list[BrokerFill], EquityPoint]:
        """The cycle's new bars to the paper broker, its fills booked and the account marked at
        ``closes``, all in one OMS batch (one transaction: a crash before its commit books none
        of them, and the re-run cycle replays them under the same ids). Bracket children are
        sent to the paper broker inside the batch: its state is saved only with a finished
        cycle, so a crash forgets both."""
        made: list[tuple[BrokerFill, bool]] = []
        steps: dict[pd.Timestamp, list[tuple[str, Bar]]] = {}  # bar time -> the symbols' bars then
        for symbol in self.config.symbols:
            frame = bars.get(symbol)
            if frame is None or not len(frame):
                continue
            last = self.broker.last_bar_ts(symbol)
            new = frame.loc[frame.index <= ts]
            if last is not None:
                new = new.loc[new.index > last]
            rows = zip(*(new[c].to_numpy(dtype="float64").tolist() for c in _OHLCV), strict=True)
            for stamp, (o, h, lo, c, v) in zip(new.index, rows, strict=True):
                steps.setdefault(stamp, []).append((symbol, Bar(stamp, o, h, lo, c, v)))
        with self.oms.batch():
            for stamp in sorted(steps):  # each bar time's fills booked together, before the next bars
                fills = [fill for symbol, bar in steps[stamp] for fill in self.broker.on_bar(symbol, bar)]
                outcomes = self.oms.apply_fills([(fill, fill.broker_fill_id) for fill in fills])
                for fill, outcome in zip(fills, outcomes, strict=True):
                    self._after_fill(fill, outcome)
                    made.append((fill, outcome.duplicate))
            point = self.oms.mark_to_market(closes, ts)
        for fill, duplicate in made:  # told once booked
            if not duplicate:
                self._notify_fill(fill)
        return [fill for fill, _ in made], point

    def _after_fill(self, fill: BrokerFill, outcome: FillOutcome) -> None:
        """Send the bracket children ``fill`` placed when it was booked, cancel the OCO siblings
        it cancelled."""
        for child in outcome.created:
            self._send(child, fill.ts)
        for sibling in outcome.cancelled:
            self.broker.cancel(sibling.client_order_id)

    def _notify_fill(self, fill: BrokerFill) -> None:
        self._notify(
            "fill",
            {
                "account": self.config.account,
                "symbol": fill.symbol,
                "side": fill.side.value,
                "quantity": fill.quantity,
                "price": fill.price,
                "fee": fill.fee,
                "ts": fill.ts.isoformat(),
                "order": fill.order_id,
            },
        )

    def halted(self) -> bool:
        """Whether the account's kill switch is on."""
        return self.oms.trading_state().halted

    def calendar(self, symbol: str) -> str:
        """The calendar name of ``symbol``."""
        return self._calendars[symbol]

    def timeframe(self, symbol: str) -> str:
        """The bar timeframe of ``symbol``."""
        return self._timeframes[symbol]

    def _check_losses(
        self, equity: float, ts: pd.Timestamp, now: pd.Timestamp, closes: Mapping[str, float]
    ) -> bool:
        if self._mark_ts and self._mark_ts[-1] == ts:  # the same bar marked again (a re-run cycle)
            self._mark_eq[-1] = equity
        else:
            self._mark_ts.append(ts)
            self._mark_eq.append(equity)
        self._peak = max(self._peak, equity)
        if self.halted():
            return True
        state = self._state(now, closes, day=ts)
        refusal = should_halt(state, self.risk)
        if refusal is None:
            return False
        reason = f"{refusal.code}: {refusal.reason}"
        self.kill(reason)
        self._notify("halt", {"account": self.config.account, "reason": reason, "ts": ts.isoformat()})
        return True

    def kill(self, reason: str) -> list[Order]:
        """The kill switch: halt the account, cancel its open orders here and at the broker."""
        _, cancelled = self.oms.kill(reason)
        for order in cancelled:
            self.broker.cancel(order.client_order_id)
        return cancelled

    def _in_base(self, prices: Mapping[str, float], ts: pd.Timestamp) -> dict[str, float]:
        """``prices`` (each symbol's quote currency) in the account's currency at ``ts``'s FX rate."""
        base = self.oms.base_currency
        return {
            s: p if self.oms.currency(s) == base else p * self.oms.fx_rate(s, ts) for s, p in prices.items()
        }

    def _start_of_day_equity(self, ts: pd.Timestamp) -> float:
        at = bisect.bisect_left(self._mark_ts, pd.Timestamp(ts).normalize())
        return self._mark_eq[at - 1] if at else self.config.initial_cash

    def _state(self, now: pd.Timestamp, prices: Mapping[str, float], *, day: pd.Timestamp) -> RiskState:
        """The book as risk sees it at ``now``; the daily loss counts from the start of ``day``
        (the decision bar's day)."""
        positions = {s: p.quantity for s, p in self.oms.positions().items() if p.quantity != 0}
        opened = tuple(
            OpenOrder(o.id, o.symbol, o.side, o.remaining) for o in self.oms.open_orders() if o.remaining > 0
        )
        while self._sent and self._sent[0] <= now - _RATE_WINDOW:
            self._sent.popleft()
        start = self._start_of_day_equity(day)
        return RiskState(
            now=now,
            cash=self.oms.cash(),
            start_of_day_equity=max(start, 1e-9),
            peak_equity=max(self._peak, 1e-9),
            positions=positions,
            prices=prices,
            open_orders=opened,
            recent_order_times=tuple(self._sent),
            last_bar_ts={s: t for s in self.config.symbols if (t := self.broker.last_bar_ts(s)) is not None},
            model_registered_at=self._registrations,
            fx_closed_at={s: q.closed_at for s in self.config.symbols if (q := self.oms.fx_quote(s, now))},
            halted=self.halted(),
        )

    def _decide(
        self,
        ts: pd.Timestamp,
        bars: Mapping[str, pd.DataFrame],
        quotes: Mapping[str, float],
        now: pd.Timestamp,
    ) -> tuple[list[Target], int, int]:
        history = self.advisor.history
        window = {s: bars[s].iloc[-history:] for s in self.config.symbols if s in bars and len(bars[s])}
        prices = self._in_base({s: float(quotes[s]) for s in window if s in quotes}, ts)
        positions = {s: p.quantity for s, p in self.oms.positions().items() if p.quantity != 0}
        last = self._in_base({s: float(b["close"].iloc[-1]) for s, b in bars.items() if len(b)}, ts)
        cash = self.oms.cash()
        equity = cash + sum(q * prices.get(s, last[s]) for s, q in positions.items())
        current = {s: q * prices[s] / equity for s, q in positions.items() if s in prices and equity > 0}
        advice = {a.symbol: a for a in self.advisor.advise(window, current)}
        weights = self._weights(advice, window)
        registrations = {
            (a.model, a.version): self.advisor.registered_at(a.model, a.version) for a in advice.values()
        }
        self._registrations = {k: v for k, v in registrations.items() if v is not None}
        quantities = rebalance_quantities(
            weights,
            self._previous,
            positions,
            cash,
            {**{s: last[s] for s in positions if s in last}, **prices},
            fee_rate=self.config.paper.fee_bps / 1e4,
            min_fee=self.config.paper.min_fee,
        )
        state = self._state(now, {**last, **prices}, day=ts)
        targets: list[Target] = []
        requests: list[OrderRequest] = []
        for symbol in sorted(weights):
            a = advice[symbol]
            qty = quantities.get(symbol, 0.0)
            cid = client_order_id(ts, symbol) if qty else None
            targets.append(
                Target(symbol, a.model, a.version, weights[symbol], a.forecast, a.prob_up, qty, cid)
            )
            if cid is None:
                continue
            for old in self.oms.open_orders(symbol):
                if old.client_order_id != cid:
                    self.broker.cancel(old.client_order_id)
                    self.oms.cancel(old.id, reason="replaced by a new target")
                    state = state.without_order(old.id)
            request = OrderRequest(
                client_order_id=cid,
                account=self.config.account,
                symbol=symbol,
                side=Side.BUY if qty > 0 else Side.SELL,
                quantity=abs(qty),
                model=a.model,
                model_version=a.version,
                confidence=1.0 if a.prob_up is None else confidence(a.prob_up),
                decided_at=ts,
            )
            requests.append(request)
        state, sent, refused = self._place(requests, state)
        for order_id in orders_over_limits(state, self.risk):
            order = self.oms.order(order_id)
            self.broker.cancel(order.client_order_id)
            self.oms.cancel(order.id, reason="no longer fits the exposure limits at the last prices")
        return targets, sent, refused

    def _weights(self, advice: Mapping[str, Advice], window: Mapping[str, pd.DataFrame]) -> dict[str, float]:
        if self.config.allocator is not None:
            return {s: float(a.weight or 0.0) for s, a in advice.items()}
        sizing = self.config.sizing
        scales = None
        if sizing.vol_target is not None:
            scales = {
                s: vol_scale(
                    window[s]["close"].to_numpy(),
                    target=sizing.vol_target,
                    window=sizing.vol_window,
                    bars_per_year=get_calendar(self._calendars[s]).bars_per_year(self._timeframes[s]),
                )
                for s in advice
            }
        forecasts = {
            s: (float(a.forecast), float(a.prob_up if a.prob_up is not None else 0.5))
            for s, a in advice.items()
            if a.forecast is not None
        }
        return forecast_weights(forecasts, sizing, universe=len(self.config.symbols), scales=scales)

    def _place(self, requests: list[OrderRequest], state: RiskState) -> tuple[RiskState, int, int]:
        """Risk-check the cycle's orders, then in one OMS batch record them (refused ones with
        their reason), send the submitted ones to the paper broker and record its answers: one
        transaction per cycle, every transition still written and audited. The paper broker's
        book belongs to the cycle (saved with it, restored from the last finished cycle after a
        crash), so a crash before the commit forgets the sends with the rows, and one after it is
        resynced (step 1). Returns the risk state with the open orders, and the numbers sent and
        refused. If the account was halted meanwhile (``fks halt`` from elsewhere), nothing is
        recorded or sent."""
        passed: list[OrderRequest] = []
        refusals: list[tuple[OrderRequest, str, str]] = []
        checked = state
        for request in requests:
            symbol = request.symbol
            decision = check(request, checked, self.risk, timeframe=self._timeframes[symbol],
                             calendar=self._calendars[symbol])  # fmt: skip
            if not decision.accepted:
                refusals.append((request, str(decision.code), decision.reason))
                continue
            passed.append(request)
            checked = checked.with_order(request.client_order_id, request)  # until it has its id
        try:
            with self.oms.batch():
                for request, code, reason in refusals:
                    self.oms.refuse(request, code, reason)
                placed = self.oms.submit_many(passed)
                answers = [
                    (
                        order,
                        self._submit(order, state.now if request.decided_at is None else request.decided_at),
                    )
                    for order, request in zip(placed, passed, strict=True)
                    if order.status is OrderStatus.SUBMITTED
                ]
                done = {o.id: o for o in placed}
                for order, ack in answers:
                    if not ack.accepted:
                        done[order.id] = self.oms.reject(order.id, "broker", ack.reason)
                accepted = self.oms.accept_many([order.id for order, ack in answers if ack.accepted])
                done.update((o.id, o) for o in accepted)
        except TradingHalted:
            return state, 0, 0
        for request, code, reason in refusals:
            self._notify(
                "refusal",
                {
                    "account": self.config.account,
                    "symbol": request.symbol,
                    "side": request.side.value,
                    "quantity": request.quantity,
                    "code": code,
                    "reason": reason,
                    "order": request.client_order_id,
                },
            )
        sent = 0
        for order, request in zip(placed, passed, strict=True):
            final = done[order.id]
            if final.is_open:
                state = state.with_order(order.id, request)
            self._sent.append(state.now)
            sent += int(final.status is not OrderStatus.REJECTED)
        return state, sent, len(refusals) + len(placed) - sent

    def _notify(self, kind: str, details: Mapping[str, Any]) -> None:
        if self._notify_cb is None:
            return
        try:
            self._notify_cb(kind, details)
        except Exception as exc:  # a notification never stops trading
            _log.warning("notification %s for account %s failed: %s", kind, self.config.account, exc)


def decision_time(calendar: str, ts: pd.Timestamp) -> pd.Timestamp:
    """When orders sized at the open of the bar at ``ts`` are sent: ``ts`` itself when a session of
    ``calendar`` is open then (intraday bars), else the open of the session ``ts`` starts (a ``1d``
    bar's ``ts`` is its date at 00:00 UTC)."""
    from execution.sessions import session_at, session_from

    cal = get_calendar(calendar)
    when = pd.Timestamp(ts)
    if session_at(cal, when) is not None:
        return when
    return max(when, session_from(cal, when).open)
