// A job's live progress over server-sent events, resumed after any dropped connection.
//
// EventSource cannot send an Authorization header, so the stream is opened with a
// short-lived stream token in the query. The browser reconnects by itself with
// Last-Event-ID; when it gives up (the token expired, the server said no) we fetch a
// new token and reopen with ?after=<last seq>. Events are applied at most once, by seq.

import { api, describe } from "./api.js";

/** @typedef {import("./api-types").components["schemas"]} Schemas */

export const EVENT_TYPES = [
  "job.queued",
  "job.started",
  "stage.started",
  "stage.progress",
  "stage.completed",
  "stage.failed",
  "job.completed",
  "job.failed",
  "job.cancelled",
  "warning",
];
const TERMINAL = new Set(["job.completed", "job.failed", "job.cancelled"]);
const MAX_BACKOFF_MS = 15000;

export class ProgressStream {
  /**
   * onEvent(event) for each new event in order; onStatus(text, state) where state is
   * "live", "reconnecting" or "closed".
   */
  constructor({ sessionId, jobId, onEvent, onStatus }) {
    this.sessionId = sessionId;
    this.jobId = jobId;
    this.onEvent = onEvent;
    this.onStatus = onStatus;
    this.lastSeq = 0;
    this.source = null;
    this.closed = false;
    this.failures = 0;
    this.reconnects = 0;
    this.reopens = 0;
    this.applied = 0;
    this.gaps = 0; // Events that never arrived (seq jumped): should stay 0 across reconnects.
    this.retryTimer = null;
  }

  async open() {
    if (this.closed) return;
    /** @type {Schemas["StreamToken"]} */
    let token;
    try {
      token = await api("POST", `/v1/sessions/${this.sessionId}/stream-token`);
    } catch (error) {
      this.scheduleReopen(`Could not open the live progress: ${describe(error)}`);
      return;
    }
    if (this.closed) return;
    const query = new URLSearchParams({ token: token.token, job_id: this.jobId, until_terminal: "true" });
    if (this.lastSeq > 0) {
      query.set("after", String(this.lastSeq));
      this.reopens += 1;
    }
    const source = new EventSource(`/v1/sessions/${this.sessionId}/events?${query}`);
    this.source = source;
    source.addEventListener("open", () => {
      this.failures = 0;
      const resumed = this.lastSeq > 0 ? ` (resumed after event ${this.lastSeq})` : "";
      this.onStatus(`Live${resumed}.`, "live");
    });
    for (const type of EVENT_TYPES) source.addEventListener(type, (message) => this.receive(message));
    source.addEventListener("message", (message) => this.receive(message));
    source.addEventListener("error", (message) => this.failed(source, message));
  }

  /** @param {MessageEvent<string>} message */
  receive(message) {
    /** @type {Schemas["ProgressEvent"]} */
    let event;
    try {
      event = JSON.parse(message.data);
    } catch {
      return;
    }
    const seq = event.seq;
    if (seq && seq <= this.lastSeq) return; // Already applied before a reconnect.
    if (seq && this.lastSeq && seq !== this.lastSeq + 1) this.gaps += 1;
    if (seq) this.lastSeq = seq;
    this.applied += 1;
    if (this.jobId && event.job_id && event.job_id !== this.jobId) return;
    this.onEvent(event);
    if (TERMINAL.has(event.type)) this.close(event.type === "job.completed" ? "The job has finished." : "The job has stopped.");
  }

  failed(source, message) {
    if (this.closed || source !== this.source) return;
    if (message && message.data) {
      // The server's own `event: error` frame (its upstream failed); the browser reconnects next.
      try {
        /** @type {Schemas["StreamError"]} */
        const body = JSON.parse(message.data);
        this.onStatus(`Progress paused: ${body.error.detail}. Reconnecting…`, "reconnecting");
      } catch {
        this.onStatus("Progress paused. Reconnecting…", "reconnecting");
      }
      return;
    }
    if (source.readyState === EventSource.CONNECTING) {
      this.reconnects += 1;
      this.onStatus("Connection lost. Reconnecting…", "reconnecting");
      return;
    }
    // CLOSED: the browser gave up (e.g. the token expired); reopen with a fresh token.
    source.close();
    this.reconnects += 1;
    this.scheduleReopen("Connection lost. Reconnecting…");
  }

  scheduleReopen(text) {
    if (this.closed) return;
    this.failures += 1;
    const delay = Math.min(MAX_BACKOFF_MS, 500 * 2 ** Math.min(this.failures, 5));
    this.onStatus(text, "reconnecting");
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.open(), delay);
  }

  close(text = "") {
    this.closed = true;
    clearTimeout(this.retryTimer);
    if (this.source) this.source.close();
    this.source = null;
    if (text) this.onStatus(text, "closed");
  }
}
