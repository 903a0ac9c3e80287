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
    Unavailable,
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
    "Unavailable",
]
