"""Cross-verification of fetched bars against a second source.

:func:`compare` (pure) lines up two canonical bar frames on the timestamps they share and reports
every field whose relative difference ``|secondary - primary| / |primary|`` is above the
tolerance. :class:`CrossVerifier` runs the check the provider manager (:mod:`providers.manager`)
makes after each fetch: the last ``verification.bars`` bars are asked of the first other provider
that can serve them and compared; the check is recorded in ``bar_verifications`` and each
disagreement in ``provider_discrepancies``; then the policy applies (``warn`` keeps the primary's
bars and logs a warning, ``prefer_primary`` keeps them quietly, ``fail`` raises
:class:`Discrepant`). No reachable second source: recorded as ``skipped``.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sqlalchemy import Engine

from config.assets import AssetSpec
from config.providers import OnDiscrepancy, VerificationPolicy
from market.bars import Timeframe
from providers.base import BadResponse
from storage.verifications import record_discrepancies, record_verification

log = logging.getLogger(__name__)

#: How the verifier asks one provider for bars: ``ask(provider, provider symbol, start, end)``
#: returns its bars with ``start <= ts < end``, or a text saying why it gave none.
AskBars = Callable[[str, str, pd.Timestamp, pd.Timestamp], pd.DataFrame | str]


@dataclass(frozen=True)
class Discrepancy:
    """One bar field on which two sources disagree beyond the tolerance.

    ``ts`` is the bar's open time (UTC); ``rel_diff`` is ``|secondary - primary| / |primary|``
    (``inf`` when the primary value is 0 and the secondary is not).
    """

    ts: pd.Timestamp
    field: str
    primary_value: float
    secondary_value: float
    rel_diff: float


@dataclass(frozen=True)
class Comparison:
    """What :func:`compare` found: ``compared`` bars (the timestamps both frames hold) and the
    fields among them that differ beyond the tolerance."""

    compared: int
    discrepancies: list[Discrepancy]
    first_ts: pd.Timestamp | None
    last_ts: pd.Timestamp | None

    @property
    def ok(self) -> bool:
        """True when at least one bar was compared and none differed."""
        return self.compared > 0 and not self.discrepancies


class Discrepant(BadResponse):
    """Two sources disagree beyond the tolerance and the policy is ``fail``.

    ``discrepancies`` lists them; the message names the symbol, both providers and the bars.
    """

    def __init__(self, message: str, discrepancies: Sequence[Discrepancy] = ()) -> None:
        super().__init__(message)
        self.discrepancies = list(discrepancies)


def relative_difference(primary: np.ndarray, secondary: np.ndarray) -> np.ndarray:
    """Element-wise ``|secondary - primary| / |primary|``: 0 where both are 0, ``inf`` where only
    the primary is 0, NaN where either value is missing."""
    primary = np.asarray(primary, dtype="float64")
    secondary = np.asarray(secondary, dtype="float64")
    diff = np.abs(secondary - primary)
    scale = np.abs(primary)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = diff / scale
    rel = np.where((scale == 0) & (diff == 0), 0.0, rel)
    return np.where(np.isnan(primary) | np.isnan(secondary), np.nan, rel)


def compare(
    primary: pd.DataFrame, secondary: pd.DataFrame, fields: Sequence[str], tolerance: float
) -> Comparison:
    """Compare ``fields`` of two canonical bar frames on the timestamps they both hold.

    A field differs when its relative difference is strictly above ``tolerance`` (a fraction:
    0.005 is 0.5%); a difference equal to the tolerance passes. Bars only one frame holds are not
    compared (the count of shared bars is ``Comparison.compared``); missing values (NaN) on
    either side are not compared.

    Raises:
        ValueError: when ``tolerance`` is negative or not a number, ``fields`` is empty, or a field
            is missing from either frame.
    """
    if not isinstance(tolerance, int | float) or math.isnan(tolerance) or tolerance < 0:
        raise ValueError(f"tolerance must be a fraction >= 0 (0.005 is 0.5%), got {tolerance!r}")
    if not fields:
        raise ValueError("fields must name at least one bar column, e.g. ['close']")
    for name, frame in (("primary", primary), ("secondary", secondary)):
        missing = [f for f in fields if f not in frame.columns]
        if missing:
            raise ValueError(f"{name} bars lack the field(s) {', '.join(missing)} to compare")
    shared = primary.index.intersection(secondary.index).sort_values()
    if len(shared) == 0:
        return Comparison(0, [], None, None)
    found: list[Discrepancy] = []
    for name in fields:
        left = primary.loc[shared, name].to_numpy(dtype="float64")
        right = secondary.loc[shared, name].to_numpy(dtype="float64")
        rel = relative_difference(left, right)
        for i in np.flatnonzero(np.nan_to_num(rel, nan=0.0) > tolerance).tolist():
            found.append(Discrepancy(shared[i], name, float(left[i]), float(right[i]), float(rel[i])))
    found.sort(key=lambda d: (d.ts, d.field))
    return Comparison(len(shared), found, shared[0], shared[-1])


def describe(discrepancies: Sequence[Discrepancy], limit: int = 5) -> str:
    """A short human summary of ``discrepancies``: the first ``limit`` as
    ``2024-01-01T00:04:00+00:00 close 100 vs 101 (1.00%)``, then how many more."""
    parts = [
        f"{d.ts.isoformat()} {d.field} {d.primary_value:g} vs {d.secondary_value:g} ({d.rel_diff:.2%})"
        for d in discrepancies[:limit]
    ]
    more = len(discrepancies) - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


@dataclass(frozen=True)
class VerificationOutcome:
    """How the fetched bars compared with a second source.

    ``status`` is ``verified``, ``discrepant`` or ``skipped`` (``reason`` says why; the bars stay
    unverified). ``secondary`` is the provider compared with, ``bars_compared`` the bars both
    held, ``action`` the policy applied to discrepancies (``warn``, ``prefer_primary``, ``fail``).
    """

    status: str
    secondary: str | None = None
    bars_compared: int = 0
    discrepancies: tuple[Discrepancy, ...] = ()
    first_ts: pd.Timestamp | None = None
    last_ts: pd.Timestamp | None = None
    reason: str | None = None
    action: str | None = None


class CrossVerifier:
    """Cross-checks fetched bars against a second source, records the check and applies ``policy``.

    ``engine`` is the store the checks are recorded in (``bar_verifications``,
    ``provider_discrepancies``); ``now`` dates them; ``scrub`` removes secrets from the texts it
    keeps (the reason of a skipped check).
    """

    def __init__(
        self,
        policy: VerificationPolicy,
        engine: Engine,
        *,
        now: Callable[[], dt.datetime],
        scrub: Callable[[str], str],
    ) -> None:
        self.policy = policy
        self.engine = engine
        self.now = now
        self.scrub = scrub

    def verify(
        self,
        asset: AssetSpec,
        tf: Timeframe,
        primary: str,
        bars: pd.DataFrame,
        candidates: Sequence[tuple[str, str]],
        ask: AskBars,
        *,
        failed: Collection[str] = (),
        batch_id: str | None = None,
    ) -> VerificationOutcome:
        """Compare the last ``policy.bars`` of ``bars`` (from ``primary``) with the first of
        ``candidates`` (``(provider, provider symbol)``, in order) that is not in ``failed`` and
        returns bars at those times; it is asked for ``[first compared bar, last + one bar)``.

        Returns the outcome (``skipped`` when no candidate answered, with the reasons).

        Raises:
            Discrepant: when the second source disagrees and ``on_discrepancy`` is ``fail``.
        """
        tail = bars.iloc[-self.policy.bars :]
        lo = pd.Timestamp(tail.index[0])
        hi = pd.Timestamp(tail.index[-1]) + tf.delta
        reasons: list[str] = []
        for name, symbol in candidates:
            if name in failed:
                reasons.append(f"{name} failed in this fetch")
                continue
            answer = ask(name, symbol, lo, hi)
            if isinstance(answer, str):
                reasons.append(f"{name} failed: {answer}")
                continue
            comparison = compare(tail, answer, self.policy.fields, self.policy.tolerance)
            if comparison.compared == 0:
                reasons.append(f"{name} returned no bars at those times")
                continue
            return self._judge(asset, tf, primary, name, comparison, batch_id)
        chain = asset.asset_class.value
        reasons.append(f"no other enabled provider of the {chain} chain serves {asset.symbol} {tf.value}")
        reason = self.scrub("no second source: " + "; ".join(reasons))
        last = pd.Timestamp(tail.index[-1])
        self._record(asset, tf, primary, None, "skipped", Comparison(0, [], lo, last), reason, None, batch_id)
        log.info("%s %s from %s stays unverified: %s", asset.symbol, tf.value, primary, reason)
        return VerificationOutcome("skipped", None, 0, (), lo, last, reason, None)

    def _judge(
        self,
        asset: AssetSpec,
        tf: Timeframe,
        primary: str,
        secondary: str,
        comparison: Comparison,
        batch_id: str | None,
    ) -> VerificationOutcome:
        """Record the comparison, apply the policy and say how it went."""
        policy = self.policy
        found = comparison.discrepancies
        action = policy.on_discrepancy.value
        status = "discrepant" if found else "verified"
        self._record(
            asset, tf, primary, secondary, status, comparison, None, action if found else None, batch_id
        )
        outcome = VerificationOutcome(
            status,
            secondary,
            comparison.compared,
            tuple(found),
            comparison.first_ts,
            comparison.last_ts,
            None,
            action if found else None,
        )
        if not found:
            return outcome
        summary = (
            f"{asset.symbol} {tf.value}: {primary} and {secondary} differ by more than "
            f"{policy.tolerance:.2%} on {len(found)} field(s) of {comparison.compared} compared bar(s): "
            f"{describe(found)}"
        )
        if policy.on_discrepancy is OnDiscrepancy.FAIL:
            raise Discrepant(
                f"{summary}; the bars were not returned (on_discrepancy: fail in providers.yaml)", found
            )
        if policy.on_discrepancy is OnDiscrepancy.WARN:
            log.warning("%s; keeping %s's bars (recorded in provider_discrepancies)", summary, primary)
        else:
            log.info("%s; keeping %s's bars (on_discrepancy: prefer_primary)", summary, primary)
        return outcome

    def _record(
        self,
        asset: AssetSpec,
        tf: Timeframe,
        primary: str,
        secondary: str | None,
        status: str,
        comparison: Comparison,
        reason: str | None,
        action: str | None,
        batch_id: str | None,
    ) -> None:
        """One ``bar_verifications`` row and its ``provider_discrepancies`` rows, in one transaction."""
        now = self.now()
        with self.engine.begin() as conn:
            record_verification(
                conn,
                symbol=asset.symbol,
                timeframe=tf.value,
                primary_provider=primary,
                secondary_provider=secondary,
                status=status,
                bars_compared=comparison.compared,
                discrepancies=len(comparison.discrepancies),
                first_ts=comparison.first_ts,
                last_ts=comparison.last_ts,
                reason=reason,
                batch_id=batch_id,
                checked_at=now,
            )
            if secondary is not None and action is not None and comparison.discrepancies:
                record_discrepancies(
                    conn,
                    comparison.discrepancies,
                    symbol=asset.symbol,
                    timeframe=tf.value,
                    primary_provider=primary,
                    secondary_provider=secondary,
                    tolerance=self.policy.tolerance,
                    action=action,
                    batch_id=batch_id,
                    detected_at=now,
                )
