/* Counts down the wait on a resend button. The page renders the button
   disabled with data-wait (seconds), data-template (its text, with %d for
   the seconds left) and data-ready (its text once usable). Without this
   script the page asks to reload instead, so nothing depends on it. */
(function () {
  "use strict";

  function start(button) {
    var wait = parseInt(button.getAttribute("data-wait"), 10);
    var template = button.getAttribute("data-template") || "";
    var ready = button.getAttribute("data-ready") || button.textContent;
    // From the clock rather than by counting ticks: timers in background
    // tabs are slowed down.
    var deadline = Date.now() + (wait > 0 ? wait : 0) * 1000;

    function tick() {
      var ms = deadline - Date.now();
      if (ms <= 0) {
        button.textContent = ready;
        button.disabled = false;
        return;
      }
      var left = Math.ceil(ms / 1000);
      button.textContent = template.replace("%d", String(left));
      // Wake up when the number shown changes.
      setTimeout(tick, ms - (left - 1) * 1000 + 20);
    }
    tick();
  }

  function init() {
    var buttons = document.querySelectorAll("button[data-wait]");
    for (var i = 0; i < buttons.length; i++) {
      start(buttons[i]);
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
