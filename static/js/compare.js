/* Compare page: picking a metric or a scatter column reloads the page with it (a GET form). */
(function () {
  "use strict";
  var form = document.getElementById("compare-form");
  if (!form) return;
  form.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
    select.addEventListener("change", function () { form.submit(); });
  });
})();
