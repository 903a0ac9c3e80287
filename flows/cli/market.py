"""``fks fundamentals`` (SEC EDGAR company data) and ``fks market`` (CoinMarketCap overview).

Exit codes: 0 ok, 1 a provider failed (unreachable, throttled, a company that could not be
loaded), 2 bad input or missing settings (an unregistered symbol, no CIK, no User-Agent, no key).
"""

from __future__ import annotations

from typing import Annotated

import typer

from flows.cli._ui import (
    EXIT_BAD_INPUT,
    EXIT_UNEXPECTED,
    Handler,
    err,
    fail,
    out,
    run_guarded,
    symbol_list,
    table,
)

fundamentals_app = typer.Typer(
    help="Company filings and XBRL facts from SEC EDGAR (needs FKS_SEC_EDGAR_USER_AGENT).",
    no_args_is_help=True,
)
market_app = typer.Typer(help="Market overview from CoinMarketCap (needs FKS_COINMARKETCAP_API_KEY).")

KEY_HINT = "set FKS_COINMARKETCAP_API_KEY (a free Basic key from https://pro.coinmarketcap.com)"


def _provider_failures() -> tuple[tuple[type[Exception], Handler], ...]:
    """The providers' failures for ``run_guarded``: credentials exit 2, an unsupported request is
    bad input (the standard handling), any other provider error exits 1."""
    from providers.base import AuthError, NotSupported, ProviderError

    return (AuthError, EXIT_BAD_INPUT), (NotSupported, None), (ProviderError, EXIT_UNEXPECTED)


@fundamentals_app.command("fetch")
def fetch_command(
    symbol: Annotated[list[str] | None, typer.Option(help="Symbol to load (repeatable).")] = None,
    symbols: Annotated[
        str | None, typer.Option(help="Comma-separated symbols (default: every enabled asset with a CIK).")
    ] = None,
    older_filings: Annotated[
        bool, typer.Option(help="Also page through filings older than EDGAR's recent 1,000.")
    ] = False,
) -> None:
    """Fetch SEC EDGAR submissions and company facts of registered symbols and store them.

    A symbol needs its CIK in config/assets.yaml (provider_symbols: {sec_edgar: "<CIK>"}).
    Re-running it writes only what changed.
    """
    from config.fundamentals import FundamentalsConfig
    from config.settings import get_settings
    from flows.fundamentals import fundamentals

    def run() -> None:
        config = FundamentalsConfig.model_validate(
            {"symbols": symbol_list(symbol, symbols), "older_filings": older_filings}
        )
        with err.status("fetching from SEC EDGAR"):
            summary = fundamentals(config, get_settings())
        columns = [
            "symbol",
            "cik",
            "company",
            "filings",
            "new filings",
            "facts",
            "new facts",
            "changed facts",
        ]
        numeric = set(columns[3:])
        rows = [
            [
                o.symbol,
                o.cik,
                o.name or "-",
                f"{o.filings:,}",
                f"{o.filings_new:,}",
                f"{o.facts:,}",
                f"{o.facts_new:,}",
                f"{o.facts_updated:,}",
            ]
            for o in summary.outcomes
            if o.error is None
        ]
        loaded = len(rows)
        if rows:
            out.print(table("SEC EDGAR company data", columns, rows, numeric))
        facts = sum(o.facts for o in summary.outcomes)
        out.print(f"{loaded} compan{'y' if loaded == 1 else 'ies'} loaded, {facts:,} facts received.")
        for failed in summary.failed:
            err.print(
                f"[bold red]error:[/] {failed.symbol} (CIK {failed.cik}): {failed.error}", soft_wrap=True
            )
        if summary.failed:
            raise typer.Exit(EXIT_UNEXPECTED)

    run_guarded(run, *_provider_failures())


@fundamentals_app.command("list")
def list_command() -> None:
    """The companies in the store with their filing and fact counts."""
    from config.settings import get_settings
    from storage.companies import list_companies
    from tasks.store import store_for

    def run() -> None:
        with store_for(get_settings()).connect() as conn:
            companies = list_companies(conn)
        if not companies:
            out.print("No company data yet. Run `fks fundamentals fetch --symbols AAPL`.")
            return
        rows = [
            [c.cik, c.name, ",".join(c.tickers) or "-", c.sic or "-", f"{c.filings:,}", f"{c.facts:,}"]
            for c in companies
        ]
        columns = ["cik", "company", "tickers", "sic", "filings", "facts"]
        out.print(table("Companies", columns, rows, {"filings", "facts"}))

    run_guarded(run, *_provider_failures())


def _missing(value: object) -> bool:
    from market.display import is_missing

    return is_missing(value)


def _money(value: float | None) -> str:
    """``value`` compactly: 1.23T, 45.67B, 789.00M, or with two decimals below a million."""
    from market.display import money_text

    return money_text(value)


def _price(value: float | None) -> str:
    """Two decimals from 1 up, six significant digits below (coins worth fractions of a cent)."""
    from market.display import price_text

    return price_text(value)


def _percent(value: float | None) -> str:
    """A signed percentage, green up and red down."""
    if value is None or _missing(value):
        return "-"
    colour = "green" if value >= 0 else "red"
    return f"[{colour}]{value:+.2f}%[/]"


@market_app.command("overview")
def overview_command(
    limit: Annotated[int, typer.Option(min=1, max=5000, help="How many coins, by market cap.")] = 20,
    convert: Annotated[str, typer.Option(help="Currency of prices and caps.")] = "USD",
) -> None:
    """The top cryptocurrencies by market cap from CoinMarketCap's latest listings (1 credit per
    200 coins), stored as the latest listing (the overview page's market caps, ranks and
    dominance come from it)."""
    import pandas as pd

    from config.providers import load_providers_config
    from config.settings import get_settings
    from providers.coinmarketcap import CoinMarketCapProvider
    from providers.factory import build_adapter
    from storage.market_quotes import store_market_quotes
    from tasks.store import store_for

    def run() -> None:
        settings = get_settings()
        key = settings.provider_api_key("coinmarketcap")
        if key is None and "coinmarketcap" in settings.api_key_blocks:
            from tasks.providers import api_keys_for

            key = api_keys_for(settings).get("coinmarketcap")
        if key is None:
            raise fail(f"no CoinMarketCap key: {KEY_HINT}", EXIT_BAD_INPUT)
        policy = load_providers_config(settings.providers_file).providers["coinmarketcap"]
        adapter = build_adapter("coinmarketcap", settings, policy, api_key=key)
        if not isinstance(adapter, CoinMarketCapProvider):
            raise TypeError(f"coinmarketcap built a {type(adapter).__name__}")
        try:
            listing = adapter.listings(limit=limit, convert=convert)
        finally:
            adapter.close()
        currency = convert.upper()
        with store_for(settings).begin() as conn:  # the overview page's market caps, ranks, dominance
            store_market_quotes(conn, listing, source="coinmarketcap", currency=currency)
        rows = [
            [
                "-" if pd.isna(r["rank"]) else str(int(r["rank"])),
                str(r["symbol"]),
                str(r["name"]),
                _price(r["price"]),
                _percent(r["percent_change_24h"]),
                _money(r["volume_24h"]),
                _money(r["market_cap"]),
            ]
            for r in listing.to_dict("records")
        ]
        columns = ["#", "symbol", "name", f"price ({currency})", "24h", "volume 24h", "market cap"]
        updated = listing["last_updated"].max() if len(listing) else None
        title = "CoinMarketCap latest listings" + (
            f" ({updated:%Y-%m-%d %H:%M} UTC)" if updated is not None else ""
        )
        out.print(table(title, columns, rows, set(columns[3:])))

    run_guarded(run, *_provider_failures())
