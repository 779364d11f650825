// Review desk keyboard: a approve, e edit, r reject, s skip, j/k move, ? shortcuts, Esc leaves a field.
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

  // j/k: in a queue's list, the next/previous row (its link takes the focus, Enter opens it); on an item,
  // j opens the next item (as skip does) and k goes back to the one before.
  function move(step) {
    var rows = Array.prototype.slice.call(document.querySelectorAll("tr[data-task-id]"));
    if (rows.length) {
      var current = rows.findIndex(function (row) { return row.contains(document.activeElement); });
      var target = rows[Math.min(rows.length - 1, Math.max(0, current < 0 ? 0 : current + step))];
      var link = target.querySelector("a[href]");
      if (!link) return false;
      link.focus();
      target.scrollIntoView({ block: "nearest" });
      return true;
    }
    if (!decisionForm()) return false;
    if (step > 0) return press("skip");
    window.history.back();
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
      case "j": handled = move(1); break;
      case "k": handled = move(-1); break;
      case "?": handled = toggleHelp(); break;
      case "Escape": handled = toggleHelp(false); break;
    }
    if (handled) event.preventDefault();
  });

  document.addEventListener("click", function (event) {
    if (event.target.closest("[data-review-help-toggle]")) toggleHelp();
  });

  // The lease is renewed every minute (data-lease-renew); a 409 says the claim is no longer the reviewer's:
  // show why, stop renewing (the element goes) and disable the decision, which the server would refuse anyway.
  document.addEventListener("htmx:responseError", function (event) {
    var source = event.detail && event.detail.elt;
    if (!source || !source.matches("[data-lease-renew]") || event.detail.xhr.status !== 409) return;
    var state = document.getElementById("claim-state");
    if (state) {
      state.textContent = event.detail.xhr.responseText;
      state.classList.add("text-danger", "fw-semibold");
    }
    document.querySelectorAll("[data-review-form] fieldset").forEach(function (fieldset) {
      fieldset.disabled = true;
    });
  });

  // After htmx re-renders the decision panel with errors, put the reviewer on the first field at fault.
  document.addEventListener("htmx:afterSwap", function (event) {
    if (!event.detail || !event.detail.target || event.detail.target.id !== "decision-panel") return;
    var invalid = document.querySelector('#decision-panel [aria-invalid="true"]');
    if (invalid) invalid.focus();
  });

  // List mode: tick items (or all on the page) and decide them from the bulk bar. While any box is ticked the
  // list's 10-second poll (data-live-poll) is held, so a refresh never drops the reviewer's selection.
  function ticked() {
    return document.querySelectorAll("[data-bulk-item]:checked").length;
  }

  function bulkBarUpdate() {
    var count = document.querySelector("[data-bulk-count]");
    if (!count) return;
    var n = ticked();
    count.textContent = n ? n + (n === 1 ? " item ticked" : " items ticked") : "Tick low-risk items to decide them together";
    document.querySelectorAll("[data-bulk-action]").forEach(function (button) {
      button.disabled = n === 0;
    });
    var all = document.querySelector("[data-bulk-all]");
    if (all) {
      var boxes = document.querySelectorAll("[data-bulk-item]:not(:disabled)");
      all.checked = boxes.length > 0 && n === boxes.length;
      all.indeterminate = n > 0 && n < boxes.length;
    }
  }

  document.addEventListener("change", function (event) {
    if (event.target.matches("[data-bulk-all]")) {
      document.querySelectorAll("[data-bulk-item]:not(:disabled)").forEach(function (box) {
        box.checked = event.target.checked;
      });
    }
    if (event.target.matches("[data-bulk-all], [data-bulk-item]")) bulkBarUpdate();
  });

  document.addEventListener("htmx:beforeRequest", function (event) {
    // Only the timer's poll is held; a filter change or the refresh after a bulk decision comes from elsewhere.
    var source = event.detail && event.detail.elt;
    if (source && source.matches("[data-live-poll]") && ticked()) event.preventDefault();
  });

  document.addEventListener("htmx:load", bulkBarUpdate);
  document.addEventListener("DOMContentLoaded", bulkBarUpdate);
})();
