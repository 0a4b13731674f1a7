// Charts (plotly.js, served locally) and live updates (server-sent events -> htmx refresh).
(function () {
  "use strict";
  var PLOTLY = "/assets/plotly.min.js";  // served from the installed plotly package

  // plotly.js is 4.8 MB: it loads after the page is shown, and only on pages with a chart.
  function withPlotly(then) {
    if (window.Plotly) { then(); return; }
    var script = document.querySelector("script[data-plotly]");
    if (!script) {
      script = document.createElement("script");
      script.src = PLOTLY;
      script.dataset.plotly = "1";
      document.head.appendChild(script);
    }
    script.addEventListener("load", then);
  }

  function drawCharts(root) {
    if (!document.querySelector(".chart")) return;
    if (!window.Plotly) { withPlotly(function () { drawCharts(root); }); return; }
    (root || document).querySelectorAll(".chart").forEach(function (el) {
      var data = document.getElementById(el.id + "-data");
      if (!data) return;
      var fig = JSON.parse(data.textContent);
      window.Plotly.react(el, fig.data, fig.layout, {displaylogo: false, responsive: true});
      el.dataset.points = String(fig.data.map(function (t) { return t.x.length; }));
    });
    window.reallocatorChartsDrawnAt = performance.now();
  }
  window.reallocatorCharts = drawCharts;
  document.addEventListener("htmx:afterSwap", function (e) { drawCharts(e.target.parentNode || document); });

  document.addEventListener("DOMContentLoaded", function () {
    drawCharts(document);
    var url = document.body.dataset.events;
    var status = document.getElementById("live-status");
    if (!url || !window.EventSource) { if (status) status.textContent = ""; return; }
    var source = new EventSource(url);
    source.addEventListener("hello", function () {
      document.body.dataset.live = "on";
      if (status) status.textContent = "live updates: on";
    });
    source.addEventListener("plan", function (e) {
      var event = JSON.parse(e.data);
      document.body.dataset.lastEvent = String(event.id);
      if (status) status.textContent = "live: " + event.plan.split("/").pop() + " " + (event.state || "seller answer").toLowerCase() + (event.actor ? " by " + event.actor : "");
      if (!window.htmx) return;
      var main = document.getElementById("main");
      if (event.comment.indexOf("created by") === 0 && main && main.querySelector(".chart")) {
        // A new plan from a new snapshot: the whole campaign page changes (chart, tables).
        window.htmx.ajax("GET", window.location.pathname, {target: "#main", select: "#main", swap: "outerHTML"});
      } else {
        window.htmx.trigger(document.body, "store-changed", event);
      }
    });
    source.onerror = function () {
      document.body.dataset.live = "off";
      if (status) status.textContent = "live updates: reconnecting";
    };
  });
})();
