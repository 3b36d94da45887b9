// Progressive enhancement only: every page works without this file.
(function () {
  "use strict";
  function localTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (t) {
      var d = new Date(t.getAttribute("datetime"));
      if (!isNaN(d)) { t.title = d.toLocaleString(); }
    });
  }
  localTimes(document);
  var box = document.getElementById("experiments");
  if (box && box.dataset.refresh && window.fetch) {
    var busy = false;
    setInterval(function () {
      if (busy || document.hidden) { return; }
      busy = true;
      fetch(box.dataset.refresh, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) { if (html !== null) { box.innerHTML = html; localTimes(box); } })
        .catch(function () {})
        .then(function () { busy = false; });
    }, 1000);
  }
})();
