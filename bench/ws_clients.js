// Browser-like WebSocket clients for the relay benchmark: the same command line and JSON-lines
// conversation as bench/ws_clients.py (ready / report / stop), for counts the Python asyncio
// clients cannot read fast enough on a 2-core machine.
//
//   node bench/ws_clients.js --url WS_URL --count N [--origin ORIGIN] [--relay]
//                            [--no-deflate] [--max-seconds S]
//
// The load generator shares the 2 cores with the worker it measures, so every microsecond it
// spends per message inflates the delays it reports. Hence the client side of WebSocket
// (RFC 6455, ws:// only) is written here directly on node:net instead of npm's `ws`, whose
// Writable-stream receiver, per-message Buffers, toString() and regexp cost ~29 us of CPU per
// browser per tick:
//
// - every socket reads into one shared buffer (net's `onread`: no Buffer per read and no
//   Readable-stream machinery) and its frames are parsed in place before the next read lands
//   (several frames per read, usually a whole tick); only an incomplete frame at the end of a
//   read or a fragmented message is kept, and only those bytes are copied;
// - the receipt time is taken once per read, not per message;
// - a text message is never decoded: the msg_name and the JackpotUpdate's "timestamp" are
//   found with Buffer.indexOf and a hand-written digit loop between the payload's offsets.
//
// permessage-deflate is never offered (the relay declines it anyway): `--no-deflate` is still
// accepted, for the command line bench/relay_fanout.py builds, but has no effect.
//
// `lag_p99_ms` and `lag_max_ms` in the report are this process's own event-loop delay (p99
// and max of a 10 ms timer's lateness): the part of the measured delays that is the load
// generator's. The max shows a pause that the p99 hides; `gc_max_ms`, the longest garbage
// collection, says whether it was one.
"use strict";

const crypto = require("node:crypto");
const net = require("node:net");
const { PerformanceObserver } = require("node:perf_hooks");
const readline = require("node:readline");

const SUBSCRIBE_ALL = JSON.stringify({
  SubscribeRequest: { events: [{ source: "thrillpots", event_type: "*" }] },
});
const CONNECT_CONCURRENCY = 64;
// From the TCP connect to the subscription being live (for --relay: the RelayStatus saying
// the upstream is connected); the opening handshake is part of it.
const READY_TIMEOUT_MS = 30000;
const MAX_QUIET_WAIT_MS = 30000;
const MAX_HEAD_BYTES = 16384; // a handshake response longer than this is not a relay's
const MAX_PAYLOAD = 1 << 20; // as `ws`'s maxPayload was: a longer message is a protocol error
const WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
// Every socket's reads go to this one buffer, parsed before the next read can land.
const READ_BUFFER = Buffer.allocUnsafe(65536);

function parseArgs(argv) {
  const args = { origin: null, relay: false, maxSeconds: 600 };
  for (let i = 0; i < argv.length; i++) {
    const name = argv[i];
    if (name === "--url") args.url = argv[++i];
    else if (name === "--count") args.count = Number(argv[++i]);
    else if (name === "--origin") args.origin = argv[++i];
    else if (name === "--relay") args.relay = true;
    else if (name === "--no-deflate") {
      // Compatibility only: deflate is never offered.
    } else if (name === "--max-seconds") args.maxSeconds = Number(argv[++i]);
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

let lastMessage = Date.now();
let stopping = false;
const sockets = new Set(); // every socket not yet closed, for finish()

// -- frames ---------------------------------------------------------------------------------------
const OP_CONTINUATION = 0x0;
const OP_TEXT = 0x1;
const OP_BINARY = 0x2;
const OP_CLOSE = 0x8;
const OP_PING = 0x9;
const OP_PONG = 0xa;
const CLOSE_PROTOCOL_ERROR = Buffer.from([0x03, 0xea]); // 1002

/** A masked client frame (RFC 6455 5.3: every client-to-server frame is masked). */
function clientFrame(opcode, payload) {
  const length = payload.length;
  const headerLength = length < 126 ? 2 : length < 65536 ? 4 : 10;
  const frame = Buffer.allocUnsafe(headerLength + 4 + length);
  frame[0] = 0x80 | opcode; // FIN: client messages are never fragmented
  if (length < 126) {
    frame[1] = 0x80 | length;
  } else if (length < 65536) {
    frame[1] = 0x80 | 126;
    frame.writeUInt16BE(length, 2);
  } else {
    frame[1] = 0x80 | 127;
    frame.writeUInt32BE(0, 2);
    frame.writeUInt32BE(length, 6);
  }
  crypto.randomFillSync(frame, headerLength, 4);
  const maskAt = headerLength;
  const payloadAt = headerLength + 4;
  for (let i = 0; i < length; i++) frame[payloadAt + i] = payload[i] ^ frame[maskAt + (i & 3)];
  return frame;
}

/**
 * Server frames, parsed incrementally from the socket's reads. The handler gets
 * `message(buffer, start, end)` for each whole data message, text or binary as `ws` gave both
 * (the bytes are only valid during the call), `ping(payload)`, `close(payload)` and
 * `error(reason)`; pongs are ignored. After `error` or `close` nothing more is parsed.
 */
class FrameParser {
  constructor(handler) {
    this.handler = handler;
    this.done = false;
    // An incomplete frame at the end of a read: its bytes so far (copies), and how many bytes
    // are needed before parsing can go on (the header's, then the whole frame's).
    this.pending = null;
    this.pendingBytes = 0;
    this.needed = 0;
    // A fragmented message: its payload fragments so far (copies), or null.
    this.fragments = null;
    this.fragmentBytes = 0;
  }

  /** Parse `chunk[0, end)`. The chunk is reused once this returns: what is kept is copied. */
  push(chunk, end) {
    if (this.done) return;
    if (this.pending !== null) {
      // The rare path: a frame split across reads. Wait until it is whole, then join once.
      this.pending.push(Buffer.from(chunk.subarray(0, end)));
      this.pendingBytes += end;
      if (this.pendingBytes < this.needed) return;
      chunk = Buffer.concat(this.pending, this.pendingBytes);
      end = chunk.length;
      this.pending = null;
    }
    let offset = 0;
    while (offset < end && !this.done) {
      const next = this.frame(chunk, offset, end);
      if (next < 0) {
        // Incomplete: keep a copy (the read buffer may be reused) and how much is needed.
        this.pending = [Buffer.from(chunk.subarray(offset, end))];
        this.pendingBytes = end - offset;
        this.needed = -next;
        return;
      }
      offset = next;
    }
  }

  /** Parse the frame at `offset`: the offset after it, or minus the bytes it needs if short. */
  frame(buffer, offset, end) {
    const available = end - offset;
    if (available < 2) return -2;
    const first = buffer[offset];
    const second = buffer[offset + 1];
    if (first & 0x70) return this.fail("reserved bit set (no extension was negotiated)");
    if (second & 0x80) return this.fail("masked server frame");
    const fin = (first & 0x80) !== 0;
    const opcode = first & 0x0f;
    let length = second & 0x7f;
    let headerLength = 2;
    if (length === 126) {
      headerLength = 4;
      if (available < 4) return -4;
      length = buffer.readUInt16BE(offset + 2);
    } else if (length === 127) {
      headerLength = 10;
      if (available < 10) return -10;
      if (buffer.readUInt32BE(offset + 2) !== 0) return this.fail("message too big");
      length = buffer.readUInt32BE(offset + 6);
    }
    if (length > MAX_PAYLOAD) return this.fail("message too big");
    const start = offset + headerLength;
    const stop = start + length;
    if (stop > end) return -(headerLength + length);

    if (opcode === OP_TEXT && fin && this.fragments === null) {
      this.handler.message(buffer, start, stop); // the hot path: one whole message, in place
    } else if (opcode >= OP_CLOSE) {
      if (!fin || length > 125) return this.fail("bad control frame");
      const payload = buffer.subarray(start, stop);
      if (opcode === OP_PING) this.handler.ping(payload);
      else if (opcode === OP_CLOSE) {
        this.done = true;
        this.handler.close(payload);
      } else if (opcode !== OP_PONG) return this.fail(`unknown opcode ${opcode}`);
    } else if (opcode === OP_TEXT || opcode === OP_BINARY) {
      if (this.fragments !== null) return this.fail("new message inside a fragmented one");
      if (fin) {
        this.handler.message(buffer, start, stop); // a whole binary message
      } else {
        this.fragments = [Buffer.from(buffer.subarray(start, stop))]; // the first fragment
        this.fragmentBytes = length;
      }
    } else if (opcode === OP_CONTINUATION) {
      if (this.fragments === null) return this.fail("continuation without a message");
      this.fragmentBytes += length;
      if (this.fragmentBytes > MAX_PAYLOAD) return this.fail("message too big");
      this.fragments.push(Buffer.from(buffer.subarray(start, stop)));
      if (fin) {
        const whole = Buffer.concat(this.fragments, this.fragmentBytes);
        this.fragments = null;
        this.handler.message(whole, 0, whole.length);
      }
    } else {
      return this.fail(`unknown opcode ${opcode}`);
    }
    return stop;
  }

  fail(reason) {
    this.done = true;
    this.handler.error(reason);
    return Number.MAX_SAFE_INTEGER; // ends push()'s loop
  }
}

// -- the hot path's byte matching -----------------------------------------------------------------
const MSG_NAME = Buffer.from('"msg_name"');
const JACKPOT_UPDATE = Buffer.from('"JackpotUpdate"');
const WIN_EVENT = Buffer.from('"WinEvent"');
const TIMESTAMP = Buffer.from('"timestamp":');
const SPACE = 0x20;
const COLON = 0x3a;
const DIGIT_0 = 0x30;
const NOT_FOUND = 0;
const IS_JACKPOT_UPDATE = 1;
const IS_WIN_EVENT = 2;

/** JSON whitespace (what the old regexp's \s matched in practice). */
function isSpace(byte) {
  return byte === SPACE || byte === 0x0a || byte === 0x0d || byte === 0x09;
}

function startsWithAt(buffer, at, end, needle) {
  if (at + needle.length > end) return false;
  for (let i = 0; i < needle.length; i++) if (buffer[at + i] !== needle[i]) return false;
  return true;
}

/** Which of JackpotUpdate / WinEvent the message's msg_name is, else NOT_FOUND: `"msg_name"`,
 * a colon and the quoted name, spaces allowed around the colon (the relay writes one, the
 * simulator none); like the old substring test, any "msg_name" in the text may match. */
function messageKind(buffer, start, end) {
  let at = buffer.indexOf(MSG_NAME, start);
  while (at >= 0 && at < end) {
    let i = at + MSG_NAME.length;
    while (i < end && isSpace(buffer[i])) i++;
    if (i < end && buffer[i] === COLON) {
      i++;
      while (i < end && isSpace(buffer[i])) i++;
      if (startsWithAt(buffer, i, end, JACKPOT_UPDATE)) return IS_JACKPOT_UPDATE;
      if (startsWithAt(buffer, i, end, WIN_EVENT)) return IS_WIN_EVENT;
    }
    at = buffer.indexOf(MSG_NAME, at + MSG_NAME.length); // another "msg_name" (nested data)
  }
  return NOT_FOUND;
}

/** The digits after the first `"timestamp":` (spaces allowed) that has any, or -1. */
function timestampOf(buffer, start, end) {
  let at = buffer.indexOf(TIMESTAMP, start);
  while (at >= 0 && at < end) {
    let i = at + TIMESTAMP.length;
    while (i < end && isSpace(buffer[i])) i++;
    let value = 0;
    let digits = 0;
    for (; i < end; i++) {
      const digit = buffer[i] - DIGIT_0;
      if (digit < 0 || digit > 9) break;
      value = value * 10 + digit; // exact: ms timestamps are far below 2**53
      digits++;
    }
    if (digits) return value;
    at = buffer.indexOf(TIMESTAMP, at + TIMESTAMP.length);
  }
  return -1;
}

// -- the delays -----------------------------------------------------------------------------------
/**
 * Every JackpotUpdate's (timestamp, delay) in this process, in typed arrays that double when
 * full: no object per message and few to collect, so the collector pauses the process as
 * little as possible while it measures (per-browser arrays of numbers did, for up to 40 ms).
 */
// Room for a whole 10,000-browser run (5,000 per process, 7 updates, 25 ticks) from the start:
// growing copies both arrays and pauses the process in the middle of a phase, which showed as
// phase B's p99 5-8 ms above phase A's at 1,000 browsers (they grew from 2**16 then).
const DELAY_RECORD_SIZE = 1 << 20;

class DelayRecord {
  constructor() {
    this.length = 0;
    this.timestamps = new Float64Array(DELAY_RECORD_SIZE);
    this.delays = new Float64Array(DELAY_RECORD_SIZE);
  }

  add(timestamp, delay) {
    if (this.length === this.timestamps.length) {
      const timestamps = new Float64Array(this.length * 2);
      const delays = new Float64Array(this.length * 2);
      timestamps.set(this.timestamps);
      delays.set(this.delays);
      this.timestamps = timestamps;
      this.delays = delays;
    }
    this.timestamps[this.length] = timestamp;
    this.delays[this.length] = delay;
    this.length++;
  }

  /** The delays of the updates stamped within [start, end), in 0.1 ms bins. */
  histogram(start, end) {
    const bins = {};
    for (let i = 0; i < this.length; i++) {
      const timestamp = this.timestamps[i];
      if (timestamp >= start && timestamp < end) {
        const bin = Math.round(this.delays[i] * 10);
        bins[bin] = (bins[bin] || 0) + 1;
      }
    }
    return bins;
  }
}

const delays = new DelayRecord();

// -- a browser ------------------------------------------------------------------------------------
/**
 * One WebSocket on a net.Socket whose opening handshake is done. Until `ready()` it is being set
 * up: texts go to `onSetupText` (toString is fine there) and nothing is counted; once ready,
 * every message is counted and measured without being decoded.
 */
class Browser {
  constructor(socket) {
    this.socket = socket;
    this.wins = 0;
    this.messages = 0;
    this.closedEarly = false;
    this.receivedMs = 0; // the current read's receipt time
    this.onSetupText = null; // (text) => void, until ready()
    this.onSetupEnd = null; // (error) => void, until ready()
    this.isReady = false;
    this.parser = new FrameParser(this);
    socket.on("close", () => {
      if (!stopping) this.closedEarly = true; // during setup, openBrowser's 'close' rejects
    });
  }

  ready() {
    this.isReady = true;
    this.onSetupText = null;
    this.onSetupEnd = null;
  }

  /** A read from the socket: one receipt time for every message in it. */
  receive(chunk, end) {
    this.receivedMs = performance.timeOrigin + performance.now();
    lastMessage = Date.now();
    this.parser.push(chunk, end);
  }

  message(buffer, start, end) {
    if (!this.isReady) {
      if (this.onSetupText) this.onSetupText(buffer.toString("utf8", start, end));
      return;
    }
    this.messages++;
    const kind = messageKind(buffer, start, end);
    if (kind === IS_JACKPOT_UPDATE) {
      const timestamp = timestampOf(buffer, start, end);
      if (timestamp >= 0) {
        delays.add(timestamp, this.receivedMs - timestamp);
      }
    } else if (kind === IS_WIN_EVENT) {
      this.wins++;
    }
  }

  ping(payload) {
    this.send(OP_PONG, payload);
  }

  close(payload) {
    // Echo the status code (RFC 6455 5.5.1), then end our side; 'close' decides closedEarly.
    this.send(OP_CLOSE, payload.length >= 2 ? payload.subarray(0, 2) : Buffer.alloc(0));
    this.socket.end();
  }

  error(reason) {
    if (this.onSetupEnd) this.onSetupEnd(new Error(`ProtocolError ${reason}`));
    this.send(OP_CLOSE, CLOSE_PROTOCOL_ERROR); // a courtesy: the socket goes now regardless
    this.socket.destroy(); // counted as closed early by 'close'
  }

  send(opcode, payload) {
    if (this.socket.writable) this.socket.write(clientFrame(opcode, payload));
  }
}

// -- connecting -----------------------------------------------------------------------------------
/** The upgrade request for `url`, with a fresh key; and the Sec-WebSocket-Accept it expects. */
function upgradeRequest(url, origin) {
  const key = crypto.randomBytes(16).toString("base64");
  const lines = [
    `GET ${url.pathname}${url.search} HTTP/1.1`,
    `Host: ${url.host}`,
    "Upgrade: websocket",
    "Connection: Upgrade",
    `Sec-WebSocket-Key: ${key}`,
    "Sec-WebSocket-Version: 13",
  ];
  if (origin) lines.push(`Origin: ${origin}`);
  const accept = crypto.createHash("sha1").update(key + WS_GUID).digest("base64");
  return { request: lines.join("\r\n") + "\r\n\r\n", accept };
}

/** The response head's problem, or null if it accepts the upgrade. */
function checkResponseHead(head, accept) {
  const lines = head.split("\r\n");
  const status = /^HTTP\/1\.1 (\d{3})/.exec(lines[0]);
  if (!status) return `InvalidMessage ${JSON.stringify(lines[0])}`;
  if (status[1] !== "101") return `InvalidStatus ${status[1]}`;
  const headers = new Map();
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(":");
    if (colon > 0) {
      headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
    }
  }
  if ((headers.get("upgrade") || "").toLowerCase() !== "websocket") {
    return "InvalidUpgrade Upgrade";
  }
  if (!/(^|,)\s*upgrade\s*(,|$)/i.test(headers.get("connection") || "")) {
    return "InvalidUpgrade Connection";
  }
  if (headers.get("sec-websocket-accept") !== accept) {
    return "InvalidHandshake Sec-WebSocket-Accept";
  }
  if (headers.has("sec-websocket-extensions")) return "InvalidHandshake extension not offered";
  return null;
}

function openBrowser(args, url) {
  return new Promise((resolve, reject) => {
    // Reads land in the process-wide READ_BUFFER and are handled by `reader` at once (onread:
    // no per-read Buffer, no stream machinery); `reader` reads the head, then frames.
    let reader = null;
    const socket = net.connect({
      host: url.hostname.replace(/^\[|\]$/g, ""),
      port: Number(url.port) || 80,
      onread: { buffer: READ_BUFFER, callback: (bytes, buffer) => reader(buffer, bytes) },
    });
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.setNoDelay(true);
    const { request, accept } = upgradeRequest(url, args.origin);
    let settled = false;
    let browser = null;
    const fail = (error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      reject(error);
    };
    const timer = setTimeout(() => fail(new Error("TimeoutError")), READY_TIMEOUT_MS);
    socket.on("error", (error) => fail(error)); // stays: a later error just closes the socket
    socket.once("close", () => fail(new Error("ConnectionClosed")));
    socket.once("connect", () => socket.write(request));

    // The response head, up to its blank line; what follows it is the first frames' bytes.
    let head = Buffer.alloc(0);
    const readHead = (chunk, end) => {
      head = Buffer.concat([head, chunk.subarray(0, end)]); // a copy: READ_BUFFER is reused
      const blank = head.indexOf("\r\n\r\n");
      if (blank < 0) {
        if (head.length > MAX_HEAD_BYTES) fail(new Error("InvalidMessage response head too long"));
        return;
      }
      const problem = checkResponseHead(head.toString("latin1", 0, blank), accept);
      if (problem) return fail(new Error(problem));
      browser = new Browser(socket);
      browser.onSetupEnd = fail;
      reader = (chunk, end) => browser.receive(chunk, end);
      browser.send(OP_TEXT, Buffer.from(SUBSCRIBE_ALL));
      if (args.relay) {
        browser.onSetupText = (text) => {
          if (text.includes("RelayStatus") && /"upstream":\s*"connected"/.test(text)) done();
        };
      } else {
        done();
      }
      const rest = head.subarray(blank + 4);
      if (rest.length) browser.receive(rest, rest.length);
    };
    reader = readHead;

    function done() {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      browser.ready(); // the messages after this one, even in the same read, are counted
      resolve(browser);
    }
  });
}

async function openAll(args, browsers) {
  const url = new URL(args.url);
  if (url.protocol !== "ws:") throw new Error(`only ws:// URLs are supported, not ${url.protocol}`);
  const errors = {};
  let next = 0;
  async function worker() {
    while (next < args.count && !stopping) {
      next++;
      try {
        browsers.push(await openBrowser(args, url));
      } catch (error) {
        const name = (error.code || error.message || "Error").split(" ")[0];
        errors[name] = (errors[name] || 0) + 1;
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(CONNECT_CONCURRENCY, args.count) }, worker));
  return errors;
}

// -- figures --------------------------------------------------------------------------------------
// This process's own event-loop lag: how late a 10 ms timer fires, in 0.1 ms bins.
const lag = new Map();
// This process's garbage-collection pauses once connected: the longest, in ms.
let gcMaxMs = 0;
function watchGarbageCollection() {
  new PerformanceObserver((entries) => {
    for (const entry of entries.getEntries()) gcMaxMs = Math.max(gcMaxMs, entry.duration);
  }).observe({ entryTypes: ["gc"] });
}

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
    phases[phase] = delays.histogram(start, end);
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
    lag_max_ms: lag.size ? Math.max(...lag.keys()) / 10 : null,
    gc_max_ms: gcMaxMs,
  };
}

// -- main -----------------------------------------------------------------------------------------
async function main() {
  const args = parseArgs(process.argv.slice(2));
  const started = Date.now();
  const browsers = [];

  function finish() {
    stopping = true;
    clearTimeout(deadline);
    for (const socket of sockets) socket.destroy(); // connected or still connecting
    process.exit(0);
  }

  const deadline = setTimeout(finish, args.maxSeconds * 1000);
  const commands = readline.createInterface({ input: process.stdin });
  commands.on("close", finish);
  const errors = await openAll(args, browsers);
  watchLag();
  watchGarbageCollection();
  emit({
    event: "ready",
    connected: browsers.length,
    failed: Object.values(errors).reduce((a, b) => a + b, 0),
    errors,
    connect_seconds: (Date.now() - started) / 1000,
    cpu_seconds: cpuSeconds(),
  });

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
}

main().catch((error) => {
  process.stderr.write(`${error.stack || error}\n`);
  process.exit(1);
});
