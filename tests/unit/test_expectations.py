"""Suites, policy file, derived-check kernels, the features suite and Data Docs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from config.validation import Severity, load_validation_policy
from expectations import load_suite, validate_bars, validate_features
from expectations.checks import ReturnParams, on_grid_and_calendar, return_scores, ts_in_order, ts_unique
from market.calendars import get_calendar


def test_shipped_suites_load_and_the_policy_names_only_their_ids() -> None:
    policy = load_validation_policy()
    for name in ("bars", "features"):
        suite = load_suite(name)
        assert suite.name == name and suite.version == {"bars": 2, "features": 1}[name]
        assert set(policy.suite(name).severity) <= set(suite.ids())
    bars = load_suite("bars")
    assert {
        "prices_positive",
        "ts_on_grid",
        "ts_on_calendar",
        "return_in_bound",
        "no_spike",
        "split_like",
        "split_unadjusted",
        "return_ceiling",
        "stale_price",
    } <= set(bars.ids())
    severity = policy.suite("bars").severity_of
    assert severity("ts_increasing") is Severity.WARNING
    # a big one-way move is reported and kept; quarantine needs evidence of an error
    assert severity("return_in_bound") is Severity.WARNING and severity("stale_price") is Severity.WARNING
    assert severity("split_unadjusted") is Severity.WARNING
    assert {severity(i) for i in ("no_spike", "split_like", "return_ceiling")} == {Severity.CRITICAL}


def test_suite_with_unknown_type_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps({"name": "bad", "version": 1, "expectations": [{"id": "x", "type": "ExpectNope"}]})
    )
    with pytest.raises(ValueError, match=r"bad\.json.*'x'.*ExpectNope"):
        load_suite(bad)


def test_policy_errors_name_the_file_and_the_key(tmp_path: Path) -> None:
    text = load_validation_policy.__globals__["DEFAULT_POLICY_FILE"].read_text()
    broken = tmp_path / "validation.yaml"
    broken.write_text(
        text.replace("1h: {window: 120, k: 15.0, floor: 0.03,", "1h: {window: 120, k: -1, floor: 0.03,")
    )
    with pytest.raises(ValueError, match=r"validation\.yaml.*returns\.bounds\.fx\.1h\.k"):
        load_validation_policy(broken)
    broken.write_text(text.replace("ts_on_grid: critical", "ts_on_grid: sometimes"))
    with pytest.raises(ValueError, match=r"suites\.bars\.severity\.ts_on_grid"):
        load_validation_policy(broken)
    with pytest.raises(ValueError, match="not found"):
        load_validation_policy(tmp_path / "missing.yaml")
    policy = load_validation_policy()
    with pytest.raises(ValueError, match="unknown asset class 'bond'"):
        policy.return_bound("bond", "1d")


def test_policy_naming_an_unknown_expectation_is_refused() -> None:
    policy = load_validation_policy().with_severity("bars", "no_such_check", "warning")
    frame = pd.DataFrame(
        {"ts": pd.date_range("2024-01-01", periods=3, freq="D", tz="UTC")}
        | {c: [1.0, 1.0, 1.0] for c in ("open", "high", "low", "close", "volume")}
    )
    with pytest.raises(ValueError, match="no_such_check"):
        validate_bars(
            frame,
            symbol="X",
            timeframe="1d",
            calendar=get_calendar("24/7"),
            asset_class="crypto",
            policy=policy,
        )


def test_ts_unique_fails_every_conflicting_row_and_later_exact_copies() -> None:
    ts = np.array([1, 2, 2, 3, 3, 3, 4], dtype=np.int64)
    values = np.array([[1.0], [2.0], [2.5], [3.0], [3.0], [3.0], [np.nan]])
    assert ts_unique(ts, values).tolist() == [True, False, False, True, False, False, True]
    assert ts_in_order(np.array([1, 3, 2, 4], dtype=np.int64)).tolist() == [True, True, False, True]


def test_grid_and_calendar_for_daily_and_intraday() -> None:
    xnys = get_calendar("XNYS")
    daily = pd.DatetimeIndex(["2018-12-24", "2018-12-25", "2018-12-29", "2018-12-26 05:00"], tz="UTC")
    grid, cal, _ = on_grid_and_calendar(daily, "1d", xnys)
    assert grid.tolist() == [True, True, True, False]
    assert cal.tolist() == [True, False, False, True]
    fx = get_calendar("24/5")
    hourly = pd.DatetimeIndex(["2017-03-08 10:00", "2017-03-08 10:17", "2017-03-11 10:00", pd.NaT], tz="UTC")
    grid, cal, _ = on_grid_and_calendar(hourly, "1h", fx)
    assert grid.tolist() == [True, False, True, True]
    assert cal.tolist() == [True, True, False, True]


def test_return_scores_are_causal_and_spikes_need_both_legs() -> None:
    rng = np.random.default_rng(3)
    log_close = np.cumsum(rng.normal(0, 0.01, 400))
    params = ReturnParams(window=50, k=10.0, floor=0.05)
    base = return_scores(log_close, 0, params)
    z, spike = base.z, base.spike
    assert np.nanmax(z) <= 1.0 and not spike.any()
    assert np.isnan(z[: params.min_periods + 1]).all()  # no bound judged from too few returns
    jumped = log_close.copy()
    jumped[200] += 0.4
    flags2 = return_scores(jumped, 0, params)
    z2, spike2 = flags2.z, flags2.spike
    assert np.flatnonzero(spike2).tolist() == [200]
    assert z2[200] > 1.0 and z2[201] <= 1.0  # the reversal is scored from the close before the spike
    np.testing.assert_array_equal(z2[:200], z[:200])  # nothing before the spike moved
    shifted = log_close.copy()
    shifted[200:] += 0.4  # a level shift is a return outlier, not a spike
    flags3 = return_scores(shifted, 0, params)
    assert not flags3.spike.any() and flags3.z[200] > 1.0 and not flags3.split_like.any()
    flags4 = return_scores(shifted[:201], 0, params)
    np.testing.assert_array_equal(flags4.z, flags3.z[:201])


def test_validate_features_flags_nulls_after_warmup_ranges_and_infinities() -> None:
    n = 30
    frame = pd.DataFrame(
        {
            "rsi_14": np.r_[[np.nan] * 5, np.linspace(20, 80, n - 5)],
            "atr_14": np.r_[[np.nan] * 5, np.full(n - 5, 1.5)],
            "ret_1": np.r_[[np.nan], np.full(n - 1, 0.001)],
            "label": ["x"] * n,  # not numeric: ignored
        }
    )
    assert validate_features(frame, warmup=5).failures == {}
    frame.loc[10, "rsi_14"] = 101.0
    frame.loc[12, "ret_1"] = np.inf
    frame.loc[15, "atr_14"] = np.nan
    frame.loc[17, "atr_14"] = -0.1
    report = validate_features(frame, warmup=5)
    assert report.failures == {
        10: ["rsi_range"],
        12: ["values_finite"],
        15: ["no_nulls_after_warmup"],
        17: ["volatility_non_negative"],
    }
    assert report.suite == "features" and not report.success
    with pytest.raises(ValueError, match="warmup"):
        validate_features(frame, warmup=-1)


def test_data_docs_are_written_when_docs_dir_is_given(tmp_path: Path) -> None:
    ts = pd.date_range("2024-01-01", periods=50, freq="h", tz="UTC")
    close = 100 * np.exp(np.cumsum(np.full(50, 0.001)))
    frame = pd.DataFrame(
        {"ts": ts, "open": close, "high": close * 1.001, "low": close * 0.999, "close": close}
    )
    frame["volume"] = 10.0
    frame.loc[7, "volume"] = -5.0
    docs = tmp_path / "gx"
    kwargs = {"symbol": "BTC", "timeframe": "1h", "calendar": get_calendar("24/7"), "asset_class": "crypto"}
    report = validate_bars(frame, policy=load_validation_policy(), docs_dir=docs, **kwargs)  # type: ignore[arg-type]
    assert report.failures == {7: ["volume_non_negative"]}
    assert report.docs_path is not None and report.docs_path.suffix == ".html"
    assert report.docs_path.is_file() and docs in report.docs_path.parents
    assert (docs / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html").is_file()
    kwargs["run"] = "ingest run 7"
    again = validate_bars(frame, policy=load_validation_policy(), docs_dir=docs, **kwargs)  # type: ignore[arg-type]
    assert again.docs_path is not None and again.docs_path.is_file()
    assert again.docs_path != report.docs_path  # one page per validation run
    # each page names its series and its run, not "Data asset: None"
    page = again.docs_path.read_text(encoding="utf-8")
    assert "Data asset: BTC 1h bars, ingest run 7" in page and "Data asset: None" not in page
    assert "ingest-run-7" in again.docs_path.parts
    first = report.docs_path.read_text(encoding="utf-8")
    assert "Data asset: BTC 1h bars, validation-" in first and "Data asset: None" not in first
    features = pd.DataFrame({"rsi_14": np.linspace(10.0, 90.0, 20)})
    checked = validate_features(features, warmup=0, docs_dir=docs, series="BTC 1h features core v1", run="r1")
    assert checked.docs_path is not None
    assert "Data asset: BTC 1h features core v1, r1" in checked.docs_path.read_text(encoding="utf-8")


def test_data_docs_copy_ge_s_static_assets_once_per_process_and_publish_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GE copies its static assets (4 MB) at every site build; FKS's builder copies them into its
    staging folder once, keeps them there between builds, and the shared site has them all."""
    from great_expectations.data_context.store.html_site_store import HtmlSiteStore

    from expectations.docs_site import STATIC_COMPLETE

    copies: list[int] = []
    original = HtmlSiteStore.copy_static_assets

    def counted(self: HtmlSiteStore, *args: object, **kwargs: object) -> object:
        if not args and not kwargs:  # a build's call (GE recurses into each folder with its path)
            copies.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(HtmlSiteStore, "copy_static_assets", counted)
    docs = tmp_path / "docs"
    features = pd.DataFrame({"rsi_14": np.linspace(10.0, 90.0, 20)})
    pages = [
        validate_features(
            features, warmup=0, docs_dir=docs, series=f"S{i} 1h features", run=f"r{i}"
        ).docs_path
        for i in range(3)
    ]
    assert all(page is not None and page.is_file() for page in pages) and len(set(pages)) == 3
    assert len(copies) == 1
    site = docs / "gx" / "uncommitted" / "data_docs" / "local_site"
    (staging,) = (docs / "gx" / ".staging").iterdir()
    staged = sorted(p.relative_to(staging / "static") for p in (staging / "static").rglob("*") if p.is_file())
    published = sorted(p.relative_to(site / "static") for p in (site / "static").rglob("*") if p.is_file())
    assert len(staged) > 10 and Path(STATIC_COMPLETE) in staged
    assert published == [p for p in staged if p.name != STATIC_COMPLETE]  # every asset, not the marker
    assert sorted(p.name for p in staging.iterdir()) == ["static"]  # the pages were published and removed


def test_one_ge_context_per_process_serves_every_docs_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process validating into a second data folder reuses its GE context (suites and
    checkpoints registered once); each folder still gets its own pages, index and staging."""
    import great_expectations as gx

    from expectations import runner

    monkeypatch.setattr(runner, "_ENGINES", {})
    contexts: list[object] = []
    original = gx.get_context

    def counted(*args: object, **kwargs: object) -> object:
        context = original(*args, **kwargs)  # type: ignore[call-overload]
        contexts.append(context)
        return context

    monkeypatch.setattr(gx, "get_context", counted)
    features = pd.DataFrame({"rsi_14": np.linspace(10.0, 90.0, 20)})
    folders = [tmp_path / "a", tmp_path / "b"]
    pages = [
        validate_features(features, warmup=0, docs_dir=d, series=f"S {d.name}", run=f"run-{d.name}").docs_path
        for d in [*folders, folders[0]]
    ]
    assert len(contexts) == 1
    for folder in folders:
        site = folder / "gx" / "uncommitted" / "data_docs" / "local_site"
        mine = [p for p in pages if p is not None and site in p.parents]
        assert mine and all(p.is_file() for p in mine)
        index = (site / "index.html").read_text(encoding="utf-8")
        others = [o for o in folders if o != folder]
        assert f"run-{folder.name}" in index and all(f"run-{o.name}" not in index for o in others)
        assert (site / "static").is_dir() and any((site / "expectations").iterdir())
        (staging,) = (folder / "gx" / ".staging").iterdir()
        assert sorted(p.name for p in staging.iterdir()) == ["static"]
    assert len(pages) == 3 and pages[0] != pages[2]
