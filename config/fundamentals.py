"""Config of the ``fundamentals`` flow: which companies ``fks fundamentals fetch`` loads from SEC EDGAR."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, ConfigDict, Field

from config.flows import Symbols


class FundamentalsConfig(BaseModel):
    """Registered ``symbols`` whose SEC EDGAR submissions and company facts are fetched and stored.

    A symbol is known to EDGAR through its CIK in the asset registry
    (``provider_symbols: {sec_edgar: "0000320193"}`` in ``config/assets.yaml``). An empty list
    means every enabled asset that has a CIK. ``older_filings`` also pages through the older
    filing history beyond EDGAR's recent 1,000 filings.
    """

    model_config = ConfigDict(extra="forbid")

    symbols: Symbols = Field(default_factory=list)
    older_filings: bool = False
    batch_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
