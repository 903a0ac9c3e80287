"""CoinMarketCap: the latest listings and quotes, for the market overview.

Requests go to ``FKS_COINMARKETCAP_BASE_URL`` with the key (``FKS_COINMARKETCAP_API_KEY``) in
the ``X-CMC_PRO_API_KEY`` header, never in a URL:

- ``GET /v1/cryptocurrency/listings/latest?start=1&limit=N&convert=USD`` -> :meth:`listings`;
- ``GET /v2/cryptocurrency/quotes/latest?symbol=BTC,ETH&convert=USD`` -> :meth:`quotes`.

Every answer is ``{"status": {"error_code", "error_message", "credit_count", ...}, "data": ...}``;
each call is charged the ``credit_count`` it reports (the monthly credit budget of
``providers.yaml`` counts those). Error codes: 1001/1002 (key invalid or missing) ->
``AuthError``; 1008/1011 (minute or IP rate limit) -> ``RateLimited(60 s)``; 1009/1010 (daily or
monthly credits used up) -> ``RateLimited`` until the next UTC day or month, which the manager
treats as "fail over"; 1005/1006/1007 (endpoint or key not authorized for the plan) ->
``NotSupported``.

Historical OHLCV needs a paid plan, so :meth:`fetch_bars` refuses with ``NotSupported`` without
sending a request.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import pandas as pd

from market.bars import Timeframe
from providers.base import AuthError, BadResponse, NotSupported, ProviderError, RateLimited
from providers.http import redact
from providers.online import OnlineProvider
from storage.market_quotes import QUOTE_COLUMNS

PAID_PLAN_MESSAGE = (
    "coinmarketcap: historical OHLCV needs a paid CoinMarketCap plan (Hobbyist or above); the free "
    "Basic plan offers latest listings and quotes only (`fks market overview`). Take bars from "
    "another provider (config/providers.yaml priority)"
)


class CoinMarketCapProvider(OnlineProvider):
    """Latest crypto listings and quotes from CoinMarketCap (needs ``FKS_COINMARKETCAP_API_KEY``)."""

    name: ClassVar[str] = "coinmarketcap"
    timeframes: ClassVar[tuple[Timeframe, ...]] = ()
    needs_key: ClassVar[bool] = True

    def fetch_bars(
        self,
        symbol: str,
        timeframe: Timeframe | str,
        start: pd.Timestamp | None = None,
        end: pd.Timestamp | None = None,
    ) -> pd.DataFrame:
        """Always raises ``NotSupported`` naming the plan that has historical bars; sends nothing."""
        raise NotSupported(PAID_PLAN_MESSAGE)

    def listings(self, limit: int = 100, convert: str = "USD") -> pd.DataFrame:
        """The top ``limit`` cryptocurrencies by market cap, priced in ``convert``.

        Returns:
            One row per coin, in CoinMarketCap's rank order, with the columns of
            :data:`QUOTE_COLUMNS` (``last_updated`` a UTC timestamp).

        Raises:
            ValueError: ``limit`` outside 1..5000.
            AuthError, RateLimited, NotSupported, BadResponse, Unavailable: see the module docstring.
        """
        if not 1 <= limit <= 5000:
            raise ValueError(f"limit must be between 1 and 5000, not {limit}")
        data = self._get(
            "/v1/cryptocurrency/listings/latest", {"start": 1, "limit": limit, "convert": convert.upper()}
        )
        if not isinstance(data, list):
            raise BadResponse("coinmarketcap: listings 'data' is not a list")
        return _frame([_row(entry, convert) for entry in data])

    def quotes(self, symbols: Sequence[str], convert: str = "USD") -> pd.DataFrame:
        """The latest quotes of ``symbols`` (``BTC``, ``ETH``), priced in ``convert``.

        A symbol that several coins share is answered by the best-ranked one.

        Raises:
            ValueError: no symbols.
            NotSupported: a symbol CoinMarketCap does not know.
            AuthError, RateLimited, BadResponse, Unavailable: see the module docstring.
        """
        wanted = [s.strip().upper() for s in symbols if s.strip()]
        if not wanted:
            raise ValueError("name at least one symbol (BTC, ETH, ...)")
        data = self._get(
            "/v2/cryptocurrency/quotes/latest", {"symbol": ",".join(wanted), "convert": convert.upper()}
        )
        if not isinstance(data, dict):
            raise BadResponse("coinmarketcap: quotes 'data' is not an object")
        rows = []
        for symbol in wanted:
            entries = data.get(symbol)
            if isinstance(entries, dict):  # the v1 shape: one coin per symbol
                entries = [entries]
            if not entries:
                raise NotSupported(f"coinmarketcap: no quote for {symbol}")
            if not isinstance(entries, list):
                raise BadResponse(f"coinmarketcap: quote of {symbol} is not a list")
            rows.append(_row(min(entries, key=_rank_key), convert))
        return _frame(rows)

    def _get(self, path: str, params: dict[str, Any]) -> Any:
        body = self.client.get_json(
            path,
            params,
            headers={"X-CMC_PRO_API_KEY": self.key()},
            credits=_credits,
            check=self._check,
            on_error=self._on_error,
        )
        if not isinstance(body, dict) or "data" not in body:
            raise BadResponse("coinmarketcap: the answer has no 'data'")
        return body["data"]

    def _check(self, body: Any) -> None:
        error = classify_status(body, self.wall_clock())
        if error is not None:
            raise type(error)(redact(str(error), self.client.secrets), **_retry(error))

    def _on_error(self, status: int, body: Any) -> ProviderError | None:
        return classify_status(body, self.wall_clock())


def classify_status(body: Any, now: float) -> ProviderError | None:
    """The typed error of a CoinMarketCap ``status`` with a non-zero ``error_code`` (None when 0).

    ``now`` is epoch seconds, for how long a daily or monthly allowance stays spent.
    """
    status = body.get("status") if isinstance(body, dict) else None
    if not isinstance(status, dict):
        return None
    code = status.get("error_code")
    if code in (0, "0", None):
        return None
    message = str(status.get("error_message") or "")
    code = int(code) if str(code).isdigit() else code
    if code in (1001, 1002):
        return AuthError(f"coinmarketcap: key refused ({code}): {message}; check FKS_COINMARKETCAP_API_KEY")
    if code in (1008, 1011):
        return RateLimited(f"coinmarketcap: rate limited ({code}): {message}", retry_after=60.0)
    if code == 1009:
        wait = 86_400 - now % 86_400
        return RateLimited(f"coinmarketcap: daily credits used up ({code}): {message}", retry_after=wait)
    if code == 1010:
        return RateLimited(
            f"coinmarketcap: monthly credits used up ({code}): {message}", retry_after=_to_next_month(now)
        )
    if code in (1005, 1006, 1007):
        return NotSupported(f"coinmarketcap: not in your plan ({code}): {message}")
    if code == 400 and "symbol" in message.lower():
        return NotSupported(f"coinmarketcap: {message}")
    return BadResponse(f"coinmarketcap: error {code}: {message}")


def _credits(body: Any) -> float:
    """Credits a call cost: ``status.credit_count`` (1 when the body does not say)."""
    status = body.get("status") if isinstance(body, dict) else None
    count = status.get("credit_count") if isinstance(status, dict) else None
    return float(count) if isinstance(count, int | float) else 1.0


def _to_next_month(now: float) -> float:
    today = pd.Timestamp(now, unit="s", tz="UTC")
    following = (today.normalize().replace(day=1) + pd.DateOffset(months=1)).timestamp()
    return float(following - now)


def _rank_key(entry: Any) -> tuple[int, float]:
    rank = entry.get("cmc_rank") if isinstance(entry, dict) else None
    return (0, float(rank)) if isinstance(rank, int | float) else (1, 0.0)


def _row(entry: Any, convert: str) -> dict[str, Any]:
    """One output row from a listing/quote entry.

    Raises:
        BadResponse: when the entry lacks its symbol or its quote in ``convert``.
    """
    if not isinstance(entry, dict) or not entry.get("symbol"):
        raise BadResponse("coinmarketcap: an entry without a symbol")
    quote = (entry.get("quote") or {}).get(convert.upper())
    if not isinstance(quote, dict):
        raise BadResponse(f"coinmarketcap: {entry['symbol']} has no quote in {convert.upper()}")
    try:
        return {
            "rank": entry.get("cmc_rank"),
            "symbol": str(entry["symbol"]),
            "name": str(entry.get("name") or ""),
            "price": _number(quote.get("price")),
            "volume_24h": _number(quote.get("volume_24h")),
            "market_cap": _number(quote.get("market_cap")),
            "percent_change_24h": _number(quote.get("percent_change_24h")),
            "last_updated": quote.get("last_updated") or entry.get("last_updated"),
        }
    except (TypeError, ValueError) as exc:
        raise BadResponse(f"coinmarketcap: {entry['symbol']}: {exc}") from None


def _number(value: Any) -> float:
    if value is None:
        return float("nan")
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{value!r} is not a number")
    return float(value)


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(QUOTE_COLUMNS))
    try:
        frame["rank"] = frame["rank"].astype("Int64")
        frame["last_updated"] = pd.to_datetime(frame["last_updated"], utc=True, format="ISO8601")
    except (TypeError, ValueError) as exc:
        raise BadResponse(f"coinmarketcap: a rank or last_updated is malformed ({exc})") from None
    for column in ("price", "volume_24h", "market_cap", "percent_change_24h"):
        frame[column] = frame[column].astype("float64")
    return frame


def _retry(error: ProviderError) -> dict[str, Any]:
    return {"retry_after": error.retry_after} if isinstance(error, RateLimited) else {}
