// Draws the statistics charts from the JSON the page embeds (#chart-data). Each chart has a
// table beside it with the same figures, so nothing is lost when the library is missing.
(function () {
  "use strict";
  var source = document.getElementById("chart-data");
  if (!source || typeof window.Chart === "undefined") return;
  var data = JSON.parse(source.textContent);
  var palette = ["#b3261e", "#0b4f9c", "#1e7a3c", "#b26a00", "#6b21a8", "#0f766e", "#be185d",
    "#4b5563", "#a16207", "#1d4ed8", "#15803d"];
  document.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
    var series = data[canvas.dataset.chart];
    if (!series) return;
    var type = canvas.dataset.type || "bar";
    var percent = canvas.dataset.percent === "1";
    new window.Chart(canvas, {
      type: type,
      data: {
        labels: series.labels,
        datasets: [{
          data: series.values,
          backgroundColor: type === "line" ? "#b3261e" : palette,
          borderColor: type === "line" ? "#b3261e" : "#fff",
          tension: 0.2,
        }],
      },
      options: {
        animation: false,
        plugins: { legend: { display: type === "doughnut" } },
        scales: type === "doughnut" ? {} : {
          y: { beginAtZero: true, max: percent ? 100 : undefined, ticks: { precision: 0 } },
        },
      },
    });
  });
})();
