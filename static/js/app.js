/* sda's own script: the few behaviours htmx attributes cannot say without eval.
   They were hx-on attributes; under the Content-Security-Policy (no 'unsafe-eval')
   htmx runs with allowEval off, so they live here, found by data attributes.
   Without JavaScript none of this is needed: the pages work as plain forms. */
(function () {
  "use strict";

  // <input type="range" data-output="id" [data-signed]>: show the value beside the slider.
  document.addEventListener("input", function (event) {
    var slider = event.target;
    if (!slider.matches || !slider.matches("input[type=range][data-output]")) return;
    var output = document.getElementById(slider.dataset.output);
    if (!output) return;
    var value = +slider.value;
    output.value = (slider.hasAttribute("data-signed") && value > 0 ? "+" : "") + value;
  });

  // <form data-upload-progress>: fill its <progress> as the upload goes, reset the form when done.
  document.addEventListener("htmx:xhr:progress", function (event) {
    var form = event.target.closest && event.target.closest("form[data-upload-progress]");
    if (!form || !event.detail.lengthComputable) return;
    var bar = form.querySelector("progress");
    if (bar) { bar.max = event.detail.total; bar.value = event.detail.loaded; }
  });
  document.addEventListener("htmx:afterRequest", function (event) {
    if (event.target.matches && event.target.matches("form[data-upload-progress]")) event.target.reset();
  });

  // [data-live-class]: that class while its WebSocket (htmx ws extension) is open.
  function live(on) {
    return function (event) {
      var element = event.target.closest && event.target.closest("[data-live-class]");
      if (element) element.classList.toggle(element.dataset.liveClass, on);
    };
  }
  document.addEventListener("htmx:wsOpen", live(true));
  document.addEventListener("htmx:wsClose", live(false));
})();
