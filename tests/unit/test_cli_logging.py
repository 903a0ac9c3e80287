"""The CLI keeps Prefect's error records for unexpected failures and drops those it reports itself."""

from __future__ import annotations

import logging

from config.flows import InputError
from flows._logs import ReportedFailures


def _record(message: str, exc: BaseException | None = None, level: int = logging.ERROR) -> logging.LogRecord:
    exc_info = (type(exc), exc, None) if exc is not None else None
    return logging.LogRecord("prefect.flow_runs", level, __file__, 1, message, None, exc_info)


def test_reported_failures_are_dropped_and_others_kept() -> None:
    keep = ReportedFailures().filter
    assert not keep(_record("Encountered exception during execution", InputError("unknown symbol")))
    assert not keep(_record("Finished in state Failed('Task run encountered an exception InputError: x')"))
    assert not keep(_record("Task run failed with exception: AllProvidersFailed('every provider failed')"))
    assert not keep(_record("Finished in state Failed('Flow run encountered ServiceError: GET')"))
    assert keep(_record("Encountered exception during execution", RuntimeError("a bug")))
    assert keep(_record("Finished in state Failed('... ZeroDivisionError: division by zero')"))
    assert keep(_record("InputError: shown below ERROR level", level=logging.WARNING))


def test_great_expectations_info_stays_quiet_after_it_sets_its_own_level() -> None:
    from flows.cli._ui import quiet_libraries

    quiet_libraries()
    logger = logging.getLogger("great_expectations.data_context.types.base")
    logger.setLevel(logging.INFO)  # what importing great_expectations does
    seen: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = seen.append  # type: ignore[method-assign]
    logger.addHandler(handler)
    try:
        logger.info("Created temporary directory '/tmp/x' for ephemeral docs site")
        logger.warning("a real warning")
    finally:
        logger.removeHandler(handler)
    assert [r.getMessage() for r in seen] == ["a real warning"]
