// ROI charts: data comes from the json_script block #roi-data (no inline script, strict CSP),
// drawn with the Plotly strict bundle; redrawn after htmx swaps the charts region.
(function () {
  "use strict";

  var CONFIG = { responsive: true, displaylogo: false, modeBarButtonsToRemove: ["lasso2d", "select2d"] };
  var COLORS = ["#0d6efd", "#198754", "#fd7e14", "#6f42c1", "#d63384", "#20c997", "#6c757d", "#dc3545"];

  function layout(extra) {
    var base = {
      margin: { t: 10, r: 10, b: 40, l: 60 },
      legend: { orientation: "h", y: -0.2 },
      paper_bgcolor: "rgba(0,0,0,0)",
      plot_bgcolor: "rgba(0,0,0,0)",
      font: { family: "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif", size: 12 },
      hovermode: "x unified",
    };
    return Object.assign(base, extra || {});
  }

  function draw(id, traces, extraLayout) {
    var el = document.getElementById(id);
    if (!el) return;
    // Markup restored from htmx's history cache is a dead copy of a chart: start afresh.
    if (!el._fullLayout) el.replaceChildren();
    window.Plotly.react(el, traces, layout(extraLayout), CONFIG);
  }

  function hasValues(series) {
    return series.some(function (v) { return v !== null; });
  }

  function drawAll() {
    var dataEl = document.getElementById("roi-data");
    if (!dataEl || !window.Plotly) return;
    var data = JSON.parse(dataEl.textContent);
    var days = data.days;

    draw("chart-funnel", [{
      type: "funnel",
      y: data.funnel.labels,
      x: data.funnel.values,
      textinfo: "value+percent initial",
      marker: { color: COLORS[0] },
      hoverinfo: "y+x+percent previous",
    }], { margin: { t: 10, r: 10, b: 30, l: 120 }, hovermode: "closest" });

    draw("chart-rates", [
      { type: "scatter", mode: "lines+markers", name: "Acceptance rate", x: days, y: data.totals.acceptance_rate,
        line: { color: COLORS[1] }, connectgaps: false },
      { type: "scatter", mode: "lines+markers", name: "Override rate", x: days, y: data.totals.override_rate,
        line: { color: COLORS[2] }, connectgaps: false },
    ], { yaxis: { tickformat: ".0%", rangemode: "tozero" } });

    var cycle = [];
    data.use_cases.forEach(function (uc, i) {
      var color = COLORS[i % COLORS.length];
      if (hasValues(uc.cycle_minutes)) {
        cycle.push({ type: "scatter", mode: "lines+markers", name: uc.name + " (AI)", x: days, y: uc.cycle_minutes,
          line: { color: color }, connectgaps: false });
      }
      cycle.push({ type: "scatter", mode: "lines", name: uc.name + " (manual baseline)", x: days,
        y: days.map(function () { return uc.baseline_minutes; }), line: { color: color, dash: "dash" },
        hoverinfo: "skip" });
    });
    draw("chart-cycle", cycle, { yaxis: { title: { text: "minutes" }, rangemode: "tozero" } });

    draw("chart-cost", [
      { type: "scatter", mode: "lines+markers", name: "Cost per accepted", x: days, y: data.totals.cost_per_accepted,
        line: { color: COLORS[3] }, connectgaps: false },
    ], { yaxis: { tickprefix: "$", rangemode: "tozero" }, showlegend: false });

    draw("chart-value", [{
      type: "bar",
      x: data.net_value.labels,
      y: data.net_value.values,
      marker: { color: data.net_value.values.map(function (v) { return v < 0 ? "#dc3545" : "#198754"; }) },
      hovertemplate: "%{x}: $%{y:,.2f}<extra></extra>",
    }], { yaxis: { tickprefix: "$" }, hovermode: "closest", showlegend: false });

    var reasons = data.reasons || { labels: [], values: [] };
    draw("chart-reasons", [{
      type: "bar",
      orientation: "h",
      y: reasons.labels.slice().reverse(),
      x: reasons.values.slice().reverse(),
      marker: { color: COLORS[2] },
      hovertemplate: "%{y}: %{x}<extra></extra>",
    }], { margin: { t: 10, r: 10, b: 30, l: 220 }, hovermode: "closest", showlegend: false,
      xaxis: { rangemode: "tozero", tickformat: "d" } });
  }

  function resizeAll() {
    if (!window.Plotly) return;
    document.querySelectorAll(".chart.js-plotly-plot").forEach(function (el) { window.Plotly.Plots.resize(el); });
  }

  // htmx drops every <script> of swapped-in HTML (allowScriptTags is off, for the CSP), json_script's data
  // block included: put it back from the HTML htmx received. A JSON script block is data, never run.
  function restoreData(html) {
    var region = document.getElementById("roi-charts");
    if (!html || !region || document.getElementById("roi-data")) return;
    var block = new DOMParser().parseFromString(html, "text/html").getElementById("roi-data");
    if (!block) return;
    var copy = document.createElement("script");
    copy.type = "application/json";
    copy.id = "roi-data";
    copy.textContent = block.textContent;
    region.appendChild(copy);
  }

  document.addEventListener("DOMContentLoaded", drawAll);
  // Filters changed: htmx replaced the charts region (and dropped its data block).
  document.addEventListener("htmx:afterSwap", function (event) {
    var detail = event.detail || {};
    if (detail.target && detail.target.id === "roi-charts") {
      restoreData(detail.xhr && detail.xhr.responseText);
      drawAll();
    }
  });
  // htmx snapshots the page for its history cache: leave the charts out (their inline styles would be
  // re-parsed on restore and refused by the CSP); they are redrawn from #roi-data instead.
  document.addEventListener("htmx:beforeHistorySave", function () {
    document.querySelectorAll(".chart").forEach(function (el) {
      if (window.Plotly && el._fullLayout) window.Plotly.purge(el);
      el.replaceChildren();
    });
    // Plotly's off-screen text-measuring element; it is re-created when a chart needs it.
    var tester = document.getElementById("js-plotly-tester");
    if (tester) tester.remove();
  });
  // Back/forward through filter states: htmx restores the page from its cache (or the server on a cache
  // miss), without live charts and without the data block.
  document.addEventListener("htmx:historyRestore", function (event) {
    var detail = event.detail || {};
    restoreData(detail.serverResponse || (detail.item && detail.item.content));
    drawAll();
  });
  document.addEventListener("click", function (event) {
    if (event.target.closest("[data-roi-print]")) window.print();
  });
  window.addEventListener("beforeprint", resizeAll);
  window.addEventListener("afterprint", resizeAll);
})();
