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
  // The timing (no overlap, 30 s while hidden, at once on return) is studio.js's rsPoll.
  window.rsPoll(function () {
    return window.rsFetchText(live.dataset.liveUrl)
      .then(function (html) {
        live.innerHTML = html;
        window.rsRelativeTimes(live); // "last seen 2 min ago" from the fresh <time> tags
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
      });
  }, { fast: interval, slow: 30000 });
})();
