"""SEC EDGAR: the adapter against a loopback server playing company facts and submissions, the
company store on SQLite (and PostgreSQL when configured), the ``fundamentals`` flow and its CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from sqlalchemy import Engine
from typer.testing import CliRunner

from config.flows import InputError
from config.fundamentals import FundamentalsConfig
from config.settings import PROJECT_ROOT, Settings
from flows.cli.market import fundamentals_app
from flows.fundamentals import fundamentals
from ingestion.fundamentals import CompanyTarget
from providers.base import AuthError, NotSupported
from providers.sec_edgar import SecEdgarProvider
from storage.companies import (
    list_companies,
    read_facts,
    read_filings,
    upsert_company,
    upsert_facts,
    upsert_filings,
)
from tasks.fundamentals import plan_fundamentals
from tasks.store import store_for
from tests.fixture_server import FixtureServer, Reply, Request
from tests.provider_fakes import FIXTURES, build_at, fast_policy

AGENT = "Jane Doe jane@example.com"
APPLE = "0000320193"
POLICY = fast_policy(attempts=2, requests=10)


def route(request: Request) -> Reply:
    """data.sec.gov: ``/api/xbrl/companyfacts/CIK##########.json`` and ``/submissions/...``."""
    if request.path.startswith("/api/xbrl/companyfacts/"):
        name = "companyfacts_" + request.path.rsplit("/", 1)[-1]
    elif request.path.startswith("/submissions/"):
        name = request.path.rsplit("/", 1)[-1]
        name = name if "-submissions-" in name else "submissions_" + name
    else:
        name = ""
    path = FIXTURES / "sec_edgar" / name
    if not name or not path.exists():  # EDGAR answers an unknown CIK with an XML 404 from S3
        return Reply(404, "<?xml version='1.0'?><Error><Code>NoSuchKey</Code></Error>")
    return Reply(200, json.loads(path.read_text()))


@pytest.fixture
def server(shared_server: FixtureServer) -> FixtureServer:
    """The module's loopback server playing data.sec.gov, fresh."""
    return shared_server.reset(route)


def adapter(server: FixtureServer, agent: str | None = AGENT) -> SecEdgarProvider:
    """The adapter as the factory builds it (User-Agent from settings), pointed at ``server``."""
    return build_at(SecEdgarProvider, server.url, POLICY, sec_edgar_user_agent=agent)


def test_company_facts_become_one_row_per_reported_value(server: FixtureServer) -> None:
    facts = adapter(server).company_facts("320193")

    assert (facts.cik, facts.entity_name, len(facts.facts)) == (APPLE, "Apple Inc.", 7)
    shares = next(f for f in facts.facts if f["concept"] == "EntityCommonStockSharesOutstanding")
    assert shares == {
        "taxonomy": "dei",
        "concept": "EntityCommonStockSharesOutstanding",
        "unit": "shares",
        "period_start": "",  # an instant
        "period_end": "2023-10-20",
        "value": 15552752000.0,
        "fiscal_year": 2023,
        "fiscal_period": "FY",
        "form": "10-K",
        "filed": "2023-11-03",
        "accession": "0000320193-23-000106",
        "frame": "CY2023Q3I",
    }
    (request,) = server.requests
    assert request.path == f"/api/xbrl/companyfacts/CIK{APPLE}.json"
    assert request.headers.get("User-Agent") == AGENT


def test_submissions_give_the_company_and_its_filings(server: FixtureServer) -> None:
    got = adapter(server).submissions(APPLE, older=True)

    assert got.company == {
        "cik": APPLE,
        "name": "Apple Inc.",
        "tickers": ["AAPL"],
        "sic": "3571",
        "fiscal_year_end": "0930",
    }
    assert [f["accession"] for f in got.filings] == [
        "0000320193-23-000106",
        "0000320193-23-000077",
        "0000320193-22-000108",
        "0001193125-14-277160",  # from the older page listed under filings.files
    ]
    assert got.filings[1] == {
        "accession": "0000320193-23-000077",
        "cik": APPLE,
        "form": "10-Q",
        "filing_date": "2023-08-04",
        "report_date": "2023-07-01",
        "primary_document": "aapl-20230701.htm",
    }
    assert server.paths() == [
        f"/submissions/CIK{APPLE}.json",
        f"/submissions/CIK{APPLE}-submissions-001.json",
    ]
    assert all(r.headers.get("User-Agent") == AGENT for r in server.requests)


@pytest.mark.parametrize("agent", [None, "python-httpx/0.28", "jane@example.com"])
def test_without_a_user_agent_naming_someone_nothing_is_sent(
    server: FixtureServer, agent: str | None
) -> None:
    provider = adapter(server, agent)
    with pytest.raises(AuthError, match=r"FKS_SEC_EDGAR_USER_AGENT='Your Name you@example\.com'"):
        provider.company_facts(APPLE)
    with pytest.raises(AuthError):
        provider.submissions(APPLE)
    assert server.requests == []


def test_unknown_ciks_and_bars_are_not_supported(server: FixtureServer) -> None:
    provider = adapter(server)
    with pytest.raises(NotSupported, match="404"):
        provider.company_facts("1")
    with pytest.raises(NotSupported, match="not a CIK"):
        provider.submissions("AAPL")
    with pytest.raises(NotSupported, match="not price bars"):
        provider.fetch_bars(APPLE, "1d")
    assert server.paths() == ["/api/xbrl/companyfacts/CIK0000000001.json"]


def test_company_store_is_idempotent(server: FixtureServer, engine: Engine) -> None:
    provider = adapter(server)
    submissions, facts = provider.submissions(APPLE), provider.company_facts(APPLE)

    def store() -> tuple[bool, Any, Any]:
        with engine.begin() as conn:
            company = submissions.company
            wrote = upsert_company(conn, APPLE, company["name"], company["tickers"], company["sic"], "0930")
            return (
                wrote,
                upsert_filings(conn, APPLE, submissions.filings),
                upsert_facts(conn, APPLE, facts.facts),
            )

    wrote, filings, stored = store()
    assert wrote and (filings.inserted, stored.inserted, stored.updated) == (3, 7, 0)
    with engine.connect() as conn:
        before = list_companies(conn)
    again = store()
    assert again[0] is False
    assert (again[1].inserted, again[1].updated, again[1].unchanged) == (0, 0, 3)
    assert (again[2].inserted, again[2].updated, again[2].unchanged) == (0, 0, 7)
    with engine.connect() as conn:
        assert list_companies(conn) == before  # updated_at did not move
        (apple,) = before
        assert (apple.name, apple.tickers, apple.filings, apple.facts) == ("Apple Inc.", ["AAPL"], 3, 7)

    restated = [dict(f) for f in facts.facts]
    restated[0]["value"] += 1.0
    with engine.begin() as conn:
        changed = upsert_facts(conn, APPLE, restated)
    assert (changed.inserted, changed.updated, changed.unchanged) == (0, 1, 6)

    with engine.begin() as conn:  # a joint filing already stored under Apple stays Apple's
        joint = upsert_filings(conn, "0000000002", submissions.filings[:1])
    assert (joint.inserted, joint.updated, joint.unchanged) == (0, 0, 1)

    with engine.connect() as conn:
        revenues = read_facts(conn, APPLE, "Revenues")
        filings_frame = read_filings(conn, APPLE)
    assert revenues["value"].tolist() == [394328000000.0, 394328000000.0, 383285000000.0]
    assert revenues["accession"].tolist() == [
        "0000320193-22-000108",
        "0000320193-23-000106",
        "0000320193-23-000106",
    ]
    assert revenues["fiscal_year"].tolist() == [2022, 2023, 2023]
    assert filings_frame["filing_date"].tolist() == ["2023-11-03", "2023-08-04", "2022-10-28"]
    assert set(filings_frame["cik"]) == {APPLE}


@pytest.fixture
def edgar_settings(settings: Settings, server: FixtureServer, tmp_path: Path) -> Settings:
    """Settings pointing at the loopback EDGAR, with a registry that also lists a company EDGAR
    does not know (``NOPE``) and keeps ``BTC-USD`` without a CIK."""
    registry = yaml.safe_load((PROJECT_ROOT / "config" / "assets.yaml").read_text())
    registry["assets"].append(
        {"symbol": "NOPE", "enabled": False, "default_source": "auto", "provider_symbols": {"sec_edgar": "1"}}
    )
    path = tmp_path / "assets.yaml"
    path.write_text(yaml.safe_dump(registry))
    return settings.model_copy(
        update={"sec_edgar_base_url": server.url, "sec_edgar_user_agent": AGENT, "assets_file": path}
    )


@pytest.mark.usefixtures("prefect_server")
def test_fundamentals_flow_stores_registered_companies_once(edgar_settings: Settings) -> None:
    first = fundamentals(FundamentalsConfig(symbols=["aapl"]), edgar_settings)
    (outcome,) = first.outcomes
    assert (outcome.symbol, outcome.cik, outcome.name, outcome.error) == ("AAPL", APPLE, "Apple Inc.", None)
    assert (outcome.filings, outcome.filings_new, outcome.facts, outcome.facts_new) == (3, 3, 7, 7)

    second = fundamentals(FundamentalsConfig(symbols=["AAPL"]), edgar_settings)
    assert (
        second.outcomes[0].facts_new,
        second.outcomes[0].facts_updated,
        second.outcomes[0].filings_new,
    ) == (0, 0, 0)
    with store_for(edgar_settings).connect() as conn:
        assert len(read_facts(conn, APPLE)) == 7
        assert [(c.cik, c.facts, c.filings) for c in list_companies(conn)] == [(APPLE, 7, 3)]

    failed = fundamentals(FundamentalsConfig(symbols=["NOPE", "AAPL"]), edgar_settings)
    assert [o.symbol for o in failed.failed] == ["NOPE"] and "404" in (failed.failed[0].error or "")
    assert failed.outcomes[1].error is None  # the others still load


def test_symbols_without_a_cik_are_refused_with_how_to_register_them(edgar_settings: Settings) -> None:
    plan = plan_fundamentals.fn  # the planning step itself, without a flow run
    with pytest.raises(InputError, match=r'ZZZZ is not registered.*provider_symbols: \{sec_edgar: "<CIK>"\}'):
        plan(FundamentalsConfig(symbols=["ZZZZ"]), edgar_settings)
    with pytest.raises(InputError, match=r"BTC-USD has no CIK.*config/assets.yaml"):
        plan(FundamentalsConfig(symbols=["BTC-USD"]), edgar_settings)
    with pytest.raises(InputError, match="no enabled asset has a CIK"):
        plan(FundamentalsConfig(), edgar_settings)  # the shipped ones are not enabled
    anonymous = edgar_settings.model_copy(update={"sec_edgar_user_agent": None})
    with pytest.raises(AuthError, match="FKS_SEC_EDGAR_USER_AGENT"):
        plan(FundamentalsConfig(symbols=["AAPL"]), anonymous)
    assert plan(FundamentalsConfig(symbols=["AAPL", "aapl"]), edgar_settings) == [
        CompanyTarget(symbol="AAPL", cik=APPLE)
    ]


@pytest.mark.usefixtures("prefect_server")
def test_fundamentals_cli(edgar_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("FKS_DB_URL", edgar_settings.db_url)
    monkeypatch.setenv("FKS_DATA_DIR", str(edgar_settings.data_dir))
    monkeypatch.setenv("FKS_ASSETS_FILE", str(edgar_settings.assets_file))
    monkeypatch.setenv("FKS_SEC_EDGAR_BASE_URL", edgar_settings.sec_edgar_base_url)
    app = typer.Typer()
    app.add_typer(fundamentals_app, name="fundamentals")
    runner = CliRunner()

    anonymous = runner.invoke(app, ["fundamentals", "fetch", "--symbols", "AAPL"])
    assert anonymous.exit_code == 2 and "FKS_SEC_EDGAR_USER_AGENT" in anonymous.output

    monkeypatch.setenv("FKS_SEC_EDGAR_USER_AGENT", AGENT)
    done = runner.invoke(app, ["fundamentals", "fetch", "--symbols", "AAPL"])
    assert done.exit_code == 0, done.output
    assert "Apple Inc." in done.output and "1 company loaded, 7 facts received" in done.output

    listed = runner.invoke(app, ["fundamentals", "list"])
    assert listed.exit_code == 0 and APPLE in listed.output and "AAPL" in listed.output

    unregistered = runner.invoke(app, ["fundamentals", "fetch", "--symbols", "ZZZZ"])
    assert unregistered.exit_code == 2 and "provider_symbols" in unregistered.output

    partly = runner.invoke(app, ["fundamentals", "fetch", "--symbols", "AAPL,NOPE"])
    assert partly.exit_code == 1 and "NOPE (CIK 0000000001)" in partly.output
