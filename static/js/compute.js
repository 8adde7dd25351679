// The compute page: refresh the targets' workers and running/queued runs by fetching the
// server-rendered fragment (#compute-live[data-live-url]) every data-interval seconds while
// the page is visible (every 30 s while hidden); owners' forms sit outside it and keep their
// input. Delete buttons ask first (their form's data-confirm text, asked by studio.js).
(function () {
  "use strict";
  var live = document.getElementById("compute-live");
  var stamp = document.getElementById("compute-updated");
  if (!live || !live.dataset.liveUrl) return;
  var interval = (parseFloat(live.dataset.interval) || 5) * 1000;
  var timer = null;
  var busy = false;

  function schedule() {
    window.clearTimeout(timer);
    timer = window.setTimeout(refresh, document.hidden ? 30000 : interval);
  }

  function refresh() {
    if (busy) return schedule();
    busy = true;
    fetch(live.dataset.liveUrl, {
      credentials: "same-origin",
      headers: { "X-Requested-With": "fetch" },
    })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.text();
      })
      .then(function (html) {
        live.innerHTML = html;
        live.dataset.refreshed = String(Date.now());
        if (stamp) {
          stamp.textContent = "Live · updated " + new Date().toLocaleTimeString();
          stamp.classList.remove("stale");
        }
      })
      .catch(function () {
        if (stamp) {
          stamp.textContent = "Live · update failed, retrying";
          stamp.classList.add("stale");
        }
      })
      .then(function () {
        busy = false;
        schedule();
      });
  }

  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) refresh();
  });
  schedule();
})();
