"""Market-data sources behind one contract (:class:`providers.base.Provider`), and the one way to
get the manager that fails over between them (:func:`shared_manager`)."""

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
from providers.shared import close_managers, open_manager, shared_manager

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
    "close_managers",
    "fetch_splits",
    "open_manager",
    "provides_splits",
    "shared_manager",
]
