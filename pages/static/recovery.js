/* The "Copy" and "Print" buttons of the recovery-code page. The page
   renders them hidden, with data-action="copy" or "print", because they
   need this script; the codes, the download link and the continue link
   work without it. The copy button's data-done is its text for a moment
   after copying. */
(function () {
  "use strict";

  function codesText(list) {
    var codes = list.getElementsByTagName("code");
    var lines = [];
    for (var i = 0; i < codes.length; i++) {
      lines.push(codes[i].textContent);
    }
    return lines.join("\n") + "\n";
  }

  // Where the Clipboard API is missing (a page served over plain http) or
  // refused: select the list, so the member can copy it by hand, and try
  // the older copy command on the selection.
  function selectList(list) {
    if (!window.getSelection || !document.createRange) {
      return false;
    }
    var range = document.createRange();
    range.selectNodeContents(list);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    try {
      return document.execCommand("copy") === true;
    } catch (e) {
      return false;
    }
  }

  function copyButton(button, list) {
    var label = button.textContent;
    var done = button.getAttribute("data-done") || label;
    var timer = null;

    function copied() {
      button.textContent = done;
      if (timer !== null) {
        clearTimeout(timer);
      }
      timer = setTimeout(function () {
        button.textContent = label;
        timer = null;
      }, 2000);
    }

    function fallback() {
      if (selectList(list)) {
        copied();
      }
    }

    button.addEventListener("click", function () {
      var clipboard = window.navigator && window.navigator.clipboard;
      if (clipboard && typeof clipboard.writeText === "function") {
        clipboard.writeText(codesText(list)).then(copied, fallback);
      } else {
        fallback();
      }
    });
    button.hidden = false;
  }

  function printButton(button) {
    if (typeof window.print !== "function") {
      return;
    }
    button.addEventListener("click", function () {
      window.print();
    });
    button.hidden = false;
  }

  function init() {
    var list = document.querySelector("ol.recovery-codes");
    if (!list) {
      return;
    }
    var buttons = document.querySelectorAll("button[data-action]");
    for (var i = 0; i < buttons.length; i++) {
      var action = buttons[i].getAttribute("data-action");
      if (action === "copy") {
        copyButton(buttons[i], list);
      } else if (action === "print") {
        printButton(buttons[i]);
      }
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
