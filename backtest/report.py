"""Backtest reports: figures, a metrics table and a self-contained HTML tearsheet.

::

    from backtest import run
    from backtest.report import metrics_table, write_tearsheet

    results = {"strategy": run(prices, positions), "buy and hold": run(prices, ones)}
    table = metrics_table(results)                   # rows: metrics, columns: strategy, benchmarks
    page = write_tearsheet(results, Path("data/reports/sp500"), title="LSTM long/flat on SP500")

Every function takes :class:`~backtest.engine.BacktestResult` objects. Where a function takes a
mapping of results, the **first** entry is the strategy and the others are benchmarks (buy and
hold, baselines); their names are the mapping's keys.

Figures are plain ``matplotlib.figure.Figure`` objects (no pyplot state, no display needed):
save one with ``fig.savefig(path_or_buffer, format="png")``. matplotlib is imported inside the
functions, so ``import backtest.report`` is cheap.

Annualisation (the rolling Sharpe ratio and its default window) uses the result's own
``periods_per_year``, the figure its metrics were annualised with.
"""

from __future__ import annotations

import base64
import html
import io
import math
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from backtest.engine import BacktestResult, Costs

__all__ = [
    "METRIC_LABELS",
    "equity_drawdown_figure",
    "metrics_table",
    "monthly_returns",
    "monthly_returns_figure",
    "new_report_folder",
    "rolling_sharpe_figure",
    "write_tearsheet",
]

#: Metric keys of ``BacktestResult.metrics`` in report order, with their row labels.
METRIC_LABELS: dict[str, str] = {
    "total_return": "Total return",
    "annual_return": "Annual return",
    "volatility": "Annual volatility",
    "sharpe": "Sharpe ratio",
    "sortino": "Sortino ratio",
    "calmar": "Calmar ratio",
    "max_drawdown": "Max drawdown",
    "max_drawdown_duration": "Max drawdown duration (bars)",
    "var_95": "VaR 95% (per bar)",
    "cvar_95": "CVaR 95% (per bar)",
    "win_rate": "Win rate",
    "profit_factor": "Profit factor",
    "turnover": "Turnover (per year)",
    "exposure": "Exposure",
    "trades": "Trades",
}

# How each metric is shown in the HTML: fractions as percentages, ratios with two decimals.
_PERCENT = {
    "total_return",
    "annual_return",
    "volatility",
    "max_drawdown",
    "var_95",
    "cvar_95",
    "win_rate",
    "exposure",
}
_INTEGER = {"max_drawdown_duration", "trades"}

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_TRADES_SHOWN = 50
_DPI = 110


# --------------------------------------------------------------------------------------------- input


def _check_result(name: str, result: BacktestResult) -> None:
    for attr in ("equity", "returns", "metrics"):
        if not hasattr(result, attr):
            raise TypeError(
                f"result {name!r} is a {type(result).__name__}, not a BacktestResult (no {attr!r}); "
                "pass what backtest.run(...) returns"
            )
    if len(result.returns) == 0:
        raise ValueError(f"result {name!r} has no bars; run the backtest on a non-empty price series")
    if not isinstance(result.returns.index, pd.DatetimeIndex):
        raise ValueError(
            f"result {name!r} has returns indexed by {type(result.returns.index).__name__}, "
            "expected a DatetimeIndex (bar open times, UTC)"
        )


def _check_results(results: Mapping[str, BacktestResult]) -> None:
    if not isinstance(results, Mapping) or not results:
        raise ValueError(
            "results must be a non-empty mapping of name -> BacktestResult, strategy first, "
            "e.g. {'strategy': run(...), 'buy and hold': run(...)}"
        )
    for name, result in results.items():
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"result names must be non-empty strings, got {name!r}")
        _check_result(name, result)


def _drawdown(returns: pd.Series) -> pd.Series:
    # Wealth starts at 1 before the first return, as in backtest.metrics' max_drawdown.
    wealth = (1.0 + returns.astype("float64")).cumprod()
    return wealth / wealth.cummax().clip(lower=1.0) - 1.0


def _new_figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _percent_axis(ax: Axes, decimals: int | None = 0) -> None:
    from matplotlib.ticker import PercentFormatter

    ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=decimals))


# ------------------------------------------------------------------------------------------- figures


def equity_drawdown_figure(results: Mapping[str, BacktestResult]) -> Figure:
    """Equity curves of every result (top) and the drawdown of the first one (bottom).

    The top axes hold one line per result, labelled with its name, in the mapping's order (the
    strategy first, drawn thicker); equity is in the unit of ``initial_capital`` and the scale
    turns logarithmic when the curves span more than a factor of 10. The bottom axes hold one
    line, the first result's drawdown (``wealth / running peak - 1`` from its net returns, the
    wealth starting at 1 before the first bar as in ``metrics["max_drawdown"]``), shaded.

    Raises ``ValueError`` / ``TypeError`` when ``results`` is empty or holds something other
    than backtest results.
    """
    _check_results(results)
    fig = _new_figure(10.0, 6.0)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    lo, hi = math.inf, -math.inf
    for i, (name, result) in enumerate(results.items()):
        equity = result.equity.astype("float64")
        top.plot(
            equity.index,
            equity.to_numpy(),
            label=name,
            linewidth=1.6 if i == 0 else 1.0,
            zorder=3 if i == 0 else 2,
        )
        positive = equity[equity > 0]
        if len(positive):
            lo, hi = min(lo, float(positive.min())), max(hi, float(positive.max()))
    if math.isfinite(lo) and hi / lo > 10.0 and all(bool((r.equity > 0).all()) for r in results.values()):
        top.set_yscale("log")
    top.set_ylabel("Equity")
    top.set_title("Equity, net of costs")
    top.grid(True, alpha=0.3)
    top.legend(loc="upper left", fontsize="small")

    first_name, first = next(iter(results.items()))
    dd = _drawdown(first.returns)
    bottom.fill_between(dd.index, dd.to_numpy(), 0.0, color="tab:red", alpha=0.3, linewidth=0)
    bottom.plot(dd.index, dd.to_numpy(), color="tab:red", linewidth=0.8)
    bottom.set_ylabel("Drawdown")
    bottom.set_title(f"Drawdown of {first_name}", fontsize="medium")
    _percent_axis(bottom)
    bottom.grid(True, alpha=0.3)
    return fig


def monthly_returns(result: BacktestResult) -> pd.DataFrame:
    """Compounded net return of every calendar month, as fractions (0.01 = 1 %).

    Rows are years (int, ascending), columns the months ``1`` to ``12``; a month without bars
    is NaN. A month's return is ``prod(1 + r) - 1`` over the result's per-bar net returns whose
    timestamps fall in that month in UTC.
    """
    _check_result("result", result)
    returns = result.returns.astype("float64")
    index = pd.DatetimeIndex(returns.index)
    growth = (1.0 + returns).groupby([index.year, index.month]).prod()
    table = (growth - 1.0).unstack()
    table = table.reindex(columns=range(1, 13))
    table.index.name = "year"
    table.columns.name = "month"
    return table


def monthly_returns_figure(result: BacktestResult) -> Figure:
    """Heatmap of :func:`monthly_returns`: years down, months across, each cell annotated.

    Colours are diverging around zero (red losses, green gains) on a scale symmetric about 0;
    every month with bars carries its return as text with one decimal (``"-2.3%"``), months
    without bars stay blank. One axes (the heatmap) plus its colour bar.
    """
    table = monthly_returns(result)
    values = table.to_numpy(dtype="float64")
    finite = values[np.isfinite(values)]
    limit = float(np.max(np.abs(finite))) if finite.size else 0.0
    limit = limit if limit > 0 else 0.01

    fig = _new_figure(10.0, max(2.5, 0.6 + 0.32 * len(table)))
    ax = fig.subplots()
    image = ax.imshow(np.ma.masked_invalid(values), cmap="RdYlGn", vmin=-limit, vmax=limit, aspect="auto")
    ax.set_xticks(range(12), _MONTHS)
    ax.set_yticks(range(len(table)), [str(y) for y in table.index])
    ax.tick_params(length=0)
    fontsize = 7 if len(table) > 12 else 8
    for row in range(values.shape[0]):
        for col in range(values.shape[1]):
            value = values[row, col]
            if np.isfinite(value):
                ax.text(
                    col,
                    row,
                    f"{value:.1%}",
                    ha="center",
                    va="center",
                    fontsize=fontsize,
                    color="black" if abs(value) < 0.6 * limit else "white",
                )
    ax.set_title("Monthly returns, net of costs")
    colorbar = fig.colorbar(image, ax=ax, fraction=0.03, pad=0.01)
    _percent_axis(colorbar.ax, decimals=None)
    return fig


def rolling_sharpe_figure(result: BacktestResult, window: int | None = None) -> Figure:
    """Rolling annualised Sharpe ratio of the per-bar net returns over ``window`` bars.

    ``sharpe_t = mean(r) / std(r) * sqrt(periods_per_year)`` over the last ``window`` bars
    (sample standard deviation, risk-free rate 0), the same convention as the engine's full-period
    ``sharpe``. ``window`` defaults to about six months of bars: ``round(periods_per_year / 2)``
    (126 for daily equity bars), cut to the number of bars when the backtest is shorter.
    One axes with three lines: the rolling Sharpe (NaN for the first ``window - 1`` bars and
    over windows without variation), the full-period ``result.metrics["sharpe"]`` (dashed) and
    zero (thin).

    Raises ``ValueError`` when ``window`` is given and is below 2 or longer than the backtest.
    """
    _check_result("result", result)
    returns = result.returns.astype("float64")
    ppy = float(result.periods_per_year)
    if window is None:
        window = max(2, min(round(ppy / 2), len(returns)))
    elif isinstance(window, bool) or not isinstance(window, int | np.integer):
        raise ValueError(f"window must be a whole number of bars, got {window!r}")
    elif window < 2:
        raise ValueError(f"window must be at least 2 bars (a standard deviation needs two), got {window}")
    elif window > len(returns):
        raise ValueError(
            f"window of {window} bars is longer than the backtest ({len(returns)} bars); pass a "
            "smaller window"
        )
    window = int(window)
    rolling = returns.rolling(window)
    std = rolling.std()
    sharpe = (rolling.mean() / std.where(std > 0)) * math.sqrt(ppy)

    full = float(result.metrics.get("sharpe", math.nan))

    fig = _new_figure(10.0, 3.5)
    ax = fig.subplots()
    ax.plot(sharpe.index, sharpe.to_numpy(), linewidth=1.0, label=f"rolling Sharpe ({window} bars)")
    ax.axhline(
        full,
        color="tab:orange",
        linestyle="--",
        linewidth=1.0,
        label=f"full period ({full:.2f})",
    )
    ax.axhline(0.0, color="grey", linewidth=0.6)
    ax.set_ylabel("Sharpe (annualised)")
    ax.set_title(f"Rolling Sharpe ratio, {window}-bar window")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", fontsize="small")
    return fig


# --------------------------------------------------------------------------------------------- table


def _as_number(value: object) -> float:
    if isinstance(value, pd.Timedelta):
        return value / pd.Timedelta(days=1)
    if isinstance(value, bool):
        return float(value)
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def _metric_keys(results: Mapping[str, BacktestResult]) -> list[str]:
    keys = list(METRIC_LABELS)
    for result in results.values():
        keys.extend(k for k in result.metrics if k not in keys)
    return keys


def metrics_table(results: Mapping[str, BacktestResult]) -> pd.DataFrame:
    """Metrics of every result side by side, as plain numbers (fractions, not percent).

    Rows are the metrics of :data:`METRIC_LABELS` in that order, indexed by their readable
    labels (``"Sharpe ratio"``), followed by any other metric a result reports (label: its key
    with spaces, capitalised). Columns are the results' names in the mapping's order: the
    strategy first, then its benchmarks. A metric a result lacks is NaN. Durations given as a
    ``Timedelta`` become days.

    Raises ``ValueError`` / ``TypeError`` when ``results`` is empty or holds something other
    than backtest results.
    """
    _check_results(results)
    keys = _metric_keys(results)
    data = {
        name: [_as_number(result.metrics.get(k, math.nan)) for k in keys] for name, result in results.items()
    }
    labels = [METRIC_LABELS.get(k, k.replace("_", " ").capitalize()) for k in keys]
    table = pd.DataFrame(data, index=pd.Index(labels, name="metric"), columns=list(results), dtype="float64")
    return table


def _format_metric(key: str, value: float) -> str:
    if not math.isfinite(value):
        return "∞" if value == math.inf else ("-∞" if value == -math.inf else "n/a")
    if key in _PERCENT:
        return f"{value:.2%}"
    if key in _INTEGER:
        return f"{value:,.0f}"
    return f"{value:,.2f}"


def _formatted_metrics(results: Mapping[str, BacktestResult], table: pd.DataFrame) -> pd.DataFrame:
    keys = _metric_keys(results)
    out = table.astype("object").copy()
    for key, label in zip(keys, table.index, strict=True):
        out.loc[label] = [_format_metric(key, float(v)) for v in table.loc[label]]
    return out


# ----------------------------------------------------------------------------------------- tearsheet


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "x"


def new_report_folder(
    data_dir: Path, model: str, version: str, strategy: str, *, now: datetime | None = None
) -> Path:
    """A new, empty folder for one backtest run's report, created now and never reused:
    ``<data_dir>/reports/backtests/<model>-v<version>/<strategy>-<YYYYmmddTHHMMSS>-<run id>/``.

    The run id is 8 random hex digits, so two runs in the same second get two folders; every
    part of the name is reduced to letters, digits, ``_``, ``.`` and ``-``.

    Raises:
        FileExistsError: the folder exists already (it is never overwritten).
    """
    stamp = (now or datetime.now(UTC)).astimezone(UTC)
    parent = Path(data_dir) / "reports" / "backtests" / f"{_slug(model)}-v{_slug(str(version))}"
    folder = parent / f"{_slug(strategy)}-{stamp:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True, exist_ok=False)
    return folder


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI)
    return buffer.getvalue()


def _cell(spec: str, missing: str = "") -> Callable[[Any], str]:
    return lambda v: missing if pd.isna(v) else format(v, spec)


def _trades_html(result: BacktestResult) -> tuple[str, int]:
    trades = result.trades
    if not isinstance(trades, pd.DataFrame) or trades.empty:
        return "<p>No trades.</p>", 0
    shown = trades.tail(_TRADES_SHOWN).copy()
    # Dates alone when every time is midnight (daily bars), else to the minute.
    stamps = [pd.DatetimeIndex(shown[c]).dropna() for c in shown.columns if str(c).endswith("_time")]
    daily = all(bool((s == s.normalize()).all()) for s in stamps)
    time_format = "%Y-%m-%d" if daily else "%Y-%m-%d %H:%M"
    for column in shown.columns:
        name = str(column)
        numeric = pd.api.types.is_numeric_dtype(shown[column])
        if name == "return" and numeric:
            shown[column] = shown[column].map(_cell(".2%"))
        elif (name in ("costs", "pnl") or name.endswith("_price")) and numeric:
            shown[column] = shown[column].map(_cell(",.6g"))
        elif name == "open" and pd.api.types.is_bool_dtype(shown[column]):
            shown[column] = shown[column].map(lambda v: "open" if v else "")
        elif name.endswith("_time"):
            shown[column] = shown[column].map(_cell(time_format, missing="open"))
    shown.columns = [str(c).replace("_", " ") for c in shown.columns]
    table = shown.to_html(index=False, escape=True, border=0, classes="trades", na_rep="")
    return table, len(trades)


def _costs_html(results: Mapping[str, BacktestResult], costs: Costs | None) -> str:
    if costs is None:
        assumption = "<p>Cost assumptions were not given to the report; see the notes.</p>"
    else:
        assumption = (
            f"<p>Every fill (entry, exit, re-size) pays {costs.commission_bps:g} bps commission + "
            f"{costs.slippage_bps:g} bps slippage of its traded notional, plus a minimum fee of "
            f"{costs.min_fee:g} (account currency).</p>"
        )
    rows = []
    for name, result in results.items():
        paid = float(result.costs_paid)
        capital = float(getattr(result, "initial_capital", math.nan))
        share = f"{paid / capital:.2%}" if math.isfinite(capital) and capital > 0 else "n/a"
        rows.append(f"<tr><td>{html.escape(name)}</td><td>{paid:,.6g}</td><td>{share}</td></tr>")
    return (
        assumption + "<table class='costs'><thead><tr><th>result</th><th>costs paid (account currency)</th>"
        "<th>of initial capital</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )


_STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1100px; color: #222; }
h1 { margin-bottom: 0.2em; } .subtitle { color: #555; margin-top: 0; }
table { border-collapse: collapse; font-size: 0.9em; margin: 0.5em 0 1.5em; }
th, td { padding: 0.25em 0.7em; border-bottom: 1px solid #ddd; text-align: right; }
th:first-child, td:first-child { text-align: left; }
img { max-width: 100%; display: block; margin: 0.5em 0 1.5em; }
.meta { color: #777; font-size: 0.8em; }
"""


def write_tearsheet(
    results: Mapping[str, BacktestResult],
    folder: Path,
    *,
    title: str,
    subtitle: str = "",
    notes: Sequence[str] = (),
    costs: Costs | None = None,
) -> Path:
    """Write a self-contained HTML tearsheet and its parts into ``folder``; return the HTML's path.

    ``folder`` (created if missing) receives:

    * ``tearsheet.html``: title and subtitle, the metrics table (percentages formatted), the
      equity/drawdown, monthly returns and rolling Sharpe figures embedded as base64 PNG, the
      last 50 trades of the first result, the cost assumptions (``costs``, the
      :class:`~backtest.engine.Costs` the results were run with, when given) with the costs each
      result paid, and ``notes`` (one paragraph each). It loads nothing from elsewhere: one
      file to mail or archive.
    * ``equity_drawdown.png``, ``monthly_returns.png``, ``rolling_sharpe.png``: the figures.
    * ``metrics.csv``: :func:`metrics_table` as plain numbers.

    Files already there with these names are replaced. All user text (title, subtitle, notes,
    result names, trade fields) is HTML-escaped. The first result is the strategy; the monthly
    returns and rolling Sharpe figures show it alone.

    Raises ``ValueError`` when ``results`` is empty or ``title`` blank, ``TypeError`` when a
    value is not a backtest result, ``OSError`` when ``folder`` cannot be written.
    """
    _check_results(results)
    if not isinstance(title, str) or not title.strip():
        raise ValueError("title must be a non-empty string, e.g. 'LSTM long/flat on SP500, 2019-2024'")
    if isinstance(notes, str):
        notes = [notes]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)

    first_name, first = next(iter(results.items()))
    images: dict[str, bytes] = {
        "equity_drawdown": _png(equity_drawdown_figure(results)),
        "monthly_returns": _png(monthly_returns_figure(first)),
        "rolling_sharpe": _png(rolling_sharpe_figure(first)),
    }
    for stem, data in images.items():
        (folder / f"{stem}.png").write_bytes(data)

    table = metrics_table(results)
    table.to_csv(folder / "metrics.csv")
    metrics_html = (
        _formatted_metrics(results, table)
        .rename_axis(index=None)
        .to_html(escape=True, border=0, classes="metrics")
    )
    trades_html, n_trades = _trades_html(first)
    shown = min(n_trades, _TRADES_SHOWN)

    def img(stem: str, alt: str) -> str:
        encoded = base64.b64encode(images[stem]).decode("ascii")
        return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{encoded}">'

    e = html.escape
    first_e = e(first_name)
    index = first.returns.index
    period = f"{index[0]:%Y-%m-%d} to {index[-1]:%Y-%m-%d}, {len(index):,} bars"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        f'<p class="subtitle">{e(subtitle)}</p>' if subtitle else "",
        f"<p>Strategy: <b>{first_e}</b>; benchmarks: "
        f"{e(', '.join(list(results)[1:])) or 'none'}. Period of {first_e}: {e(period)}.</p>",
        "<h2>Metrics</h2>",
        "<p>Net of costs. Annual figures are annualised from the bars; VaR and CVaR are historical, "
        "per bar, at 95 %.</p>",
        metrics_html,
        "<h2>Equity and drawdown</h2>",
        img("equity_drawdown", "Equity curves and drawdown"),
        f"<h2>Monthly returns of {first_e}</h2>",
        img("monthly_returns", "Monthly returns heatmap"),
        f"<h2>Rolling Sharpe ratio of {first_e}</h2>",
        img("rolling_sharpe", "Rolling Sharpe ratio"),
        f"<h2>Trades of {first_e}</h2>",
        f"<p>Last {shown} of {n_trades} trades.</p>" if n_trades else "",
        trades_html,
        "<h2>Costs</h2>",
        _costs_html(results, costs),
    ]
    if notes:
        parts.append("<h2>Notes</h2>")
        parts.extend(f"<p>{e(str(note))}</p>" for note in notes)
    parts.append(f'<p class="meta">Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by FKS.</p>')
    parts.append("</body></html>")
    path = folder / "tearsheet.html"
    path.write_text("\n".join(p for p in parts if p), encoding="utf-8")
    return path
