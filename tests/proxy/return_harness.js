// Runs the maintenance page's return script (templates/return.js as rendered) against fake
// browser boundaries: document, EventSource, XMLHttpRequest, timers, the clock, Math.random.
// Usage: node return_harness.js <page.html> <scenario>; prints one JSON result line.
// The scenarios drive the fakes the way a browser and mwm would and record what the script
// did (reloads, requests, the data-mwm-* attributes); tests/proxy/test_page_return.py
// asserts on the result.
"use strict";
const fs = require("fs");
const vm = require("vm");

const [pagePath, scenario] = process.argv.slice(2);
const html = fs.readFileSync(pagePath, "utf8");
const config = /<script type="application\/json" id="mwm-config">([\s\S]*?)<\/script>/.exec(html)[1];
const code = /<script>([\s\S]*?)<\/script>/.exec(html)[1];
const until = /<time id="mwm-until" datetime="([^"]+)">/.exec(html);
const lang = /<html lang="([^"]+)">/.exec(html)[1];

const NOW = Date.parse("2025-01-31T21:35:00Z");
let clock = NOW;
let timers = [];
let nextTimer = 1;
const attributes = { lang };
const untilElement = until
  ? { textContent: "server text", getAttribute: (name) => (name === "datetime" ? until[1] : null) }
  : null;
const readOnly = /id="mwm-read-only"/.test(html) ? {} : null;
const elements = {
  "mwm-config": { textContent: config },
  "mwm-until": untilElement,
  "mwm-read-only": readOnly,
};
let reloads = 0;
const sources = [];
const requests = [];

class FakeEventSource {
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.listeners = {};
    sources.push(this);
  }
  addEventListener(type, listener) {
    (this.listeners[type] = this.listeners[type] || []).push(listener);
  }
  close() {
    this.readyState = 2;
  }
  emit(type, event) {
    if (type === "open") this.readyState = 1;
    for (const listener of this.listeners[type] || []) listener(event || {});
  }
}

class FakeXMLHttpRequest {
  constructor() {
    this.headers = {};
    this.readyState = 0;
    requests.push(this);
  }
  open(method, url) {
    this.method = method;
    this.url = url;
  }
  setRequestHeader(name, value) {
    this.headers[name] = value;
  }
  getResponseHeader(name) {
    return (this.responseHeaders || {})[name] || null;
  }
  send() {
    this.sent = true;
  }
  answer(status, body, headers) {
    this.status = status;
    this.responseText = body || "";
    this.responseHeaders = headers || {};
    this.readyState = 4;
    this.onreadystatechange();
  }
}

const sandbox = {
  document: {
    documentElement: {
      getAttribute: (name) => (name in attributes ? attributes[name] : null),
      setAttribute: (name, value) => {
        attributes[name] = value;
      },
    },
    getElementById: (id) => elements[id] || null,
  },
  window: { location: { reload: () => reloads++, pathname: "/checkout/pay%20now" } },
  setTimeout: (fn, ms) => {
    timers.push({ id: nextTimer, at: clock + ms, fn, delay: ms });
    return nextTimer++;
  },
  clearTimeout: (id) => {
    timers = timers.filter((t) => t.id !== id);
  },
  setInterval: () => 0,
  JSON,
  Intl,
  Number,
  isNaN,
};
if (scenario !== "no-eventsource" && scenario !== "nothing") sandbox.EventSource = FakeEventSource;
if (scenario !== "nothing") sandbox.XMLHttpRequest = FakeXMLHttpRequest;
const context = vm.createContext(sandbox);
vm.runInContext(
  `Date.now = function () { return ${NOW}; };
   Math.random = function () { return 0.5; };`,
  context
);

function runTimers() {
  // Fire due timers in order of their time, as the event loop would; return their delays.
  const delays = [];
  while (timers.length) {
    timers.sort((a, b) => a.at - b.at);
    const timer = timers.shift();
    clock = timer.at;
    delays.push(timer.delay);
    timer.fn();
    if (delays.length > 50) break;
  }
  return delays;
}

function runNextTimer() {
  timers.sort((a, b) => a.at - b.at);
  const timer = timers.shift();
  clock = timer.at;
  timer.fn();
  return timer.delay;
}

const doc = (active) => JSON.stringify({ active, reason: null });
const result = { scenario };
vm.runInContext(code, context);
result.untilText = untilElement ? untilElement.textContent : null;

if (scenario === "stream") {
  const source = sources[0];
  result.streamUrl = source.url;
  source.emit("open");
  result.liveAfterOpen = attributes["data-mwm-live"];
  source.emit("status", { data: doc(true) });
  source.readyState = 0; // a dropped connection: the browser reconnects by itself
  source.emit("error");
  source.emit("open");
  result.reloadsWhileOn = reloads;
  result.closedAfterTransientError = source.readyState === 2;
  source.emit("status", { data: "not json" });
  source.emit("status", { data: doc(false) });
  source.emit("status", { data: doc(false) });
  result.returnMark = attributes["data-mwm-return"];
  result.reloadDelays = runTimers();
  result.reloads = reloads;
  result.requests = requests.length;
} else if (scenario === "stream-refused" || scenario === "no-eventsource") {
  if (scenario === "stream-refused") {
    sources[0].readyState = 2; // a 404/503 or another content type: the browser gives up
    sources[0].emit("error");
  }
  const first = requests[0];
  result.pollUrl = first.url;
  first.answer(200, doc(true), { ETag: '"g7"' });
  result.liveAfterPoll = attributes["data-mwm-live"];
  result.delays = [runNextTimer()];
  result.ifNoneMatch = requests[1].headers["If-None-Match"];
  requests[1].answer(304);
  result.delays.push(runNextTimer());
  requests[2].answer(503, "busy");
  result.delays.push(runNextTimer());
  requests[3].answer(0, "");
  result.delays.push(runNextTimer());
  requests[4].answer(200, doc(false), { ETag: '"g8"' });
  result.reloadDelays = runTimers();
  result.reloads = reloads;
  result.requests = requests.length;
} else if (scenario === "stream-flaps") {
  const source = sources[0];
  for (let i = 0; i < 3; i++) source.emit("error"); // never opened: three failures in a row
  result.closed = source.readyState === 2;
  result.polling = requests.length === 1;
  result.reloads = reloads;
} else if (scenario === "scoped") {
  // The page of GET /checkout/pay now; the documents narrow the maintenance step by step.
  const source = sources[0];
  source.emit("open");
  const scoped = (scope, routes) => JSON.stringify({ active: true, scope, routes });
  const route = (pathPrefix, methods, mode) => ({ pathPrefix, methods, mode });
  const steps = [
    ["site", scoped("site", [])],
    ["route", scoped("routes", [route("/checkout", [], "full")])],
    ["route-for-get", scoped("routes", [route("/checkout/", ["GET"], "full")])],
    ["older-document", JSON.stringify({ active: true })],
    ["other-route", scoped("routes", [route("/checkouts", [], "full")])],
  ];
  result.reloadsAfter = {};
  for (const [name, data] of steps) {
    source.emit("status", { data });
    result.reloadsAfter[name] = attributes["data-mwm-return"] || null;
  }
  result.reloadDelays = runTimers();
  result.reloads = reloads;
} else if (scenario === "scoped-writes-only") {
  // Reads of this page pass again: writes paused, a POST-only route, a read-only route.
  const source = sources[0];
  source.emit("open");
  source.emit("status", {
    data: JSON.stringify({
      active: true,
      scope: "readOnlyAndRoutes",
      routes: [
        { pathPrefix: "/checkout", methods: ["POST"], mode: "full" },
        { pathPrefix: "/checkout", methods: [], mode: "readOnly" },
      ],
    }),
  });
  result.reloadDelays = runTimers();
  result.reloads = reloads;
} else if (scenario === "nothing") {
  result.live = attributes["data-mwm-live"];
}
process.stdout.write(JSON.stringify(result) + "\n");
