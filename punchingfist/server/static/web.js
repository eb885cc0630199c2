// Follow a run that is still going: every few seconds the page's <main> is read again and
// swapped in, unless someone is typing in one of its forms. Without this script the page
// works the same; it only stops updating itself.
(function () {
  "use strict";
  var every = Number(document.body.dataset.live || 0);
  if (!every) { return; }
  function typing() {
    var focused = document.activeElement;
    return focused && focused.form && focused.value;
  }
  function refresh() {
    if (typing()) { return setTimeout(refresh, every * 1000); }
    fetch(window.location.href, { credentials: "same-origin", cache: "no-store" })
      .then(function (answer) { return answer.ok ? answer.text() : Promise.reject(answer.status); })
      .then(function (html) {
        var next = new DOMParser().parseFromString(html, "text/html");
        var main = next.querySelector("main");
        if (main) { document.querySelector("main").replaceChildren(...main.childNodes); }
        if (next.body.dataset.live) { setTimeout(refresh, every * 1000); }
        else { delete document.body.dataset.live; }
      })
      .catch(function () { setTimeout(refresh, every * 4000); });
  }
  setTimeout(refresh, every * 1000);
})();
