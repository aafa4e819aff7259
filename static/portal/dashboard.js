// The dashboard's charts (ECharts, served from static/portal/): coverage and risk by township,
// the history by business date and, for an opened township, its villages. Figures come from
// /portal/dashboard.json; money and ratios arrive as decimal strings.
(function () {
  "use strict";
  var box = document.querySelector("[data-dashboard-url]");
  if (!box || !window.echarts) { return; }
  var labels = JSON.parse(document.getElementById("chart-labels").textContent);
  var charts = [];

  function num(value) { return value === null || value === undefined ? null : Number(value); }
  function pct(value) { return value === null || value === undefined ? null : Math.round(Number(value) * 10000) / 100; }
  function percentAxis() { return { type: "value", axisLabel: { formatter: "{value}%" } }; }
  function chart(name) {
    var node = box.querySelector('[data-chart="' + name + '"]');
    if (!node) { return null; }
    var instance = echarts.init(node);
    charts.push(instance);
    return instance;
  }
  function coverage(areas, instance, drill) {
    if (!instance) { return; }
    instance.setOption({
      tooltip: { trigger: "axis", valueFormatter: function (v) { return v === null ? "—" : v + "%"; } },
      legend: { top: 0 },
      grid: { left: 48, right: 16, bottom: 64, top: 36 },
      xAxis: { type: "category", data: areas.map(function (a) { return a.name; }), axisLabel: { rotate: 30 } },
      yAxis: percentAxis(),
      series: [
        { name: labels.consent_coverage, type: "bar", data: areas.map(function (a) { return pct(a.consent_coverage); }) },
        { name: labels.line_coverage, type: "bar", data: areas.map(function (a) { return pct(a.line_coverage); }) }
      ]
    });
    if (drill) {
      instance.on("click", function (event) { window.location.href = drill + "?township=" + areas[event.dataIndex].code; });
    }
  }

  function risk(areas, instance, drill) {
    if (!instance) { return; }
    instance.setOption({
      tooltip: { trigger: "axis" },
      legend: { top: 0 },
      grid: { left: 72, right: 48, bottom: 64, top: 36 },
      xAxis: { type: "category", data: areas.map(function (a) { return a.name; }), axisLabel: { rotate: 30 } },
      yAxis: [{ type: "value" }, percentAxis()],
      series: [
        { name: labels.loan_balance, type: "bar", data: areas.map(function (a) { return num(a.loan_balance); }) },
        { name: labels.overdue_ratio, type: "line", yAxisIndex: 1, data: areas.map(function (a) { return pct(a.overdue_ratio); }) },
        { name: labels.npl_ratio, type: "line", yAxisIndex: 1, data: areas.map(function (a) { return pct(a.npl_ratio); }) }
      ]
    });
    if (drill) {
      instance.on("click", function (event) { window.location.href = drill + "?township=" + areas[event.dataIndex].code; });
    }
  }

  function history(points, instance) {
    if (!instance) { return; }
    if (!points.length) {
      instance.setOption({ title: { text: labels.no_history, left: "center", top: "middle", textStyle: { fontSize: 14, color: "#6b7280" } } });
      return;
    }
    var days = points.map(function (p) { return p.business_date; });
    function series(name, key, axis, type) {
      return { name: name, type: type || "line", yAxisIndex: axis, symbolSize: 7, data: points.map(function (p) { return axis ? pct(p[key]) : num(p[key]); }) };
    }
    instance.setOption({
      tooltip: { trigger: "axis" },
      legend: { top: 0 },
      grid: { left: 72, right: 48, bottom: 40, top: 36 },
      xAxis: { type: "category", data: days },
      yAxis: [{ type: "value" }, percentAxis()],
      dataZoom: points.length > 30 ? [{ type: "inside" }, { type: "slider" }] : [],
      series: [
        series(labels.loan_balance, "loan_balance", 0, "bar"),
        series(labels.consent_coverage, "consent_coverage", 1),
        series(labels.line_coverage, "line_coverage", 1),
        series(labels.overdue_ratio, "overdue_ratio", 1),
        series(labels.npl_ratio, "npl_ratio", 1)
      ]
    });
  }

  fetch(box.getAttribute("data-dashboard-url"), { credentials: "same-origin", headers: { Accept: "application/json" } })
    .then(function (response) { return response.json(); })
    .then(function (data) {
      coverage(data.townships, chart("coverage"), labels.drill);
      risk(data.townships, chart("risk"), labels.drill);
      history(data.history, chart("history"));
      if (data.villages.length) {
        var villages = chart("villages");
        coverage(data.villages, villages, "");
      }
      box.setAttribute("data-loaded", "true");
    });
  window.addEventListener("resize", function () { charts.forEach(function (c) { c.resize(); }); });
})();
