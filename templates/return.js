{#- The maintenance page's return script, inlined by maintenance.html when the public status
    prefix is on (the Content-Security-Policy allows it by hash).  It reads its settings from
    the JSON block #mwm-config: stream, status (URLs), spread (seconds), poll, pollMax
    (seconds).  ES5 on purpose: it must run in old browsers too.

    - It follows <prefix>status/stream (EventSource); a document with "active": false
      reloads the page once, after a random delay within the spread, so that thousands of
      open pages do not all come back in the same second.  So does a document whose
      maintenance no longer applies to a GET of this page: its "scope" is not "site" and
      none of its full-mode "routes" (for GET or every method) covers location.pathname.
      A read-only page (#mwm-read-only: it answered a write) waits for "active": false.
    - Without EventSource, or when the stream fails for good (404, 503, not an event stream)
      or three times in a row without a message, it polls <prefix>status with If-None-Match,
      backing off (doubling up to pollMax) with jitter while the status cannot be read.
    - <html data-mwm-live="stream|poll|off"> tells tests and people what it is doing;
      data-mwm-return="pending" once the reload is scheduled.
    - It shows the expected end (<time id="mwm-until">) in the visitor's time zone and
      the page's language (in the visitor's regional variant of it when the browser asks
      for one), with the time left ("in 25 minutes"), updated every 30 s. -#}
{% raw %}
(function () {
  "use strict";
  var root = document.documentElement;
  var config;
  try {
    config = JSON.parse(document.getElementById("mwm-config").textContent);
  } catch (e) {
    root.setAttribute("data-mwm-live", "off");
    return;
  }
  var lang = root.getAttribute("lang") || undefined;
  // Dates in the page's language, formatted as the visitor's own variant of it when the
  // browser prefers one (en-GB: 24-hour clock; de-AT: Jänner), else the language alone.
  var locales = [];
  var preferred = typeof navigator === "undefined" ? [] :
    navigator.languages || [navigator.language];
  for (var i = 0; i < preferred.length; i++) {
    var tag = preferred[i];
    if (tag && lang && tag.split("-")[0].toLowerCase() === lang.split("-")[0].toLowerCase()) {
      locales.push(tag);
    }
  }
  if (lang) {
    locales.push(lang);
  }
  var returning = false;
  var source = null;
  var pollTimer = null;

  function mark(name, value) {
    root.setAttribute("data-mwm-" + name, value);
  }

  function comeBack() {
    if (returning) {
      return;
    }
    returning = true;
    if (source) {
      source.close();
      source = null;
    }
    if (pollTimer !== null) {
      clearTimeout(pollTimer);
    }
    mark("return", "pending");
    var spread = Math.max(0, Number(config.spread) || 0);
    setTimeout(function () {
      window.location.reload();
    }, Math.random() * spread * 1000);
  }

  var readOnlyPage = !!document.getElementById("mwm-read-only");

  function pagePath() {
    var path = window.location && window.location.pathname;
    if (typeof path !== "string") {
      return null;
    }
    try {
      return decodeURIComponent(path);
    } catch (e) {
      return path;
    }
  }

  function covers(prefix, path) {
    var base = String(prefix).replace(/\/+$/, "");
    return base === "" || path === base || path.indexOf(base + "/") === 0;
  }

  // True while a GET of this page would still get the page, as far as the document says.
  function stillApplies(doc) {
    var path = pagePath();
    if (readOnlyPage || path === null || typeof doc.scope !== "string" || doc.scope === "site") {
      return true;
    }
    var routes = doc.routes || [];
    for (var r = 0; r < routes.length; r++) {
      var route = routes[r];
      var methods = route.methods || [];
      var forGet = methods.length === 0 || methods.indexOf("GET") >= 0;
      if (route.mode !== "readOnly" && forGet && covers(route.pathPrefix, path)) {
        return true;
      }
    }
    return false;
  }

  function seen(text) {
    var doc;
    try {
      doc = JSON.parse(text);
    } catch (e) {
      return;
    }
    if (doc && (doc.active === false || (doc.active === true && !stillApplies(doc)))) {
      comeBack();
    }
  }

  var etag = null;
  var failures = 0;

  function pollLater() {
    var base = Math.max(1, Number(config.poll) || 5);
    var most = Math.max(base, Number(config.pollMax) || 60);
    var delay = Math.min(most, base * Math.pow(2, failures));
    var jittered = delay * (0.5 + Math.random());
    pollTimer = setTimeout(pollOnce, jittered * 1000);
  }

  function pollOnce() {
    pollTimer = null;
    if (returning) {
      return;
    }
    var request = new XMLHttpRequest();
    request.open("GET", config.status, true);
    request.setRequestHeader("Accept", "application/json");
    if (etag) {
      request.setRequestHeader("If-None-Match", etag);
    }
    request.onreadystatechange = function () {
      if (request.readyState !== 4) {
        return;
      }
      if (request.status === 200 || request.status === 304) {
        failures = 0;
        mark("live", "poll");
        if (request.status === 200) {
          etag = request.getResponseHeader("ETag");
          seen(request.responseText);
        }
      } else {
        failures += 1;
      }
      if (!returning) {
        pollLater();
      }
    };
    request.send();
  }

  function poll() {
    if (typeof XMLHttpRequest === "undefined") {
      mark("live", "off");
      return;
    }
    pollOnce();
  }

  function follow() {
    var errors = 0;
    source = new EventSource(config.stream);
    source.addEventListener("open", function () {
      errors = 0;
      mark("live", "stream");
    });
    source.addEventListener("status", function (event) {
      errors = 0;
      mark("live", "stream");
      seen(event.data);
    });
    source.addEventListener("error", function () {
      // A dropped connection is retried by the browser: not a reason to reload.  A refusal
      // (an error status, another content type) closes the source; so do repeated drops.
      errors += 1;
      if (source && (source.readyState === 2 || errors >= 3)) {
        source.close();
        source = null;
        if (!returning) {
          poll();
        }
      }
    });
  }

  var until = document.getElementById("mwm-until");
  function showUntil() {
    if (!until || typeof Intl === "undefined" || !Intl.DateTimeFormat) {
      return;
    }
    var end = new Date(until.getAttribute("datetime"));
    if (isNaN(end.getTime())) {
      return;
    }
    var text;
    try {
      text = new Intl.DateTimeFormat(locales, {
        weekday: "long", year: "numeric", month: "long", day: "numeric",
        hour: "2-digit", minute: "2-digit", timeZoneName: "short"
      }).format(end);
      if (Intl.RelativeTimeFormat) {
        var minutes = Math.round((end.getTime() - Date.now()) / 60000);
        var relative = new Intl.RelativeTimeFormat(locales, {numeric: "auto"});
        var left;
        if (Math.abs(minutes) < 90) {
          left = relative.format(minutes, "minute");
        } else if (Math.abs(minutes) < 48 * 60) {
          left = relative.format(Math.round(minutes / 60), "hour");
        } else {
          left = relative.format(Math.round(minutes / 1440), "day");
        }
        text += " (" + left + ")";
      }
    } catch (e) {
      return;
    }
    until.textContent = text;
  }

  showUntil();
  if (until) {
    setInterval(showUntil, 30000);
  }
  if (typeof EventSource !== "undefined" && config.stream) {
    follow();
  } else {
    poll();
  }
})();
{% endraw %}
