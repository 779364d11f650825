// Review desk keyboard: a approve, e edit, r reject, s skip, ? shortcuts, Esc leaves a field.
// A static file with data attributes, no inline script: the CSP forbids it (PITFALLS #9).
// Elements are looked up on each key press, so it keeps working after htmx swaps the decision panel.
(function () {
  "use strict";

  function isTyping(element) {
    return !!element && (element.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(element.tagName));
  }

  function decisionForm() {
    return document.querySelector("[data-review-form]");
  }

  function usable(element) {
    // :disabled also covers controls inside a disabled fieldset (another reviewer holds the item).
    return !!element && !element.matches(":disabled");
  }

  function press(action) {
    var form = decisionForm();
    var button = form && form.querySelector('[data-review-action="' + action + '"]');
    if (!usable(button)) return false;
    button.click(); // the clicked button's name/value (decision=...) goes with the form, htmx or not
    return true;
  }

  function focus(selector) {
    var field = document.querySelector(selector);
    if (!usable(field)) return false;
    field.focus();
    if (field.tagName === "TEXTAREA") {
      field.setSelectionRange(field.value.length, field.value.length);
    }
    field.scrollIntoView({ block: "center" });
    return true;
  }

  function toggleHelp(force) {
    var help = document.getElementById("review-shortcuts");
    if (!help) return false;
    var show = typeof force === "boolean" ? force : help.hidden;
    help.hidden = !show;
    document.querySelectorAll("[data-review-help-toggle]").forEach(function (button) {
      button.setAttribute("aria-expanded", show ? "true" : "false");
    });
    return true;
  }

  document.addEventListener("keydown", function (event) {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey || event.isComposing) return;
    if (isTyping(event.target)) {
      if (event.key === "Escape") event.target.blur();
      return;
    }
    var handled = false;
    switch (event.key) {
      case "a": handled = press("approve"); break;
      case "e": handled = focus("[data-review-edit]"); break;
      case "r": handled = focus("[data-review-reason]"); break;
      case "s": handled = press("skip"); break;
      case "?": handled = toggleHelp(); break;
      case "Escape": handled = toggleHelp(false); break;
    }
    if (handled) event.preventDefault();
  });

  document.addEventListener("click", function (event) {
    if (event.target.closest("[data-review-help-toggle]")) toggleHelp();
  });

  // After htmx re-renders the decision panel with errors, put the reviewer on the first field at fault.
  document.addEventListener("htmx:afterSwap", function (event) {
    if (!event.detail || !event.detail.target || event.detail.target.id !== "decision-panel") return;
    var invalid = document.querySelector('#decision-panel [aria-invalid="true"]');
    if (invalid) invalid.focus();
  });
})();
