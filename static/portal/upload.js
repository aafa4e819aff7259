// The upload form sends the file with XMLHttpRequest so that its transfer shows on a progress bar
// (a plain form post shows nothing until the server answers). The server's answer decides what
// comes next: a redirect to the batch page (followed, where the import's own progress shows),
// or the form again with its errors (shown in place of this page). Without JavaScript the form
// posts as usual.
(function () {
  "use strict";
  var form = document.querySelector("[data-upload-form]");
  if (!form || !window.XMLHttpRequest || !window.FormData) { return; }
  var box = form.querySelector("[data-upload-progress]");
  var bar = form.querySelector("[data-upload-bar]");
  var text = form.querySelector("[data-upload-text]");
  var button = form.querySelector("button[type=submit]");

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var request = new XMLHttpRequest();
    request.open("POST", form.getAttribute("action") || window.location.href);
    request.upload.addEventListener("progress", function (progress) {
      if (!progress.lengthComputable) { return; }
      var percent = Math.floor(progress.loaded * 100 / progress.total);
      bar.value = percent;
      text.textContent = form.getAttribute("data-transfer-template").replace("{percent}", percent);
    });
    request.upload.addEventListener("load", function () {
      bar.value = 100;
      text.textContent = form.getAttribute("data-transfer-done");
    });
    request.addEventListener("load", function () {
      var landed = request.responseURL || window.location.href;
      if (request.status === 200 && landed.split("#")[0] !== window.location.href.split("#")[0]) {
        window.location.assign(landed);  // the batch page (the redirect was followed)
        return;
      }
      document.open();
      document.write(request.responseText);  // the form again, with its errors
      document.close();
    });
    request.addEventListener("error", function () {
      text.textContent = form.getAttribute("data-transfer-failed");
      button.disabled = false;
    });
    box.hidden = false;
    button.disabled = true;
    request.send(new FormData(form));
  });
})();
