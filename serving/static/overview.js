/* FKS overview and asset pages: key handling, polling, sorting, filtering, charts.
   Charts: TradingView Lightweight Charts (vendored, Apache-2.0). */
(function () {
  "use strict";
  var body = document.body;
  var auth = body.dataset.auth === "on";
  var refreshMs = Math.max(200, parseFloat(body.dataset.refreshS || "5") * 1000);
  var KEY = "fks-api-key";
  var sort = { key: null, dir: 1 };
  var classFilter = "";

  function key() { return window.sessionStorage.getItem(KEY); }
  function status(text, cls) {
    var el = document.getElementById("status");
    if (el) { el.textContent = text; el.className = "status " + (cls || ""); }
  }
  function askKey(message) {
    var form = document.getElementById("keyform");
    form.hidden = false;
    document.getElementById("keyerror").textContent = message || "";
  }
  function whenKey(start) {
    var form = document.getElementById("keyform");
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      var value = document.getElementById("key").value.trim();
      if (!value) { return; }
      window.sessionStorage.setItem(KEY, value);
      form.hidden = true;
      start();
    });
    if (!auth || key()) { start(); } else { askKey(""); }
  }
  function get(url, json) {
    var headers = {};
    if (auth && key()) { headers["X-API-Key"] = key(); }
    return fetch(url, { headers: headers, cache: "no-store" }).then(function (r) {
      if (r.status === 401 || r.status === 403) {
        window.sessionStorage.removeItem(KEY);
        return r.json().then(function (b) {
          askKey(b.error);
          var refused = new Error("key refused");
          refused.refused = true;
          throw refused;
        });
      }
      if (!r.ok) {
        return r.text().then(function (t) { throw new Error(url + " answered " + r.status + ": " + t.slice(0, 200)); });
      }
      return json ? r.json() : r.text();
    });
  }
  function poll(url, apply, every) {
    function once() {
      get(url, false).then(function (html) {
        apply(html);
        status("updated " + new Date().toLocaleTimeString(), "up");
      }).then(function () { window.setTimeout(once, every); }, function (err) {
        status(String(err.message || err), "down");
        if (!err.refused) { window.setTimeout(once, every); }  /* a refused key waits for a new one */
      });
    }
    once();
  }

  /* listings: sort and filter survive every refresh */
  function cellValue(row, k, numeric) {
    var v = row.dataset[k];
    if (numeric) { return v === "" || v === undefined ? null : parseFloat(v); }
    return v || "";
  }
  function applySort() {
    var table = document.getElementById("listings");
    if (!table) { return; }
    table.querySelectorAll("th[data-key]").forEach(function (th) {
      th.classList.remove("asc", "desc");
      if (th.dataset.key === sort.key) { th.classList.add(sort.dir > 0 ? "asc" : "desc"); }
    });
    if (!sort.key) { return; }
    var th = table.querySelector('th[data-key="' + sort.key + '"]');
    var numeric = th && th.dataset.type === "num";
    var tbody = table.tBodies[0];
    var rows = Array.prototype.slice.call(tbody.rows).filter(function (r) { return r.dataset.symbol; });
    rows.sort(function (a, b) {
      var x = cellValue(a, sort.key, numeric), y = cellValue(b, sort.key, numeric);
      if (x === null || x === "") { return 1; }
      if (y === null || y === "") { return -1; }
      return (x < y ? -1 : x > y ? 1 : 0) * sort.dir;
    });
    rows.forEach(function (r) { tbody.appendChild(r); });
  }
  function applyFilter() {
    var select = document.getElementById("classfilter");
    if (!select) { return; }
    select.value = classFilter;
    document.querySelectorAll("#listings tbody tr[data-symbol]").forEach(function (r) {
      r.hidden = classFilter !== "" && r.dataset.class !== classFilter;
    });
  }
  function wireListings() {
    var table = document.getElementById("listings");
    if (table && !table.dataset.wired) {
      table.dataset.wired = "1";
      table.querySelectorAll("th[data-key]").forEach(function (th) {
        th.addEventListener("click", function () {
          sort.dir = sort.key === th.dataset.key ? -sort.dir : 1;
          sort.key = th.dataset.key;
          applySort();
        });
      });
    }
    var select = document.getElementById("classfilter");
    if (select && !select.dataset.wired) {
      select.dataset.wired = "1";
      select.addEventListener("change", function () { classFilter = select.value; applyFilter(); });
    }
    applySort();
    applyFilter();
  }
  /* a refresh swaps the parts that carry figures; the headers, the filter and the scroll stay */
  function update(live, html) {
    if (!live.querySelector("#listings")) {
      live.innerHTML = html;
      return;
    }
    var fresh = document.createElement("div");
    fresh.innerHTML = html;
    live.querySelectorAll("[data-part]").forEach(function (el) {
      var part = fresh.querySelector('[data-part="' + el.dataset.part + '"]');
      if (part) { el.replaceWith(part); }
    });
  }

  function chartOptions(el, height, intraday) {
    return {
      width: el.clientWidth || 600, height: height,
      layout: { background: { color: "#101418" }, textColor: "#d8dee4" },
      grid: { vertLines: { color: "#1c2229" }, horzLines: { color: "#1c2229" } },
      timeScale: { timeVisible: !!intraday, borderColor: "#2a313a" },
      rightPriceScale: { borderColor: "#2a313a" },
    };
  }
  function points(pairs) { return pairs.map(function (p) { return { time: p[0], value: p[1] }; }); }
  function startOverview() {
    var live = document.getElementById("live");
    var preds = document.getElementById("predictions");
    wireListings();
    whenKey(function () {
      var first = !live.querySelector("#listings");
      poll(live.dataset.src, function (html) {
        update(live, html);
        wireListings();
        live.dataset.updates = String(parseInt(live.dataset.updates || "0", 10) + 1);
      }, refreshMs);
      if (first) { status("loading…"); }
      poll(preds.dataset.src, function (html) { preds.innerHTML = html; }, Math.max(refreshMs, 5000));
    });
  }

  /* one asset */
  function snap(times, t) {
    /* the first stored bar at or after t (a quarantined bar is not stored; its neighbour is) */
    var lo = 0, hi = times.length - 1;
    if (!times.length || t > times[hi]) { return null; }
    while (lo < hi) { var mid = (lo + hi) >> 1; if (times[mid] < t) { lo = mid + 1; } else { hi = mid; } }
    return times[lo];
  }
  var OVERLAY_COLOURS = ["#e3b341", "#a371f7", "#58a6ff", "#8b949e", "#58a6ff", "#f778ba"];
  function startAsset() {
    var symbol = document.getElementById("asset").dataset.symbol;
    var el = document.getElementById("chart");
    var intraday = !/d$/.test(document.getElementById("asset").dataset.timeframe || "");
    var chart = LightweightCharts.createChart(el, chartOptions(el, 420, intraday));
    var candles = chart.addCandlestickSeries({ upColor: "#26a69a", downColor: "#ef5350", borderVisible: false,
                                               wickUpColor: "#26a69a", wickDownColor: "#ef5350" });
    var volume = chart.addHistogramSeries({ priceScaleId: "volume", priceFormat: { type: "volume" }, color: "#2a313a" });
    chart.priceScale("volume").applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });
    var overlays = {};
    var fel = document.getElementById("fchart");
    var fchart = LightweightCharts.createChart(fel, chartOptions(fel, 160, intraday));
    var fseries = fchart.addLineSeries({ color: "#e3b341", lineWidth: 1, title: "forecast", pointMarkersVisible: true });
    var rseries = fchart.addLineSeries({ color: "#7d8590", lineWidth: 1, title: "realised", pointMarkersVisible: true });
    var fitted = false;

    function draw(d) {
      var times = d.bars.map(function (b) { return b[0]; });
      candles.setData(d.bars.map(function (b) { return { time: b[0], open: b[1], high: b[2], low: b[3], close: b[4] }; }));
      volume.setData(d.bars.map(function (b) {
        return { time: b[0], value: b[5], color: b[4] >= b[1] ? "rgba(38,166,154,.45)" : "rgba(239,83,80,.45)" };
      }));
      var names = Object.keys(d.overlays).sort();
      names.forEach(function (name, i) {
        if (!overlays[name]) {
          overlays[name] = chart.addLineSeries({ color: OVERLAY_COLOURS[i % OVERLAY_COLOURS.length], lineWidth: 1,
                                                 priceLineVisible: false, lastValueVisible: false, title: name });
        }
        overlays[name].setData(points(d.overlays[name]));
      });
      var marks = [];
      d.quarantined.forEach(function (t) {
        var at = snap(times, t);
        if (at !== null && (!marks.length || marks[marks.length - 1].time !== at)) {
          marks.push({ time: at, position: "aboveBar", color: "#ef5350", shape: "arrowDown", text: "Q" });
        }
      });
      candles.setMarkers(marks);
      var shownFrom = times.length ? times[0] : 0;
      var fc = d.forecasts.filter(function (f) { return f.ts >= shownFrom && f.forecast !== null; });
      var seen = {};
      var fpts = [], rpts = [];
      fc.forEach(function (f) {
        if (seen[f.ts]) { return; }
        seen[f.ts] = true;
        fpts.push({ time: f.ts, value: f.forecast });
        if (f.realised !== null) { rpts.push({ time: f.ts, value: f.realised }); }
      });
      fseries.setData(fpts);
      rseries.setData(rpts);
      document.getElementById("fnote").textContent = fpts.length
        ? fpts.length + (fpts.length === 1 ? " forecast (" : " forecasts (") + Array.from(new Set(fc.map(function (f) { return f.source; }))).join(", ") + ")"
        : "no out-of-sample forecast of " + symbol + " yet (a served model's test span, or forecasts the service answered)";
      document.getElementById("assetinfo").textContent = d.timeframe + " · " + d.bars.length + " bars" +
        (d.quarantined.length ? " · " + d.quarantined.length + " quarantined" : "") +
        (d.feature_set ? " · overlays of feature set " + d.feature_set : "");
      document.getElementById("legend").innerHTML = names.map(function (n, i) {
        return '<span style="color:' + OVERLAY_COLOURS[i % OVERLAY_COLOURS.length] + '">' + n + "</span>";
      }).join("");
      if (!fitted) {
        chart.timeScale().fitContent();
        fchart.timeScale().fitContent();
        fitted = true;
      }
      el.dataset.bars = String(d.bars.length);
      el.dataset.last = times.length ? String(d.bars[d.bars.length - 1][4]) : "";
    }
    whenKey(function () {
      function once() {
        get("/v1/overview/assets/" + encodeURIComponent(symbol), true).then(function (d) {
          draw(d);
          status("updated " + new Date().toLocaleTimeString(), "up");
        }).then(function () { window.setTimeout(once, refreshMs); }, function (err) {
          status(String(err.message || err), "down");
          if (!err.refused) { window.setTimeout(once, refreshMs); }
        });
      }
      once();
    });
  }

  window.FKS = { startOverview: startOverview, startAsset: startAsset };
})();
