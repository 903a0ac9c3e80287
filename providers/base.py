"""The provider contract and its typed errors.

A provider turns ``(symbol, timeframe, start, end)`` into a canonical bar frame (see
:mod:`market.bars`). ``start`` is inclusive, ``end`` exclusive; either may be ``None`` for
"as far as the source goes". Timestamps are UTC bar open times.

Some providers also report stock splits (:class:`SplitsProvider`: ``fetch_splits``); ask any
provider through :func:`fetch_splits`, which answers ``NotSupported`` for those that do not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import pandas as pd

from market.bars import Timeframe

if TYPE_CHECKING:
    from storage.corporate_actions import CorporateAction


class ProviderError(Exception):
    """Base class of every error a provider raises."""


class RateLimited(ProviderError):
    """The source asked us to slow down; retry after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(ProviderError):
    """The source cannot be reached or answered with a server error; another source may work."""


class BadResponse(ProviderError):
    """The source answered, but not with bars we can use."""


class NotSupported(ProviderError):
    """The source does not offer this symbol or timeframe."""


class AuthError(ProviderError):
    """The source refused our credentials; fix the API key in settings."""


@dataclass(frozen=True)
class RowProblem:
    """One row of an input file that cannot become a bar.

    ``row`` is the 1-based line number in the file (the header is line 1), ``column`` the
    column's name as written in the file.
    """

    row: int
    column: str
    value: str
    reason: str


@dataclass
class DataFileError(BadResponse, ValueError):
    """An input file cannot be read as bars. The message names file, row and column and the fix."""

    path: str
    problem: str
    hint: str = ""
    row: int | None = None
    column: str | None = None
    rows: list[RowProblem] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.path
        if self.row is not None:
            where += f", row {self.row}"
        if self.column is not None:
            where += f", column {self.column!r}"
        message = f"{where}: {self.problem}"
        distinct = len({p.row for p in self.rows})
        if distinct > 1:
            message += f" ({distinct} rows in all)"
        if self.hint:
            message += f". {self.hint}"
        return message


@runtime_checkable
class Provider(Protocol):
    """What every market-data source implements."""

    name: str

    def fetch_bars(
        self,
        symbol: str,
        timeframe: Timeframe | str,
        start: pd.Timestamp | None = None,
        end: pd.Timestamp | None = None,
    ) -> pd.DataFrame:
        """Return canonical bars of ``symbol`` at ``timeframe`` with ``start <= ts < end``.

        Raises:
            RateLimited, Unavailable, BadResponse, NotSupported, AuthError: see each class.
        """
        ...


@runtime_checkable
class SplitsProvider(Protocol):
    """A source that also reports stock splits (the Yahoo and Polygon adapters)."""

    name: str

    def fetch_splits(self, symbol: str, start: pd.Timestamp, end: pd.Timestamp) -> list[CorporateAction]:
        """Splits of the provider symbol ``symbol`` with ``start <= ex_date < end`` (UTC), sorted by
        ex-date; each action's ``symbol`` is ``symbol`` and its ``source`` the provider's name.

        Raises:
            RateLimited, Unavailable, NotSupported, AuthError: as ``fetch_bars`` does.
            BadResponse: also for a split whose ratio is missing, zero or negative.
        """
        ...


def provides_splits(provider: object) -> bool:
    """Whether ``provider`` (an adapter or its class) reports splits (has ``fetch_splits``)."""
    return isinstance(provider, SplitsProvider)


def fetch_splits(
    provider: object, symbol: str, start: pd.Timestamp, end: pd.Timestamp
) -> list[CorporateAction]:
    """``provider.fetch_splits(symbol, start, end)``; the default for a provider without it is
    ``NotSupported``.

    Raises:
        NotSupported: when ``provider`` does not report splits; the message says which do.
        RateLimited, Unavailable, BadResponse, AuthError: see :meth:`SplitsProvider.fetch_splits`.
    """
    if not isinstance(provider, SplitsProvider):
        name = getattr(provider, "name", type(provider).__name__)
        raise NotSupported(
            f"{name} does not report splits; ask a provider that does (yahoo, polygon), e.g. through "
            "ProviderManager.fetch_splits"
        )
    return provider.fetch_splits(symbol, start, end)
