"""The overview page in a real browser: headless Chromium (Debian's ``chromium`` and
``chromium-driver``, driven by Selenium) against the real service on loopback, over the shipped
samples (SPX, GOOGL, EURUSD), a tiny registered forecaster and a paper account.

It proves: the page loads with zero console errors and prints its first-load time; the listings
hold every stored asset with its last close as the database has it; sorting by a column orders
the rows; a bar written to the store shows on the open page without a reload; the forecasts are
those ``POST /v1/forecast`` and ``/v1/explain`` answer; the asset page draws its candles.
Screenshots of both pages go to the test's output folder (the path is printed).

Nothing is installed at run time: the module is skipped, saying why, where Chromium or its driver
is missing (``.ci/run`` installs them: ``apt-get install chromium chromium-driver``).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pandas as pd
import pytest

from config.assets import load_asset_specs
from config.settings import Settings
from tests.serving_support import REPO, Registry, make_registry, running

CHROMIUM = Path(os.environ.get("FKS_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("FKS_TEST_CHROMEDRIVER", "/usr/bin/chromedriver"))

if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
    pytest.skip(
        f"no headless browser: {CHROMIUM} or {CHROMEDRIVER} is missing "
        "(install Debian's chromium and chromium-driver, as .ci/run does)",
        allow_module_level=True,
    )
webdriver = pytest.importorskip(
    "selenium.webdriver", reason="selenium is not installed (pip install -e .[dev])"
)
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

pytestmark = pytest.mark.slow

SAMPLES = {"GOOGL": ("googl_daily.csv", "1d"), "EURUSD": ("eurusd_hourly.csv", "1h")}
ACCOUNT = "default"
REFRESH_S = 0.5
T = TypeVar("T")


@dataclass
class Site:
    url: str
    settings: Settings
    registry: Registry
    shots: Path


def _store_samples(registry: Registry) -> None:
    """The sample assets registered and stored (SPX is stored by make_registry), one quarantined
    SPX bar, and a paper account holding SPX, marked over the last 30 sessions, with an open
    GOOGL limit order."""
    from execution.oms import OrderManager
    from execution.orders import Fill, OrderRequest, OrderType, Side
    from market.bars import canonical_bars
    from providers.csv import parse_bars_csv
    from storage import QuarantinedRow, open_store, quarantine_rows, read_bars, upsert_assets, upsert_bars

    engine = open_store(registry.db_url)
    with engine.begin() as conn:
        upsert_assets(conn, load_asset_specs(REPO / "config" / "assets.yaml"))
        for symbol, (name, timeframe) in SAMPLES.items():
            bars = canonical_bars(parse_bars_csv(REPO / "data" / "samples" / name).bars)
            upsert_bars(conn, symbol, timeframe, bars, source="csv")
        spx = read_bars(conn, "SPX", "1d")
        bad = spx.index[-40]
        quarantine_rows(
            conn, symbol="SPX", timeframe="1d", source="csv",
            rows=[QuarantinedRow(bad, {"close": -1.0}, ["prices_positive"], "close <= 0")],
        )  # fmt: skip
    oms = OrderManager(engine, ACCOUNT, initial_cash=100_000.0)
    entry = spx.iloc[-30]
    order = oms.submit(OrderRequest("b-spx", ACCOUNT, "SPX", Side.BUY, 10.0))
    oms.accept(order.id)
    oms.apply_fill(Fill(order.id, "SPX", Side.BUY, 10.0, float(entry["close"]), 1.0, spx.index[-30]), "f-spx")
    for ts, close in spx["close"].iloc[-30:].items():
        oms.mark_to_market({"SPX": float(close)}, pd.Timestamp(ts) + pd.Timedelta(hours=21))
    limit = OrderRequest("l-googl", ACCOUNT, "GOOGL", Side.BUY, 5.0, OrderType.LIMIT, limit_price=900.0)
    oms.accept(oms.submit(limit).id)
    engine.dispose()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    registry = make_registry(tmp_path_factory.mktemp("overview"))
    _store_samples(registry)
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("data"),
        db_url=registry.db_url,
        mlflow_tracking_uri=registry.tracking_uri,
        serve_auth=False,  # loopback: the page answers without a key
        overview_refresh_s=REFRESH_S,
    )
    shots = tmp_path_factory.mktemp("screenshots")
    with running(settings) as url:
        # a program's first request: the service computed the overview once already (its
        # start-up warm-up); this waits for it so the browser's first load is the page's own
        assert httpx.get(f"{url}/v1/overview", timeout=60).status_code == 200
        yield Site(url, settings, registry, shots)
    print(f"\nscreenshots: {shots}")


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must never download a driver
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    profile = tmp_path_factory.mktemp("chromium-profile")
    for arg in (
        "--headless=new", "--no-sandbox", "--disable-background-networking", "--disable-component-update",
        "--no-first-run", "--disable-dev-shm-usage", "--disable-gpu", f"--user-data-dir={profile}",
        "--window-size=1400,1100",
    ):  # fmt: skip
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    # the browser's own start (its renderer, fonts) is not the page's load: a page with text first
    driver.get("data:text/html,<title>started</title><p>started</p>")
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _console_errors(driver: Any) -> list[dict[str, Any]]:
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def _price(value: float) -> str:
    return f"{value:,.2f}" if abs(value) >= 1 else f"{value:.6g}"


def _stored_last(site: Site) -> dict[str, float]:
    from storage import open_store, read_bars

    engine = open_store(site.registry.db_url)
    try:
        with engine.connect() as conn:
            frames = {
                "SPX": read_bars(conn, "SPX", "1d"),
                **{s: read_bars(conn, s, tf) for s, (_, tf) in SAMPLES.items()},
            }
    finally:
        engine.dispose()
    return {s: float(f["close"].iloc[-1]) for s, f in frames.items()}


def _live(read: Callable[[], T], what: str) -> T:
    """``read()``, again if the live refresh replaced an element between finding and using it."""
    for _ in range(20):
        try:
            return read()
        except StaleElementReferenceException:
            time.sleep(0.05)
    raise AssertionError(f"{what} kept being replaced under the reader")


def _rows(driver: Any) -> list[tuple[str, str]]:
    """(symbol, last price text) of the listing rows in their order on the page."""
    return _live(
        lambda: [
            (r.get_attribute("data-symbol"), r.find_element(By.CSS_SELECTOR, "td.price").text)
            for r in driver.find_elements(By.CSS_SELECTOR, "#listings tbody tr[data-symbol]")
        ],
        "the listings",
    )


def _text(driver: Any, css: str) -> str:
    return _live(lambda: driver.find_element(By.CSS_SELECTOR, css).text, css)


_SHOWN = (
    "return Array.from(document.querySelectorAll('#listings tbody tr[data-symbol]'))"
    ".filter(r => r.getClientRects().length > 0).map(r => r.dataset.symbol)"
)


def _shown(driver: Any) -> list[str]:
    """Symbols of the listing rows the page shows, read in one script: a live refresh
    replacing the rows between finding and reading them cannot make the read stale."""
    return list(driver.execute_script(_SHOWN))


_LOAD_END = "return performance.getEntriesByType('navigation')[0].loadEventEnd"


def _click(driver: Any, css: str) -> None:
    """Click ``css``, again if the live refresh replaced it between finding and clicking."""
    _live(lambda: driver.find_element(By.CSS_SELECTOR, css).click(), css)


def test_overview_loads_without_errors_and_lists_the_stored_prices(site: Site, browser: Any) -> None:
    browser.get(f"{site.url}/")
    WebDriverWait(browser, 30).until(
        lambda d: (
            d.execute_script("return document.readyState") == "complete"
            and d.execute_script("return performance.getEntriesByType('navigation')[0].loadEventEnd") > 0
        )
    )
    first_load_ms, response_ms, dom_ms = browser.execute_script(
        "const n = performance.getEntriesByType('navigation')[0];"
        "return [n.loadEventEnd - n.startTime, n.responseEnd - n.startTime, n.domInteractive - n.startTime];"
    )
    print(
        f"\nfirst load of /: {first_load_ms:.0f} ms from navigation start to load event end "
        f"(HTML received after {response_ms:.0f} ms, DOM interactive after {dom_ms:.0f} ms)"
    )
    # a loose bound against a regression by an order of magnitude; the figure is reported above
    assert first_load_ms < 3000
    again = []
    for _ in range(3):
        browser.refresh()
        WebDriverWait(browser, 30).until(lambda d: d.execute_script(_LOAD_END) > 0)
        again.append(
            browser.execute_script(_LOAD_END + " - performance.getEntriesByType('navigation')[0].startTime")
        )
    print(f"reloads: {', '.join(f'{ms:.0f}' for ms in again)} ms (load average {os.getloadavg()[0]:.1f})")

    stored = _stored_last(site)
    rows = dict(_rows(browser))
    assert sorted(rows) == sorted(stored)
    assert rows == {s: _price(v) for s, v in stored.items()}
    spx = '#listings tr[data-symbol="SPX"]'
    quarantined = _live(
        lambda: browser.find_element(By.CSS_SELECTOR, spx).get_attribute("data-quarantined"), spx
    )
    assert quarantined == "1"  # the quarantined bar pending a decision
    models = _text(browser, "#models")
    assert "fks-forecaster" in models and "@challenger" in models and "answering" in models
    book = _text(browser, f'.book[data-account="{ACCOUNT}"]')
    assert "trading" in book and "SPX" in book and "GOOGL" in book and "limit" in book

    # the forecasts are what POST /v1/forecast and /v1/explain answer for the stored bars
    WebDriverWait(browser, 90).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, '#forecasts tr[data-symbol="SPX"]')
    )
    forecast = httpx.post(f"{site.url}/v1/forecast", json={"series": [{"symbol": "SPX"}]}, timeout=30).json()
    explain = httpx.post(f"{site.url}/v1/explain", json={"series": {"symbol": "SPX"}, "top_k": 3}, timeout=60)
    row = _text(browser, '#forecasts tr[data-symbol="SPX"]')
    assert f"{forecast['forecasts'][0]['prob_up']:.3f}" in row
    assert f"{forecast['forecasts'][0]['forecast_log_return']:+.5f}" in row
    for attribution in explain.json()["attributions"]:
        assert f"{attribution['feature']} {attribution['shap']:+.2e}" in row
    assert not _console_errors(browser), _console_errors(browser)
    browser.save_screenshot(str(site.shots / "overview.png"))


def test_sorting_orders_the_listings(site: Site, browser: Any) -> None:
    browser.get(f"{site.url}/")
    WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#listings tbody tr"))
    stored = _stored_last(site)
    by_price = sorted(stored, key=stored.__getitem__)
    _click(browser, '#listings th[data-key="price"]')
    WebDriverWait(browser, 10).until(lambda d: [s for s, _ in _rows(d)] == by_price)
    _click(browser, '#listings th[data-key="price"]')
    WebDriverWait(browser, 10).until(lambda d: [s for s, _ in _rows(d)] == by_price[::-1])
    time.sleep(3 * REFRESH_S)  # the order survives the live refreshes
    assert [s for s, _ in _rows(browser)] == by_price[::-1]
    _click(browser, '#listings th[data-key="symbol"]')
    WebDriverWait(browser, 10).until(lambda d: [s for s, _ in _rows(d)] == sorted(stored))

    Select(browser.find_element(By.ID, "classfilter")).select_by_value("fx")
    WebDriverWait(browser, 10).until(lambda d: _shown(d) == ["EURUSD"])
    time.sleep(3 * REFRESH_S)  # the filter survives the live refreshes
    assert _shown(browser) == ["EURUSD"]
    Select(browser.find_element(By.ID, "classfilter")).select_by_value("")
    WebDriverWait(browser, 10).until(lambda d: _shown(d) == sorted(stored))
    assert not _console_errors(browser)


def test_a_new_bar_changes_the_price_on_the_open_page(site: Site, browser: Any) -> None:
    from market.bars import canonical_bars
    from storage import open_store, upsert_bars

    browser.get(f"{site.url}/")
    WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#listings tbody tr"))
    before = dict(_rows(browser))["SPX"]
    last = _stored_last(site)["SPX"]
    close = round(last * 1.0123, 2)
    bar = pd.DataFrame(
        {"open": [last], "high": [close + 1.0], "low": [last - 1.0], "close": [close], "volume": [3.1e9]},
        index=pd.DatetimeIndex([pd.Timestamp("2019-01-02", tz="UTC")], name="ts"),
    )
    engine = open_store(site.registry.db_url)
    with engine.begin() as conn:
        upsert_bars(conn, "SPX", "1d", canonical_bars(bar), source="csv")
    engine.dispose()
    started = time.perf_counter()
    WebDriverWait(browser, 20).until(lambda d: dict(_rows(d))["SPX"] == _price(close))
    print(f"\nnew SPX close on the open page after {time.perf_counter() - started:.2f} s (was {before})")
    assert before != _price(close)
    assert not _console_errors(browser)


def test_the_asset_page_draws_its_chart(site: Site, browser: Any) -> None:
    from storage import count_bars, open_store

    engine = open_store(site.registry.db_url)
    with engine.connect() as conn:
        stored = count_bars(conn, "SPX", "1d")
    engine.dispose()
    answered = httpx.post(f"{site.url}/v1/forecast", json={"series": [{"symbol": "SPX"}]}, timeout=30)
    assert answered.status_code == 200  # a served forecast: stored in `predictions` by the writer
    browser.get(f"{site.url}/assets/SPX")
    WebDriverWait(browser, 60).until(lambda d: d.find_element(By.ID, "chart").get_attribute("data-bars"))
    WebDriverWait(browser, 30).until(lambda d: "fks-forecaster served" in d.find_element(By.ID, "fnote").text)
    chart = browser.find_element(By.ID, "chart")
    assert int(chart.get_attribute("data-bars")) == min(stored, 500)
    assert float(chart.get_attribute("data-last")) == _stored_last(site)["SPX"]
    assert chart.find_elements(By.TAG_NAME, "canvas")  # Lightweight Charts drew into it
    legend = browser.find_element(By.ID, "legend").text
    assert "sma_20" in legend and "bb_upper_20_2" in legend  # the feature set's price overlays
    info = browser.find_element(By.ID, "assetinfo").text
    assert "1 quarantined" in info
    time.sleep(0.5)
    assert not _console_errors(browser)
    browser.save_screenshot(str(site.shots / "asset.png"))


def test_with_auth_on_the_key_is_asked_once_per_tab(site: Site, browser: Any, tmp_path: Path) -> None:
    from storage import open_store
    from storage.api_keys import create_api_key

    engine = open_store(site.registry.db_url)
    with engine.begin() as conn:
        _, key = create_api_key(conn, "page-test")
    engine.dispose()
    settings = site.settings.model_copy(
        update={"serve_auth": True, "serve_models": [], "serve_optional_models": [], "data_dir": tmp_path}
    )
    with running(settings) as url:
        browser.get(f"{url}/")
        form = browser.find_element(By.ID, "keyform")
        assert form.is_displayed()
        assert not browser.find_elements(By.ID, "listings")  # no figures without a key
        browser.find_element(By.ID, "key").send_keys(key)
        form.submit()
        WebDriverWait(browser, 30).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, '#listings tr[data-symbol="SPX"]')
        )
        assert browser.execute_script("return sessionStorage.getItem('fks-api-key')") == key
        browser.get(f"{url}/assets/GOOGL")  # the same tab: the key is not asked again
        WebDriverWait(browser, 30).until(lambda d: d.find_element(By.ID, "chart").get_attribute("data-bars"))
        assert not browser.find_element(By.ID, "keyform").is_displayed()
        assert not _console_errors(browser)
        browser.get(f"{url}/health")  # leave the polling page; then a new tab's state, a wrong key
        browser.execute_script("sessionStorage.clear()")
        browser.get(f"{url}/")
        browser.find_element(By.ID, "key").send_keys("fks_wrong")
        browser.find_element(By.ID, "keyform").submit()
        WebDriverWait(browser, 30).until(
            lambda d: "unknown API key" in d.find_element(By.ID, "keyerror").text
        )
        assert browser.find_element(By.ID, "keyform").is_displayed()
        assert browser.execute_script("return sessionStorage.getItem('fks-api-key')") is None
        browser.get_log("browser")  # the refused request is logged by the browser itself; drop it
