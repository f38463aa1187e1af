// Keyboard shortcuts and double-submit guard for the labelling page. Nothing here touches model text.
"use strict";
(function () {
  const form = document.getElementById("vote-form");
  if (!form) return;
  const keys = { a: "left", "1": "left", b: "right", "2": "right", t: "tie", "3": "tie", x: "both_bad", "4": "both_bad" };
  let sent = false;
  form.addEventListener("submit", function (event) {
    if (sent) { event.preventDefault(); return; }  // a double click sends one request (the server dedupes too)
    sent = true;
    form.classList.add("sending");
  });
  document.addEventListener("keydown", function (event) {
    const target = event.target;
    const typing = target instanceof HTMLTextAreaElement || (target instanceof HTMLInputElement && target.type !== "checkbox");
    if (typing) {
      if (event.key === "Escape") target.blur();
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const key = event.key.toLowerCase();
    if (key in keys) {
      event.preventDefault();
      form.requestSubmit(form.querySelector('button[value="' + keys[key] + '"]'));
    } else if (key === "u") {
      event.preventDefault();
      const box = document.getElementById("unsafe");
      box.checked = !box.checked;
    } else if (key === "c") {
      event.preventDefault();
      document.getElementById("comment").focus();
    }
  });
})();
