"""Package attributes imported on first use (:pep:`562`): a package's ``__init__`` names where each
public name lives, and a command that needs one module of the package does not pay for the others.
Standard library only (:mod:`storage` and :mod:`ingestion` use it)::

    __getattr__ = lazy_attributes(__name__, {"open_store": "storage.db"})

A public name may be the name of one of the package's modules too (``storage.audit``, the function,
from ``storage/audit.py``): Python binds a submodule to its package's attribute when the submodule
is first imported, which, with the names imported eagerly, happened before the ``__init__`` bound
the function over it. Here the submodule may be imported later (by another module of the
package), so the package refuses that binding for such a name: the name stays the function, as
before (the submodule stays importable, ``from storage.audit import audit_row``).
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_attributes"]


def lazy_attributes(package: str, sources: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: a name of ``sources`` is imported from its module
    on first use and kept in the package's namespace; any other name raises ``AttributeError``.
    The package's module keeps a public name from being rebound to a submodule of the same name
    (see the module's documentation)."""
    shadowed = {name for name, module in sources.items() if module == f"{package}.{name}"}

    class _Package(types.ModuleType):
        def __setattr__(self, name: str, value: Any) -> None:
            if name in shadowed and isinstance(value, types.ModuleType):
                return  # the import system binding the submodule ``package.name``: the name wins
            super().__setattr__(name, value)

    sys.modules[package].__class__ = _Package

    def attribute(name: str) -> Any:
        module = sources.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    return attribute
