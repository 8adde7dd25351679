// The run list's behaviour. The page works without it (the filter form submits, links sort and
// page, the save-view form posts the state the server rendered); this adds: select-all, the
// Compare link for the selected runs, saving the state as it is now (including selections
// made after the page loaded), a confirm before deleting a view, and live statuses — the list
// polls a server-rendered fragment for the visible runs that are not finished yet.
(function () {
  "use strict";

  var FAST = 5000; // ms between status polls while the tab is visible
  var SLOW = 30000; // ... and while it is hidden
  var form = document.getElementById("run-form");
  var table = document.getElementById("run-table");
  if (!form || !table) return;

  var terminal = JSON.parse(document.getElementById("terminal-statuses").textContent);

  function boxes() {
    return Array.prototype.slice.call(table.querySelectorAll("tbody input[name=run]"));
  }

  // The selection: checkboxes on this page plus hidden inputs for runs selected elsewhere.
  function selectedIds() {
    var ids = [];
    form.querySelectorAll("input[type=hidden][name=run]").forEach(function (input) {
      ids.push(input.value);
    });
    boxes().forEach(function (box) { if (box.checked) ids.push(box.value); });
    return ids;
  }

  // --- select all and Compare ---------------------------------------------------------------

  var compare = document.getElementById("compare-button");

  function refreshSelection() {
    var ids = selectedIds();
    var all = boxes();
    // Looked up each time: the table's head is swapped when columns change.
    var selectAll = table.querySelector("[data-select-all]");
    if (selectAll) {
      var checked = all.filter(function (b) { return b.checked; }).length;
      selectAll.checked = all.length > 0 && checked === all.length;
      selectAll.indeterminate = checked > 0 && checked < all.length;
    }
    if (compare) {
      var params = new URLSearchParams();
      ids.forEach(function (id) { params.append("run", id); });
      compare.href = compare.dataset.compareUrl + "?" + params.toString();
      compare.setAttribute("aria-disabled", ids.length ? "false" : "true");
      compare.querySelector("[data-selected-count]").textContent = ids.length;
    }
  }

  table.addEventListener("change", function (event) {
    if (event.target.matches("[data-select-all]")) {
      boxes().forEach(function (box) { box.checked = event.target.checked; });
    }
    if (event.target.name === "run" || event.target.matches("[data-select-all]")) {
      refreshSelection();
    }
  });
  if (compare) {
    compare.addEventListener("click", function (event) {
      if (compare.getAttribute("aria-disabled") === "true") event.preventDefault();
    });
  }
  refreshSelection();

  // --- saving a view: send the state as the page shows it now -------------------------------

  function currentState() {
    var params = new URLSearchParams();
    new FormData(form).forEach(function (value, key) {
      if (key !== "page" && value !== "") params.append(key, value);
    });
    return params.toString();
  }

  document.querySelectorAll("form[data-state-from]").forEach(function (saveForm) {
    saveForm.addEventListener("submit", function () {
      var state = saveForm.querySelector("input[name=state]");
      if (state) state.value = currentState();
    });
  });

  // Open dropdowns close on Escape or a click elsewhere.
  document.addEventListener("click", function (event) {
    document.querySelectorAll("details.dropdown[open]").forEach(function (details) {
      if (!details.contains(event.target)) details.open = false;
    });
  });
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") return;
    document.querySelectorAll("details.dropdown[open]").forEach(function (details) {
      details.open = false;
    });
  });

  // --- run management: the selection goes with the form, after a confirm in the page --------

  var manage = document.getElementById("manage-form");

  function refreshManage() {
    if (!manage) return;
    var count = selectedIds().length;
    var summary = document.getElementById("manage-button");
    if (summary) summary.querySelector("[data-selected-count]").textContent = count;
    manage.querySelector("[data-manage-empty]").hidden = count > 0;
    manage.querySelectorAll("button[name=action]").forEach(function (button) {
      button.disabled = count === 0;
    });
  }

  if (manage) {
    manage.addEventListener("submit", function (event) {
      var ids = selectedIds();
      var button = event.submitter;
      if (!ids.length || !button) { event.preventDefault(); return; }
      // studio.js asks the button's data-confirm after this handler, with "{n}" filled in.
      manage.dataset.confirmCount = ids.length === 1 ? "1 run" : ids.length + " runs";
      manage.querySelectorAll("input[data-selected-run]").forEach(function (input) {
        input.remove();
      });
      ids.forEach(function (id) {
        var input = document.createElement("input");
        input.type = "hidden";
        input.name = "run";
        input.value = id;
        input.dataset.selectedRun = "1";
        manage.appendChild(input);
      });
    });
    table.addEventListener("change", refreshManage);
    refreshManage();
  }

  // --- columns: adding or removing one redraws the table in place, no page load ------------

  var columnsMenu = document.querySelector("details.columns-menu");

  function listUrl() {
    var params = new URLSearchParams();
    new FormData(form).forEach(function (value, key) {
      if (key !== "page" && value !== "") params.append(key, value);
    });
    return form.getAttribute("action") + "?" + params.toString();
  }

  function swap(fresh, selector, inner) {
    var now = document.querySelector(selector);
    var next = fresh.querySelector(selector);
    if (!now || !next) return;
    if (inner) now.innerHTML = next.innerHTML; // rendered and escaped by the server
    else now.replaceWith(next);
  }

  function redrawColumns() {
    var url = listUrl();
    get(url).then(function (html) {
      var fresh = new DOMParser().parseFromString(html, "text/html");
      var freshTable = fresh.getElementById("run-table");
      if (!freshTable) throw new Error("no table");
      table.tHead.innerHTML = freshTable.tHead.innerHTML;
      table.tBodies[0].innerHTML = freshTable.tBodies[0].innerHTML;
      swap(fresh, "details.columns-menu > .menu", true);
      swap(fresh, "details.columns-menu > summary", true);
      swap(fresh, "#run-range", false);
      swap(fresh, "nav.pager", false);
      swap(fresh, "a[download][href*='.csv']", false);
      window.history.replaceState(null, "", url);
      if (window.rsRelativeTimes) window.rsRelativeTimes(table);
      applyTree();
      applyWidths(); // the head was swapped: put the remembered widths back
      refreshSelection();
      refreshManage();
      schedule();
    }).catch(function () { window.location.href = url; });
  }

  var get = window.rsFetchText;

  if (columnsMenu) {
    columnsMenu.addEventListener("change", function (event) {
      if (event.target.name === "col" && event.target.type === "checkbox") redrawColumns();
    });
    form.addEventListener("submit", function (event) {
      if (event.submitter && event.submitter.closest("details.columns-menu")) {
        event.preventDefault();
        redrawColumns();
      }
    });
  }

  // --- the run tree: collapse / expand a parent's rows ---------------------------------------

  // A row is hidden when any ancestor is collapsed; rows come in tree order with data-depth.
  function applyTree() {
    var hideBelow = Infinity;
    table.querySelectorAll("tbody tr[data-depth]").forEach(function (row) {
      var depth = Number(row.dataset.depth);
      if (depth <= hideBelow) hideBelow = Infinity;
      row.hidden = depth > hideBelow;
      if (!row.hidden && row.dataset.expanded === "0") hideBelow = depth;
    });
  }

  table.addEventListener("click", function (event) {
    var toggle = event.target.closest("button.tree-toggle");
    if (!toggle) return;
    var row = toggle.closest("tr");
    var open = row.dataset.expanded !== "1";
    row.dataset.expanded = open ? "1" : "0";
    toggle.setAttribute("aria-expanded", open ? "true" : "false");
    toggle.setAttribute("aria-label", toggle.getAttribute("aria-label").replace(
      open ? /^Expand/ : /^Collapse/, open ? "Collapse" : "Expand"));
    applyTree();
  });

  // --- remembered column widths ---------------------------------------------------------------

  // The browser's resize grip (CSS `resize: horizontal` on .col-resize) writes an inline width;
  // that width is kept per list (workspace + view / experiment / all runs) and per column key
  // in localStorage, so adding or removing a column keeps the others' widths. Widths nobody
  // dragged have no inline style and are not stored: the table keeps sizing them itself.
  var WIDTHS = "runstudio-widths:" + (table.dataset.widthsKey || window.location.pathname);

  function loadWidths() {
    try { return JSON.parse(window.localStorage.getItem(WIDTHS) || "{}") || {}; } catch (e) { return {}; }
  }

  function saveWidth(key, width) {
    var widths = loadWidths();
    if (widths[key] === width) return;
    widths[key] = width;
    try { window.localStorage.setItem(WIDTHS, JSON.stringify(widths)); } catch (e) { /* private mode */ }
  }

  var resizeWatch = window.ResizeObserver ? new ResizeObserver(function (entries) {
    entries.forEach(function (entry) {
      var box = entry.target;
      var key = box.closest("th") && box.closest("th").title;
      if (key && box.style.width) saveWidth(key, box.style.width);
    });
  }) : null;

  function applyWidths() {
    var widths = loadWidths();
    table.querySelectorAll("thead th .col-resize").forEach(function (box) {
      var key = box.closest("th").title;
      if (widths[key] && /^\d+(\.\d+)?px$/.test(widths[key])) box.style.width = widths[key];
      if (resizeWatch) resizeWatch.observe(box);
    });
  }
  applyWidths();

  // --- live statuses --------------------------------------------------------------------------

  function liveIds() {
    var ids = [];
    table.querySelectorAll("[data-status-for]").forEach(function (cell) {
      if (terminal.indexOf(cell.dataset.status) === -1) ids.push(cell.dataset.statusFor);
    });
    return ids;
  }

  // Timing is studio.js's rsPoll; it polls only while a visible run is not finished yet.
  function poll() {
    var params = new URLSearchParams();
    liveIds().forEach(function (id) { params.append("run", id); });
    return window.rsFetchText(table.dataset.statusUrl + "?" + params.toString())
      .then(function (html) {
        var template = document.createElement("template");
        template.innerHTML = html; // rendered and escaped by the server
        template.content.querySelectorAll("[data-status-for]").forEach(function (fresh) {
          var id = fresh.dataset.statusFor;
          table.querySelectorAll("[data-status-for]").forEach(function (cell) {
            if (cell.dataset.statusFor === id && cell.dataset.status !== fresh.dataset.status) {
              cell.dataset.status = fresh.dataset.status;
              cell.innerHTML = fresh.innerHTML;
            }
          });
        });
      });
  }

  var statuses = window.rsPoll(poll, {
    fast: FAST,
    slow: SLOW,
    active: function () { return liveIds().length > 0; },
  });
  function schedule() { statuses.schedule(); }
})();
