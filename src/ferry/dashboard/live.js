// Live job events of one tenant: WebSocket first, Server-Sent Events when the
// WebSocket cannot be used. `onStatus` gets "connected via WebSocket",
// "connected via SSE" or "reconnecting"; `onEvent` every JOB_UPDATE; `onProgress`
// every PROGRESS (a running job's progress: its seq is not the JOB_UPDATEs');
// `onResync` whenever updates may have been missed and state must be re-read.

import { currentKey } from "./api.js";

const WS_ATTEMPTS = 2; // sockets that failed to subscribe before falling back to SSE

// Browsers cannot put headers on WebSocket and EventSource requests. A WebSocket
// carries the key as a subprotocol, out of the URL (and so of access logs), when the
// key is a valid protocol token; EventSource has only the URL (the server's logs redact it).
const PROTOCOL_TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const token = (separator) => (currentKey() ? `${separator}token=${encodeURIComponent(currentKey())}` : "");

// `batch=true`: a frame carries one or more messages, one a line (a burst of
// events costs the server one frame).
function socketTarget() {
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws?batch=true`;
  const key = currentKey();
  if (!key) return [url, ["ferry"]];
  if (PROTOCOL_TOKEN.test(key)) return [url, ["ferry", `bearer.${key}`]];
  return [`${url}${token("&")}`, ["ferry"]];
}

export class LiveFeed {
  constructor({ onEvent, onProgress, onStatus, onResync }) {
    Object.assign(this, { onEvent, onProgress, onStatus, onResync });
    this.tenant = null;
    this.transport = "ws";
    this.failures = 0;
    this.lastSeq = null;
  }

  follow(tenant) {
    this.close();
    this.tenant = tenant;
    this.lastSeq = null;
    this.failures = 0;
    this.transport === "ws" ? this.openSocket() : this.openStream();
  }

  close() {
    clearTimeout(this.retryTimer);
    if (this.socket) { this.socket.onclose = null; this.socket.close(); this.socket = null; }
    if (this.stream) { this.stream.close(); this.stream = null; }
  }

  accept(event) {
    // A jump in seq means missed updates (a dropped backlog, a restart): re-read.
    if (this.lastSeq !== null && event.seq !== this.lastSeq + 1) this.onResync();
    this.lastSeq = event.seq;
    this.onEvent(event);
  }

  progress(event) {
    // `after` is the JOB_UPDATE it follows: older than one seen already, it may
    // belong to a job that has ended since.
    if (this.lastSeq !== null && event.after < this.lastSeq) return;
    this.onProgress(event);
  }

  openSocket() {
    let subscribed = false; // a socket that never confirms the subscription has failed
    let socket;
    try {
      socket = new WebSocket(...socketTarget());
    } catch {
      return this.fallBack();
    }
    this.socket = socket;
    socket.onopen = () => {
      socket.send(JSON.stringify({ type: "SUBSCRIBE", tenantId: this.tenant }));
    };
    const handle = (data) => {
      if (data.type === "SUBSCRIBED") {
        subscribed = true;
        this.failures = 0;
        const resumed = this.lastSeq !== null;
        this.lastSeq = data.seq;
        this.onStatus("connected via WebSocket");
        if (resumed) this.onResync(); // a reconnect: what happened meanwhile is unknown
      } else if (data.type === "JOB_UPDATE") {
        this.accept(data);
      } else if (data.type === "PROGRESS") {
        this.progress(data);
      } else if (data.type === "RESYNC") {
        this.lastSeq = data.seq;
        this.onResync();
      }
    };
    socket.onmessage = (frame) => {
      for (const line of frame.data.split("\n")) handle(JSON.parse(line));
    };
    socket.onclose = () => {
      this.socket = null;
      if (!subscribed && ++this.failures >= WS_ATTEMPTS) return this.fallBack();
      this.onStatus("reconnecting");
      const delay = subscribed ? 500 : Math.min(1000 * 2 ** this.failures, 10000);
      this.retryTimer = setTimeout(() => this.openSocket(), delay);
    };
  }

  fallBack() {
    this.transport = "sse";
    this.openStream();
  }

  openStream() {
    // EventSource reconnects by itself, sending Last-Event-ID: nothing is missed.
    const stream = new EventSource(`/events?tenantId=${encodeURIComponent(this.tenant)}${token("&")}`);
    this.stream = stream;
    stream.onopen = () => this.onStatus("connected via SSE");
    stream.onerror = () => this.onStatus("reconnecting");
    stream.addEventListener("JOB_UPDATE", (message) => this.accept(JSON.parse(message.data)));
    stream.addEventListener("PROGRESS", (message) => this.progress(JSON.parse(message.data)));
    stream.addEventListener("RESYNC", (message) => {
      this.lastSeq = JSON.parse(message.data).seq;
      this.onResync();
    });
  }
}
