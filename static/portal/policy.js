// The policy page's PSI chart (ECharts, served from static/portal/): each night's population
// stability index with the 0.1 (watch) and 0.25 (shifted) bands. The figures come from the page
// as decimal strings (json_script "psi-chart").
(function () {
  "use strict";
  var node = document.querySelector('[data-chart="psi"]');
  var source = document.getElementById("psi-chart");
  if (!node || !source || !window.echarts) { return; }
  var data = JSON.parse(source.textContent);
  var chart = echarts.init(node);
  chart.setOption({
    animation: false,
    tooltip: { trigger: "axis" },
    grid: { left: 48, right: 24, bottom: 48, top: 24 },
    xAxis: { type: "category", data: data.dates },
    yAxis: { type: "value", min: 0 },
    series: [{
      name: data.label, type: "line", data: data.psi.map(Number), symbol: "circle", symbolSize: 8, showSymbol: true,
      markLine: {
        silent: true, symbol: "none",
        data: [
          { yAxis: Number(data.watch), lineStyle: { color: "#c9a227", type: "dashed" } },
          { yAxis: Number(data.warning), lineStyle: { color: "#c0392b", type: "dashed" } }
        ]
      }
    }]
  });
  node.setAttribute("data-loaded", "true");
  window.addEventListener("resize", function () { chart.resize(); });
})();
