"""Build a provider from a source name and its options (as stored in the asset registry)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from providers.base import NotSupported, Provider

OFFLINE_SOURCES = ("csv", "synthetic")


def resolve_sample_path(path: str | Path, samples_dir: Path) -> Path:
    """An absolute path for ``path``: as given when absolute, else relative to ``samples_dir``."""
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else samples_dir / candidate


def build_provider(
    source: str, options: Mapping[str, Any], *, samples_dir: Path, strict: bool = True
) -> Provider:
    """Construct the provider called ``source`` with its ``options``.

    ``csv`` takes ``path`` (absolute, or relative to ``samples_dir``), ``date_format`` and
    ``adjust`` (with ``strict=False`` rows that cannot become bars are skipped and listed in
    ``provider.parsed.problems`` instead of failing the file); ``synthetic`` takes ``seed``,
    ``symbols``, ``calendar`` and ``origin``.

    Raises:
        NotSupported: for a source that is not offline (online providers arrive with the
            provider manager) or unknown; the message lists the sources that work.
    """
    if source == "csv":
        from providers.csv import CsvProvider

        return CsvProvider(
            resolve_sample_path(options["path"], samples_dir),
            date_format=options.get("date_format"),
            adjust=bool(options.get("adjust", False)),
            strict=strict,
        )
    if source == "synthetic":
        from providers.synthetic import SyntheticMarket, SyntheticProvider

        market = SyntheticMarket(
            seed=int(options["seed"]),
            symbols=tuple(options["symbols"]),
            calendar=str(options["calendar"]),
            origin=pd.Timestamp(options["origin"]),
        )
        return SyntheticProvider(market)
    raise NotSupported(
        f"unknown or online source {source!r}: the sources available are {', '.join(OFFLINE_SOURCES)}"
    )
