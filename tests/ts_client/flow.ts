// The whole flow through a client generated from the gateway's live /openapi.json
// (openapi-typescript types + openapi-fetch), type-checked with `tsc --noEmit` (strict).
// Run by tests/ts_client/test_ts_client.py against a real `vidsynth up` mesh.
//
// Environment: BASE_URL, API_KEY, FACE_FILE, VOICE_FILE. Prints `RESULT {...}` and exits 0,
// or throws (non-zero exit) at the first thing that is not as the contract says.

import { readFile } from "node:fs/promises";
import path from "node:path";
import createClient from "openapi-fetch";
import type { components, paths } from "./generated/api.js";

type ProgressEvent = components["schemas"]["ProgressEvent"];
type StreamError = components["schemas"]["StreamError"];
type Job = components["schemas"]["Job"];
type AssetKind = components["schemas"]["AssetKind"];

const TERMINAL: ReadonlySet<string> = new Set(["job.completed", "job.failed", "job.cancelled"]);
const RANGE_BYTES = 1024;

function need(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
}

function check(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(message);
}

const BASE_URL = need("BASE_URL");
const client = createClient<paths>({ baseUrl: BASE_URL, headers: { Authorization: `Bearer ${need("API_KEY")}` } });
// EventSource-style: no Authorization header, a stream token in the query instead.
const anonymous = createClient<paths>({ baseUrl: BASE_URL });
const result: Record<string, unknown> = {};

async function createSession() {
  const { data, error, response } = await client.POST("/v1/sessions", { body: { display_name: "typescript client" } });
  check(data, `create session: ${response.status} ${error?.code}`);
  check(response.status === 201 && response.headers.get("location") === `/v1/sessions/${data.session_id}`, "201 + Location");
  check(data.state === "created" && data.assets.length === 0, `a new session: ${JSON.stringify(data)}`);
  return data;
}

async function upload(sessionId: string, kind: AssetKind, file: string, type: string) {
  const bytes = await readFile(file);
  const { data, error, response } = await client.POST("/v1/sessions/{session_id}/assets/{kind}", {
    params: { path: { session_id: sessionId, kind } },
    body: { file: new Blob([bytes], { type }) },
    bodySerializer(body) {
      const form = new FormData();
      check(!(body instanceof Blob), "the multipart body shape");
      form.append("file", body.file, path.basename(file));
      return form;
    },
  });
  check(data, `upload ${kind}: ${response.status} ${error?.code} ${error?.detail}`);
  check(response.status === 201, `upload ${kind}: 201, got ${response.status}`);
  check(data.asset.kind === kind && data.report.kind === kind && data.report.accepted, `the ${kind} report`);
  // Numbers, not protobuf-JSON strings: the report counts the upload, the asset its stored copy.
  check(data.report.size_bytes === bytes.length && typeof data.asset.size_bytes === "number", "size_bytes as numbers");
  return data;
}

async function startJob(sessionId: string): Promise<Job> {
  const { data, error, response } = await client.POST("/v1/sessions/{session_id}/jobs", {
    params: { path: { session_id: sessionId }, header: { "Idempotency-Key": crypto.randomUUID() } },
    body: { script_text: "Hello from a client generated from the OpenAPI document." },
  });
  check(data, `start job: ${response.status} ${error?.code} ${error?.detail}`);
  check(response.status === 202 && data.state === "queued" && !data.done, `a queued job: ${JSON.stringify(data)}`);
  check(data.spec.script_text !== null && data.spec.script_prompt === null, "the spec as sent");
  return data;
}

/** SSE frames of a fetch body: each `{event, id, data}` once its blank line arrives. */
async function* sseFrames(body: ReadableStream<Uint8Array>): AsyncGenerator<{ event: string; id: string; data: string }> {
  const decoder = new TextDecoder();
  let buffer = "";
  for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
    buffer += decoder.decode(chunk, { stream: true }).replace(/\r\n?/g, "\n");
    let end: number;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const fields = { event: "message", id: "", data: [] as string[] };
      for (const line of frame.split("\n")) {
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const name = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (name === "event") fields.event = value;
        else if (name === "id") fields.id = value;
        else if (name === "data") fields.data.push(value);
      }
      if (fields.data.length) yield { event: fields.event, id: fields.id, data: fields.data.join("\n") };
    }
  }
}

async function followToTheEnd(sessionId: string, jobId: string): Promise<ProgressEvent> {
  const issued = await client.POST("/v1/sessions/{session_id}/stream-token", {
    params: { path: { session_id: sessionId } },
  });
  check(issued.data, `stream token: ${issued.response.status}`);
  const { response } = await anonymous.GET("/v1/sessions/{session_id}/events", {
    params: { path: { session_id: sessionId }, query: { token: issued.data.token, job_id: jobId, until_terminal: true } },
    parseAs: "stream",
  });
  check(response.status === 200 && response.body, `events: ${response.status}`);
  check(response.headers.get("content-type")?.startsWith("text/event-stream"), "text/event-stream");
  const types: string[] = [];
  let last: ProgressEvent | null = null;
  for await (const frame of sseFrames(response.body)) {
    if (frame.event === "error") {
      const failure = JSON.parse(frame.data) as StreamError;
      throw new Error(`the stream failed: ${failure.error.code} ${failure.error.detail}`);
    }
    const event = JSON.parse(frame.data) as ProgressEvent;
    check(frame.event === event.type && frame.id === String(event.seq), `frame ${frame.id} names its event`);
    check(last === null || event.seq > last.seq, `seq increases: ${last?.seq} then ${event.seq}`);
    check(event.session_id === sessionId && event.job_id === jobId, "the job's own events");
    check(typeof event.overall_percent === "number" && (event.timestamp === null || !isNaN(Date.parse(event.timestamp))), "typed fields");
    types.push(event.type);
    last = event;
    if (TERMINAL.has(event.type)) break;
  }
  check(last && last.type === "job.completed", `the job completed: ${types.join(", ")}`);
  check(types[0] === "job.queued" && types.includes("stage.completed"), `the events: ${types.join(", ")}`);
  result.events = types.length;
  return last;
}

async function downloadWithRange(jobId: string) {
  const job = await client.GET("/v1/jobs/{job_id}", { params: { path: { job_id: jobId } } });
  check(job.data && job.data.state === "completed" && job.data.done, `the finished job: ${job.response.status}`);
  const video = job.data.outputs.find((output) => output.name === "video");
  check(video && video.content_type === "video/mp4", "a video output");
  const { data, response } = await client.GET("/v1/jobs/{job_id}/outputs/{name}", {
    params: { path: { job_id: jobId, name: "video" }, header: { Range: `bytes=0-${RANGE_BYTES - 1}` } },
    parseAs: "arrayBuffer",
  });
  check(data, `range download: ${response.status}`);
  check(response.status === 206, `206, got ${response.status}`);
  check(response.headers.get("content-range") === `bytes 0-${RANGE_BYTES - 1}/${video.size_bytes}`, "Content-Range");
  const head = new Uint8Array(data);
  check(head.length === RANGE_BYTES && new TextDecoder().decode(head.slice(4, 8)) === "ftyp", "an MP4's first bytes");
  result.video_bytes = video.size_bytes;

  const beyond = await client.GET("/v1/jobs/{job_id}/outputs/{name}", {
    params: { path: { job_id: jobId, name: "video" }, header: { Range: `bytes=${video.size_bytes + 10}-` } },
    parseAs: "arrayBuffer",
  });
  check(beyond.response.status === 416, `416 past the end, got ${beyond.response.status}`);
  check(beyond.response.headers.get("content-type") === "application/problem+json", "a problem");
}

async function readAProblemByItsCode() {
  const { data, error, response } = await client.GET("/v1/jobs/{job_id}", {
    params: { path: { job_id: `job_${"0".repeat(24)}` } },
  });
  check(data === undefined && error, "an error, not data");
  // `code` is typed as the codes this operation documents: comparing with one it does not
  // list would not compile.
  check(error.code === "JOB_NOT_FOUND" && error.status === 404 && response.status === 404, `JOB_NOT_FOUND: ${JSON.stringify(error)}`);
  check(response.headers.get("content-type") === "application/problem+json", "application/problem+json");
  check(error.request_id === response.headers.get("x-request-id"), "the request id");
  result.problem = error.code;
}

const session = await createSession();
await upload(session.session_id, "face", need("FACE_FILE"), "image/jpeg");
await upload(session.session_id, "voice", need("VOICE_FILE"), "audio/wav");
const job = await startJob(session.session_id);
const final = await followToTheEnd(session.session_id, job.job_id);
result.final_event = final.type;
await downloadWithRange(job.job_id);
await readAProblemByItsCode();
console.log(`RESULT ${JSON.stringify({ ok: true, ...result })}`);
