"""Great Expectations' Data Docs page view with one Jinja environment per process, and its site
builder copying its static assets once per staging folder.

GE's :class:`~great_expectations.render.view.DefaultJinjaPageView` makes a new Jinja environment
for every view, and every ``build_data_docs`` makes new views: each page built parses and compiles
GE's templates again (816 compilations for 16 validation pages; ~40 % of a feature set's
validation with Data Docs, cProfile in ``docs/scale-out.md``). :class:`SharedEnvironmentPageView`
renders the same pages with the same templates, filters and options, but keeps the first
environment of the process (and so its compiled templates) for every later view.

GE's :class:`~great_expectations.render.renderer.site_builder.SiteBuilder` copies GE's static
assets (20 files, 4 MB of stylesheets, fonts and images) into the site at every build, i.e. for
every validation page (~5 ms a feature set, ~2.5 %). :class:`StaticOnceSiteBuilder` builds the same
pages and copies those assets only when the site's folder lacks them: FKS's site folders are a
process's own staging folders, which keep them between builds (``expectations.runner``).

The site configuration of ``expectations.runner`` names these classes (the view of its expectation
suite and validation pages, the site's builder); GE imports this module then, never FKS at import.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, ClassVar

from great_expectations.render.renderer.site_builder import SiteBuilder
from great_expectations.render.view import DefaultJinjaPageView

from expectations.docs_site import STATIC_COMPLETE

__all__ = ["SharedEnvironmentPageView", "StaticOnceSiteBuilder"]


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


class StaticOnceSiteBuilder(SiteBuilder):
    """GE's site builder for a filesystem site (its store backend names a ``base_directory``, as
    ``expectations.runner``'s staging folder does); GE's static assets are copied there only when
    it lacks them (no :data:`STATIC_COMPLETE` marker, which is written after a complete copy)."""

    def build(self, resource_identifiers: Any = None, build_index: bool = True) -> tuple[Any, Any]:
        """The pages of ``resource_identifiers`` (all when None) and the index (``build_index``),
        as GE's ``SiteBuilder.build``; the static assets as the class says."""
        for section_builder in self.site_section_builders.values():
            section_builder.build(resource_identifiers=resource_identifiers)
        marker = Path(self.store_backend["base_directory"]) / "static" / STATIC_COMPLETE
        if not marker.exists():
            self.target_store.copy_static_assets()
            marker.touch()
        _, index_links = self.site_index_builder.build(build_index=build_index)
        return self.get_resource_url(only_if_exists=False), index_links
