// Talking to the gateway: the API key, JSON calls, uploads with progress, blobs.
// Every failure becomes an ApiError carrying the catalog code and the plain-words detail
// of the problem+json body, so the page can show exactly what the server said.
//
// The shapes are the API's own: api-types.d.ts is generated from /openapi.json by
// openapi-typescript (a test fails when it is stale), and the page's modules are
// type-checked against it (tsc --checkJs).
//
// The API key lives in this tab's sessionStorage unless the user ticks "remember on this
// device" (then localStorage, until "Forget key").

/** @typedef {import("./api-types").components["schemas"]} Schemas */
/** @typedef {Schemas["Problem"]} Problem */

const KEY_STORAGE = "vidsynth.apiKey";

export class ApiError extends Error {
  /**
   * @param {number} status
   * @param {Partial<Omit<Problem, "code">> & { code?: string }} problem
   */
  constructor(status, problem) {
    super(problem.detail || problem.title || `The server answered ${status}.`);
    this.status = status;
    this.code = problem.code || "HTTP_" + status;
    this.title = problem.title || "";
    this.fields = problem.errors || [];
    this.requestId = problem.request_id || "";
  }
}

/** The key of this tab, else the one remembered on this device, else "". */
export function loadKey() {
  return sessionStorage.getItem(KEY_STORAGE) || localStorage.getItem(KEY_STORAGE) || "";
}

/** Whether the key is remembered on this device (localStorage), not just for this tab. */
export function keyRemembered() {
  return Boolean(localStorage.getItem(KEY_STORAGE));
}

/**
 * @param {string} key
 * @param {boolean} remember keep it on this device (localStorage) instead of this tab only
 */
export function saveKey(key, remember = false) {
  forgetKey();
  (remember ? localStorage : sessionStorage).setItem(KEY_STORAGE, key.trim());
}

export function forgetKey() {
  sessionStorage.removeItem(KEY_STORAGE);
  localStorage.removeItem(KEY_STORAGE);
}

function authHeaders(extra = {}) {
  const key = loadKey();
  if (!key) {
    throw new ApiError(401, { code: "UNAUTHENTICATED", detail: "Enter your API key first." });
  }
  return { Authorization: `Bearer ${key}`, ...extra };
}

function problemFromText(status, text) {
  try {
    const body = JSON.parse(text);
    if (body && typeof body === "object") return body;
  } catch {
    // Not JSON (a proxy's HTML error page, say): fall through to a generic message.
  }
  return { detail: `The server answered ${status}.` };
}

async function failure(response) {
  return new ApiError(response.status, problemFromText(response.status, await response.text()));
}

/**
 * A JSON API call with the API key; returns the parsed body (null for 204), which the
 * caller types as the operation's answer with a JSDoc cast (e.g. to Schemas["Job"]).
 * @param {string} method
 * @param {string} path
 * @param {{ body?: unknown, headers?: Record<string, string> }} [options]
 * @returns {Promise<any>}
 */
export async function api(method, path, { body, headers = {} } = {}) {
  const init = { method, headers: authHeaders(headers) };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, { code: "NETWORK", detail: "Could not reach the server. Check your connection." });
  }
  if (!response.ok) throw await failure(response);
  if (response.status === 204) return null;
  const text = await response.text();
  return text ? JSON.parse(text) : null;
}

/**
 * Uploads a file as multipart field `file`; onProgress(fraction 0..1) while bytes go out.
 * @param {string} path
 * @param {File} file
 * @param {(fraction: number) => void} onProgress
 * @returns {Promise<Schemas["UploadResult"]>}
 */
export function upload(path, file, onProgress) {
  return new Promise((resolve, reject) => {
    let headers;
    try {
      headers = authHeaders();
    } catch (error) {
      reject(error);
      return;
    }
    const xhr = new XMLHttpRequest();
    xhr.open("POST", path);
    xhr.setRequestHeader("Authorization", headers.Authorization);
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    });
    xhr.addEventListener("load", () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        onProgress(1);
        resolve(xhr.responseText ? JSON.parse(xhr.responseText) : null);
      } else {
        reject(new ApiError(xhr.status, problemFromText(xhr.status, xhr.responseText)));
      }
    });
    const networkError = () =>
      reject(new ApiError(0, { code: "NETWORK", detail: "The upload was interrupted. Try again." }));
    xhr.addEventListener("error", networkError);
    xhr.addEventListener("abort", networkError);
    const form = new FormData();
    form.append("file", file, file.name);
    xhr.send(form);
  });
}

/** Downloads an output with the API key (links and <video> cannot send the header). */
export async function fetchBlob(path) {
  let response;
  try {
    response = await fetch(path, { headers: authHeaders() });
  } catch {
    throw new ApiError(0, { code: "NETWORK", detail: "Could not download the file." });
  }
  if (!response.ok) throw await failure(response);
  return response.blob();
}

/** A human sentence for an error, with the catalog code for support requests. */
export function describe(error) {
  if (error instanceof ApiError) {
    const fields = error.fields.map((f) => `${f.field}: ${f.description}`).join("; ");
    return `${error.message}${fields ? ` (${fields})` : ""}`;
  }
  return error && error.message ? error.message : String(error);
}
