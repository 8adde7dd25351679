// Every page's small comforts, loaded in <head> (not deferred) so the theme is set before the
// first paint: dark mode that follows the system unless the user picked one (the top bar's
// toggle, kept in localStorage), and "/" to focus the page's search box.
(function () {
  "use strict";

  var KEY = "runstudio-theme"; // "light", "dark", or absent: follow the system
  var root = document.documentElement;
  var system = window.matchMedia ? window.matchMedia("(prefers-color-scheme: dark)") : null;

  function chosen() {
    try { return window.localStorage.getItem(KEY); } catch (e) { return null; }
  }

  function apply() {
    var pick = chosen();
    var dark = pick === "dark" || (pick !== "light" && system && system.matches);
    var changed = root.dataset.theme && root.dataset.theme !== (dark ? "dark" : "light");
    root.dataset.theme = dark ? "dark" : "light";
    // Charts already drawn recolour themselves (charts.js listens), without a reload.
    if (changed) document.dispatchEvent(new CustomEvent("rs-theme"));
    root.dataset.themeChoice = pick || "system";
    var toggle = document.querySelector("[data-theme-toggle]");
    if (toggle) {
      toggle.textContent = dark ? "☀" : "☾";
      toggle.title = (pick ? "Theme: " + pick : "Theme: follows the system") +
        " — click for " + (dark ? "light" : "dark");
    }
  }

  apply();
  if (system && system.addEventListener) system.addEventListener("change", apply);

  document.addEventListener("DOMContentLoaded", function () {
    apply();
    var toggle = document.querySelector("[data-theme-toggle]");
    if (!toggle) return;
    toggle.addEventListener("click", function () {
      var next = root.dataset.theme === "dark" ? "light" : "dark";
      try { window.localStorage.setItem(KEY, next); } catch (e) { /* private mode */ }
      apply();
    });
  });

  // Relative times: <time datetime=… data-relative> reads "5 min ago"; the exact time stays
  // in its title (the server renders both; without this script the exact time shows).
  function ago(then) {
    var seconds = (Date.now() - then) / 1000;
    var future = seconds < 0;
    seconds = Math.abs(seconds);
    var text;
    if (seconds < 45) return "just now";
    if (seconds < 5400) text = Math.round(seconds / 60) + " min";
    else if (seconds < 129600) text = Math.round(seconds / 3600) + " h";
    else if (seconds < 86400 * 45) text = Math.round(seconds / 86400) + " days";
    else return null; // older than ~6 weeks: the date itself reads better
    return future ? "in " + text : text + " ago";
  }

  function relativeTimes(scope) {
    (scope || document).querySelectorAll("time[data-relative][datetime]").forEach(function (el) {
      if (!el.dataset.exact) el.dataset.exact = el.textContent;
      var then = Date.parse(el.getAttribute("datetime"));
      var text = isNaN(then) ? null : ago(then);
      el.textContent = text || el.dataset.exact;
    });
  }
  window.rsRelativeTimes = relativeTimes;
  document.addEventListener("DOMContentLoaded", function () {
    relativeTimes();
    window.setInterval(relativeTimes, 60000);
  });

  // One fetch and one poller for every page's live parts (run list statuses, run page
  // fragments and log, compute page, live charts), so they all behave the same: the server's
  // fragment is fetched same-origin and marked X-Requested-With (the views answer fragments to
  // it); a tick never overlaps the previous one; the next tick waits `fast` ms while the tab is
  // visible and `slow` ms while it is hidden; coming back to the tab ticks at once; polling
  // stops for good as soon as `active()` says so (the run ended, the chart left the page).
  function fetchText(url) {
    return fetch(url, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
      .then(function (response) {
        if (!response.ok) throw new Error(response.status + " " + url);
        return response.text();
      });
  }
  window.rsFetchText = fetchText;

  window.rsPoll = function (tick, options) {
    options = options || {};
    var fast = options.fast || 5000;
    var slow = options.slow || 30000;
    var active = options.active || function () { return true; };
    var timer = null;
    var busy = false;

    function schedule() {
      window.clearTimeout(timer);
      timer = null;
      if (busy || !active()) return; // a running tick schedules the next when it ends
      timer = window.setTimeout(run, document.hidden ? slow : fast);
    }

    function run() {
      window.clearTimeout(timer);
      timer = null;
      if (busy || !active()) return;
      busy = true;
      Promise.resolve()
        .then(tick)
        .catch(function (error) { console.warn("poll failed; retried on the next tick", error); })
        .then(function () { busy = false; schedule(); });
    }

    document.addEventListener("visibilitychange", function () {
      if (document.hidden) schedule(); else run();
    });
    schedule();
    return { schedule: schedule, now: run };
  };

  // One confirm for every page: a form's or its submit button's data-confirm text is asked
  // before it posts; "{n}" takes the form's data-confirm-count (the run list's selection).
  // Listening on the document, it runs after a form's own submit handlers, which may fill
  // the form (or cancel it) first.
  document.addEventListener("submit", function (event) {
    if (event.defaultPrevented) return;
    var form = event.target;
    var button = event.submitter;
    var message = (button && button.dataset.confirm) || form.dataset.confirm;
    if (!message) return;
    message = message.replace("{n}", form.dataset.confirmCount || "");
    if (!window.confirm(message)) event.preventDefault();
  });

  document.addEventListener("keydown", function (event) {
    if (event.key !== "/" || event.ctrlKey || event.metaKey || event.altKey) return;
    var target = event.target;
    if (target.closest && target.closest("input, textarea, select, [contenteditable]")) return;
    var search = document.querySelector("input[type=search]");
    if (!search) return;
    event.preventDefault();
    search.focus();
    search.select();
  });
})();
