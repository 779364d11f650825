// Runs inside the widget's iframe: tells the host page (embed.js) how tall the content is, so the frame
// fits without a scrollbar. Only the origin that frames us, and only if it is one of the use case's
// allowed origins, receives the message; the widget itself needs no script to work.
(function () {
  if (window.parent === window) return;
  var allowed = (document.body.dataset.parentOrigins || "").split(" ").filter(Boolean);
  var ancestors = window.location.ancestorOrigins;
  var parentOrigin = ancestors && ancestors.length ? ancestors[0] : "";
  if (!parentOrigin && document.referrer) {
    try {
      parentOrigin = new URL(document.referrer).origin;
    } catch (error) {
      parentOrigin = "";
    }
  }
  if (allowed.indexOf(parentOrigin) === -1) return;
  var last = 0;
  function report() {
    var height = Math.ceil(document.body.getBoundingClientRect().height);
    if (height === last) return;
    last = height;
    window.parent.postMessage({ type: "doorstep-widget:height", height: height }, parentOrigin);
  }
  new ResizeObserver(report).observe(document.body);
  report();
})();
