// The admin UI's only script, small on purpose: everything works without it.
// It checks the YAML source as you type (POST to the gateway's own /admin/check), asks before
// destructive forms, scrolls to the first field with an error, and blanks images that do not load.
(function () {
  "use strict";
  var body = document.body;
  var csrf = body.getAttribute("data-csrf");

  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
    });
  });

  document.querySelectorAll("a[data-back]").forEach(function (link) {
    link.addEventListener("click", function (event) {
      if (window.history.length > 1) { event.preventDefault(); window.history.back(); }
    });
  });

  document.addEventListener("error", function (event) {
    var target = event.target;
    if (target && target.tagName === "IMG") {
      var blank = document.createElement("span");
      blank.className = "thumb none";
      target.replaceWith(blank);
    }
  }, true);

  var invalid = document.querySelector(".field.invalid");
  if (invalid) invalid.scrollIntoView({ block: "center" });

  var source = document.getElementById("source");
  var out = document.getElementById("live-errors");
  if (!source || !out || source.readOnly) return;
  var timer = null;
  var sent = 0;
  function show(answer) {
    out.textContent = "";
    var line = document.createElement("p");
    if (answer.ok) {
      line.className = "ok";
      line.textContent = "Valid.";
      out.appendChild(line);
      return;
    }
    (answer.errors || []).forEach(function (error) {
      var item = document.createElement("p");
      item.className = "bad";
      item.textContent = error.text;
      out.appendChild(item);
    });
  }
  function check() {
    var mine = ++sent;
    fetch(source.getAttribute("data-check"), {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify({ source: source.value })
    }).then(function (response) { return response.json(); })
      .then(function (answer) { if (mine === sent) show(answer); })
      .catch(function () { /* offline: the save still validates */ });
  }
  source.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(check, 400);
  });
})();
