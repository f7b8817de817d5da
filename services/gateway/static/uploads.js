// The face and voice pickers: `accept` and limits from the upload policy, previews,
// client-side checks, upload progress, and each file's validation report or refusal.

import { api, describe, upload } from "./api.js";
import { $, el, formatBytes, formatSeconds, setText } from "./dom.js";

/** @typedef {import("./api-types").components["schemas"]} Schemas */
/** @typedef {Schemas["AssetKind"]} AssetKind */
/** @typedef {Schemas["KindPolicy"]} KindPolicy */

/** @type {AssetKind[]} */
const KINDS = ["face", "voice"];
const SESSION_GONE = new Set(["SESSION_NOT_FOUND", "SESSION_EXPIRED"]);

/**
 * The policy of one kind.
 * @param {Schemas["UploadPolicy"] | null} policy
 * @param {AssetKind} kind
 * @returns {KindPolicy | null}
 */
export function kindPolicy(policy, kind) {
  return (policy && policy.kinds.find((entry) => entry.kind === kind)) || null;
}

/** @param {KindPolicy} rules */
function extensionsOf(rules) {
  return (rules.allowed_extensions || []).map((ext) => (ext.startsWith(".") ? ext : `.${ext}`).toLowerCase());
}

/**
 * Why the browser already knows this file will be refused, in plain words; "" when it looks fine.
 * @param {File} file
 * @param {KindPolicy | null} rules
 */
export function clientProblem(file, rules) {
  if (file.size === 0) return "This file is empty. Choose another one.";
  if (!rules) return "";
  const maxBytes = rules.max_bytes;
  if (maxBytes && file.size > maxBytes) {
    let size = formatBytes(file.size);
    let limit = formatBytes(maxBytes);
    if (size === limit) {
      // Just over the limit: rounded sizes would look equal, so give the exact counts.
      size = `${file.size.toLocaleString("en")} bytes`;
      limit = `${maxBytes.toLocaleString("en")} bytes`;
    }
    return `This file is ${size}; the largest accepted is ${limit}.`;
  }
  const extensions = extensionsOf(rules);
  const types = (rules.allowed_content_types || []).map((t) => t.toLowerCase());
  const name = file.name.toLowerCase();
  const extensionOk = extensions.length === 0 || extensions.some((ext) => name.endsWith(ext));
  const typeOk = types.length === 0 || !file.type || types.includes(file.type.toLowerCase());
  if (!extensionOk || !typeOk) {
    return `This kind of file is not accepted here. Use one of: ${extensions.join(", ") || types.join(", ")}.`;
  }
  return "";
}

/**
 * The facts of an upload: its asset, and the validator's report when there is one (right
 * after the upload; a restored session has only its assets).
 * @param {Schemas["Asset"]} asset
 * @param {Schemas["ValidationReport"] | null} report
 * @returns {[string, string][]}
 */
function reportRows(asset, report) {
  /** @type {[string, string][]} */
  const rows = [];
  /** @param {string} label @param {string | number | null | undefined} value */
  const add = (label, value) => {
    if (value !== undefined && value !== null && value !== "" && value !== 0) rows.push([label, String(value)]);
  };
  const facts = report || asset; // the report describes the upload itself; the asset, its stored copy
  add("Detected type", report ? report.detected_type : asset.content_type);
  add("Size", formatBytes(facts.size_bytes));
  if (facts.width && facts.height) add("Dimensions", `${facts.width} × ${facts.height} px`);
  add("Duration", formatSeconds(facts.duration_seconds ?? 0));
  if (!report) return rows;
  if (report.sample_rate) add("Audio", `${report.sample_rate} Hz, ${report.channels || 1} channel(s)`);
  const box = report.face_box;
  if (box && box.width) add("Face found at", `${box.x},${box.y} (${box.width} × ${box.height} px)`);
  const scan = report.scan;
  if (scan) {
    const verdict = !scan.scanned ? "not scanned" : scan.clean ? "clean" : `found ${scan.signature}`;
    add("Malware scan", `${verdict}${scan.engine ? ` (${scan.engine}, ${scan.signature_db || "db"})` : ""}`);
  }
  return rows;
}

/**
 * Renders the validation report of an accepted upload.
 * @param {HTMLElement} container
 * @param {Schemas["UploadResult"]} result
 */
export function renderReport(container, result) {
  const { asset, report } = result;
  container.replaceChildren();
  container.append(el("p", { className: "ok", text: "Accepted: the file passed every check." }));
  const list = el("dl", { className: "facts-list" });
  for (const [label, value] of reportRows(asset, report)) list.append(el("dt", { text: label }), el("dd", { text: value }));
  container.append(list);
  const checks = report.checks;
  if (checks.length) {
    const items = checks.map((check) =>
      el("li", { className: check.passed ? "pass" : "fail" }, `${check.passed ? "✓" : "✗"} ${check.name}${check.detail ? ` — ${check.detail}` : ""}`),
    );
    container.append(el("details", {}, el("summary", { text: `Checks (${checks.length})` }), el("ul", { className: "plain checks" }, ...items)));
  }
  const warnings = report.warnings.length ? report.warnings : asset.warnings;
  for (const warning of warnings) container.append(el("p", { className: "warning", text: `Note: ${warning}` }));
}

function showPreview(picker, file) {
  const preview = $(".preview", picker);
  if (preview.dataset.url) URL.revokeObjectURL(preview.dataset.url);
  const url = URL.createObjectURL(file);
  preview.dataset.url = url;
  preview.src = url;
  preview.hidden = false;
  // A file that is not really an image or audio shows no broken preview.
  preview.addEventListener("error", () => (preview.hidden = true), { once: true });
}

/**
 * Wires both pickers. `ensureSession()` returns the session id (creating it on first use);
 * `onChange(kind, accepted)` tells the page which files are in place.
 */
export function setupUploads({ ensureSession, forgetSession, onChange }) {
  /** @type {Schemas["UploadPolicy"] | null} */
  let policy = null;
  const state = { face: false, voice: false };

  async function loadPolicy() {
    try {
      policy = await api("GET", "/v1/upload-policy");
    } catch {
      policy = null; // The server still checks everything; only the hints are missing.
    }
    for (const kind of KINDS) {
      const rules = kindPolicy(policy, kind);
      const picker = $(`#picker-${kind}`);
      const input = $("input[type=file]", picker);
      if (rules) {
        const accept = [...extensionsOf(rules), ...(rules.allowed_content_types || [])];
        if (accept.length) input.accept = accept.join(",");
        const limits = [];
        if (rules.max_bytes) limits.push(`up to ${formatBytes(rules.max_bytes)}`);
        if (rules.min_width) limits.push(`at least ${rules.min_width} × ${rules.min_height} px`);
        if (rules.max_duration_seconds) {
          limits.push(`${rules.min_duration_seconds || 0}–${rules.max_duration_seconds} s long`);
        }
        setText($(".hint", picker), `${extensionsOf(rules).join(", ")}${limits.length ? `; ${limits.join(", ")}` : ""}`);
      }
    }
  }

  async function handle(kind, picker, file) {
    const error = $(".error", picker);
    const report = $(".report", picker);
    const bar = $(".upload-progress", picker);
    setText(error, "");
    report.replaceChildren();
    state[kind] = false;
    onChange(kind, false);
    if (!file) return;
    showPreview(picker, file);
    const problem = clientProblem(file, kindPolicy(policy, kind));
    if (problem) {
      setText(error, problem);
      return;
    }
    bar.hidden = false;
    bar.value = 0;
    picker.setAttribute("aria-busy", "true");
    const send = async () => {
      const sessionId = await ensureSession();
      return upload(`/v1/sessions/${sessionId}/assets/${kind}`, file, (fraction) => {
        bar.value = Math.round(fraction * 100);
      });
    };
    try {
      let result;
      try {
        result = await send();
      } catch (failure) {
        if (!SESSION_GONE.has(failure.code)) throw failure;
        // The session expired since the last upload: start a new one and send again.
        forgetSession();
        for (const other of KINDS) if (other !== kind) forgetUpload(other);
        result = await send();
      }
      renderReport(report, result);
      state[kind] = true;
      onChange(kind, true);
    } catch (failure) {
      bar.hidden = true;
      setText(error, `${file.name} was not accepted: ${describe(failure)}`);
      error.dataset.code = failure.code || "";
    } finally {
      picker.removeAttribute("aria-busy");
    }
  }

  /** Marks a kind as needing a new upload (its session is gone). */
  function forgetUpload(kind) {
    if (!state[kind]) return;
    state[kind] = false;
    onChange(kind, false);
    const picker = $(`#picker-${kind}`);
    $(".report", picker).replaceChildren();
    setText($(".error", picker), "Your earlier session expired: choose this file again.");
  }

  for (const kind of KINDS) {
    const picker = $(`#picker-${kind}`);
    const input = $("input[type=file]", picker);
    input.addEventListener("change", () => handle(kind, picker, input.files[0]));
  }

  return {
    loadPolicy,
    ready: () => state.face && state.voice,
    /**
     * Shows the assets an existing session already holds (after a page reload).
     * @param {Schemas["Session"]} session
     */
    restore(session) {
      for (const asset of session.assets) {
        const picker = $(`#picker-${asset.kind}`);
        const report = $(".report", picker);
        report.replaceChildren(el("p", { className: "ok", text: "Already uploaded in this session." }));
        const list = el("dl", { className: "facts-list" });
        for (const [label, value] of reportRows(asset, null)) list.append(el("dt", { text: label }), el("dd", { text: value }));
        report.append(list);
        state[asset.kind] = true;
        onChange(asset.kind, true);
      }
    },
    reset() {
      for (const kind of KINDS) {
        state[kind] = false;
        const picker = $(`#picker-${kind}`);
        $("input[type=file]", picker).value = "";
        $(".report", picker).replaceChildren();
        $(".upload-progress", picker).hidden = true;
        setText($(".error", picker), "");
      }
    },
  };
}
