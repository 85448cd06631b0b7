// Sort the rows of every table with class "sortable-table" by a clicked column.
// A cell's data-sort attribute, when present, is its sort key; empty keys sort last.
(function () {
  var NUMBER = /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/;
  function key(row, index) {
    var cell = row.cells[index];
    if (!cell) { return ""; }
    return cell.hasAttribute("data-sort") ? cell.getAttribute("data-sort") : cell.textContent.trim();
  }
  function compare(a, b) {
    if (NUMBER.test(a) && NUMBER.test(b)) { return parseFloat(a) - parseFloat(b); }
    return a.localeCompare(b, undefined, {numeric: true, sensitivity: "base"});
  }
  function sortBy(table, header, index) {
    var ascending = header.getAttribute("aria-sort") !== "ascending";
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) { th.removeAttribute("aria-sort"); });
    header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (r1, r2) {
      var k1 = key(r1, index), k2 = key(r2, index);
      if (k1 === "" || k2 === "") { return (k1 === "") - (k2 === ""); }
      return ascending ? compare(k1, k2) : compare(k2, k1);
    });
    rows.forEach(function (row) { body.appendChild(row); });
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable-table"), function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (header, index) {
      header.classList.add("sortable");
      header.tabIndex = 0;
      header.addEventListener("click", function () { sortBy(table, header, index); });
      header.addEventListener("keydown", function (event) {
        if (event.key === "Enter" || event.key === " ") { event.preventDefault(); sortBy(table, header, index); }
      });
    });
  });
})();
