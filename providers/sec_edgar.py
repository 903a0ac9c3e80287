"""SEC EDGAR: company facts (XBRL) and filing submissions by CIK, for fundamental features.

Requests go to ``FKS_SEC_EDGAR_BASE_URL`` (``https://data.sec.gov``), no key:

- ``GET /api/xbrl/companyfacts/CIK##########.json`` -> :meth:`SecEdgarProvider.company_facts`:
  every reported value of every concept (``us-gaap``, ``dei``, ...), one row per value;
- ``GET /submissions/CIK##########.json`` -> :meth:`SecEdgarProvider.submissions`: the company
  (name, tickers, SIC, fiscal year end) and its recent filings (with ``older=True`` also the
  older pages listed under ``filings.files``).

The CIK is zero-padded to 10 digits. SEC's fair-access rules require a User-Agent that names you
and an e-mail address (``FKS_SEC_EDGAR_USER_AGENT='Jane Doe jane@example.com'``; the factory sets
it) and at most 10 requests per second (the manager's token bucket from ``providers.yaml``).
Without such a User-Agent every method raises ``AuthError`` before sending anything. EDGAR has
no prices: :meth:`SecEdgarProvider.fetch_bars` raises ``NotSupported``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pandas as pd

from market.bars import Timeframe
from providers.base import AuthError, BadResponse, NotSupported
from providers.online import OnlineProvider

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
USER_AGENT_HINT = "set FKS_SEC_EDGAR_USER_AGENT='Your Name you@example.com' (SEC requires it)"


@dataclass(frozen=True)
class CompanyFacts:
    """A company's XBRL facts: ``facts`` are rows of the ``company_facts`` table (without ``cik``):
    ``taxonomy, concept, unit, period_start ('' for instants), period_end, value, fiscal_year,
    fiscal_period, form, filed, accession, frame``."""

    cik: str
    entity_name: str
    facts: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Submissions:
    """A company's submissions: ``company`` (``cik, name, tickers, sic, fiscal_year_end``) and
    ``filings`` (``accession, form, filing_date, report_date, primary_document``), newest first."""

    company: dict[str, Any]
    filings: list[dict[str, Any]] = field(default_factory=list)


def normalize_cik(cik: str | int) -> str:
    """``cik`` as EDGAR's 10-digit, zero-padded string (``320193`` -> ``0000320193``).

    Raises:
        NotSupported: when ``cik`` is not 1 to 10 digits (optionally prefixed ``CIK``).
    """
    text = str(cik).strip().upper().removeprefix("CIK")
    if not text.isdigit() or not 1 <= len(text) <= 10:
        raise NotSupported(f"sec_edgar: {cik!r} is not a CIK (1 to 10 digits, e.g. 0000320193 for Apple)")
    return text.zfill(10)


def valid_user_agent(value: str | None) -> bool:
    """True when ``value`` names someone and gives an e-mail address (``Jane Doe jane@example.com``)."""
    if not value or not _EMAIL.search(value):
        return False
    return bool(_EMAIL.sub("", value).strip(" <>()-,;"))


class SecEdgarProvider(OnlineProvider):
    """Company facts and submissions from SEC EDGAR (see the module docstring)."""

    name: ClassVar[str] = "sec_edgar"
    timeframes: ClassVar[tuple[Timeframe, ...]] = ()

    def fetch_bars(
        self,
        symbol: str,
        timeframe: Timeframe | str,
        start: pd.Timestamp | None = None,
        end: pd.Timestamp | None = None,
    ) -> pd.DataFrame:
        """Always raises ``NotSupported``: EDGAR publishes filings, not prices."""
        raise NotSupported("sec_edgar has company facts and filings, not price bars")

    def check_user_agent(self) -> str:
        """The User-Agent the client sends.

        Raises:
            AuthError: when it does not name someone with an e-mail address; the message says
                how to set it.
        """
        agent = self.client._http.headers.get("User-Agent")
        if not valid_user_agent(agent):
            raise AuthError(f"sec_edgar: no User-Agent naming you and your e-mail; {USER_AGENT_HINT}")
        return str(agent)

    def company_facts(self, cik: str | int) -> CompanyFacts:
        """Every XBRL fact EDGAR holds for company ``cik``.

        Raises:
            AuthError: no proper User-Agent (nothing is sent).
            NotSupported: not a CIK, or EDGAR does not know it (404).
            BadResponse: a fact without its end date, value, accession or filing date.
            RateLimited, Unavailable: see :mod:`providers.http`.
        """
        padded = normalize_cik(cik)
        body = self._get(f"/api/xbrl/companyfacts/CIK{padded}.json")
        facts = body.get("facts") or {}
        if not isinstance(facts, dict):
            raise BadResponse(f"sec_edgar: CIK {padded}: 'facts' is not an object")
        rows: list[dict[str, Any]] = []
        for taxonomy, concepts in facts.items():
            if not isinstance(concepts, dict):
                raise BadResponse(f"sec_edgar: CIK {padded}: taxonomy {taxonomy!r} is not an object")
            for concept, detail in concepts.items():
                units = detail.get("units") if isinstance(detail, dict) else None
                if not isinstance(units, dict):
                    raise BadResponse(f"sec_edgar: CIK {padded}: {taxonomy}:{concept} has no units")
                for unit, values in units.items():
                    if not isinstance(values, list):
                        raise BadResponse(
                            f"sec_edgar: CIK {padded}: {taxonomy}:{concept} [{unit}] not a list"
                        )
                    where = f"CIK {padded} {taxonomy}:{concept} [{unit}]"
                    rows.extend(_fact(where, taxonomy, concept, unit, value) for value in values)
        return CompanyFacts(cik=padded, entity_name=str(body.get("entityName") or ""), facts=rows)

    def submissions(self, cik: str | int, *, older: bool = False) -> Submissions:
        """The company record and its filings (recent ones; with ``older`` every page).

        Raises:
            AuthError: no proper User-Agent (nothing is sent).
            NotSupported: not a CIK, or EDGAR does not know it (404).
            BadResponse: filing columns of different lengths or without an accession number.
            RateLimited, Unavailable: see :mod:`providers.http`.
        """
        padded = normalize_cik(cik)
        body = self._get(f"/submissions/CIK{padded}.json")
        tickers = body.get("tickers") or []
        company = {
            "cik": padded,
            "name": str(body.get("name") or ""),
            "tickers": [str(t) for t in tickers] if isinstance(tickers, list) else [],
            "sic": str(body["sic"]) if body.get("sic") else None,
            "fiscal_year_end": str(body["fiscalYearEnd"]) if body.get("fiscalYearEnd") else None,
        }
        filings_block = body.get("filings") or {}
        if not isinstance(filings_block, dict):
            raise BadResponse(f"sec_edgar: CIK {padded}: 'filings' is not an object")
        filings = _filings(padded, filings_block.get("recent") or {})
        if older:
            for page in filings_block.get("files") or []:
                name = page.get("name") if isinstance(page, dict) else None
                if name:
                    filings += _filings(padded, self._get(f"/submissions/{name}"))
        return Submissions(company=company, filings=filings)

    def _get(self, path: str) -> dict[str, Any]:
        self.check_user_agent()
        body = self.client.get_json(path)
        if not isinstance(body, dict):
            raise BadResponse(f"sec_edgar: {path}: expected a JSON object, got {type(body).__name__}")
        return body


def _fact(where: str, taxonomy: str, concept: str, unit: str, value: Any) -> dict[str, Any]:
    """One ``company_facts`` row from an entry of ``units``.

    Raises:
        BadResponse: when a required field (``end``, ``val``, ``accn``, ``filed``) is missing or
            malformed.
    """
    if not isinstance(value, dict):
        raise BadResponse(f"sec_edgar: {where}: an entry is not an object")
    number = value.get("val")
    if isinstance(number, bool) or not isinstance(number, int | float):
        raise BadResponse(f"sec_edgar: {where}: 'val' {number!r} is not a number")
    end, filed, accession = value.get("end"), value.get("filed"), value.get("accn")
    start = value.get("start") or ""
    for label, date in (("end", end), ("filed", filed), ("start", start or "2000-01-01")):
        if not isinstance(date, str) or not _DATE.fullmatch(date):
            raise BadResponse(f"sec_edgar: {where}: {label!r} {date!r} is not YYYY-MM-DD")
    if not isinstance(accession, str) or not accession:
        raise BadResponse(f"sec_edgar: {where}: an entry lacks its accession number")
    fy = value.get("fy")
    return {
        "taxonomy": taxonomy,
        "concept": concept,
        "unit": unit,
        "period_start": start,
        "period_end": end,
        "value": float(number),
        "fiscal_year": int(fy) if isinstance(fy, int) and not isinstance(fy, bool) else None,
        "fiscal_period": _optional(value.get("fp")),
        "form": _optional(value.get("form")),
        "filed": filed,
        "accession": accession,
        "frame": _optional(value.get("frame")),
    }


def _filings(cik: str, columns: Any) -> list[dict[str, Any]]:
    """Filing rows from EDGAR's column arrays (``accessionNumber``, ``form``, ``filingDate``, ...).

    Raises:
        BadResponse: when the arrays differ in length or an accession number is missing.
    """
    if not isinstance(columns, dict):
        raise BadResponse(f"sec_edgar: CIK {cik}: filings are not an object")
    names = {
        "accession": "accessionNumber",
        "form": "form",
        "filing_date": "filingDate",
        "report_date": "reportDate",
        "primary_document": "primaryDocument",
    }
    arrays = {key: columns.get(src) or [] for key, src in names.items()}
    count = len(arrays["accession"])
    for key, values in arrays.items():
        if not isinstance(values, list) or (len(values) != count and not (key != "accession" and not values)):
            raise BadResponse(f"sec_edgar: CIK {cik}: filing column {names[key]!r} does not match the others")
    rows = []
    for i in range(count):
        accession = arrays["accession"][i]
        if not isinstance(accession, str) or not accession:
            raise BadResponse(f"sec_edgar: CIK {cik}: filing #{i + 1} lacks its accession number")
        row = {"accession": accession, "cik": cik}
        for key in ("form", "filing_date", "report_date", "primary_document"):
            values = arrays[key]
            row[key] = str(values[i] or "") if values else ""
        rows.append(row)
    return rows


def _optional(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None
