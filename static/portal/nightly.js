// Moves a nightly run's progress bar by polling its JSON endpoint while the run is queued or
// running; reloads the page once it has finished so steps, counts and errors show.
(function () {
  "use strict";
  var box = document.querySelector("[data-progress-url]");
  if (!box) { return; }
  var bar = box.querySelector("[data-progress-bar]");
  var percent = box.querySelector("[data-progress-percent]");
  var status = box.querySelector("[data-progress-status]");
  var step = box.querySelector("[data-progress-step]");
  var text = box.querySelector("[data-progress-text]");
  var template = box.getAttribute("data-template");
  var sawRunning = box.getAttribute("data-finished") !== "true";

  function poll() {
    fetch(box.getAttribute("data-progress-url"), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.json(); })
      .then(function (progress) {
        bar.value = progress.percent;
        percent.textContent = progress.percent + "%";
        status.textContent = progress.status_display;
        step.textContent = progress.current_step;
        text.textContent = template.replace("{done}", progress.steps_done).replace("{total}", progress.steps_total)
          .replace("{chunks_done}", progress.chunks_done).replace("{chunks_total}", progress.chunks_total);
        box.setAttribute("data-status", progress.status);
        if (progress.finished) {
          if (sawRunning) { window.location.reload(); }
          return;
        }
        sawRunning = true;
        setTimeout(poll, 1000);
      })
      .catch(function () { setTimeout(poll, 5000); });
  }
  if (sawRunning) { setTimeout(poll, 1000); }
})();
