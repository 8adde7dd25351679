// The MLflow client prints "<tracking uri>/#/experiments/<id>/runs/<run id>[?workspace=<ws>]":
// the run is in the fragment, which the server never sees. Read it and ask the server, which
// redirects to the run's studio page.
(function () {
  "use strict";
  var page = document.getElementById("mlflow-link");
  if (!page) return;
  var hash = window.location.hash.replace(/^#\/?/, "");
  var query = "";
  var q = hash.indexOf("?");
  if (q >= 0) {
    query = hash.slice(q + 1);
    hash = hash.slice(0, q);
  }
  var parts = hash.split("/").map(decodeURIComponent);
  var run = parts[0] === "experiments" && parts[2] === "runs" ? parts[3] : "";
  var workspace = page.dataset.workspace || new URLSearchParams(query).get("workspace") || "";
  if (!run) return;
  var target = new URLSearchParams({ run: run });
  if (!page.dataset.workspace && workspace) target.set("workspace", workspace);
  var status = document.getElementById("mlflow-link-status");
  if (status) status.textContent = "Opening run " + run + "…";
  window.location.replace(window.location.pathname + "?" + target.toString());
})();
