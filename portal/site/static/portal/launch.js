// The launch form's cost box: the maximum cost of the run (max_steps x the engine's step price),
// and warnings when the team's wallet, its monthly budget or the member's limit cannot hold it,
// or when it will wait for a manager's approval. A static file, not an inline script, so
// the Content-Security-Policy can forbid inline scripts everywhere.
(function () {
  var box = document.getElementById("cost-box");
  var prices = JSON.parse(document.getElementById("step-prices").textContent);
  var available = parseInt(box.dataset.available, 10);
  var form = document.getElementById("launch-form");
  function money(c) { return "$" + (c / 100).toFixed(2).replace(/\B(?=(\d{3})+(?!\d))/g, ","); }
  function update() {
    var version = (form.querySelector("input[name=cua_version]:checked") || {}).value || "v5";
    var steps = parseInt(form.querySelector("[name=max_steps]").value, 10);
    var price = prices[version] || 0;
    document.getElementById("cost-price").textContent = money(price);
    var ok = steps > 0;
    document.getElementById("cost-max").textContent = ok ? money(steps * price) + " (" + steps + " × " + money(price) + ")" : "—";
    document.getElementById("cost-warning").hidden = !(ok && steps * price > available);
    // What is left of the team's monthly budget and of the member's own limit ("" = none).
    [["budgetLeft", "budget-warning"], ["limitLeft", "limit-warning"]].forEach(function (pair) {
      var left = box.dataset[pair[0]];
      document.getElementById(pair[1]).hidden = !(ok && left !== "" && steps * price > parseInt(left, 10));
    });
    var above = box.dataset.approvalAbove;
    document.getElementById("approval-note").hidden = !(ok && above !== "" && steps * price > parseInt(above, 10));
  }
  form.addEventListener("input", update);
  update();
})();
