// The page's wiring: the API key, the session, and the four steps.

import { api, describe, forgetKey, keyRemembered, loadKey, saveKey } from "./api.js";
import { loadCapabilities, scriptWriterStatus } from "./capabilities.js";
import { $, setText } from "./dom.js";
import { JobView } from "./job.js";
import { setupScript } from "./script.js";
import { setupUploads } from "./uploads.js";

/** @typedef {import("./api-types").components["schemas"]} Schemas */

const SESSION_STORAGE = "vidsynth.sessionId";
const GONE = new Set(["SESSION_NOT_FOUND", "SESSION_EXPIRED"]);
let sessionId = null;
let creating = null;

function rememberSession(id) {
  sessionId = id;
  document.body.dataset.sessionId = id || "";
  if (id) sessionStorage.setItem(SESSION_STORAGE, id);
  else sessionStorage.removeItem(SESSION_STORAGE);
}

/** Picks up this tab's session after a reload, when it still exists (uploads are kept). */
async function restoreSession() {
  const saved = sessionStorage.getItem(SESSION_STORAGE);
  if (!saved || sessionId) return;
  /** @type {Schemas["Session"]} */
  let session;
  try {
    session = await api("GET", `/v1/sessions/${saved}`);
    if (session.state === "expired") throw new Error(session.state);
  } catch {
    rememberSession(null); // Gone, expired or another key's: start afresh on the next upload.
    return;
  }
  rememberSession(session.session_id);
  uploads.restore(session);
  if (!session.active_job_id) return;
  try {
    // Reloaded mid-job: follow it again (its events replay from the start).
    /** @type {Schemas["Job"]} */
    const job = await api("GET", `/v1/jobs/${session.active_job_id}`);
    if (!job.done) {
      running = true;
      updateStart();
      await jobView.attach(session.session_id, job);
    }
  } catch (failure) {
    setText($("#start-error"), describe(failure));
  }
}

/** The page's session, created on first use (uploads and jobs live in it). */
async function ensureSession() {
  if (sessionId) return sessionId;
  if (!creating) {
    creating = api("POST", "/v1/sessions", { body: { display_name: "web page" } })
      .then((/** @type {Schemas["Session"]} */ session) => {
        rememberSession(session.session_id);
        return sessionId;
      })
      .finally(() => {
        creating = null;
      });
  }
  return creating;
}

/** Drops a session the server no longer has (expired or swept); the next upload makes a new one. */
function forgetSession() {
  rememberSession(null);
}

const uploads = setupUploads({ ensureSession, forgetSession, onChange: () => updateStart() });
const script = setupScript();
let running = false;
const jobView = new JobView({
  onFinished: () => {
    running = false;
    updateStart();
  },
});

function updateStart() {
  const start = $("#start");
  start.disabled = running;
  start.title = uploads.ready() ? "" : "Upload a face photo and a voice sample first.";
}

async function refreshServerInfo() {
  const [capabilities] = await Promise.all([loadCapabilities(), uploads.loadPolicy(), restoreSession()]);
  if ($("#caps-summary").dataset.code === "UNAUTHENTICATED") {
    setText($("#key-status"), "The server did not accept this key. Check it and save it again.");
  }
  script.setWriter(capabilities ? scriptWriterStatus(capabilities) : { available: false, reason: "The server's capabilities could not be loaded." });
}

function showKeyState() {
  const key = loadKey();
  const where = keyRemembered() ? "remembered on this device" : "kept for this tab only";
  setText($("#key-status"), key ? `Key ${where} (…${key.slice(-4)}).` : "No key saved yet.");
  $("#key-remember").checked = keyRemembered();
  $("#api-key").value = key ? "" : $("#api-key").value;
  $("#api-key").placeholder = key ? "saved — enter a new one to replace it" : "paste your API key";
}

$("#key-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const key = $("#api-key").value.trim();
  if (!key) return;
  saveKey(key, $("#key-remember").checked);
  rememberSession(null);
  uploads.reset();
  showKeyState();
  await refreshServerInfo();
});

$("#key-forget").addEventListener("click", () => {
  forgetKey();
  rememberSession(null);
  uploads.reset();
  showKeyState();
});

$("#start").addEventListener("click", async () => {
  const error = $("#start-error");
  setText(error, "");
  if (!uploads.ready()) {
    setText(error, "Upload a face photo and a voice sample first.");
    return;
  }
  const { body, error: problem } = script.jobBody();
  if (problem) {
    setText(error, problem);
    return;
  }
  running = true;
  updateStart();
  try {
    await jobView.start(await ensureSession(), body);
  } catch (failure) {
    running = false;
    if (GONE.has(failure.code)) {
      forgetSession();
      uploads.reset();
      setText(error, `${describe(failure)} Upload your face photo and voice sample again.`);
    } else {
      setText(error, describe(failure));
    }
    updateStart();
    error.dataset.code = failure.code || "";
  }
});

showKeyState();
updateStart();
if (loadKey()) refreshServerInfo();
