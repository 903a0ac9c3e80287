"""Market-data sources behind one contract (:class:`providers.base.Provider`)."""

from providers.base import (
    AuthError,
    BadResponse,
    DataFileError,
    NotSupported,
    Provider,
    ProviderError,
    RateLimited,
    RowProblem,
    SplitsProvider,
    Unavailable,
    fetch_splits,
    provides_splits,
)

__all__ = [
    "AuthError",
    "BadResponse",
    "DataFileError",
    "NotSupported",
    "Provider",
    "ProviderError",
    "RateLimited",
    "RowProblem",
    "SplitsProvider",
    "Unavailable",
    "fetch_splits",
    "provides_splits",
]
