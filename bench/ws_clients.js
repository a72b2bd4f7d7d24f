// Browser-like WebSocket clients for the relay benchmark, on Node's `ws`: the same command
// line and JSON-lines conversation as bench/ws_clients.py (ready / report / stop), for counts
// the Python asyncio clients cannot read fast enough on a 2-core machine.
//
//   node bench/ws_clients.js --url WS_URL --count N [--origin ORIGIN] [--relay]
//                            [--no-deflate] [--max-seconds S]
//
// Cheap per message: the receipt time is taken when the message arrives, and only the
// JackpotUpdate's "timestamp" and the message name are looked up in the text (no JSON parse
// on the hot path). `lag_ms` in the report is this process's own event-loop delay (p99 of a
// 10 ms timer's lateness): the part of the measured delays that is the load generator's.
"use strict";

const readline = require("node:readline");
const WebSocket = require("ws");

const SUBSCRIBE_ALL = JSON.stringify({
  SubscribeRequest: { events: [{ source: "thrillpots", event_type: "*" }] },
});
const CONNECT_CONCURRENCY = 64;
const OPEN_TIMEOUT_MS = 30000;
const READY_TIMEOUT_MS = 30000;
const MAX_QUIET_WAIT_MS = 30000;

function parseArgs(argv) {
  const args = { origin: null, relay: false, deflate: true, maxSeconds: 600 };
  for (let i = 0; i < argv.length; i++) {
    const name = argv[i];
    if (name === "--url") args.url = argv[++i];
    else if (name === "--count") args.count = Number(argv[++i]);
    else if (name === "--origin") args.origin = argv[++i];
    else if (name === "--relay") args.relay = true;
    else if (name === "--no-deflate") args.deflate = false;
    else if (name === "--max-seconds") args.maxSeconds = Number(argv[++i]);
    else throw new Error(`unknown argument ${name}`);
  }
  if (!args.url || !(args.count >= 0)) throw new Error("--url and --count are required");
  return args;
}

function emit(message) {
  process.stdout.write(JSON.stringify(message) + "\n");
}

function cpuSeconds() {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1e6;
}

const TIMESTAMP = /"timestamp":\s*(\d+)/;
let lastMessage = Date.now();
let stopping = false;

class Browser {
  constructor(socket) {
    this.socket = socket;
    this.timestamps = [];
    this.delays = [];
    this.wins = 0;
    this.messages = 0;
    this.closedEarly = false;
    socket.on("message", (data) => this.receive(data));
    socket.on("close", () => {
      if (!stopping) this.closedEarly = true;
    });
    socket.on("error", () => {});
  }

  receive(data) {
    const receivedMs = performance.timeOrigin + performance.now();
    lastMessage = Date.now();
    this.messages++;
    const text = data.toString();
    if (text.includes('"msg_name": "JackpotUpdate"') || text.includes('"msg_name":"JackpotUpdate"')) {
      const match = TIMESTAMP.exec(text);
      if (match) {
        const timestamp = Number(match[1]);
        this.timestamps.push(timestamp);
        this.delays.push(receivedMs - timestamp);
      }
    } else if (text.includes('"msg_name": "WinEvent"') || text.includes('"msg_name":"WinEvent"')) {
      this.wins++;
    }
  }
}

function openBrowser(args) {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(args.url, {
      origin: args.origin || undefined,
      perMessageDeflate: args.deflate,
      handshakeTimeout: OPEN_TIMEOUT_MS,
      maxPayload: 1 << 20,
    });
    let settled = false;
    const fail = (error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.terminate();
      reject(error);
    };
    const timer = setTimeout(() => fail(new Error("TimeoutError")), READY_TIMEOUT_MS);
    socket.once("error", fail);
    socket.once("unexpected-response", (_req, res) => fail(new Error(`InvalidStatus ${res.statusCode}`)));
    socket.once("close", () => fail(new Error("ConnectionClosed")));
    socket.once("open", () => {
      socket.send(SUBSCRIBE_ALL);
      if (!args.relay) return done();
      const waitStatus = (data) => {
        const text = data.toString();
        if (text.includes("RelayStatus") && /"upstream":\s*"connected"/.test(text)) {
          socket.off("message", waitStatus);
          done();
        }
      };
      socket.on("message", waitStatus);
    });
    function done() {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.removeAllListeners();
      resolve(new Browser(socket));
    }
  });
}

async function openAll(args) {
  const browsers = [];
  const errors = {};
  let next = 0;
  async function worker() {
    while (next < args.count) {
      next++;
      try {
        browsers.push(await openBrowser(args));
      } catch (error) {
        const name = (error.code || error.message || "Error").split(" ")[0];
        errors[name] = (errors[name] || 0) + 1;
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(CONNECT_CONCURRENCY, args.count) }, worker));
  return { browsers, errors };
}

// This process's own event-loop lag: how late a 10 ms timer fires, in 0.1 ms bins.
const lag = new Map();
function watchLag() {
  let expected = performance.now() + 10;
  setInterval(() => {
    const now = performance.now();
    const bin = Math.round(Math.max(0, now - expected) * 10);
    lag.set(bin, (lag.get(bin) || 0) + 1);
    expected = now + 10;
  }, 10).unref();
}

function percentile(histogram, fraction) {
  const total = [...histogram.values()].reduce((a, b) => a + b, 0);
  if (!total) return null;
  const rank = Math.max(1, Math.round(fraction * total));
  let seen = 0;
  for (const bin of [...histogram.keys()].sort((a, b) => a - b)) {
    seen += histogram.get(bin);
    if (seen >= rank) return bin / 10;
  }
  return null;
}

function report(browsers, windows) {
  const phases = {};
  for (const [phase, [start, end]] of Object.entries(windows)) {
    const histogram = {};
    for (const browser of browsers) {
      for (let i = 0; i < browser.timestamps.length; i++) {
        const timestamp = browser.timestamps[i];
        if (timestamp >= start && timestamp < end) {
          const bin = Math.round(browser.delays[i] * 10);
          histogram[bin] = (histogram[bin] || 0) + 1;
        }
      }
    }
    phases[phase] = histogram;
  }
  const wins = {};
  for (const browser of browsers) wins[browser.wins] = (wins[browser.wins] || 0) + 1;
  return {
    event: "report",
    phases,
    wins,
    messages: browsers.reduce((sum, b) => sum + b.messages, 0),
    closed_early: browsers.reduce((sum, b) => sum + (b.closedEarly ? 1 : 0), 0),
    cpu_seconds: cpuSeconds(),
    lag_p99_ms: percentile(lag, 0.99),
  };
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const started = Date.now();
  const deadline = setTimeout(() => finish(), args.maxSeconds * 1000);
  const commands = readline.createInterface({ input: process.stdin });
  const { browsers, errors } = await openAll(args);
  watchLag();
  emit({
    event: "ready",
    connected: browsers.length,
    failed: Object.values(errors).reduce((a, b) => a + b, 0),
    errors,
    connect_seconds: (Date.now() - started) / 1000,
    cpu_seconds: cpuSeconds(),
  });

  function finish() {
    stopping = true;
    clearTimeout(deadline);
    for (const browser of browsers) browser.socket.terminate();
    process.exit(0);
  }

  commands.on("line", (line) => {
    if (!line.trim()) return;
    const command = JSON.parse(line);
    if (command.command === "report") {
      const quietUntil = Date.now() + MAX_QUIET_WAIT_MS;
      const poll = setInterval(() => {
        if (Date.now() - lastMessage >= command.quiet * 1000 || Date.now() > quietUntil) {
          clearInterval(poll);
          emit(report(browsers, command.windows));
        }
      }, 100);
    } else if (command.command === "stop") {
      finish();
    }
  });
  commands.on("close", finish);
}

main().catch((error) => {
  process.stderr.write(`${error.stack || error}\n`);
  process.exit(1);
});
