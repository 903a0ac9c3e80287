"""The shared Data Docs site's index: rendered from the page list, not from a scan of the site."""

from __future__ import annotations

import multiprocessing
import re
from pathlib import Path

from expectations.docs_site import PAGE_LIST, record_pages, site_index


def _page(site: Path, n: int, suite: str = "bars") -> Path:
    """Validation page number ``n`` (run time grows with ``n``), written to disk; relative path."""
    relative = (
        Path("validations") / suite / f"ingest-run-{n}" / f"20260101T{n:06d}.000000Z" / f"batch{n}.html"
    )
    (site / relative).parent.mkdir(parents=True, exist_ok=True)
    (site / relative).write_text(f"page {n}", encoding="utf-8")
    return relative


def _linked(index: str) -> list[str]:
    return re.findall(r'href="(validations/[^"]+)"', index)


def test_a_site_without_a_page_list_gets_its_pages_from_one_scan_then_only_what_is_published(
    tmp_path: Path,
) -> None:
    site = tmp_path / "site"
    older = [_page(site, n) for n in (3, 1, 2)]  # pages of an FKS that kept no list
    (site / "expectations").mkdir()
    (site / "expectations" / "bars.html").write_text("suite", encoding="utf-8")
    record_pages(site, [new := _page(site, 4)])
    index = site_index(site)
    assert _linked(index) == [p.as_posix() for p in (new, older[0], older[2], older[1])]  # newest first
    assert 'href="expectations/bars.html"' in index and "Validation results (4)" in index
    _page(site, 5)  # on disk but never published through the list: no scan finds it
    assert _linked(site_index(site)) == _linked(index)
    record_pages(site, [newest := _page(site, 6)])
    assert _linked(site_index(site))[0] == newest.as_posix()
    assert len((site / PAGE_LIST).read_text(encoding="utf-8").splitlines()) == 5


def test_the_index_links_the_newest_pages_on_disk_once_each(tmp_path: Path) -> None:
    site = tmp_path / "site"
    pages = [_page(site, n) for n in range(1, 8)]
    record_pages(site, pages)
    record_pages(site, pages[-2:])  # the same pages again (two processes scanning an old site)
    (site / pages[-1]).unlink()  # removed by hand: not linked
    index = site_index(site, limit=3)
    assert _linked(index) == [p.as_posix() for p in (pages[5], pages[4], pages[3])]
    assert "the newest 3 of 7" in index


def _publish(site: Path, worker: int, count: int) -> None:
    for n in range(count):
        record_pages(site, [_page(site, worker * 1000 + n, suite=f"s{worker}")])


def test_processes_publishing_at_once_lose_no_page_and_tear_no_line(tmp_path: Path) -> None:
    site = tmp_path / "site"
    record_pages(site, [_page(site, 0)])  # the list exists: nobody scans
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_publish, args=(site, w, 60)) for w in range(1, 5)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    lines = (site / PAGE_LIST).read_text(encoding="utf-8").splitlines()
    on_disk = sorted(p.relative_to(site).as_posix() for p in (site / "validations").rglob("*.html"))
    assert sorted(lines) == on_disk and len(lines) == 1 + 4 * 60
    assert len(_linked(site_index(site))) == len(lines)
