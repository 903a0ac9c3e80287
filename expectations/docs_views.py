"""Great Expectations' Data Docs page view with one Jinja environment per process.

GE's :class:`~great_expectations.render.view.DefaultJinjaPageView` makes a new Jinja environment
for every view, and every ``build_data_docs`` makes new views: each page built parses and compiles
GE's templates again (816 compilations for 16 validation pages; ~40 % of a feature set's
validation with Data Docs, cProfile in ``docs/scale-out.md``). :class:`SharedEnvironmentPageView`
renders the same pages with the same templates, filters and options, but keeps the first
environment of the process (and so its compiled templates) for every later view.

The site configuration of ``expectations.runner`` names this class as the view of its expectation
suite and validation pages; GE imports this module then, never FKS at import.
"""

from __future__ import annotations

import threading
from typing import Any, ClassVar

from great_expectations.render.view import DefaultJinjaPageView

__all__ = ["SharedEnvironmentPageView"]


class SharedEnvironmentPageView(DefaultJinjaPageView):
    """GE's page view; its Jinja environment is shared by every view of the process with the same
    custom styles and views folders (filters are bound to the first view: views differ by those
    folders only)."""

    _environments: ClassVar[dict[tuple[str | None, str | None], Any]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self, custom_styles_directory: str | None = None, custom_views_directory: str | None = None
    ) -> None:
        key = (custom_styles_directory, custom_views_directory)
        with self._lock:
            environment = self._environments.get(key)
            if environment is None:
                super().__init__(custom_styles_directory, custom_views_directory)
                self._environments[key] = self.env
                return
        self.custom_styles_directory = custom_styles_directory
        self.custom_views_directory = custom_views_directory
        self.env = environment
