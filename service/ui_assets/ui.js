// The planners' page: filter the product table as the planner types (the server-side ?q= search works
// without this script). No network access, no inline handlers (the page's CSP allows only this file).
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  var input = document.getElementById("q");
  var rows = Array.prototype.slice.call(document.querySelectorAll("#products tbody tr"));
  var count = document.getElementById("count");
  if (!input || !count) {
    return;
  }
  var total = count.textContent.replace(/^\d+ of /, "");
  input.addEventListener("input", function () {
    var needle = input.value.trim().toLowerCase();
    var shown = 0;
    rows.forEach(function (row) {
      var hit = !needle || (row.getAttribute("data-search") || "").indexOf(needle) !== -1;
      row.hidden = !hit;
      if (hit) {
        shown += 1;
      }
    });
    count.textContent = shown + " of " + total;
  });
});
