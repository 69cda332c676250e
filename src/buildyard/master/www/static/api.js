// The master's REST API (/api/v2, read with GET, controlled with JSON-RPC POSTs) and its
// event socket (/ws). URLs are relative to the page, so the UI works behind a path prefix.

export class ApiError extends Error {
  constructor(message, status, data) {
    super(message);
    this.status = status;
    this.data = data;
  }
}

function query(params) {
  const q = new URLSearchParams();
  for (const [key, value] of Object.entries(params || {})) {
    if (value === undefined || value === null) continue;
    for (const v of Array.isArray(value) ? value : [value]) q.append(key, String(v));
  }
  const text = q.toString();
  return text ? `?${text}` : "";
}

/** GET api/v2/<path>: the whole envelope ({<plural>: [...], meta: {...}}). */
export async function get(path, params) {
  const resp = await fetch(`api/v2/${path}${query(params)}`, {
    headers: { Accept: "application/json" },
  });
  const text = await resp.text();
  let body = null;
  try {
    body = JSON.parse(text);
  } catch {
    body = null;
  }
  if (!resp.ok) {
    const message = body && body.error ? body.error : `${resp.status} ${resp.statusText}`;
    throw new ApiError(message, resp.status, body);
  }
  return body;
}

/** The list of a collection, with meta.total: {items, total}. */
export async function list(path, plural, params) {
  const body = await get(path, params);
  const items = body[plural] || [];
  const total = body.meta && typeof body.meta.total === "number" ? body.meta.total : items.length;
  return { items, total };
}

/** The one item of a single-item endpoint (ApiError with status 404 when there is none). */
export async function one(path, plural, params) {
  const body = await get(path, params);
  const items = body[plural] || [];
  if (!items.length) throw new ApiError(`no such item: ${path}`, 404, body);
  return items[0];
}

let rpcId = 0;

/** POST a JSON-RPC 2.0 call on api/v2/<path>; its result, or an ApiError (data = error.message). */
export async function rpc(path, method, params) {
  rpcId += 1;
  const resp = await fetch(`api/v2/${path}`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify({ jsonrpc: "2.0", method, params: params || {}, id: rpcId }),
  });
  let body = null;
  try {
    body = await resp.json();
  } catch {
    body = null;
  }
  if (!resp.ok || !body || body.error) {
    const error = body && body.error ? body.error : null;
    const detail = error ? error.message : `${resp.status} ${resp.statusText}`;
    const message = typeof detail === "string" ? detail : JSON.stringify(detail);
    throw new ApiError(message, resp.status, detail);
  }
  return body.result;
}

function matches(pattern, key) {
  const p = pattern.split("/");
  const k = key.split("/");
  return p.length === k.length && p.every((part, i) => part === "*" || part === k[i]);
}

/**
 * One WebSocket for the page, shared by every subscriber. subscribe(path, callback) sends
 * startConsuming once per path and calls callback(key, message) for each event; the function
 * it returns unsubscribes. The socket reconnects after a loss and consumes its paths again;
 * onReconnect callbacks then run, so pages can read what they missed. subscribed() resolves
 * once the server has answered every startConsuming sent so far: from then on no event of
 * those paths is missed, so a page reads its state after it (reading before could miss a
 * change made between the read and the subscription).
 */
class Events {
  constructor() {
    this.handlers = new Map(); // path -> Set of callbacks
    this.reconnectHandlers = new Set();
    this.socket = null;
    this.nextId = 1;
    this.connected = false;
    this.retry = 500;
    this.everConnected = false;
    this.statusHandlers = new Set();
    this.answers = new Map(); // _id -> resolve, for the commands waiting for their answer
    this.consuming = new Set(); // the answers of the startConsuming not answered yet
    this.openWaiters = []; // subscribed() calls waiting for the socket to open
  }

  connect() {
    const url = new URL("ws", window.location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    url.hash = "";
    url.search = "";
    const socket = new WebSocket(url.href);
    this.socket = socket;
    socket.onopen = () => {
      this.connected = true;
      this.retry = 500;
      for (const path of this.handlers.keys()) this.consume(path);
      for (const resolve of this.openWaiters.splice(0)) resolve();
      if (this.everConnected) for (const cb of this.reconnectHandlers) cb();
      this.everConnected = true;
      this.status();
    };
    socket.onmessage = (ev) => {
      let frame;
      try {
        frame = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (typeof frame.k !== "string") {
        // a command's answer
        const resolve = this.answers.get(frame._id);
        if (resolve) {
          this.answers.delete(frame._id);
          resolve();
        }
        return;
      }
      for (const [path, callbacks] of this.handlers) {
        if (!matches(path, frame.k)) continue;
        for (const cb of [...callbacks]) {
          try {
            cb(frame.k, frame.m);
          } catch (err) {
            console.error(err);
          }
        }
      }
    };
    socket.onclose = () => {
      this.connected = false;
      this.socket = null;
      // what waited for an answer will not get one: the reconnection reads everything again
      for (const resolve of this.answers.values()) resolve();
      this.answers.clear();
      this.status();
      setTimeout(() => this.connect(), this.retry);
      this.retry = Math.min(this.retry * 2, 10000);
    };
  }

  status() {
    for (const cb of this.statusHandlers) cb(this.connected);
  }

  send(cmd, path) {
    if (!this.connected || !this.socket) return;
    const frame = { cmd, _id: this.nextId++ };
    if (path !== undefined) frame.path = path;
    const answered = new Promise((resolve) => this.answers.set(frame._id, resolve));
    this.socket.send(JSON.stringify(frame));
    return answered;
  }

  /** Resolves once the socket is open and every startConsuming sent so far is answered (at
   * most `ms` later). */
  subscribed(ms = 5000) {
    const ready = (async () => {
      if (!this.connected) await new Promise((resolve) => this.openWaiters.push(resolve));
      await Promise.all([...this.consuming]);
    })();
    return Promise.race([ready, new Promise((resolve) => setTimeout(resolve, ms))]);
  }

  consume(path) {
    const answered = this.send("startConsuming", path);
    if (!answered) return;
    this.consuming.add(answered);
    answered.then(() => this.consuming.delete(answered));
  }

  subscribe(path, callback) {
    let callbacks = this.handlers.get(path);
    if (!callbacks) {
      callbacks = new Set();
      this.handlers.set(path, callbacks);
      this.consume(path);
    }
    callbacks.add(callback);
    return () => {
      const set = this.handlers.get(path);
      if (!set) return;
      set.delete(callback);
      if (!set.size) {
        this.handlers.delete(path);
        this.send("stopConsuming", path);
      }
    };
  }

  onReconnect(callback) {
    this.reconnectHandlers.add(callback);
    return () => this.reconnectHandlers.delete(callback);
  }
}

export const events = new Events();

// builders and workers by id, each read once per page load (names rarely change)
const cache = new Map();

function cached(kind, id, load) {
  const key = `${kind}/${id}`;
  if (!cache.has(key)) {
    const promise = load().catch((err) => {
      cache.delete(key);
      throw err;
    });
    cache.set(key, promise);
  }
  return cache.get(key);
}

export function builder(id) {
  return cached("builders", id, () => one(`builders/${id}`, "builders"));
}

/**
 * Read the builders of `ids` not read yet with one request (builderid__eq), so that builder(id)
 * then answers each from the cache; an id missing from the answer (or a failed request) is left
 * to its own request, as builder(id) makes it.
 */
export async function loadBuilders(ids) {
  const missing = [...new Set(ids)].filter((id) => !cache.has(`builders/${id}`));
  if (missing.length < 2) return;
  const batch = list("builders", "builders", { builderid__eq: missing, limit: missing.length }).then(
    ({ items }) => new Map(items.map((b) => [b.builderid, b])),
    () => new Map(),
  );
  for (const id of missing) {
    cached("builders", id, () =>
      batch.then((found) => found.get(id) || one(`builders/${id}`, "builders")),
    );
  }
  await batch;
}

export function worker(id) {
  return cached("workers", id, () =>
    one(`workers/${id}`, "workers", { field: ["workerid", "name"] }),
  );
}
