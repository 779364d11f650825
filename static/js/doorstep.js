// htmx: no inline indicator styles and no eval, so the strict CSP holds (PITFALLS #9).
document.addEventListener("DOMContentLoaded", function () {
  if (window.htmx) {
    htmx.config.includeIndicatorStyles = false;
    htmx.config.allowEval = false;
  }
  // The navbar toggler without Bootstrap's JS bundle.
  document.querySelectorAll("[data-toggle-target]").forEach(function (button) {
    button.addEventListener("click", function () {
      var target = document.querySelector(button.dataset.toggleTarget);
      var open = target.classList.toggle("show");
      button.setAttribute("aria-expanded", open ? "true" : "false");
    });
  });
});
