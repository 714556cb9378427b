// tether.js: the browser client of a tether server (protocol 1 to 9).
//
//   import { connect } from "/static/tether.js";
//   const client = connect();                 // ws(s)://<this host>/ws?deltas=1
//   await client.ready;                       // the first welcome
//   const history = await client.submit("chat", "hi");
//
// No dependencies and no build step. The API is documented in README.md next
// to this file; protocol.md at the repository root is the wire contract.

/** The highest protocol version this client understands (the server's PROTOCOL_VERSION). */
export const PROTOCOL = 9;

/** Codes this client produces itself; the server's codes are in protocol.md. */
export const Codes = Object.freeze({
  DISCONNECTED: "disconnected", // the connection dropped while the submit was in flight
  NOT_CONNECTED: "not_connected", // submitted while there was no connection
  CLOSED: "closed", // client.close() was called
  CANCELLED: "cancelled", // cancelled (by the server in protocol 2, locally in protocol 1)
  TIMEOUT: "timeout", // a ping or whenConnected() waited too long
  TOO_LARGE: "too_large", // the message is larger than maxMessageSize
  TOO_MANY_PENDING: "too_many_pending", // more than maxInFlight submits in flight
  UNSUPPORTED: "unsupported", // the server's protocol lacks the feature
  BAD_DELTA: "bad_delta", // the server sent a delta that does not fit the previous value
  FORBIDDEN_TOPIC: "forbidden_topic", // the server does not allow this topic
  TOO_MANY_SUBSCRIPTIONS: "too_many_subscriptions", // over the server's max_subscriptions
});

/** Every failure this module reports: `code` says what went wrong, for programs. */
export class TetherError extends Error {
  constructor(code, message, { id = null, fn = null, topic = null } = {}) {
    super(message);
    this.name = "TetherError";
    this.code = code;
    this.id = id;
    this.fn = fn;
    this.topic = topic;
  }
}

const MAX_PINGS_IN_FLIGHT = 32; // ping waiters kept for their pong (a bound for a mute server)

const DEFAULTS = Object.freeze({
  deltas: true,
  reconnect: true,
  resume: true, // after a network drop, resume the same session (protocol 4+)
  baseDelay: 500, // ms; the first retry waits a random time in [0, baseDelay]
  maxDelay: 10000, // ms; no retry waits longer than this
  maxAttempts: Infinity, // retries after one drop before giving up ("offline")
  stableAfter: 5000, // ms a connection must stay up for the backoff to start over
  connectTimeout: 10000, // ms from opening the socket to the welcome
  pingInterval: 20000, // ms between heartbeats; 0 turns them off
  pingTimeout: 10000, // ms without any message after a ping before the link counts as dead
  maxInFlight: 256, // submits in flight on this client (the server's default limit)
  maxMessageSize: 1 << 20, // bytes; the server closes the socket on bigger messages
  iteratorBuffer: 100, // values an async iterator holds for a slow reader (oldest dropped)
  WebSocket: undefined, // a WebSocket constructor, for environments without a global one
});

/**
 * The default endpoint: the server serves this file at `<root>/static/tether.js`
 * and the WebSocket at `<root>/ws`, so the socket is found next to `static/`
 * (also behind a proxy that mounts tether under a path prefix).
 */
export function defaultUrl(base = import.meta.url) {
  const url = new URL("../ws", base);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  url.search = "";
  url.hash = "";
  return url.href;
}

/**
 * Open a client. Returns at once; the client connects in the background,
 * reconnects after drops (when `reconnect` is on) and emits state events.
 */
export function connect(url, options = {}) {
  return new TetherClient(url, options);
}

/** The delay before retry number `attempt` (0-based): exponential backoff, full jitter. */
export function backoffDelay(attempt, baseDelay, maxDelay, random = Math.random) {
  const ceiling = Math.min(maxDelay, baseDelay * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * ceiling);
}

/** Rebuild a chatbot value from a delta `{keep, append}` and the previous value. */
export function applyDelta(previous, delta) {
  const base = Array.isArray(previous) ? previous : [];
  const keep = delta.keep;
  if (!Number.isInteger(keep) || keep < 0 || keep > base.length || !Array.isArray(delta.append)) {
    throw new TetherError(
      Codes.BAD_DELTA,
      `a delta keeps ${keep} items of a value that has ${base.length}`,
    );
  }
  return base.slice(0, keep).concat(delta.append);
}

function isDelta(value) {
  return (
    value !== null &&
    typeof value === "object" &&
    !Array.isArray(value) &&
    "keep" in value &&
    "append" in value
  );
}

function unwrap(outputs) {
  return outputs.length === 1 ? outputs[0] : outputs;
}

function report(error) {
  if (typeof globalThis.reportError === "function") globalThis.reportError(error);
  else console.error(error);
}

/** A submit in flight: a thenable of its outputs, with streaming and cancel on top. */
export class Submission {
  constructor(client, id, fn) {
    this.client = client;
    this.id = id;
    this.fn = fn;
    /** "sent", "queued", "running", "done", "failed" or "cancelled". */
    this.status = "sent";
    /** The 1-based queue position while queued, else null. */
    this.position = null;
    /** The latest partial outputs (unwrapped), or undefined before the first. */
    this.latest = undefined;
    this.partials = 0;
    this.settled = false;
    this._listeners = { partial: [], queued: [], started: [], settled: [] };
    this._promise = new Promise((resolve, reject) => {
      this._resolve = resolve;
      this._reject = reject;
    });
    // A caller who only iterates, or only listens, must not see an
    // "unhandled rejection" for a failure it already received another way.
    this._promise.catch(() => {});
  }

  then(onFulfilled, onRejected) {
    return this._promise.then(onFulfilled, onRejected);
  }

  catch(onRejected) {
    return this._promise.catch(onRejected);
  }

  finally(onFinally) {
    return this._promise.finally(onFinally);
  }

  /** The outputs as a plain Promise. */
  get promise() {
    return this._promise;
  }

  /** `callback(outputs)` for every partial (streaming functions); chainable. */
  onPartial(callback) {
    this._listeners.partial.push(callback);
    return this;
  }

  /** `callback(position)` each time the server reports a queue position; chainable. */
  onQueued(callback) {
    this._listeners.queued.push(callback);
    return this;
  }

  /** `callback()` when a submit that waited in the queue starts running; chainable. */
  onStarted(callback) {
    this._listeners.started.push(callback);
    return this;
  }

  /** Ask the server to stop this submit. See TetherClient.cancel. */
  cancel() {
    return this.client.cancel(this.id);
  }

  _emit(kind, value) {
    for (const callback of this._listeners[kind]) {
      try {
        callback(value);
      } catch (error) {
        report(error);
      }
    }
  }

  _queued(position) {
    if (this.settled) return;
    this.status = "queued";
    this.position = position;
    this._emit("queued", position);
  }

  _started() {
    if (this.settled) return;
    this.status = "running";
    this.position = null;
    this._emit("started");
  }

  _partial(outputs) {
    if (this.settled) return;
    if (this.status !== "running") this._started();
    this.partials += 1;
    this.latest = unwrap(outputs);
    this._emit("partial", this.latest);
  }

  _settle(error, outputs) {
    if (this.settled) return;
    this.settled = true;
    this.position = null;
    if (error) {
      this.status = error.code === Codes.CANCELLED ? "cancelled" : "failed";
      this.error = error;
      this._reject(error);
    } else {
      this.status = "done";
      this.value = unwrap(outputs);
      this._resolve(this.value);
    }
    this._emit("settled", error);
    for (const kind of Object.keys(this._listeners)) this._listeners[kind] = [];
  }

  /**
   * `for await (const outputs of submission)` yields every partial, then the
   * final outputs, and throws the submit's error if it fails. Each value is a
   * full snapshot, so a reader slower than the stream skips to newer values
   * (at most `iteratorBuffer` are held).
   */
  [Symbol.asyncIterator]() {
    const limit = this.client.options.iteratorBuffer;
    const buffered = [];
    let wake = null;
    let done = false;
    let failure = null;
    const push = (value) => {
      buffered.push(value);
      if (buffered.length > limit) buffered.shift();
      if (wake) wake();
    };
    const finish = (error) => {
      done = true;
      failure = error || null;
      if (!error) push(this.value);
      else if (wake) wake();
    };
    if (this.settled) {
      finish(this.error);
    } else {
      if (this.latest !== undefined) push(this.latest);
      this._listeners.partial.push(push);
      this._listeners.settled.push(finish);
    }
    return {
      next: async () => {
        while (buffered.length === 0 && !done) {
          await new Promise((resolve) => {
            wake = resolve;
          });
          wake = null;
        }
        if (buffered.length > 0) return { value: buffered.shift(), done: false };
        if (failure) {
          const error = failure;
          failure = null;
          throw error;
        }
        return { value: undefined, done: true };
      },
      return: async () => {
        done = true;
        buffered.length = 0;
        const index = this._listeners.partial.indexOf(push);
        if (index >= 0) this._listeners.partial.splice(index, 1);
        return { value: undefined, done: true };
      },
      [Symbol.asyncIterator]() {
        return this;
      },
    };
  }
}

/** One topic subscription: `ready` settles when the server answers. */
class Subscription {
  constructor(client, topic, handler) {
    this.client = client;
    this.topic = topic;
    this.handler = handler;
    this.active = true;
    this.ready = client._topicReady(topic);
  }

  unsubscribe() {
    if (!this.active) return;
    this.active = false;
    this.client.unsubscribe(this.topic, this.handler);
  }
}

/** A client: one WebSocket at a time, and a new one after every drop. */
export class TetherClient {
  constructor(url, options = {}) {
    if (url !== undefined && url !== null && typeof url === "object") {
      options = url;
      url = undefined;
    }
    this.options = { ...DEFAULTS, ...options };
    this.WebSocket = this.options.WebSocket || globalThis.WebSocket;
    if (!this.WebSocket) throw new TypeError("no WebSocket: pass options.WebSocket");
    const target = new URL(url || defaultUrl(), globalThis.location?.href);
    if (target.protocol === "http:") target.protocol = "ws:";
    if (target.protocol === "https:") target.protocol = "wss:";
    if (this.options.deltas) target.searchParams.set("deltas", "1");
    this.url = target.href;
    /** The token that resumes this session after a network drop (protocol 4+). */
    this.resumeToken = null;
    this._resuming = false;
    this._frames = new Map(); // id -> the submit as sent, re-sent after a resume

    /** "connecting", "connected", "reconnecting", "offline" or "closed". */
    this.state = "connecting";
    this.welcome = null;
    this.session = null;
    this.protocol = null;
    this.functions = new Map();
    this.topics = [];
    this.attempt = 0;
    this.nextRetryAt = null;
    this.lastClose = null;

    this._ws = null;
    this._nextId = 1;
    this._pending = new Map(); // id -> Submission awaiting its answer
    this._inflight = new Map(); // id -> fn, until the server's last word (for deltas)
    this._bases = new Map(); // "fn\0index" -> last chatbot value (per connection)
    this._handlers = new Map(); // topic -> Set(handler)
    this._values = new Map(); // topic -> {seq, data}: its current value (protocol 8), until unsubscribed
    this._topicWaiters = new Map(); // topic -> [{resolve, reject}]
    this._subscribeOrder = []; // topics sent in subscribe messages, oldest first
    this._pongs = []; // ping waiters, in the order the pings were sent
    this._listeners = new Map();
    this._timers = { retry: null, connect: null, heartbeat: null, pingDeadline: null };
    this._connectedAt = 0;
    this._closed = false;
    this._sessions = 0;
    this._startingOver = false; // newSession() was called: the next session is a reset

    this.ready = new Promise((resolve, reject) => {
      this._readyResolve = resolve;
      this._readyReject = reject;
    });
    this.ready.catch(() => {});

    if (typeof globalThis.addEventListener === "function") {
      this._onOnline = () => {
        if (this.state === "offline" || this.state === "reconnecting") this.reconnectNow();
      };
      globalThis.addEventListener("online", this._onOnline);
    }
    this._open();
  }

  // -- events ----------------------------------------------------------------

  /** Listen to an event; returns a function that stops listening. */
  on(event, handler) {
    if (!this._listeners.has(event)) this._listeners.set(event, new Set());
    this._listeners.get(event).add(handler);
    return () => this.off(event, handler);
  }

  off(event, handler) {
    this._listeners.get(event)?.delete(handler);
  }

  _emit(event, detail) {
    for (const handler of [...(this._listeners.get(event) || [])]) {
      try {
        handler(detail);
      } catch (error) {
        report(error);
      }
    }
  }

  _setState(state, detail = {}) {
    const changed = this.state !== state;
    this.state = state;
    const payload = { state, ...detail };
    this._emit("state", payload);
    if (changed || state === "reconnecting") this._emit(state, payload);
  }

  // -- connection ------------------------------------------------------------

  get connected() {
    return this.state === "connected";
  }

  _open() {
    this._clearTimer("retry");
    this.nextRetryAt = null;
    let ws;
    let url = this.url;
    // Resuming (protocol 7+): the token goes in the first message, not in the URL,
    // so that no proxy's access log holds it.
    const token = this._resuming && this.resumeToken ? this.resumeToken : null;
    if (token) {
      const target = new URL(url);
      target.searchParams.set("resuming", "1");
      url = target.href;
    }
    try {
      ws = new this.WebSocket(url);
    } catch (error) {
      this._dropped({ code: 1006, reason: String(error?.message || error) });
      return;
    }
    this._ws = ws;
    if (token) ws.onopen = () => ws.send(JSON.stringify({ type: "resume", token }));
    ws.onmessage = (event) => this._receive(ws, event.data);
    ws.onclose = (event) => {
      if (this._ws === ws) this._dropped({ code: event.code, reason: event.reason });
    };
    ws.onerror = () => {}; // a close event always follows, with what we need
    this._timers.connect = setTimeout(() => {
      if (this._ws === ws && !this.connected) this._abandon(ws, 4000, "connect timeout");
    }, this.options.connectTimeout);
  }

  /** Stop using `ws` now (without waiting for a close handshake) and treat it as dropped. */
  _abandon(ws, code, reason) {
    try {
      ws.close(code, reason);
    } catch {
      // already closing
    }
    if (this._ws === ws) this._dropped({ code, reason });
  }

  _dropped(close) {
    const ws = this._ws;
    if (ws) {
      ws.onmessage = ws.onclose = ws.onerror = null;
    }
    this._ws = null;
    this.lastClose = close;
    this._clearTimer("connect");
    this._clearTimer("heartbeat");
    this._clearTimer("pingDeadline");
    const wasConnected = this.connected;
    const lived = wasConnected ? Date.now() - this._connectedAt : 0;
    // A network drop (no close frame from the server, or a server that is
    // restarting) can resume the same session: keep what is in flight, it is
    // re-sent with the same ids and the server never runs a submit twice.
    const deliberate = [1000, 1001, 1008, 1009, 4001, 4008].includes(close.code);
    if (wasConnected || !this._resuming) {
      this._resuming =
        !this._closed && this.options.resume && Boolean(this.resumeToken) && !deliberate;
    }
    if (this._resuming) {
      this._failPongs(new TetherError(Codes.DISCONNECTED, "the connection dropped"));
    } else this._failInFlight(
      this._closed
        ? new TetherError(Codes.CLOSED, "the client was closed")
        : new TetherError(
            Codes.DISCONNECTED,
            "the connection dropped before the answer arrived" +
              (close.code
                ? ` (close ${close.code}${close.reason ? `: ${close.reason}` : ""})`
                : ""),
          ),
    );
    if (this._closed) {
      this._setState("closed", { close });
      return;
    }
    if (wasConnected) {
      this._emit("disconnected", { close, session: this.session });
      if (lived >= this.options.stableAfter) this.attempt = 0;
    }
    this._scheduleRetry(close);
  }

  _scheduleRetry(close) {
    const { reconnect, maxAttempts, baseDelay, maxDelay } = this.options;
    if (!reconnect || this.attempt >= maxAttempts) {
      this._setState("offline", { close, reason: reconnect ? "gave up" : "reconnect is off" });
      this._rejectReadyIfNeverConnected();
      return;
    }
    if (globalThis.navigator?.onLine === false) {
      // The browser knows it has no network; the "online" event resumes.
      this._setState("offline", { close, reason: "the browser is offline" });
      return;
    }
    const delay = backoffDelay(this.attempt, baseDelay, maxDelay);
    this.attempt += 1;
    this.nextRetryAt = Date.now() + delay;
    this._timers.retry = setTimeout(() => this._open(), delay);
    this._setState("reconnecting", { close, attempt: this.attempt, delay });
  }

  _rejectReadyIfNeverConnected() {
    if (this._sessions === 0) {
      this._readyReject(new TetherError(Codes.NOT_CONNECTED, "could not connect"));
    }
  }

  /** Try to connect now instead of waiting for the next scheduled retry. */
  reconnectNow() {
    if (this._closed || this._ws) return;
    this.attempt = 0;
    this._open();
    if (this.state === "offline") this._setState("reconnecting", { attempt: 0, delay: 0 });
  }

  /** Resolve with the welcome once connected (at once if connected already). */
  whenConnected(timeout = this.options.connectTimeout) {
    if (this.connected) return Promise.resolve(this.welcome);
    return new Promise((resolve, reject) => {
      const offs = [];
      const done = (fn, value) => {
        clearTimeout(timer);
        for (const off of offs) off();
        fn(value);
      };
      const timer = setTimeout(
        () => done(reject, new TetherError(Codes.TIMEOUT, "not connected in time")),
        timeout,
      );
      offs.push(this.on("connected", () => done(resolve, this.welcome)));
      offs.push(
        this.on("closed", () => done(reject, new TetherError(Codes.CLOSED, "client closed"))),
      );
    });
  }

  /**
   * Start over: end this session (a close with 1000, so the server forgets its
   * state at once) and open a new one now, never resuming it. Every session
   * state slot starts from its default again (protocol.md, "Starting over");
   * submits in flight fail with `disconnected`. Topics this client follows are
   * subscribed again. Resolves with the new session's welcome; its `session`
   * event has `requested: true`.
   */
  newSession() {
    if (this._closed) {
      return Promise.reject(new TetherError(Codes.CLOSED, "the client was closed"));
    }
    const next = new Promise((resolve, reject) => {
      const offs = [
        this.on("session", ({ welcome }) => done(resolve, welcome)),
        this.on("closed", () => done(reject, new TetherError(Codes.CLOSED, "client closed"))),
      ];
      const done = (fn, value) => {
        for (const off of offs) off();
        fn(value);
      };
    });
    next.catch(() => {});
    const ws = this._ws;
    const wasConnected = this.connected;
    this._startingOver = true;
    this._resuming = false;
    this.resumeToken = null;
    this._ws = null;
    for (const name of ["retry", "connect", "heartbeat", "pingDeadline"]) this._clearTimer(name);
    if (ws) {
      ws.onmessage = ws.onclose = ws.onerror = null;
      try {
        ws.close(1000, "new session");
      } catch {
        // already closing
      }
    }
    this._failInFlight(new TetherError(Codes.DISCONNECTED, "a new session was started"));
    const close = { code: 1000, reason: "new session" };
    this.lastClose = close;
    if (wasConnected) this._emit("disconnected", { close, session: this.session });
    this.attempt = 0;
    this._setState("reconnecting", { close, attempt: 0, delay: 0 });
    this._open();
    return next;
  }

  /** Close for good: no reconnect; in-flight submits fail with code "closed". */
  close(code = 1000, reason = "") {
    if (this._closed) return;
    this._closed = true;
    this._clearTimer("retry");
    if (this._onOnline) globalThis.removeEventListener("online", this._onOnline);
    const ws = this._ws;
    if (ws) this._abandon(ws, code, reason);
    else this._dropped({ code, reason });
    this._readyReject(new TetherError(Codes.CLOSED, "the client was closed"));
  }

  _clearTimer(name) {
    if (this._timers[name] !== null) {
      clearTimeout(this._timers[name]);
      clearInterval(this._timers[name]);
      this._timers[name] = null;
    }
  }

  _send(message) {
    const text = JSON.stringify(message);
    const limit = this.options.maxMessageSize;
    // A UTF-16 unit is at most 3 UTF-8 bytes: only long texts need encoding to measure.
    if (text.length * 3 > limit) {
      const size = new TextEncoder().encode(text).length;
      if (size > limit) {
        throw new TetherError(
          Codes.TOO_LARGE,
          `the message is ${size} bytes; the server accepts at most ${limit}`,
        );
      }
    }
    if (!this._ws || this._ws.readyState !== 1) {
      throw new TetherError(Codes.NOT_CONNECTED, "not connected");
    }
    this._ws.send(text);
  }

  // -- incoming --------------------------------------------------------------

  _receive(ws, raw) {
    if (this._ws !== ws) return;
    this._lastReceived = Date.now();
    this._clearTimer("pingDeadline");
    let message;
    try {
      message = JSON.parse(raw);
    } catch {
      this._emit("error", new TetherError("bad_json", "the server sent a frame that is not JSON"));
      return;
    }
    if (message === null || typeof message !== "object") return;
    switch (message.type) {
      case "welcome":
        this._welcome(message);
        break;
      case "result":
        this._answer(message, false);
        break;
      case "partial":
        this._answer(message, true);
        break;
      case "error":
        this._error(message);
        break;
      case "queued":
        this._pending.get(message.id)?._queued(message.position);
        break;
      case "started":
        this._pending.get(message.id)?._started();
        break;
      case "event":
        this._event(message);
        break;
      case "subscribed":
        this._topicAnswered(message.topic, null);
        break;
      case "unsubscribed":
        this._subscribeOrder = this._subscribeOrder.filter((t) => t !== message.topic);
        this._values.delete(message.topic);
        break;
      case "pong":
        this._pong();
        break;
      default:
        break; // message types of later versions
    }
  }

  _welcome(message) {
    this._clearTimer("connect");
    const previous = this.session;
    const resumed = message.resumed === true && this._resuming;
    if (this._resuming && !resumed) {
      // The old session is gone (expired, or the server does not resume).
      this._failInFlight(
        new TetherError(Codes.DISCONNECTED, "the connection dropped and the session ended"),
      );
    }
    this._resuming = false;
    this.resumeToken = typeof message.resume === "string" ? message.resume : null;
    this.welcome = message;
    this.session = message.session;
    this.protocol = Number.isInteger(message.protocol) ? message.protocol : 1;
    this.functions = new Map((message.functions || []).map((f) => [f.name, f]));
    this.topics = Array.isArray(message.topics) ? message.topics : [];
    this._bases.clear();
    this._subscribeOrder = [];
    this._connectedAt = Date.now();
    if (!resumed) this._sessions += 1;
    this.nextRetryAt = null;
    this._startHeartbeat();
    const first = this._sessions === 1 && !resumed;
    // Re-subscribe before any listener runs, so that a listener's own
    // subscribe() is sent once, not twice.
    this._resubscribe();
    if (resumed) {
      for (const frame of this._frames.values()) this._send(frame);
    }
    this._setState("connected", { session: this.session, attempt: this.attempt, resumed });
    this._emit("welcome", message);
    if (resumed) this._emit("resumed", { id: this.session, welcome: message });
    else {
      const requested = this._startingOver === true;
      this._startingOver = false;
      this._emit("session", { id: this.session, previous, first, welcome: message, requested });
    }
    if (first) this._readyResolve(message);
  }

  _outputs(id, fn, data) {
    if (!Array.isArray(data)) return [];
    const spec = this.functions.get(fn);
    if (!spec) return data;
    return data.map((value, index) => {
      if (spec.outputs?.[index] !== "chatbot") return value;
      const key = `${fn}\u0000${index}`;
      const full = isDelta(value) ? applyDelta(this._bases.get(key), value) : value;
      this._bases.set(key, full);
      return full;
    });
  }

  _answer(message, partial) {
    const id = message.id;
    const fn = this._inflight.get(id);
    if (fn === undefined) return; // not ours (or from a previous connection)
    const submission = this._pending.get(id);
    let outputs;
    try {
      // Deltas are rebuilt even for a submit nobody waits for any more: the
      // next delta for this function builds on this value.
      outputs = this._outputs(id, fn, message.data);
    } catch (error) {
      error.id = id;
      error.fn = fn;
      if (!partial) this._inflight.delete(id);
      this._pending.delete(id);
      this._frames.delete(id);
      submission?._settle(error);
      return;
    }
    if (partial) {
      submission?._partial(outputs);
      return;
    }
    this._inflight.delete(id);
    this._pending.delete(id);
    this._frames.delete(id);
    submission?._settle(null, outputs);
  }

  _error(message) {
    const { id, code, message: text } = message;
    if (id !== null && id !== undefined && this._inflight.has(id)) {
      const fn = this._inflight.get(id);
      this._inflight.delete(id);
      this._frames.delete(id);
      const submission = this._pending.get(id);
      this._pending.delete(id);
      submission?._settle(new TetherError(code, text, { id, fn }));
      return;
    }
    if (code === Codes.FORBIDDEN_TOPIC || code === Codes.TOO_MANY_SUBSCRIPTIONS) {
      // These carry the topic; should one not, it answers the oldest subscribe.
      const topic = typeof message.topic === "string" ? message.topic : this._subscribeOrder[0];
      if (topic !== undefined) {
        this._topicAnswered(topic, new TetherError(code, text, { topic }));
        return;
      }
    }
    this._emit("error", new TetherError(code, text, { id }));
  }

  // -- submits ---------------------------------------------------------------

  /** Call `fn` with its public inputs; a Submission (await it for the outputs). */
  submit(fn, ...args) {
    return this.call(fn, args);
  }

  /**
   * The long form of submit: `options` may hold `onPartial`, `onQueued`,
   * `onStarted` callbacks and an AbortSignal `signal` that cancels the submit.
   */
  call(fn, args = [], options = {}) {
    const id = this._nextId++;
    const submission = new Submission(this, id, fn);
    if (options.onPartial) submission.onPartial(options.onPartial);
    if (options.onQueued) submission.onQueued(options.onQueued);
    if (options.onStarted) submission.onStarted(options.onStarted);
    if (this._closed) {
      submission._settle(new TetherError(Codes.CLOSED, "the client was closed", { id, fn }));
      return submission;
    }
    if (!this.connected) {
      const state = this.state === "connecting" ? "still connecting" : this.state;
      submission._settle(
        new TetherError(Codes.NOT_CONNECTED, `not connected (${state})`, { id, fn }),
      );
      return submission;
    }
    if (this._inflight.size >= this.options.maxInFlight) {
      submission._settle(
        new TetherError(
          Codes.TOO_MANY_PENDING,
          `${this._inflight.size} submits are in flight (maxInFlight is ${this.options.maxInFlight})`,
          { id, fn },
        ),
      );
      return submission;
    }
    const frame = { type: "submit", id, fn, data: Array.from(args) };
    try {
      this._send(frame);
    } catch (error) {
      error.id = id;
      error.fn = fn;
      submission._settle(error);
      return submission;
    }
    this._pending.set(id, submission);
    this._inflight.set(id, fn);
    this._frames.set(id, frame);
    const signal = options.signal;
    if (signal) {
      if (signal.aborted) this.cancel(id);
      else signal.addEventListener("abort", () => this.cancel(id), { once: true });
    }
    return submission;
  }

  /**
   * Cancel submit `id`. With a protocol 2 server the server is asked to stop it
   * and its answer settles the submit (the error "cancelled", or the result if
   * it finished first). A protocol 1 server cannot cancel: the submit is
   * rejected here with "cancelled" and its eventual answer is ignored.
   * Returns false when the submit is not in flight.
   */
  cancel(id) {
    const submission = this._pending.get(id);
    if (!submission) return false;
    if (this.protocol >= 2) {
      try {
        this._send({ type: "cancel", id });
        return true;
      } catch {
        // not connected: the disconnect settles it
        return false;
      }
    }
    this._pending.delete(id);
    submission._settle(
      new TetherError(Codes.CANCELLED, "cancelled (the server keeps running it)", {
        id,
        fn: submission.fn,
      }),
    );
    return true;
  }

  /** Submits waiting for an answer. */
  get inFlight() {
    return this._pending.size;
  }

  _failPongs(error) {
    const pongs = this._pongs;
    this._pongs = [];
    for (const waiter of pongs) waiter.reject(new TetherError(error.code, error.message));
  }

  _failInFlight(error) {
    const pending = [...this._pending.values()];
    this._pending.clear();
    this._inflight.clear();
    this._frames.clear();
    for (const submission of pending) {
      const copy = new TetherError(error.code, error.message, {
        id: submission.id,
        fn: submission.fn,
      });
      submission._settle(copy);
    }
    const pongs = this._pongs;
    this._pongs = [];
    for (const waiter of pongs) waiter.reject(new TetherError(error.code, error.message));
    for (const [topic, waiters] of this._topicWaiters) {
      // Subscriptions survive a drop: they are sent again on the next connection.
      if (!this._handlers.has(topic)) {
        this._topicWaiters.delete(topic);
        for (const waiter of waiters) waiter.reject(new TetherError(error.code, error.message));
      }
    }
    this._subscribeOrder = [];
  }

  // -- topics ----------------------------------------------------------------

  /**
   * Receive the events of `topic`: `handler(data, topic)`. The subscription is
   * sent again after every reconnect. Returns a Subscription whose `ready`
   * settles with the server's answer to the current connection's subscribe.
   */
  subscribe(topic, handler) {
    if (typeof topic !== "string" || !topic) throw new TypeError("a topic is a non-empty string");
    if (typeof handler !== "function") throw new TypeError("subscribe needs a handler function");
    let handlers = this._handlers.get(topic);
    const fresh = !handlers;
    if (fresh) {
      handlers = new Set();
      this._handlers.set(topic, handlers);
    }
    handlers.add(handler);
    const subscription = new Subscription(this, topic, handler);
    if (this.connected) {
      if (fresh || this.protocol < 2) this._sendSubscribe(topic);
      else if (!this._subscribeOrder.includes(topic)) this._topicAnswered(topic, null);
      // else: the subscribe on the wire answers this one too
    }
    const value = this._values.get(topic);
    if (!fresh && value) {
      // A later handler of a topic already followed gets its current value too.
      queueMicrotask(() => {
        if (subscription.active && this._values.get(topic) === value) {
          this._call(handler, value.data, topic, { seq: value.seq, current: true });
        }
      });
    }
    return subscription;
  }

  /** Stop `handler` (or every handler) receiving `topic`; the last one out unsubscribes. */
  unsubscribe(topic, handler) {
    const handlers = this._handlers.get(topic);
    if (!handlers) return;
    if (handler) handlers.delete(handler);
    else handlers.clear();
    if (handlers.size > 0) return;
    this._handlers.delete(topic);
    this._values.delete(topic);
    this._topicAnswered(topic, new TetherError(Codes.CANCELLED, "unsubscribed", { topic }));
    if (this.connected && this.protocol >= 2) {
      try {
        this._send({ type: "unsubscribe", topic });
      } catch {
        // the drop forgets the subscription anyway
      }
    }
  }

  _topicReady(topic) {
    const promise = new Promise((resolve, reject) => {
      if (!this._topicWaiters.has(topic)) this._topicWaiters.set(topic, []);
      this._topicWaiters.get(topic).push({ resolve, reject });
    });
    promise.catch(() => {});
    return promise;
  }

  _topicAnswered(topic, error) {
    const index = this._subscribeOrder.indexOf(topic);
    if (index >= 0) this._subscribeOrder.splice(index, 1);
    const waiters = this._topicWaiters.get(topic) || [];
    this._topicWaiters.delete(topic);
    for (const waiter of waiters) {
      if (error) waiter.reject(error);
      else waiter.resolve(topic);
    }
    if (error && error.code !== Codes.CANCELLED) {
      // Refused: forget it, rather than asking again after every reconnect.
      this._handlers.delete(topic);
      this._emit("error", error);
    }
  }

  _sendSubscribe(topic) {
    if (this.protocol < 2) {
      const waiters = this._topicWaiters.get(topic) || [];
      this._topicWaiters.delete(topic);
      const error = new TetherError(
        Codes.UNSUPPORTED,
        `the server speaks protocol ${this.protocol}, which has no topics`,
        { topic },
      );
      for (const waiter of waiters) waiter.reject(error);
      return;
    }
    try {
      this._send({ type: "subscribe", topic });
      this._subscribeOrder.push(topic);
    } catch {
      // the drop re-sends it on the next connection
    }
  }

  _resubscribe() {
    for (const topic of this._handlers.keys()) this._sendSubscribe(topic);
  }

  _event(message) {
    const { topic, data, seq } = message;
    const current = message.current === true;
    if (typeof seq === "number") {
      // A change of the topic's current value (protocol 8): never one older
      // than, or the same as, the value this client has (a current value sent
      // again after a reconnect, or a change that raced it).
      const known = this._values.get(topic);
      if (known && seq <= known.seq) return;
      this._values.set(topic, { seq, data });
    }
    const info = { seq: typeof seq === "number" ? seq : null, current };
    this._emit("event", { topic, data, ...info });
    for (const handler of [...(this._handlers.get(topic) || [])]) this._call(handler, data, topic, info);
  }

  _call(handler, data, topic, info) {
    try {
      handler(data, topic, info);
    } catch (error) {
      report(error);
    }
  }

  // -- heartbeat -------------------------------------------------------------

  /** Send an application-level ping; resolves with the round-trip time in ms. */
  ping(timeout = this.options.pingTimeout) {
    return new Promise((resolve, reject) => {
      const sent = performance.now();
      const waiter = { resolve, reject };
      try {
        this._send({ type: "ping" });
      } catch (error) {
        reject(error);
        return;
      }
      // A waiter that timed out stays queued so that its late pong is matched to it.
      this._pongs.push(waiter);
      if (this._pongs.length > MAX_PINGS_IN_FLIGHT) {
        this._pongs.shift().reject(new TetherError(Codes.TIMEOUT, "no pong"));
      }
      const timer = setTimeout(() => {
        waiter.resolve = () => {};
        reject(new TetherError(Codes.TIMEOUT, `no pong within ${timeout} ms`));
      }, timeout);
      waiter.resolve = () => {
        clearTimeout(timer);
        resolve(performance.now() - sent);
      };
      waiter.reject = (error) => {
        clearTimeout(timer);
        reject(error);
      };
    });
  }

  _pong() {
    const waiter = this._pongs.shift();
    if (waiter) waiter.resolve();
  }

  _startHeartbeat() {
    this._clearTimer("heartbeat");
    const { pingInterval, pingTimeout } = this.options;
    if (!pingInterval) return;
    const ws = this._ws;
    this._timers.heartbeat = setInterval(() => {
      if (this._ws !== ws || !this.connected) return;
      this.ping(pingTimeout).catch(() => {});
      this._clearTimer("pingDeadline");
      // Any message from the server proves the link alive and clears this deadline.
      this._timers.pingDeadline = setTimeout(() => {
        if (this._ws === ws) this._abandon(ws, 4000, "no answer to ping");
      }, pingTimeout);
    }, pingInterval);
  }
}
