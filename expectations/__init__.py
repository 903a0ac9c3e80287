"""Data validation with Great Expectations: versioned JSON suites and the code that runs them.

``validate_bars`` checks canonical OHLCV bars (prices, OHLC consistency, timestamps against the
calendar, robust one-bar return bounds, spikes); ``validate_features`` checks feature frames.
Both return a :class:`ValidationReport` whose ``failures`` are the rows to quarantine. What
fails critically and how wide the return bound is comes from the policy file
(:func:`config.validation.load_validation_policy`). See :mod:`expectations.runner`.
"""

from expectations.runner import (
    ExpectationOutcome,
    SuiteSpec,
    ValidationReport,
    load_suite,
    validate_bars,
    validate_features,
)

__all__ = [
    "ExpectationOutcome",
    "SuiteSpec",
    "ValidationReport",
    "load_suite",
    "validate_bars",
    "validate_features",
]
