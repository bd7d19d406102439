// Shows an attempt's log as text, following it while the attempt runs (ranged reads).
(function () {
  "use strict";
  var box = document.getElementById("log");
  var status = document.getElementById("log-status");
  if (!box) { return; }
  var base = box.dataset.url;
  var offset = 0;
  var decoder = new TextDecoder("utf-8");
  function say(text) { if (status) { status.textContent = text; } }
  function more() {
    fetch(base + "&offset=" + offset, { credentials: "same-origin" })
      .then(function (r) {
        if (!r.ok) { say("the log cannot be read (" + r.status + ")"); return null; }
        var next = parseInt(r.headers.get("x-log-next-offset") || "0", 10);
        var complete = r.headers.get("x-log-complete") === "1";
        var state = r.headers.get("x-attempt-state") || "";
        return r.arrayBuffer().then(function (buf) { return { buf: buf, next: next, complete: complete, state: state }; });
      })
      .then(function (got) {
        if (!got) { return; }
        if (got.buf.byteLength > 0) {
          box.appendChild(document.createTextNode(decoder.decode(got.buf, { stream: true })));
          offset = got.next;
          setTimeout(more, 0);
          return;
        }
        if (got.complete) { say("attempt " + got.state + "; end of log"); return; }
        say("following: attempt " + got.state);
        setTimeout(more, 1000);
      })
      .catch(function () { setTimeout(more, 2000); });
  }
  more();
})();
