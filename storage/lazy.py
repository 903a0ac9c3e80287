"""Package attributes imported on first use (:pep:`562`): a package's ``__init__`` names where each
public name lives, and a command that needs one module of the package does not pay for the others.
Standard library only (:mod:`storage` and :mod:`ingestion` use it)::

    __getattr__ = lazy_attributes(__name__, {"open_store": "storage.db"})
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_attributes"]


def lazy_attributes(package: str, sources: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: a name of ``sources`` is imported from its module
    on first use and kept in the package's namespace; any other name raises ``AttributeError``."""

    def attribute(name: str) -> Any:
        module = sources.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    return attribute
