// apitally-otel hub dashboard: charts (uPlot) and live refresh. The pages work without it:
// every number is in the server-rendered HTML; this only draws the time series and reloads
// the content of pages that end "now".
(function () {
  "use strict";

  var COLORS = {
    "2xx": "#4c9be8", "3xx": "#8e7ee0", "4xx": "#f0a73c", "5xx": "#e05656",
    p50: "#4c9be8", p75: "#33b1a4", p95: "#f0a73c", p99: "#e05656",
    in: "#4c9be8", out: "#8e7ee0", rate: "#e05656", requests: "#4c9be8"
  };
  var PALETTE = ["#f0a73c", "#e05656", "#8e7ee0", "#33b1a4", "#4c9be8", "#b5651d", "#c2185b", "#607d8b"];

  function pad(n) { return n < 10 ? "0" + n : "" + n; }

  // Times in UTC, as the server renders them (24-hour clock).
  function utcLabel(ts, withDate, withTime) {
    var d = new Date(ts * 1000);
    var date = d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate());
    var time = pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes());
    return withDate && withTime ? date + " " + time : withDate ? date : time;
  }

  function timeTicks(u, splits, axisIdx, space, incr) {
    var previousDay = null;
    return splits.map(function (ts) {
      var day = Math.floor(ts / 86400);
      var label = incr >= 86400 ? utcLabel(ts, true, false) : utcLabel(ts, day !== previousDay && previousDay !== null, true);
      previousDay = day;
      return label;
    });
  }

  function color(series, index) {
    return series.color || COLORS[series.label] || PALETTE[index % PALETTE.length];
  }

  function formatter(unit) {
    return function (u, value) {
      if (value == null) return "–";
      if (unit === "%") return (value * 100).toFixed(2) + " %";
      if (unit === "ms") return Math.round(value) + " ms";
      if (unit === "bytes") {
        var units = ["B", "kB", "MB", "GB", "TB"], i = 0;
        while (Math.abs(value) >= 1000 && i < units.length - 1) { value /= 1000; i++; }
        return (i ? value.toFixed(1) : Math.round(value)) + " " + units[i];
      }
      return Math.abs(value) >= 100 ? Math.round(value).toLocaleString("en-US") : +value.toFixed(2) + "";
    };
  }

  // Stacked series: series i is drawn at the sum of series 0..i (bottom first), biggest drawn
  // first so each smaller stack paints over the lower part; the legend shows the raw values.
  function timeSeries() {
    return { value: function (u, ts) { return ts == null ? "–" : utcLabel(ts, true, true) + " UTC"; } };
  }

  function stacked(spec, fmt) {
    var raw = spec.series.map(function (s) { return s.values; });
    var sums = [];
    var running = spec.x.map(function () { return 0; });
    raw.forEach(function (values) {
      running = running.map(function (sum, i) { return sum + (values[i] || 0); });
      sums.push(running.slice());
    });
    var order = spec.series.map(function (_, i) { return i; }).reverse();
    var data = [spec.x].concat(order.map(function (i) { return sums[i]; }));
    var bars = uPlot.paths.bars({ size: [0.92, 60], gap: 1 });
    var series = [timeSeries()].concat(order.map(function (i) {
      var c = color(spec.series[i], i);
      return {
        label: spec.series[i].label, stroke: c, fill: c, width: 0, paths: bars, points: { show: false },
        value: function (u, v, si, idx) { return idx == null ? "–" : fmt(u, raw[i][idx]); }
      };
    }));
    return { data: data, series: series };
  }

  function plain(spec, fmt) {
    var data = [spec.x].concat(spec.series.map(function (s) { return s.values; }));
    var series = [timeSeries()].concat(spec.series.map(function (s, i) {
      var c = color(s, i);
      var present = s.values.filter(function (v) { return v != null; }).length;
      return {
        label: s.label, stroke: c, width: 2, spanGaps: false, points: { show: present < 30, size: 5, fill: c },
        fill: spec.fill ? c + "22" : undefined,
        value: function (u, v) { return fmt(u, v); }
      };
    }));
    return { data: data, series: series };
  }

  function draw(el) {
    var source = document.getElementById(el.getAttribute("data-chart"));
    if (!source || typeof uPlot === "undefined") return;
    var spec = JSON.parse(source.textContent);
    el.textContent = "";
    var fmt = formatter(spec.unit);
    var built = spec.kind === "stacked" ? stacked(spec, fmt) : plain(spec, fmt);
    var width = Math.max(el.clientWidth, 300);
    var options = {
      width: width,
      height: 220,
      tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"); },
      series: built.series,
      legend: { live: true },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true, range: [spec.since, spec.until] }, y: { range: function (u, min, max) { return [0, max > 0 ? max * 1.08 : 1]; } } },
      axes: [
        { stroke: "#667085", grid: { stroke: "#eef0f3" }, values: timeTicks, space: 70 },
        { stroke: "#667085", grid: { stroke: "#eef0f3" }, size: spec.unit === "bytes" || spec.unit === "%" ? 84 : 64, values: function (u, ticks) { return ticks.map(function (t) { return fmt(u, t); }); } }
      ]
    };
    el._plot = new uPlot(options, built.data, el);
  }

  function drawAll(root) {
    root.querySelectorAll("[data-chart]").forEach(function (el) {
      if (el._plot) el._plot.destroy();
      el._plot = null;
      draw(el);
    });
  }

  var resizeTimer = null;
  window.addEventListener("resize", function () {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(function () {
      document.querySelectorAll("[data-chart]").forEach(function (el) {
        if (el._plot) el._plot.setSize({ width: Math.max(el.clientWidth, 300), height: 220 });
      });
    }, 150);
  });

  // -- live refresh: fetch this page again and swap the content, while the tab is visible --
  function liveRefresh() {
    var seconds = parseInt(document.body.getAttribute("data-live") || "0", 10);
    var toggle = document.getElementById("live-toggle");
    if (!seconds || !toggle) return;
    toggle.parentElement.hidden = false;
    var busy = false;
    setInterval(function () {
      if (!toggle.checked || document.hidden || busy) return;
      busy = true;
      fetch(window.location.href, { credentials: "same-origin", headers: { "X-Dashboard-Refresh": "1" } })
        .then(function (response) {
          if (!response.ok || response.redirected) throw new Error("refresh: " + response.status);
          return response.text();
        })
        .then(function (html) {
          var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("content");
          var current = document.getElementById("content");
          if (fresh && current) {
            current.innerHTML = fresh.innerHTML;
            drawAll(current);
          }
        })
        .catch(function () { toggle.checked = false; })
        .then(function () { busy = false; });
    }, seconds * 1000);
  }

  // Copy buttons: <button data-copy="id"> copies the text of the element with that id.
  function copyButtons(root) {
    root.querySelectorAll("button[data-copy]").forEach(function (button) {
      button.addEventListener("click", function () {
        var source = document.getElementById(button.getAttribute("data-copy"));
        if (!source || !navigator.clipboard) { return; }
        navigator.clipboard.writeText(source.textContent).then(function () {
          button.textContent = "Copied";
        });
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    drawAll(document);
    copyButtons(document);
    liveRefresh();
  });
})();
