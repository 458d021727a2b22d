// Sortable tables (click a header; again to reverse) and a self-test run by the browser test
// when the page is opened with #selftest. Nothing here logs: any console message is a failure.
(function () {
  "use strict";
  function key(cell) {
    var s = cell.getAttribute("data-sort");
    if (s === null || s === "") return null;
    if (s === "inf") return Infinity;
    if (s === "-inf") return -Infinity;
    var n = parseFloat(s);
    return isNaN(n) ? null : n;
  }
  function compare(a, b) {
    var ka = key(a), kb = key(b);
    if (ka !== null && kb !== null) return ka - kb;
    if (ka !== null) return -1;
    if (kb !== null) return 1;
    return a.textContent.localeCompare(b.textContent);
  }
  function sortBy(table, column, th) {
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (x, y) {
      var c = compare(x.cells[column], y.cells[column]);
      return ascending ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
    Array.prototype.forEach.call(th.parentNode.cells, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  }
  // Sticky columns: the second one sits right of the first, whatever its width.
  function stick() {
    Array.prototype.forEach.call(document.querySelectorAll("table.results"), function (table) {
      var first = table.tHead.rows[0].cells[0];
      if (!first) return;
      var left = first.getBoundingClientRect().width + "px";
      Array.prototype.forEach.call(table.rows, function (r) { if (r.cells[1]) r.cells[1].style.left = left; });
    });
  }
  stick();
  window.addEventListener("resize", stick);
  // Filter boxes: rows whose text contains every word typed stay; the others hide.
  Array.prototype.forEach.call(document.querySelectorAll("input.row-filter"), function (input) {
    var table = document.getElementById(input.getAttribute("data-table"));
    if (!table) return;
    input.addEventListener("input", function () {
      var words = input.value.toLowerCase().split(/\s+/).filter(function (w) { return w; });
      Array.prototype.forEach.call(table.tBodies[0].rows, function (r) {
        var text = r.textContent.toLowerCase();
        r.hidden = !words.every(function (w) { return text.indexOf(w) >= 0; });
      });
    });
  });
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, i) {
      th.tabIndex = 0;
      th.addEventListener("click", function () { sortBy(table, i, th); });
      th.addEventListener("keydown", function (e) { if (e.key === "Enter") sortBy(table, i, th); });
    });
  });

  function selftest() {
    var problems = [];
    var results = document.getElementById("results-table");
    var expectRows = parseInt(document.body.getAttribute("data-measured"), 10);
    if (expectRows > 0) {
      if (!results) problems.push("no results table");
      else if (results.tBodies[0].rows.length !== expectRows) problems.push("results rows " + results.tBodies[0].rows.length + " != " + expectRows);
    }
    var figures = document.querySelectorAll("figure.chart");
    var expectCharts = parseInt(document.body.getAttribute("data-charts"), 10);
    if (figures.length !== expectCharts) problems.push("charts " + figures.length + " != " + expectCharts);
    Array.prototype.forEach.call(figures, function (f) {
      var svg = f.querySelector("svg");
      var box = svg ? svg.getBoundingClientRect() : null;
      if (!svg || box.width < 100 || box.height < 100 || svg.querySelectorAll("circle, rect, polyline, path").length < 3) {
        problems.push("chart " + f.id + " did not render");
      }
    });
    // Sorting: the first column with two different numeric keys, ascending then descending.
    if (results) {
      var heads = results.tHead.rows[0].cells;
      for (var c = 0; c < heads.length; c++) {
        var keys = Array.prototype.map.call(results.tBodies[0].rows, function (r) { return key(r.cells[c]); });
        var numbers = keys.filter(function (k) { return k !== null; });
        if (numbers.length < 2 || Math.min.apply(null, numbers) === Math.max.apply(null, numbers)) continue;
        heads[c].click();
        var up = Array.prototype.map.call(results.tBodies[0].rows, function (r) { return key(r.cells[c]); }).filter(function (k) { return k !== null; });
        heads[c].click();
        var down = Array.prototype.map.call(results.tBodies[0].rows, function (r) { return key(r.cells[c]); }).filter(function (k) { return k !== null; });
        for (var i = 1; i < up.length; i++) {
          if (up[i - 1] > up[i]) { problems.push("column " + c + " not ascending after one click"); break; }
        }
        for (var j = 1; j < down.length; j++) {
          if (down[j - 1] < down[j]) { problems.push("column " + c + " not descending after two clicks"); break; }
        }
        document.documentElement.setAttribute("data-sorted-column", heads[c].textContent);
        break;
      }
    }
    // What a reader sees without scrolling: which results columns lie inside the window.
    if (results) {
      var width = window.innerWidth;
      var shown = Array.prototype.filter.call(results.tHead.rows[0].cells, function (th) {
        var b = th.getBoundingClientRect();
        return b.left >= 0 && b.right <= width;
      }).map(function (th) { return th.textContent; });
      document.documentElement.setAttribute("data-visible-columns", shown.join("|"));
      document.documentElement.setAttribute("data-window-width", String(width));
      // The filter: typing a row's scheme keeps only the rows that contain it.
      var filter = document.querySelector("input.row-filter");
      var first = results.tBodies[0].rows[0];
      if (filter && first) {
        var word = first.cells[1].textContent.trim();
        filter.value = word;
        filter.dispatchEvent(new Event("input"));
        var visible = Array.prototype.filter.call(results.tBodies[0].rows, function (r) { return !r.hidden; });
        if (visible.length === 0 || visible.some(function (r) { return r.textContent.indexOf(word) < 0; })) problems.push("the filter kept rows without " + word);
        document.documentElement.setAttribute("data-filtered-rows", visible.length + "/" + results.tBodies[0].rows.length);
        filter.value = "";
        filter.dispatchEvent(new Event("input"));
      }
    }
    document.documentElement.setAttribute("data-selftest", problems.length ? "fail: " + problems.join("; ") : "pass");
  }
  if (window.location.hash === "#selftest") selftest();
})();
