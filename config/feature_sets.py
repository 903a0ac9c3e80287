"""The feature-sets file: ``config/feature_sets.yaml`` (or another of the same shape) read as data.

``features.get_feature_set`` turns an entry into a validated ``FeatureSet``; this module only
reads the file, so that ``features/`` does no I/O of its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

DEFAULT_FEATURE_SETS_FILE = Path(__file__).resolve().parent / "feature_sets.yaml"
"""The shipped feature sets (``config/feature_sets.yaml``)."""


def load_feature_sets(path: str | Path | None = None) -> tuple[Path, dict[str, Any]]:
    """The ``feature_sets`` mapping of ``path`` (default :data:`DEFAULT_FEATURE_SETS_FILE`).

    Returns:
        ``(the file's path, {set name: its raw mapping})`` in file order.

    Raises:
        ValueError: the file is missing, not YAML, or has no non-empty ``feature_sets`` mapping.
    """
    file = Path(path) if path else DEFAULT_FEATURE_SETS_FILE
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"feature sets file {file} does not exist; pass the path of a YAML file") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"feature sets file {file} is not valid YAML: {exc}") from None
    sets = raw.get("feature_sets") if isinstance(raw, dict) else None
    if not isinstance(sets, dict) or not sets:
        raise ValueError(
            f"feature sets file {file} must hold a mapping "
            "'feature_sets: {<name>: {description, indicators}}'"
        )
    return file, sets
