"""The one shared Great Expectations Data Docs site: files published atomically, and its index.

Every validating process renders its pages into a staging folder of its own, then publishes them
into the site (:mod:`expectations.runner`). The site's ``index.html`` links the newest
:data:`INDEX_PAGES` validation pages, newest first, and every suite page. Which validation pages
exist is kept in the site's page list (:data:`PAGE_LIST`, one path relative to the site per line):
each publish appends its new pages to it in one ``O_APPEND`` write (concurrent processes never
interleave lines) and the index is rendered from its tail. Before, the index was rebuilt from a
scan of every page on disk after every page published, a cost that grew with the site (0.03 s at
1,000 pages, 0.29 s at 10,000, on every validation). A site without a page list (made by an older
FKS) gets one from a single scan, on its first publish. A process killed between publishing a
page and appending it leaves that page on disk, unlisted (still under ``validations/``).
"""

from __future__ import annotations

import html
import os
import uuid
from collections.abc import Iterable
from pathlib import Path

STATIC_COMPLETE = ".fks-static-complete"
"""Written into a Data Docs folder's ``static/`` once GE's static assets are all copied there
(:class:`expectations.docs_views.StaticOnceSiteBuilder`); never published."""

PAGE_LIST = ".fks-pages"
"""The site's list of published validation pages (relative paths, oldest first, one per line)."""
INDEX_PAGES = 500
"""How many of the newest validation pages ``index.html`` links (older ones stay in the site's
``validations/<suite>/<run>/<run time>/`` folders)."""
_WINDOW = 4
"""The index sorts the last ``_WINDOW * limit`` pages of the list: appends arrive in time order
but for processes publishing at the same moment."""


def write_atomically(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` under a temporary name in the same folder, then rename it over
    ``target`` (atomic on POSIX and Windows): a reader sees the old file or the new, never half."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.parent / f".{target.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"
    try:
        temporary.write_bytes(data)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def _age(page: str) -> tuple[str, str]:
    """Sort key of a validation page, ``validations/<suite>/<run>/<run time>/<batch>.html``: its
    run time, then its path."""
    parts = page.split("/")
    return (parts[-2] if len(parts) >= 2 else "", page)


def record_pages(site: Path, pages: Iterable[Path]) -> None:
    """Append the validation ``pages`` just published (paths relative to ``site``) to the site's
    page list; a site without one first gets every validation page on disk (oldest first)."""
    listing = site / PAGE_LIST
    own = [p.as_posix() for p in pages]
    lines: list[str] = []
    if not listing.exists():  # two processes may both scan: the index drops the repeats
        found = {p.relative_to(site).as_posix() for p in (site / "validations").rglob("*.html")}
        lines = sorted(found.difference(own), key=_age)
    lines += own
    if not lines:
        return
    data = "".join(f"{line}\n" for line in lines).encode("utf-8")
    site.mkdir(parents=True, exist_ok=True)
    handle = os.open(listing, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = 0
        while written < len(data):
            written += os.write(handle, data[written:])
    finally:
        os.close(handle)


def site_index(site: Path, limit: int = INDEX_PAGES) -> str:
    """The shared site's ``index.html``: its newest ``limit`` validation pages still on disk
    (newest first, by the run time in their path) from the page list, and every suite page."""
    try:
        listed = (site / PAGE_LIST).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        listed = []
    recorded = list(dict.fromkeys(line for line in listed if line))
    pages: list[str] = []
    for page in sorted(recorded[-_WINDOW * limit :], key=_age, reverse=True):
        if len(pages) == limit:
            break
        if (site / page).is_file():
            pages.append(page)
    suites = sorted(p.relative_to(site).as_posix() for p in (site / "expectations").rglob("*.html"))

    def rows(paths: list[str]) -> str:
        return "\n".join(f'<li><a href="{html.escape(p)}">{html.escape(p)}</a></li>' for p in paths)

    shown = (
        f"{len(pages)}"
        if len(pages) == len(recorded)
        else f"the newest {len(pages)} of {len(recorded)}; all are under validations/"
    )
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>FKS Data Docs</title>'
        '<link rel="stylesheet" href="static/styles/data_docs_default_styles.css"></head><body>\n'
        f"<h1>FKS Data Docs</h1>\n<h2>Validation results ({shown})</h2>\n<ul>\n{rows(pages)}\n</ul>\n"
        f"<h2>Expectation suites ({len(suites)})</h2>\n<ul>\n{rows(suites)}\n</ul>\n</body></html>\n"
    )
