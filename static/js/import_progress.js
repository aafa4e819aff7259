// Moves an import batch's progress bar by polling its JSON endpoint; reloads the page once the
// batch has finished so the outcome and any errors show. The text template comes translated
// from the page ("已处理 {done} / {total} 行").
(function () {
  "use strict";
  var box = document.querySelector("[data-progress-url]");
  if (!box) { return; }
  var bar = box.querySelector("progress");
  var text = box.querySelector("[data-progress-text]");
  var status = document.querySelector("[data-progress-status]");
  var template = box.getAttribute("data-progress-template");

  function poll() {
    fetch(box.getAttribute("data-progress-url"), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.json(); })
      .then(function (progress) {
        if (progress.finished) { window.location.reload(); return; }
        bar.max = progress.rows_total || 1;
        bar.value = progress.rows_done;
        text.textContent = template.replace("{done}", progress.rows_done.toLocaleString())
          .replace("{total}", progress.rows_total.toLocaleString());
        if (status) { status.textContent = progress.status_display; }
        setTimeout(poll, 1000);
      })
      .catch(function () { setTimeout(poll, 5000); });
  }
  setTimeout(poll, 1000);
})();
