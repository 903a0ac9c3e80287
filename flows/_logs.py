"""Prefect's log records of failures the caller reports itself (private to ``flows``).

The ``fks`` commands and ``python -m flows.<name>`` print bad input and failed series once, in one
line that says how to fix them; Prefect's flow and task run loggers would log each again, at
ERROR, with its traceback. :func:`drop_reported_failures` filters those records out; Prefect's
records of any other failure stay.
"""

from __future__ import annotations

import logging

REPORTED_FAILURES = (
    "InputError",
    "IngestFailed",
    "BackfillIncomplete",
    "DataFileError",
    "AllProvidersFailed",
    "LakeError",
    "ValidationError",
    "ServiceError",
)
"""The failures the CLI reports itself (exception class names): the flows' bad input and failed series."""


class ReportedFailures(logging.Filter):
    """Drop Prefect's error records about failures the caller prints itself (bad input, failed
    series): ``names`` are the exception classes' names (default :data:`REPORTED_FAILURES`, the
    CLI's). Added to a logger once per set of names (:func:`drop_reported_failures`)."""

    def __init__(self, names: tuple[str, ...] = REPORTED_FAILURES) -> None:
        super().__init__()
        self.names = frozenset(names)

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep the record unless it is about one of :attr:`names`."""
        if record.levelno < logging.ERROR:
            return True
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and type(exc).__name__ in self.names:
            return False
        text = record.getMessage()
        return not any(f"{n}(" in text or f"{n}:" in text for n in self.names)


def drop_reported_failures(names: tuple[str, ...] = REPORTED_FAILURES) -> None:
    """Have Prefect's flow and task run loggers drop their records about failures of ``names``."""
    for logger in (logging.getLogger("prefect.flow_runs"), logging.getLogger("prefect.task_runs")):
        if not any(isinstance(f, ReportedFailures) and f.names == frozenset(names) for f in logger.filters):
            logger.addFilter(ReportedFailures(names))
