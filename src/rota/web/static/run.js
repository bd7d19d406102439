// Follows a run: polls its states once a second and recolours the graph and the task table.
// Text from the server is set with textContent only; nothing is parsed as HTML.
(function () {
  "use strict";
  var root = document.getElementById("run");
  if (!root || root.dataset.ended === "yes") { return; }
  var runId = root.dataset.run;
  var url = "/api/runs/" + encodeURIComponent(runId) + "/live";
  function paint(live) {
    var tasks = live.tasks || {};
    document.querySelectorAll("#graph [data-task]").forEach(function (el) {
      var s = tasks[el.dataset.task];
      if (s !== undefined) { el.dataset.state = s; }
    });
    document.querySelectorAll("[data-task-state]").forEach(function (el) {
      var s = tasks[el.dataset.taskState];
      if (s !== undefined) { el.dataset.state = s; el.textContent = s; }
    });
    var head = document.getElementById("run-state");
    if (head) { head.dataset.state = live.state; head.textContent = live.state; }
  }
  function tick() {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (live) {
        if (!live) { setTimeout(tick, 2000); return; }
        paint(live);
        if (live.ended) { window.location.reload(); return; }
        setTimeout(tick, 1000);
      })
      .catch(function () { setTimeout(tick, 2000); });
  }
  setTimeout(tick, 500);
})();
