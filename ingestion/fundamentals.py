"""Fundamentals: which companies to load, then SEC EDGAR submissions and company facts -> the store.

A symbol reaches EDGAR through its CIK in the asset registry (``provider_symbols.sec_edgar``).
:func:`store_company` does one company's work. The adapter is built by :func:`edgar_adapter`,
whose ``gate`` argument is where the provider manager's rate limiter and meter plug in
(``None``: no gate, requests go out as they come)::

    engine = open_store(settings.db_url)
    for target in company_targets(engine, settings, FundamentalsConfig(symbols=["AAPL"])):
        print(store_company(engine, settings, target))
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Engine

from config.assets import AssetSpec, load_asset_specs
from config.flows import InputError
from config.fundamentals import FundamentalsConfig
from config.providers import load_providers_config
from config.settings import Settings
from providers.factory import build_adapter
from providers.http import Gate
from providers.sec_edgar import SecEdgarProvider, normalize_cik
from storage.assets import get_asset, list_assets
from storage.companies import upsert_company, upsert_facts, upsert_filings
from storage.registry import sync_asset_registry

REGISTER_HINT = (
    'add provider_symbols: {sec_edgar: "<CIK>"} to its entry in config/assets.yaml '
    "(find the CIK at https://www.sec.gov/edgar/searchedgar/companysearch)"
)


class CompanyTarget(BaseModel):
    """One registered symbol and its 10-digit CIK."""

    model_config = ConfigDict(frozen=True)

    symbol: str
    cik: str


class CompanyOutcome(BaseModel):
    """What loading one company did: filings and facts received, new and changed (or the error)."""

    symbol: str
    cik: str
    name: str = ""
    filings: int = 0
    filings_new: int = 0
    facts: int = 0
    facts_new: int = 0
    facts_updated: int = 0
    error: str | None = None


def edgar_adapter(settings: Settings, gate: Gate | None = None) -> SecEdgarProvider:
    """The SEC EDGAR adapter of ``settings`` with the ``sec_edgar`` policy of ``providers.yaml``,
    behind ``gate`` (the manager's rate limit and accounting; None sends requests ungated)."""
    policy = load_providers_config(settings.providers_file).providers["sec_edgar"]
    adapter = build_adapter("sec_edgar", settings, policy, gate=gate)
    if not isinstance(adapter, SecEdgarProvider):  # the factory maps the name to this class
        raise TypeError(f"sec_edgar built a {type(adapter).__name__}")
    return adapter


def _target(spec: AssetSpec | None, symbol: str) -> CompanyTarget:
    if spec is None:
        raise InputError(f"{symbol} is not registered; register it in config/assets.yaml and {REGISTER_HINT}")
    cik = spec.symbol_at("sec_edgar")
    if not cik:
        raise InputError(f"{symbol} has no CIK for SEC EDGAR; {REGISTER_HINT}")
    try:
        return CompanyTarget(symbol=spec.symbol, cik=normalize_cik(cik))
    except Exception as exc:
        raise InputError(f"{symbol}: {exc}; {REGISTER_HINT}") from None


def company_targets(engine: Engine, settings: Settings, config: FundamentalsConfig) -> list[CompanyTarget]:
    """Sync the asset registry and list the companies to load; check the EDGAR User-Agent.

    Raises:
        InputError: an unregistered symbol, one without a CIK, or no symbol with a CIK at all.
        AuthError: ``FKS_SEC_EDGAR_USER_AGENT`` is missing or does not name someone with an e-mail.
        ValueError: an unreadable asset registry file.
    """
    with engine.begin() as conn:
        sync_asset_registry(conn, load_asset_specs(settings.assets_file))
        if config.symbols:
            targets = [_target(get_asset(conn, symbol), symbol) for symbol in config.symbols]
        else:
            targets = [
                _target(spec, spec.symbol)
                for spec in list_assets(conn, enabled_only=True)
                if spec.symbol_at("sec_edgar")
            ]
    if not targets:
        raise InputError(f"no enabled asset has a CIK; name symbols with --symbols, or {REGISTER_HINT}")
    adapter = edgar_adapter(settings)
    try:
        adapter.check_user_agent()
    finally:
        adapter.close()
    return list(dict.fromkeys(targets))


def store_company(
    engine: Engine,
    settings: Settings,
    target: CompanyTarget,
    *,
    older_filings: bool = False,
    gate: Gate | None = None,
) -> CompanyOutcome:
    """Fetch the submissions and company facts of ``target`` and store them in one transaction.

    Raises:
        ProviderError: whatever the adapter raises (after its own retries); nothing is stored.
    """
    adapter = edgar_adapter(settings, gate)
    try:
        submissions = adapter.submissions(target.cik, older=older_filings)
        facts = adapter.company_facts(target.cik)
    finally:
        adapter.close()
    company = submissions.company
    name = company["name"] or facts.entity_name or target.symbol
    with engine.begin() as conn:
        upsert_company(conn, target.cik, name, company["tickers"], company["sic"], company["fiscal_year_end"])
        filed = upsert_filings(conn, target.cik, submissions.filings)
        stored = upsert_facts(conn, target.cik, facts.facts)
    return CompanyOutcome(
        symbol=target.symbol,
        cik=target.cik,
        name=name,
        filings=filed.received,
        filings_new=filed.inserted,
        facts=stored.received,
        facts_new=stored.inserted,
        facts_updated=stored.updated,
    )
