"""Prefect tasks of the fundamentals stage: which companies to load, then SEC EDGAR -> the store
(:mod:`ingestion.fundamentals` does the work)."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NONE
from prefect.states import State

from config.fundamentals import FundamentalsConfig
from config.settings import Settings
from ingestion.fundamentals import CompanyOutcome, CompanyTarget, company_targets, store_company
from tasks.providers import is_transient
from tasks.store import store_for


@task(name="plan-fundamentals", cache_policy=NONE)
def plan_fundamentals(config: FundamentalsConfig, settings: Settings) -> list[CompanyTarget]:
    """Sync the asset registry and list the companies to load; check the EDGAR User-Agent
    (:func:`ingestion.fundamentals.company_targets`)."""
    return company_targets(store_for(settings), settings, config)


@task(
    name="fetch-company",
    task_run_name="fundamentals-{target.symbol}",
    retries=1,
    retry_delay_seconds=10,
    retry_condition_fn=is_transient,
    cache_policy=NONE,
)
def fetch_company(target: CompanyTarget, settings: Settings, older_filings: bool = False) -> CompanyOutcome:
    """Load one company from SEC EDGAR into the store (:func:`ingestion.fundamentals.store_company`)."""
    return store_company(store_for(settings), settings, target, older_filings=older_filings)


def company_outcome(target: CompanyTarget, state: State[CompanyOutcome]) -> CompanyOutcome:
    """The outcome of a finished ``fetch-company`` run: its result, or its error as an outcome."""
    result = state.result(raise_on_failure=False)
    if isinstance(result, CompanyOutcome):
        return result
    error = str(result) if isinstance(result, BaseException) else f"{state.type.value}: {state.message}"
    return CompanyOutcome(symbol=target.symbol, cik=target.cik, error=error)
