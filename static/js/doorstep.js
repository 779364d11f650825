// htmx's own settings (no inline indicator styles, no eval) are in the htmx-config meta tag of
// base.html, read before htmx starts, so the strict CSP holds (PITFALLS #9).
document.addEventListener("DOMContentLoaded", function () {
  // The navbar toggler without Bootstrap's JS bundle.
  document.querySelectorAll("[data-toggle-target]").forEach(function (button) {
    button.addEventListener("click", function () {
      var target = document.querySelector(button.dataset.toggleTarget);
      var open = target.classList.toggle("show");
      button.setAttribute("aria-expanded", open ? "true" : "false");
    });
  });
});
