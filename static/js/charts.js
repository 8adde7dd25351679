/* Runstudio charts: fills chart placeholders with plotly figures built on the server.
 *
 *   <div class="rs-chart" data-run="ID [ID…]" data-metric="loss" [data-x] [data-title] [data-live]>
 *   <div class="rs-chart-children" data-run="PARENT" data-metric="acc" [data-best] [data-kind]>
 *   <div class="rs-chart-static" data-figure="JSON_SCRIPT_ID">   (figure rendered in the page)
 *
 * Figures come from the chart views (runs/views/charts.py) with the session cookie; GETs only,
 * so no CSRF token. Zooming refetches the visible x range (finer buckets), double-click zooms
 * back out; the x-axis switch and the smoothing slider refetch too (the server caches the
 * downsampled series, so that is cheap). See docs/architecture.md "Studio: charts".
 */
(function () {
  "use strict";

  var script = document.currentScript;
  var METRIC_URL = (script && script.dataset.metricUrl) || "/charts/metric/";
  var CHILDREN_URL = (script && script.dataset.childrenUrl) || "/charts/children/";
  var LIVE_MS = 5000;
  var HIDDEN_MS = 30000;
  var PLOT_CONFIG = {
    responsive: true,
    displaylogo: false,
    // Nothing leaves the server: plotly.js 4 shows a "send to Plotly Cloud" button by default,
    // which posts the chart's data to an external site.
    showSendToCloud: false,
    showEditInChartStudio: false,
    plotlyServerURL: "",
    modeBarButtonsToRemove: ["lasso2d", "select2d", "autoScale2d", "sendChartToCloud"],
    modeBarButtonsToAdd: [
      {
        name: "downloadCsv",
        title: "Download the data as CSV",
        icon: { width: 1000, height: 1000, path: "M200 100h450l150 150v650H200zM300 450h400v60H300zm0 150h400v60H300zm0 150h250v60H300z" },
        click: function (gd) { downloadCsv(gd); },
      },
    ],
  };

  // The chart's data as drawn (each line's x and y; downsampled where the chart is), built in
  // the page: one row per point, the trace's name first.
  // Text cells: the figure's user text was escaped for plotly's pseudo-HTML (runs/charts.py
  // _escape), so it is unescaped back to what was typed; then OWASP's CSV-injection rule, as
  // the run list's CSV export applies it: text a spreadsheet would read as a formula (=, +, -,
  // @, tab, CR first; plain numbers excepted) gets a leading single quote.
  var PLAIN_NUMBER = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;
  function csvCell(value) {
    var text = value === null || value === undefined ? "" : String(value);
    if (typeof value === "string") {
      text = text.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");
      if (/^[=+\-@\t\r]/.test(text) && !PLAIN_NUMBER.test(text)) text = "'" + text;
    }
    return /[",\n\r]/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text;
  }

  function downloadCsv(gd) {
    var rows = [["series", "x", "y"]];
    var parcoords = (gd.data || []).filter(function (t) { return t.dimensions; })[0];
    if (parcoords) {
      // Parallel coordinates: one row per run, a column per axis (categories by their name).
      var dims = parcoords.dimensions;
      rows = [dims.map(function (d) { return d.label; })];
      var count = Math.max.apply(null, dims.map(function (d) { return (d.values || []).length; }));
      for (var r = 0; r < count; r++) {
        rows.push(dims.map(function (d) {
          var v = (d.values || [])[r];
          var at = d.tickvals ? d.tickvals.indexOf(v) : -1;
          return at >= 0 && d.ticktext ? d.ticktext[at] : v;
        }));
      }
    }
    (parcoords ? [] : gd.data || []).forEach(function (trace, index) {
      var name = trace.name || "series " + (index + 1);
      var xs = trace.x || [];
      var ys = trace.y || [];
      // A scatter of runs names each point by its run (its `text`), not the trace.
      var labels = Array.isArray(trace.text) ? trace.text : null;
      for (var i = 0; i < Math.max(xs.length, ys.length); i++) {
        rows.push([labels ? labels[i] : name, xs[i], ys[i]]);
      }
    });
    var text = rows.map(function (row) { return row.map(csvCell).join(","); }).join("\n") + "\n";
    var link = document.createElement("a");
    var title = (gd.layout && gd.layout.title && (gd.layout.title.text || gd.layout.title)) ||
      "chart";
    link.href = URL.createObjectURL(new Blob([text], { type: "text/csv" }));
    link.download = String(title).replace(/[^\w.-]+/g, "_") + ".csv";
    document.body.appendChild(link);
    link.click();
    link.remove();
    window.setTimeout(function () { URL.revokeObjectURL(link.href); }, 1000);
  }

  // Dark mode (static/js/studio.js sets <html data-theme>): the figure keeps its data and
  // shape; only its background, text and grid colours follow the page.
  function themed(layout) {
    if (document.documentElement.dataset.theme !== "dark") return layout;
    var out = Object.assign({}, layout, {
      paper_bgcolor: "rgba(0,0,0,0)",
      plot_bgcolor: "rgba(0,0,0,0)",
      font: Object.assign({}, layout.font, { color: "#e6edf3" }),
    });
    Object.keys(out).forEach(function (key) {
      if (/^[xy]axis\d*$/.test(key)) {
        out[key] = Object.assign({}, out[key], { gridcolor: "#30363d", zerolinecolor: "#3d444d" });
      }
    });
    return out;
  }

  // A theme switch after drawing: every drawn chart takes the other colours in place (the
  // light ones are runs/charts.py's FONT, paper and axis colours).
  document.addEventListener("rs-theme", function () {
    if (typeof Plotly === "undefined") return;
    var dark = document.documentElement.dataset.theme === "dark";
    document.querySelectorAll(".js-plotly-plot").forEach(function (gd) {
      var patch = {
        paper_bgcolor: dark ? "rgba(0,0,0,0)" : "#ffffff",
        plot_bgcolor: dark ? "rgba(0,0,0,0)" : "#ffffff",
        "font.color": dark ? "#e6edf3" : "#24292f",
      };
      Object.keys(gd.layout || {}).forEach(function (key) {
        if (/^[xy]axis\d*$/.test(key)) {
          patch[key + ".gridcolor"] = dark ? "#30363d" : "#eaeef2";
          patch[key + ".zerolinecolor"] = dark ? "#3d444d" : "#d0d7de";
        }
      });
      Plotly.relayout(gd, patch);
    });
  });

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      if (key === "text") node.textContent = attrs[key];
      else node.setAttribute(key, attrs[key]);
    });
    (children || []).forEach(function (child) { node.appendChild(child); });
    return node;
  }

  function query(params) {
    var search = new URLSearchParams();
    Object.keys(params).forEach(function (key) {
      var value = params[key];
      if (value === null || value === undefined || value === "") return;
      if (Array.isArray(value)) value.forEach(function (v) { search.append(key, v); });
      else search.append(key, value);
    });
    return search.toString();
  }

  function fetchJson(url) {
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        return response.json().then(function (body) {
          if (!response.ok) {
            var message = (body && body.error && body.error.message) || response.statusText;
            throw new Error(message);
          }
          return body;
        });
      });
  }

  // A date axis reports its range as "YYYY-MM-DD HH:MM:SS.sss" in UTC; the server wants seconds.
  function toSeconds(value, axis) {
    if (axis !== "time") return Number(value);
    if (typeof value === "number") return value / 1000;
    return Date.parse(String(value).replace(" ", "T") + "Z") / 1000;
  }

  function fail(state, error) {
    state.status.textContent = "Could not load the chart: " + error.message;
    state.status.classList.add("error");
  }

  // --- metric lines -------------------------------------------------------------------------

  function metricChart(node) {
    var state = {
      node: node,
      runs: (node.dataset.run || "").split(/\s+/).filter(Boolean),
      metric: node.dataset.metric || "",
      title: node.dataset.title || node.dataset.metric || "",
      x: node.dataset.x || "step",
      smoothing: Math.min(Math.max(Number(node.dataset.smoothing) || 0, 0), 0.99),
      logY: node.dataset.logY === "1",
      clip: node.dataset.clip === "1", // "ignore outliers": y range from the 5th-95th percentile
      range: null, // [x_min, x_max] in the server's x units, or null for everything
      seq: 0, // answers to older requests are dropped
      drawn: false,
      ignoreRelayout: false,
    };
    var xSelect = el("select", { "aria-label": "x axis", class: "rs-chart-x" }, [
      el("option", { value: "step", text: "Step" }),
      el("option", { value: "time", text: "Wall time" }),
      el("option", { value: "relative", text: "Relative time" }),
    ]);
    xSelect.value = state.x;
    var slider = el("input", {
      type: "range", min: "0", max: "0.99", step: "0.01", value: String(state.smoothing),
      "aria-label": "smoothing", class: "rs-chart-smoothing",
    });
    var sliderValue = el("output", { text: String(state.smoothing) });
    var logBox = el("input", { type: "checkbox", class: "rs-chart-log" });
    logBox.checked = state.logY;
    var clipBox = el("input", { type: "checkbox", class: "rs-chart-clip" });
    clipBox.checked = state.clip;
    state.status = el("span", { class: "rs-chart-status" });
    var toolbar = el("div", { class: "rs-chart-toolbar" }, [
      el("label", {}, [document.createTextNode("x "), xSelect]),
      el("label", {}, [document.createTextNode("smoothing "), slider, sliderValue]),
      el("label", {}, [logBox, document.createTextNode(" log y")]),
      el("label", {}, [clipBox, document.createTextNode(" ignore outliers")]),
      state.status,
    ]);
    state.plot = el("div", { class: "rs-chart-plot" });
    node.appendChild(toolbar);
    node.appendChild(state.plot);

    logBox.addEventListener("change", function () { state.logY = logBox.checked; load(state, false); });
    clipBox.addEventListener("change", function () { state.clip = clipBox.checked; load(state, false); });
    xSelect.addEventListener("change", function () {
      state.x = xSelect.value;
      state.range = null;
      load(state, true);
    });
    var timer = null;
    slider.addEventListener("input", function () {
      sliderValue.textContent = slider.value;
      clearTimeout(timer);
      timer = setTimeout(function () {
        state.smoothing = Number(slider.value);
        load(state, false);
      }, 150);
    });
    load(state, false);
    if (node.dataset.live === "1") live(state);
    return state;
  }

  function load(state, resetAxes) {
    var seq = ++state.seq;
    state.node.classList.add("rs-loading");
    var url = METRIC_URL + "?" + query({
      run: state.runs,
      metric: state.metric,
      x: state.x,
      smoothing: state.smoothing || "",
      x_min: state.range ? state.range[0] : "",
      x_max: state.range ? state.range[1] : "",
      title: state.title,
    });
    return fetchJson(url).then(function (body) {
      if (seq !== state.seq) return;
      var figure = body.figure;
      if (resetAxes) figure.layout.uirevision = "x-" + state.x;
      yAxis(state, figure);
      state.ignoreRelayout = true;
      return Plotly.react(state.plot, figure.data, themed(figure.layout), PLOT_CONFIG).then(function () {
        state.ignoreRelayout = false;
        if (!state.drawn) {
          state.drawn = true;
          state.plot.on("plotly_relayout", function (event) { onRelayout(state, event); });
        }
        describe(state, body.series);
        state.node.classList.remove("rs-loading");
        state.node.dataset.fetches = String(Number(state.node.dataset.fetches || 0) + 1);
      });
    }).catch(function (error) {
      state.node.classList.remove("rs-loading");
      fail(state, error);
    });
  }

  // Log y and "ignore outliers" change only the y-axis: log scale, and a range from the 5th to
  // the 95th percentile of the drawn values (plus a margin), so one spike does not flatten the
  // rest of the line; the points themselves are all still drawn.
  function yAxis(state, figure) {
    var axis = Object.assign({}, figure.layout.yaxis);
    if (state.logY) axis.type = "log";
    if (state.clip) {
      var values = [];
      (figure.data || []).forEach(function (trace) {
        (trace.y || []).forEach(function (v) {
          if (typeof v === "number" && isFinite(v) && (!state.logY || v > 0)) values.push(v);
        });
      });
      if (values.length >= 5) {
        values.sort(function (a, b) { return a - b; });
        var pick = function (q) { return values[Math.min(values.length - 1, Math.floor(q * values.length))]; };
        var low = pick(0.05), high = pick(0.95);
        if (state.logY) { low = Math.log10(low); high = Math.log10(high); }
        var pad = (high - low) * 0.1 || Math.abs(high) * 0.05 || 1;
        axis.range = [low - pad, high + pad];
        axis.autorange = false;
      }
    }
    figure.layout.yaxis = axis;
  }

  function onRelayout(state, event) {
    if (state.ignoreRelayout) return;
    if (event["xaxis.autorange"] === true) { // double-click: back to the whole series
      if (state.range === null) return;
      state.range = null;
      load(state, false);
      return;
    }
    var low = event["xaxis.range[0]"], high = event["xaxis.range[1]"];
    if (low === undefined && Array.isArray(event["xaxis.range"])) {
      low = event["xaxis.range"][0];
      high = event["xaxis.range"][1];
    }
    if (low === undefined || high === undefined) return;
    state.range = [toSeconds(low, state.x), toSeconds(high, state.x)];
    load(state, false);
  }

  function describe(state, series) {
    state.status.classList.remove("error");
    if (!series || !series.length) {
      state.status.textContent = "";
      return;
    }
    var total = 0, shown = 0, down = false;
    series.forEach(function (s) {
      total += s.count;
      shown += s.in_range;
      down = down || s.downsampled;
    });
    var text = total.toLocaleString() + " points";
    if (state.range) text += " · " + shown.toLocaleString() + " in view";
    if (down) text += " · downsampled (min/max kept) — zoom for detail";
    state.status.textContent = text;
  }

  // Timing is studio.js's rsPoll; a chart stops polling once it has left the page.
  function live(state) {
    window.rsPoll(function () { return load(state, false); }, {
      fast: LIVE_MS,
      slow: HIDDEN_MS,
      active: function () { return document.body.contains(state.node); },
    });
  }

  // --- children's best values ---------------------------------------------------------------

  function childrenChart(node) {
    var state = {
      node: node,
      run: node.dataset.run || "",
      metric: node.dataset.metric || "",
      best: node.dataset.best === "max" ? "max" : "min",
      kind: node.dataset.kind === "scatter" ? "scatter" : "bar",
      seq: 0,
    };
    var bestSelect = el("select", { "aria-label": "best value", class: "rs-chart-best" }, [
      el("option", { value: "min", text: "Lowest (min)" }),
      el("option", { value: "max", text: "Highest (max)" }),
    ]);
    bestSelect.value = state.best;
    var kindSelect = el("select", { "aria-label": "chart kind", class: "rs-chart-kind" }, [
      el("option", { value: "bar", text: "Bars" }),
      el("option", { value: "scatter", text: "Points" }),
    ]);
    kindSelect.value = state.kind;
    state.status = el("span", { class: "rs-chart-status" });
    node.appendChild(el("div", { class: "rs-chart-toolbar" }, [
      el("label", {}, [document.createTextNode("best "), bestSelect]),
      el("label", {}, [document.createTextNode("as "), kindSelect]),
      state.status,
    ]));
    state.plot = el("div", { class: "rs-chart-plot" });
    node.appendChild(state.plot);
    var reload = function () {
      state.best = bestSelect.value;
      state.kind = kindSelect.value;
      var seq = ++state.seq;
      fetchJson(CHILDREN_URL + "?" + query({
        run: state.run, metric: state.metric, best: state.best, kind: state.kind,
      })).then(function (body) {
        if (seq !== state.seq) return;
        state.status.textContent = body.children + " child run" + (body.children === 1 ? "" : "s");
        return Plotly.react(state.plot, body.figure.data, themed(body.figure.layout), PLOT_CONFIG);
      }).catch(function (error) { fail(state, error); });
    };
    bestSelect.addEventListener("change", reload);
    kindSelect.addEventListener("change", reload);
    reload();
    return state;
  }

  // --- figures rendered into the page -------------------------------------------------------

  function staticChart(node) {
    var source = document.getElementById(node.dataset.figure);
    if (!source) return;
    var figure = JSON.parse(source.textContent);
    Plotly.newPlot(node, figure.data, themed(figure.layout), PLOT_CONFIG);
  }

  function init(root) {
    if (typeof Plotly === "undefined") return;
    var scope = root || document;
    var kinds = [
      [".rs-chart", metricChart],
      [".rs-chart-children", childrenChart],
      [".rs-chart-static", staticChart],
    ];
    kinds.forEach(function (pair) {
      scope.querySelectorAll(pair[0]).forEach(function (node) {
        if (node.dataset.rsChart) return; // already drawn
        node.dataset.rsChart = "1";
        pair[1](node);
      });
    });
  }

  window.rsCharts = { init: init };
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { init(document); });
  } else {
    init(document);
  }
})();
