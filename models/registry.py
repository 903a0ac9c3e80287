"""The MLflow model registry, through aliases: register, resolve, promote, roll back.

Every function takes the registered name; a family's is ``family.registered_name``
(``fks-forecaster`` for the forecaster, see :mod:`models.family`). Promotion moves aliases, never
the deprecated stages (ARCHITECTURE.md section 2)::

    name = FORECASTER.registered_name                                # "fks-forecaster"
    version = register(info.model_uri, name, tags={"git_commit": sha})   # "3"
    set_alias(name, CHALLENGER, version)
    promote(name, reason="beats champion and baselines on out-of-sample Sharpe")
    # champion -> 3, previous-champion -> the former champion, challenger removed
    rollback(name)                                                   # champion -> previous-champion

:func:`resolve_model` turns ``name@alias`` or ``name/version`` into a :class:`ModelRef`: the
version and what it was trained and tested on (the backtest and the promotion gate start there)::

    ref = resolve_model("fks-forecaster@challenger", family=FORECASTER)
    ref.version, ref.symbol, ref.test_start, ref.uri            # "3", "SPX", ..., "models:/fks-forecaster/3"

The promotion gate (:mod:`models.gate`) decides; :func:`apply_decision` carries a decision out::

    decision = decide(inputs, PromotionPolicy())
    apply_decision(name, decision, challenger_version="4", reason_tags={"actor": "ci"})
    # promoted: as promote() above; in every case version 4 gets the gate_* tags

Serving resolves ``models:/fks-forecaster@champion``. Every function uses the current MLflow
tracking URI (``mlflow.set_tracking_uri``), whose store also holds the registry.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.tracking import MlflowClient

    from models.family import AnyFamily
    from models.gate import Decision

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS_CHAMPION = "previous-champion"

TAG_PROMOTION_REASON = "promotion_reason"
"""Version tag: why the version was promoted (the ``reason`` given to :func:`promote`)."""
TAG_PROMOTED_AT = "promoted_at"
"""Version tag: when it became champion (ISO 8601 UTC)."""
TAG_REPLACED_VERSION = "replaced_version"
"""Version tag: the champion it replaced (empty for the first champion)."""
TAG_ROLLED_BACK_AT = "rolled_back_at"
"""Version tag on a champion taken back by :func:`rollback` (ISO 8601 UTC)."""
TAG_ROLLBACK_REASON = "rollback_reason"
"""Version tag on a champion taken back by :func:`rollback`: why."""

TAG_GATE_DECISION = "gate_decision"
"""Version tag set by :func:`apply_decision`: ``promoted``, ``refused`` or ``forced``."""
TAG_GATE_REASONS = "gate_reasons"
"""Version tag set by :func:`apply_decision`: the decision's reasons joined by :data:`REASON_SEPARATOR`."""
TAG_GATE_METRICS = "gate_metrics"
"""Version tag set by :func:`apply_decision`: the decision's metrics snapshot as JSON."""
TAG_GATE_TIME = "gate_time"
"""Version tag set by :func:`apply_decision`: when the decision was applied (ISO 8601 UTC)."""
TAG_GATE_FORCED = "gate_forced"
"""Version tag set by :func:`apply_decision`: ``"true"`` when promoted by force, else ``"false"``."""
GATE_TAGS: tuple[str, ...] = (
    TAG_GATE_DECISION,
    TAG_GATE_REASONS,
    TAG_GATE_METRICS,
    TAG_GATE_TIME,
    TAG_GATE_FORCED,
)
REASON_SEPARATOR = " | "

_READY = "READY"
_FAILED = "FAILED_REGISTRATION"


def _client() -> MlflowClient:
    from mlflow.tracking import MlflowClient

    return MlflowClient()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _wait_ready(client: MlflowClient, name: str, version: str, timeout_s: float) -> ModelVersion:
    """Poll a model version until it is READY; raise RuntimeError if it failed or timed out."""
    deadline = time.monotonic() + timeout_s
    while True:
        mv = client.get_model_version(name, version)
        if mv.status == _READY:
            return mv
        if mv.status == _FAILED:
            raise RuntimeError(f"registering {name} version {version} failed: {mv.status_message}")
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{name} version {version} is still {mv.status} after {timeout_s:.0f} s; "
                "check the registry server and retry"
            )
        time.sleep(0.5)


def register(
    model_uri: str,
    name: str,
    tags: Mapping[str, Any] | None = None,
    description: str | None = None,
    *,
    timeout_s: float = 300.0,
) -> str:
    """Register the model at ``model_uri`` as a new version of ``name`` and wait until it is READY.

    The registered model is created when it does not exist yet. No alias is set: call
    :func:`set_alias` (``challenger``) next.

    Args:
        model_uri: a logged model (``ModelInfo.model_uri``, ``models:/<model_id>``,
            ``runs:/<run_id>/<name>``).
        name: registered model name (``family.registered_name``).
        tags: version tags (values are stored as strings), e.g. the git commit, the data window.
        description: the version's description.
        timeout_s: how long to wait for the version to become READY.

    Returns:
        The new version number, as a string (``"1"`` for the first).

    Raises:
        RuntimeError: registration failed or did not finish within ``timeout_s``.
        mlflow.exceptions.MlflowException: ``model_uri`` names no model.
    """
    import mlflow

    client = _client()
    str_tags = {str(k): str(v) for k, v in (tags or {}).items()}
    mv = mlflow.register_model(model_uri, name, await_registration_for=int(timeout_s), tags=str_tags)
    version = str(mv.version)
    _wait_ready(client, name, version, timeout_s)
    if description:
        client.update_model_version(name, version, description=description)
    return version


def set_alias(name: str, alias: str, version: str | int) -> None:
    """Point ``alias`` of registered model ``name`` at ``version`` (moving it if set elsewhere).

    Raises:
        mlflow.exceptions.MlflowException: unknown model or version, or an invalid alias name.
    """
    _client().set_registered_model_alias(name, alias, str(version))


def get_version_by_alias(name: str, alias: str) -> ModelVersion | None:
    """The version of ``name`` that ``alias`` points at, or None when no version holds it.

    Also None when no registered model ``name`` exists.

    Raises:
        mlflow.exceptions.MlflowException: the registry cannot be reached, or another error
            than a missing model.
    """
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode

    client = _client()
    try:
        registered = client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code == ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
            return None
        raise
    # Reading the alias map avoids telling "no such alias" apart by store-specific error codes.
    version = (registered.aliases or {}).get(alias)
    if version is None:
        return None
    mv: ModelVersion = client.get_model_version(name, str(version))
    return mv


@dataclass(frozen=True)
class ModelRef:
    """A registered model version and what it was trained on.

    Attributes:
        name, version, run_id: the registered version and its training run.
        symbol, timeframe: the series it was trained and tested on.
        test_start, test_end: its out-of-sample (test) window: first and last decision bar.
        val_end: the last decision bar of its training and validation data (run param
            ``data.val_end``): the model has seen the bars up to it and, through that sample's
            label, ``horizon`` bars beyond. None for a run that did not log it; the promotion gate
            then takes every bar before ``test_start`` as seen (see
            :func:`models.gate.comparison_window`).
        horizon: bars ahead the model forecasts (run param ``horizon``; 1 when not logged).
    """

    name: str
    version: str
    run_id: str
    symbol: str
    timeframe: str
    test_start: pd.Timestamp
    test_end: pd.Timestamp
    val_end: pd.Timestamp | None = None
    horizon: int = 1

    @property
    def uri(self) -> str:
        """``models:/name/version``."""
        return f"models:/{self.name}/{self.version}"


@dataclass(frozen=True)
class VersionInfo:
    """One registered version as ``fks models list`` shows it.

    ``metrics`` are the version's ``test_*`` tags (the model's out-of-sample metrics, and its
    baselines' as ``test_<baseline>_<metric>``); ``gate`` is the last gate decision on it (or None),
    ``gate_reasons`` its reasons; ``promoted_at`` when it became champion (None if never).
    """

    name: str
    version: str
    aliases: tuple[str, ...]
    run_id: str
    created: pd.Timestamp
    data_window: str | None
    feature_set_version: str | None
    metrics: dict[str, float]
    gate: str | None
    gate_reasons: str | None = None
    promoted_at: pd.Timestamp | None = None


def list_versions(name: str | None = None) -> list[VersionInfo]:
    """Every registered version (of ``name``, or of every model), newest first per model.

    Raises:
        LookupError: ``name`` is not a registered model; the message lists those that are.
    """
    client = _client()
    names = sorted(m.name for m in client.search_registered_models())
    if name is not None and name not in names:
        raise LookupError(
            f"no registered model {name!r}; registered: {', '.join(names) or 'none'} "
            "(`fks train forecaster` registers one)"
        )
    out: list[VersionInfo] = []
    for model in [name] if name is not None else names:
        by_version: dict[str, list[str]] = {}
        for alias, number in (client.get_registered_model(model).aliases or {}).items():
            by_version.setdefault(str(number), []).append(alias)
        versions = client.search_model_versions(f"name='{model}'")
        for v in sorted(versions, key=lambda v: int(v.version), reverse=True):
            tags = dict(v.tags or {})
            metrics: dict[str, float] = {}
            for key, value in tags.items():
                if key.startswith("test_"):
                    try:
                        metrics[key] = float(value)
                    except ValueError:
                        continue
            out.append(
                VersionInfo(
                    name=model,
                    version=str(v.version),
                    aliases=tuple(sorted(by_version.get(str(v.version), []))),
                    run_id=str(v.run_id or ""),
                    created=pd.Timestamp(int(v.creation_timestamp), unit="ms", tz="UTC"),
                    data_window=tags.get("data_window"),
                    feature_set_version=tags.get("feature_set_version"),
                    metrics=metrics,
                    gate=tags.get(TAG_GATE_DECISION),
                    gate_reasons=tags.get(TAG_GATE_REASONS),
                    promoted_at=_timestamp(tags.get(TAG_PROMOTED_AT)),
                )
            )
    return out


def _timestamp(value: str | None) -> pd.Timestamp | None:
    """An ISO 8601 tag value as a UTC timestamp (None when absent or unreadable)."""
    if not value:
        return None
    try:
        stamp = pd.Timestamp(value)
    except ValueError:
        return None
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def resolve_model(spec: str, *, family: AnyFamily | None = None) -> ModelRef:
    """Resolve ``name@alias`` or ``name/version`` (a bare ``name`` means ``@champion``) against the
    active MLflow tracking store.

    The symbol, timeframe, test window, end of training+validation data and horizon are read
    from the training run's params (``symbol``, ``timeframe``, ``data.test_start``,
    ``data.test_end``, ``data.val_end``, ``horizon``, as a family's training logs them, e.g.
    :func:`models.forecaster.tracking.log_training`); ``data.val_end`` and ``horizon`` may be
    missing (older runs: None and 1).

    Args:
        spec: the model version.
        family: the model's family, whose ``train_command`` the messages name.

    Raises:
        LookupError: an unknown model, alias or version; the message says what exists.
        ValueError: the version's run lacks the params that say what it was trained and tested
            on (not logged by the family's training), or they are not readable.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    command = f"`{family.train_command}`" if family is not None else "its family's training command"
    client = mlflow.MlflowClient()
    name, alias, version = spec, None, None
    if "@" in spec:
        name, alias = spec.split("@", 1)
    elif "/" in spec:
        name, version = spec.split("/", 1)
    else:
        alias = CHAMPION
    try:
        mv = (
            client.get_model_version_by_alias(name, alias)
            if alias
            else client.get_model_version(name, str(version))
        )
    except MlflowException:
        raise LookupError(
            f"no version of {name!r} for {'@' + alias if alias else 'version ' + str(version)}; "
            f"train one ({command}) or check the name, alias or version"
        ) from None
    params = client.get_run(str(mv.run_id)).data.params
    where = f"version {mv.version} of {name!r} (run {mv.run_id})"
    required = ("symbol", "timeframe", "data.test_start", "data.test_end")
    missing = [key for key in required if key not in params]
    if missing:
        raise ValueError(
            f"{where} has no logged params {missing}, so what it was trained and tested on is "
            f"unknown; register models trained with {command}, which logs them"
        )
    try:
        val_end = pd.Timestamp(params["data.val_end"]) if "data.val_end" in params else None
        return ModelRef(
            name=name,
            version=str(mv.version),
            run_id=str(mv.run_id),
            symbol=params["symbol"],
            timeframe=params["timeframe"],
            test_start=pd.Timestamp(params["data.test_start"]),
            test_end=pd.Timestamp(params["data.test_end"]),
            val_end=None if val_end is None or pd.isna(val_end) else val_end,
            horizon=int(params.get("horizon", "1")),
        )
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where} has unreadable data window or horizon params: {exc}") from None


def promote(
    name: str,
    from_alias: str = CHALLENGER,
    to_alias: str = CHAMPION,
    *,
    reason: str,
) -> str:
    """Make the ``from_alias`` version the ``to_alias`` one, keeping the old one as ``previous-champion``.

    ``to_alias`` moves to the version ``from_alias`` points at; the version it pointed at before
    (if any) gets ``previous-champion``; ``from_alias`` is removed (it has been promoted). The
    promoted version is tagged with ``promotion_reason``, ``promoted_at`` and
    ``replaced_version``.

    Args:
        name: registered model name.
        from_alias: the candidate's alias.
        to_alias: the alias that serving follows.
        reason: why, for the people who read the registry later (required, not empty).

    Returns:
        The promoted version.

    Raises:
        ValueError: an empty reason, no version holds ``from_alias``, or it already holds
            ``to_alias``.
    """
    if not reason or not reason.strip():
        raise ValueError("promote needs a reason (e.g. the metrics that beat the champion)")
    if from_alias == to_alias:
        raise ValueError(
            f"from_alias and to_alias are both {to_alias!r}; promote moves one alias onto another"
        )
    candidate = get_version_by_alias(name, from_alias)
    if candidate is None:
        raise ValueError(
            f"no version of {name!r} has alias {from_alias!r}; train and register one first "
            "(`fks train forecaster` registers it as challenger)"
        )
    version = str(candidate.version)
    current = get_version_by_alias(name, to_alias)
    if current is not None and str(current.version) == version:
        raise ValueError(f"version {version} of {name!r} is already {to_alias!r}; nothing to promote")
    client = _client()
    client.set_model_version_tag(name, version, TAG_PROMOTION_REASON, reason.strip())
    client.set_model_version_tag(name, version, TAG_PROMOTED_AT, _now())
    client.set_model_version_tag(
        name, version, TAG_REPLACED_VERSION, "" if current is None else str(current.version)
    )
    if current is not None:
        client.set_registered_model_alias(name, PREVIOUS_CHAMPION, str(current.version))
    client.set_registered_model_alias(name, to_alias, version)
    client.delete_registered_model_alias(name, from_alias)
    return version


def rollback(name: str, *, reason: str = "") -> str:
    """Put ``champion`` back on the ``previous-champion`` version.

    The version taken back is tagged ``rolled_back_at`` (and ``rollback_reason`` when given);
    ``previous-champion`` is removed, so a second rollback fails rather than reinstating the
    version just taken back.

    Returns:
        The version that is champion again.

    Raises:
        ValueError: no version holds ``previous-champion``.
    """
    previous = get_version_by_alias(name, PREVIOUS_CHAMPION)
    if previous is None:
        raise ValueError(
            f"{name!r} has no {PREVIOUS_CHAMPION!r} version to roll back to (nothing was promoted "
            "over another champion); promote a challenger with `fks promote` (`--force` to overrule the gate)"
        )
    version = str(previous.version)
    current = get_version_by_alias(name, CHAMPION)
    client = _client()
    if current is not None and str(current.version) != version:
        client.set_model_version_tag(name, str(current.version), TAG_ROLLED_BACK_AT, _now())
        if reason.strip():
            client.set_model_version_tag(name, str(current.version), TAG_ROLLBACK_REASON, reason.strip())
    client.set_registered_model_alias(name, CHAMPION, version)
    client.delete_registered_model_alias(name, PREVIOUS_CHAMPION)
    return version


def _json_safe(value: Any) -> Any:
    """``value`` as strict-JSON data: non-finite floats as ``"nan"``/``"inf"``/``"-inf"``."""
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def apply_decision(
    name: str,
    decision: Decision,
    *,
    challenger_version: str | int,
    reason_tags: Mapping[str, Any] | None = None,
) -> str | None:
    """Carry out a promotion-gate decision on version ``challenger_version`` of ``name``.

    When ``decision.promote`` the version becomes ``champion`` exactly as :func:`promote` does it
    (``challenger`` is pointed at it first; the former champion becomes ``previous-champion``;
    ``challenger`` is removed; ``promotion_reason`` is the joined reasons, prefixed ``forced:``
    when forced). A refused decision moves no alias. In every case the version is tagged
    ``gate_decision`` (``promoted``/``refused``/``forced``), ``gate_reasons`` (joined by
    :data:`REASON_SEPARATOR`), ``gate_metrics`` (JSON), ``gate_time`` (ISO 8601 UTC) and
    ``gate_forced`` (``true``/``false``), plus ``reason_tags`` (values stored as strings).

    Args:
        name: registered model name.
        decision: from :func:`models.gate.decide`.
        challenger_version: the version the decision is about.
        reason_tags: extra version tags to record with the decision (e.g. the actor, the
            backtest run id); their keys must not be gate tags.

    Returns:
        The promoted version, or None when the decision refused.

    Raises:
        ValueError: ``reason_tags`` names a gate tag; a promotion of the version that already
            is champion.
        mlflow.exceptions.MlflowException: unknown model or version.
    """
    version = str(challenger_version)
    extra = {str(k): str(v) for k, v in (reason_tags or {}).items()}
    clash = sorted(set(extra) & set(GATE_TAGS))
    if clash:
        raise ValueError(f"reason_tags must not set the gate's own tags {clash}; use other keys")
    client = _client()
    client.get_model_version(name, version)  # unknown model or version: MlflowException before any change
    reasons = REASON_SEPARATOR.join(decision.reasons)
    promoted: str | None = None
    if decision.promote:
        current = get_version_by_alias(name, CHAMPION)
        if current is not None and str(current.version) == version:
            raise ValueError(f"version {version} of {name!r} is already {CHAMPION!r}; nothing to promote")
        set_alias(name, CHALLENGER, version)
        why = reasons or "promoted by the gate"
        promoted = promote(name, reason=f"forced: {why}" if decision.forced else why)
    tags = {
        TAG_GATE_DECISION: decision.outcome,
        TAG_GATE_REASONS: reasons,
        TAG_GATE_METRICS: json.dumps(_json_safe(decision.metrics), sort_keys=True, default=str),
        TAG_GATE_TIME: _now(),
        TAG_GATE_FORCED: "true" if decision.forced else "false",
        **extra,
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    return promoted
