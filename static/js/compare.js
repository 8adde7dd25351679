/* Compare page: the metric picker (filtered as you type), the x-axis, the scatter columns and
   "only differences" reload the page with the choice (a GET form). */
(function () {
  "use strict";
  var form = document.getElementById("compare-form");
  if (!form) return;
  document.querySelectorAll("[data-autosubmit]").forEach(function (field) {
    field.addEventListener("change", function () { form.submit(); });
  });
  // The metric picker's filter: hides the metrics whose name does not contain the text.
  var filter = form.querySelector(".metric-filter");
  if (filter) {
    filter.addEventListener("input", function () {
      var text = filter.value.trim().toLowerCase();
      form.querySelectorAll("[data-metric-name]").forEach(function (label) {
        label.hidden = text !== "" && label.dataset.metricName.indexOf(text) === -1;
      });
    });
    filter.addEventListener("keydown", function (event) {
      if (event.key === "Enter") event.preventDefault(); // Enter filters, Show submits
    });
  }
})();
