// Doorstep widget loader. Put it where the widget should appear:
//   <script src="https://doorstep.example.com/static/widget/embed.js"
//           data-doorstep-widget="<signed widget URL>" async></script>
// It inserts an iframe after the script tag and sizes it to the widget's content, trusting height
// messages only from that iframe and from the widget's own origin.
(function () {
  var script = document.currentScript;
  if (!script || !script.dataset.doorstepWidget) return;
  var url = new URL(script.dataset.doorstepWidget, script.src);
  var frame = document.createElement("iframe");
  frame.src = url.href;
  frame.title = script.dataset.doorstepTitle || "Doorstep recommendation";
  // The widget runs its own scripts and forms on its own origin; it may not navigate the host page.
  frame.setAttribute("sandbox", "allow-scripts allow-forms allow-same-origin");
  frame.setAttribute("data-doorstep-frame", "");
  frame.style.border = "0";
  frame.style.width = "100%";
  frame.style.height = "160px";
  script.parentNode.insertBefore(frame, script.nextSibling);
  window.addEventListener("message", function (event) {
    if (event.origin !== url.origin || event.source !== frame.contentWindow) return;
    var data = event.data;
    if (!data || data.type !== "doorstep-widget:height" || typeof data.height !== "number") return;
    frame.style.height = Math.max(40, Math.min(Math.ceil(data.height), 4000)) + "px";
  });
})();
