// The run detail page's behaviour. The page works without it (forms post, links page);
// this adds: focus and Escape on in-place edits, the description preview, and — while the
// run is live — polling for server-rendered fragments (status, details, metric summaries,
// child runs, file tree) and appending new log lines. Data comes from data-* attributes.
(function () {
  "use strict";

  var root = document.getElementById("run-page");
  if (!root) return;

  var FAST = 3000; // ms between polls while the tab is visible
  var SLOW = 15000; // ... and while it is hidden
  var live = root.dataset.live === "1";

  function fragmentUrl(params) {
    var query = new URLSearchParams(window.location.search);
    query.set("tab", root.dataset.tab);
    Object.keys(params).forEach(function (key) { query.set(key, params[key]); });
    return root.dataset.pageUrl + "?" + query.toString();
  }

  function parse(html) {
    var template = document.createElement("template");
    template.innerHTML = html; // server-rendered and escaped by Django templates
    return template.content;
  }

  var get = window.rsFetchText;

  // --- in-place edits --------------------------------------------------------------------

  root.addEventListener("toggle", function (event) {
    var details = event.target;
    if (!(details instanceof HTMLDetailsElement) || !details.open) return;
    var field = details.querySelector("[data-autofocus]");
    if (field) {
      field.focus();
      if (field.select && field.tagName === "INPUT") field.select();
    }
  }, true);

  root.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") return;
    var details = event.target.closest && event.target.closest("details.rd-edit[open]");
    if (details) details.open = false;
  });

  root.addEventListener("click", function (event) {
    var close = event.target.closest("[data-close-details]");
    if (close) {
      var details = close.closest("details");
      if (details) details.open = false;
    }
    var preview = event.target.closest("[data-preview]");
    if (preview) showPreview(preview.form);
  });

  function showPreview(form) {
    var target = form.querySelector("#description-preview");
    var body = new FormData();
    body.append("description", form.elements.description.value);
    fetch(root.dataset.previewUrl, {
      method: "POST",
      body: body,
      credentials: "same-origin",
      headers: { "X-CSRFToken": form.elements.csrfmiddlewaretoken.value },
    })
      .then(function (response) { return response.text().then(function (text) {
        return { ok: response.ok, text: text };
      }); })
      .then(function (result) {
        target.hidden = false;
        if (result.ok) {
          // The server's sanitiser (runs/rich_text.py) made this HTML; nothing is built here.
          target.replaceChildren(parse(result.text));
        } else {
          target.textContent = result.text;
        }
      });
  }

  // --- live updates ----------------------------------------------------------------------

  function swapParts(fragment) {
    fragment.querySelectorAll("[data-live-part][id]").forEach(function (part) {
      var current = document.getElementById(part.id);
      if (!current) return;
      // Keep an open in-place edit open: do not swap a part the user is typing in.
      if (current.contains(document.activeElement) && document.activeElement !== document.body) {
        return;
      }
      // Folders the user closed stay closed.
      current.querySelectorAll("details[data-folder]:not([open])").forEach(function (closed) {
        part.querySelectorAll("details[data-folder]").forEach(function (folder) {
          if (folder.dataset.folder === closed.dataset.folder) folder.open = false;
        });
      });
      current.replaceWith(part);
      window.rsRelativeTimes(part); // the child runs' "created" times read relative again
      if (window.rsCharts && window.rsCharts.init) window.rsCharts.init(part);
    });
  }

  function pollParts() {
    return get(fragmentUrl({ fragment: "live" })).then(function (html) {
      var fragment = parse(html);
      var status = fragment.getElementById("run-status");
      swapParts(fragment);
      if (status && status.dataset.terminal === "1") {
        live = false;
        root.dataset.live = "0";
      }
    });
  }

  function pollLog() {
    var log = document.getElementById("log-view");
    if (!log || log.dataset.follow !== "1") return Promise.resolve();
    var params = { fragment: "log", file: log.dataset.path, offset: log.dataset.nextOffset };
    if (log.dataset.nextLine) params.line = log.dataset.nextLine;
    return get(fragmentUrl(params)).then(function (html) {
      var body = parse(html).querySelector("tbody");
      if (!body) return;
      var scroller = log.closest(".rd-log-scroll");
      var atBottom = scroller &&
        scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 40;
      var rows = body.querySelectorAll("tr");
      if (rows.length) {
        var target = log.tBodies[0] || log.appendChild(document.createElement("tbody"));
        rows.forEach(function (row) { target.appendChild(row); });
        var empty = document.querySelector("[data-log-empty]");
        if (empty) empty.hidden = true;
      }
      log.dataset.nextOffset = body.dataset.nextOffset;
      if (body.dataset.nextLine) log.dataset.nextLine = body.dataset.nextLine;
      showSize(body);
      if (atBottom && rows.length) scroller.scrollTop = scroller.scrollHeight;
      // Behind by more than a page (64 KiB a read): catch up now, not one page per poll.
      if (rows.length && Number(body.dataset.nextOffset) < Number(body.dataset.size)) {
        return pollLog();
      }
    });
  }

  // The header follows the file as it grows: its size and the byte range shown.
  function showSize(body) {
    var size = document.querySelector("[data-log-size]");
    if (size && body.dataset.sizeText) size.textContent = body.dataset.sizeText;
    var range = document.querySelector("[data-log-range]");
    if (range && body.dataset.size) {
      range.textContent = "bytes " + range.dataset.start + "–" + body.dataset.nextOffset +
        " of " + body.dataset.size;
    }
  }

  // Tail (and a live log shown at its end) opens scrolled to the last line, not the page's top.
  function scrollLogToEnd() {
    var log = document.getElementById("log-view");
    if (!log || log.dataset.scrollEnd !== "1") return;
    var scroller = log.closest(".rd-log-scroll");
    if (scroller) scroller.scrollTop = scroller.scrollHeight;
    var rows = log.querySelectorAll("tbody tr");
    if (rows.length) rows[rows.length - 1].scrollIntoView({ block: "end" });
  }
  scrollLogToEnd();

  // Timing (no overlap, slower while hidden, at once on return, stop when the run ends) is
  // studio.js's rsPoll.
  function tick() {
    var wasLive = live;
    return pollParts()
      .then(pollLog)
      .then(function () {
        // One more log read after the run ends picks up its last, unfinished line.
        if (wasLive && !live) return pollLog().then(stopFollowing);
      });
  }

  function stopFollowing() {
    var log = document.getElementById("log-view");
    if (log) log.dataset.follow = "0";
    var note = document.querySelector("[data-live-note]");
    if (note) note.hidden = true;
  }

  if (live) {
    window.rsPoll(tick, { fast: FAST, slow: SLOW, active: function () { return live; } });
  }
})();
