"""The ``fundamentals`` flow: SEC EDGAR submissions and company facts of registered companies.

``python -m flows.fundamentals`` loads every enabled asset that has a CIK (``--symbols AAPL`` only
those; see ``--help``).
"""

from __future__ import annotations

from prefect import flow
from pydantic import BaseModel, Field

from config.fundamentals import FundamentalsConfig
from config.settings import Settings, get_settings
from flows._main import run_from_argv
from ingestion.fundamentals import CompanyOutcome
from tasks.fundamentals import company_outcome, fetch_company, plan_fundamentals


class FundamentalsSummary(BaseModel):
    """The flow's result: one outcome per company (``error`` set where it could not be loaded)."""

    batch_id: str
    outcomes: list[CompanyOutcome] = Field(default_factory=list)

    @property
    def failed(self) -> list[CompanyOutcome]:
        """Outcomes of the companies that could not be loaded."""
        return [o for o in self.outcomes if o.error is not None]


@flow(name="fundamentals", validate_parameters=False)
def fundamentals(
    config: FundamentalsConfig | None = None, settings: Settings | None = None
) -> FundamentalsSummary:
    """Fetch and store the filings and XBRL facts of each company, one after the other (EDGAR
    asks for at most 10 requests/s); a company that fails is reported and the others still load."""
    config = config or FundamentalsConfig()
    settings = settings or get_settings()
    targets = plan_fundamentals(config, settings)
    outcomes = [
        company_outcome(t, fetch_company(t, settings, config.older_filings, return_state=True))
        for t in targets
    ]
    return FundamentalsSummary(batch_id=config.batch_id, outcomes=outcomes)


if __name__ == "__main__":
    run_from_argv(fundamentals, FundamentalsConfig)
