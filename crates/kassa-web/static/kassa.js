// Kassa's little script: the masked-name preview for a payment by phone and
// the live exchange quote. Everything works without it; it only shows more.
"use strict";
(function () {
  function csrf() {
    var field = document.querySelector('input[name="csrf"]');
    return field ? field.value : "";
  }
  function debounce(fn, ms) {
    var timer = null;
    return function () { clearTimeout(timer); timer = setTimeout(fn, ms); };
  }
  // "Open new product" opens its form in a dialog (without the script, the
  // link goes to the same form on its own page).
  document.querySelectorAll("[data-dialog]").forEach(function (link) {
    var dialog = document.getElementById(link.getAttribute("data-dialog"));
    if (!dialog || typeof dialog.showModal !== "function") { return; }
    link.addEventListener("click", function (event) {
      event.preventDefault();
      dialog.showModal();
      var first = dialog.querySelector("select, input:not([type=hidden])");
      if (first) { first.focus(); }
    });
    dialog.querySelectorAll("[data-close]").forEach(function (button) {
      button.addEventListener("click", function () { dialog.close(); link.focus(); });
    });
  });
  // A phone number's masked recipient name, from /web/recipient.
  document.querySelectorAll("[data-recipient]").forEach(function (input) {
    var out = document.getElementById(input.getAttribute("data-recipient"));
    var currency = input.getAttribute("data-currency");
    var look = debounce(function () {
      var phone = input.value.trim();
      if (phone.length < 7) { out.textContent = ""; return; }
      fetch("/web/recipient?phone=" + encodeURIComponent(phone) + "&currency=" + encodeURIComponent(currency),
            { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(function (r) { return r.json(); })
        .then(function (body) { out.textContent = body.text || ""; })
        .catch(function () { out.textContent = ""; });
    }, 400);
    input.addEventListener("input", look);
    input.addEventListener("change", look);
  });
  // A live exchange quote between own accounts, from /web/quote.
  document.querySelectorAll("form[data-quote]").forEach(function (form) {
    var out = document.getElementById(form.getAttribute("data-quote"));
    var from = form.getAttribute("data-from");
    var target = form.querySelector('select[name="to_account"]');
    var amount = form.querySelector('input[name="amount"]');
    var quoteId = form.querySelector('input[name="quote_id"]');
    var ask = debounce(function () {
      var option = target.options[target.selectedIndex];
      var body = new URLSearchParams();
      body.set("from", from);
      body.set("to", option ? option.getAttribute("data-currency") || "" : "");
      body.set("amount", amount.value.trim());
      fetch("/web/quote", { method: "POST", credentials: "same-origin",
                            headers: { "X-CSRF-Token": csrf(), "Content-Type": "application/x-www-form-urlencoded" },
                            body: body.toString() })
        .then(function (r) { return r.json(); })
        .then(function (q) { out.textContent = q.text || ""; if (quoteId) { quoteId.value = q.id || ""; } })
        .catch(function () { out.textContent = ""; });
    }, 400);
    target.addEventListener("change", ask);
    amount.addEventListener("input", ask);
    ask();
  });
})();
