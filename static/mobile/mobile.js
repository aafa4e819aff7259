// The farmer portal works without this; it only stops a second tap on a slow network from
// sending a form twice (a second SMS, a second consent), and previews a loan's schedule live.
document.addEventListener("submit", function (event) {
  var buttons = event.target.querySelectorAll("button");
  // Disabled after the browser has collected the form, so the pressed button's value is sent.
  setTimeout(function () {
    if (event.defaultPrevented) return; // handled here (a live preview): nothing was sent
    for (var i = 0; i < buttons.length; i++) buttons[i].disabled = true;
  }, 0);
});
// Coming back with the Back button shows the page from cache: make its buttons usable again.
window.addEventListener("pageshow", function () {
  var buttons = document.querySelectorAll("button:disabled");
  for (var i = 0; i < buttons.length; i++) buttons[i].disabled = false;
});
// Borrowing: the schedule for the chosen amount, term and method, fetched as an HTML fragment
// on every change. Without fetch the "preview" button does the same with a round trip.
(function () {
  var form = document.querySelector("form[data-preview]");
  var target = document.getElementById("quote");
  if (!form || !target || !window.fetch || !window.URLSearchParams || !window.FormData) return;
  var timer = null;
  var asked = 0;
  function refresh() {
    var params = new URLSearchParams();
    ["amount", "term_months", "method"].forEach(function (name) {
      var value = new FormData(form).get(name);
      if (value !== null) params.set(name, value);
    });
    var mine = ++asked;
    fetch(form.getAttribute("data-preview") + "?" + params.toString(), { credentials: "same-origin" })
      .then(function (response) {
        // Logged out meanwhile: the preview answered with the login page; go there.
        if (response.redirected) { window.location.href = response.url; return null; }
        return response.text();
      })
      .then(function (html) { if (html !== null && mine === asked) target.innerHTML = html; })
      .catch(function () {});
  }
  function soon() { clearTimeout(timer); timer = setTimeout(refresh, 250); }
  form.addEventListener("input", soon);
  form.addEventListener("change", soon);
  form.addEventListener("click", function (event) {
    var pick = event.target.closest && event.target.closest("button[name=pick]");
    if (!pick) return;
    event.preventDefault();
    form.elements.amount.value = pick.value;
    refresh();
  });
  form.addEventListener("submit", function (event) {
    if (event.submitter && event.submitter.name === "preview") { event.preventDefault(); refresh(); }
  });
  var noJs = form.querySelectorAll("[data-nojs]");
  for (var i = 0; i < noJs.length; i++) noJs[i].hidden = true;
})();
