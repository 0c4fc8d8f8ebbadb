/* Shows the times of a page in the browser's time zone. The page writes
   each as <time class="when" datetime="2026-12-05T07:46:00Z"
   data-show="datetime|date|time"> with the text in UTC and its offset
   ("2026-12-05 07:46 UTC+00:00"); this script rewrites the text in the
   same form for the browser's zone ("2026-12-05 16:46 UTC+09:00"), the
   time and its zone joined by a no-break space and the date's hyphens
   non-breaking (U+2011), as the page writes them: browsers would break a
   line after a hyphen.
   Without it the UTC text stays, which says its zone, so nothing depends
   on it. */
(function () {
  "use strict";

  var NBSP = "\u00a0";
  var NBHY = "\u2011";

  function two(n) {
    return (n < 10 ? "0" : "") + n;
  }

  function offset(d) {
    var minutes = -d.getTimezoneOffset();
    var sign = minutes < 0 ? NBHY : "+";
    minutes = Math.abs(minutes);
    return "UTC" + sign + two(Math.floor(minutes / 60)) + ":" + two(minutes % 60);
  }

  function show(el) {
    var d = new Date(el.getAttribute("datetime"));
    if (isNaN(d.getTime())) {
      return;
    }
    var date = d.getFullYear() + NBHY + two(d.getMonth() + 1) + NBHY + two(d.getDate());
    var clock = two(d.getHours()) + ":" + two(d.getMinutes());
    var style = el.getAttribute("data-show");
    var text;
    if (style === "date") {
      text = date;
    } else if (style === "time") {
      text = clock + NBSP + offset(d);
    } else {
      // The date and the time may go on lines of their own in a narrow
      // column; neither breaks inside.
      text = date + " " + clock + NBSP + offset(d);
    }
    el.textContent = text;
    el.setAttribute("title", el.getAttribute("datetime"));
  }

  function init() {
    var times = document.querySelectorAll("time.when[datetime]");
    for (var i = 0; i < times.length; i++) {
      show(times[i]);
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
