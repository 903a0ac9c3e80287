"""Data validation with Great Expectations: versioned JSON suites, the code that runs them, and
screening and quarantine built on them.

``validate_bars`` checks canonical OHLCV bars (prices, OHLC consistency, timestamps against the
calendar, robust one-bar return bounds, spikes); ``validate_features`` checks feature frames.
Both return a :class:`ValidationReport` whose ``failures`` are the rows to quarantine. What
fails critically and how wide the return bound is comes from the policy file
(:func:`config.validation.load_validation_policy`). See :mod:`expectations.runner`.

On the store: :func:`screen_incoming` screens bars arriving for a series and
:func:`store_screened` stores the result in the caller's transaction (good bars upserted,
failing rows quarantined, the run recorded); :func:`revalidate_series` re-checks a stored series;
:func:`release_quarantined` and :func:`drop_quarantined` are a person's decisions on quarantined
rows. See :mod:`expectations.screening`.
"""

from expectations.quarantine import Released, drop_quarantined, release_quarantined
from expectations.revalidation import (
    ValidateOutcome,
    ValidateSummary,
    ValidateTarget,
    revalidate_series,
    validation_targets,
)
from expectations.runner import (
    ExpectationOutcome,
    SuiteSpec,
    ValidationReport,
    load_suite,
    validate_bars,
    validate_features,
)
from expectations.screening import (
    Screened,
    Stored,
    docs_dir,
    parse_rejects,
    policy_for,
    record_screen,
    screen,
    screen_incoming,
    store_screened,
)

__all__ = [
    "ExpectationOutcome",
    "Released",
    "Screened",
    "Stored",
    "SuiteSpec",
    "ValidateOutcome",
    "ValidateSummary",
    "ValidateTarget",
    "ValidationReport",
    "docs_dir",
    "drop_quarantined",
    "load_suite",
    "parse_rejects",
    "policy_for",
    "record_screen",
    "release_quarantined",
    "revalidate_series",
    "screen",
    "screen_incoming",
    "store_screened",
    "validate_bars",
    "validate_features",
    "validation_targets",
]
